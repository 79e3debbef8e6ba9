# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 5: the block
#
# A transformer is a stack of identical blocks. Each block has two sublayers: attention (chapters
# 3 and 4), which mixes information *between* positions, and a feed-forward network, which works on
# each position alone. Each sublayer sits inside a residual connection with a normalisation layer.
# This chapter builds the pieces that are not attention:
#
# - LayerNorm (BERT, GPT-2) and RMSNorm (LLaMA, T5);
# - the feed-forward network: two linear layers with GELU or ReLU between, or LLaMA's gated SwiGLU;
# - the residual connection, with the norm before the sublayer (pre-norm) or after the sum (post-norm);
#
# and checks that the library's block equals `torch.nn.TransformerEncoderLayer` with the same weights.
#
# Shapes (see the notation page): B batch, T sequence length, H heads, C model width, I the
# feed-forward width.
#
# Run it with `python lesson.py`; grade the exercises with `minitransformer check 5`.

# %%
import torch
import torch.nn.functional as F

from minitransformer.layers import MLP, EncoderBlock, LayerNorm, RMSNorm, SwiGLU, gelu, gelu_tanh
from minitransformer.testing import max_abs_diff

torch.manual_seed(0)

# %% [markdown]
# ## 1. LayerNorm and RMSNorm
# LayerNorm gives every position's vector mean 0 and variance 1 over its C features, then a learned
# scale and shift. RMSNorm (Zhang and Sennrich, 2019) skips the centring: it only divides by the root
# mean square. It is cheaper and works as well, which is why LLaMA and T5 use it.

# %%
x = torch.randn(2, 3, 8) * 4 + 3  # (B, T, C): far from mean 0, variance 1
ln, rms = LayerNorm(8), RMSNorm(8)
y_ln, y_rms = ln(x), rms(x)
print(f"input      mean {x.mean(-1)[0, 0]: .3f}  var {x.var(-1, correction=0)[0, 0]: .3f}")
print(f"LayerNorm  mean {y_ln.mean(-1)[0, 0]: .3f}  var {y_ln.var(-1, correction=0)[0, 0]: .3f}")
print(f"RMSNorm    mean {y_rms.mean(-1)[0, 0]: .3f}  mean square {y_rms.pow(2).mean(-1)[0, 0]: .3f}")
print("vs torch.nn.LayerNorm:", max_abs_diff(y_ln, torch.nn.LayerNorm(8)(x)),
      " vs torch.nn.RMSNorm:", max_abs_diff(y_rms, torch.nn.RMSNorm(8, eps=1e-6)(x)))

# %% [markdown]
# Both compute their statistics in float32 even for bf16 inputs: a mean over thousands of features
# in bf16 (8 bits of mantissa) would be badly rounded. Variance is computed as mean((x - mean)^2),
# not mean(x^2) - mean^2: the second subtracts two large, nearly equal numbers when the mean is far
# from 0 and loses most of its digits (exercise 5.1 has a case for it).

# %% [markdown]
# ## 2. GELU, exact and approximated
# GELU(x) = x * Phi(x), Phi the normal CDF: a smooth ReLU that lets small negative values through.
# GPT-2 was trained with a tanh approximation of Phi. The two differ by under 1e-3, but a model must
# be run with the one it was trained with to match its reference outputs to 1e-5: HF configs name
# it (`gelu`, `gelu_new`, `gelu_pytorch_tanh`).

# %%
z = torch.linspace(-5, 5, 201)
print("exact vs F.gelu:", max_abs_diff(gelu(z), F.gelu(z)),
      "  tanh vs F.gelu(tanh):", max_abs_diff(gelu_tanh(z), F.gelu(z, approximate="tanh")))
print("exact vs tanh approximation, largest gap:", max_abs_diff(gelu(z), gelu_tanh(z)))

# %% [markdown]
# ## 3. The feed-forward network, plain and gated
# The plain MLP widens each vector to I = 4C, applies the activation, and projects back. SwiGLU
# (Shazeer, 2020; LLaMA) has a third matrix: a gate, passed through SiLU, multiplies the up
# projection elementwise. Three matrices instead of two, so LLaMA shrinks I to about 8/3 C to keep
# the parameter count.

# %%
C = 96
plain, gated = MLP(C, 4 * C, "gelu"), SwiGLU(C, 8 * C // 3)
count = lambda m: sum(p.numel() for p in m.parameters() if p.dim() == 2)  # noqa: E731  (weights only)
print("MLP weights:", count(plain), "  SwiGLU weights:", count(gated))
h = torch.randn(2, 3, C)
print("both map (B, T, C) -> (B, T, C):", tuple(plain(h).shape), tuple(gated(h).shape))

# %% [markdown]
# ## 4. Residual connections: pre-norm and post-norm
# The 2017 paper and BERT normalise *after* the sum: x = norm(x + sublayer(x)). GPT-2 and almost
# every model since normalise the sublayer's *input*: x = x + sublayer(norm(x)). In pre-norm the
# residual stream itself is never normalised: a straight path runs from the input to the output,
# gradients reach early layers undamped, and deep stacks train without the careful learning-rate
# warm-up post-norm needs. The price: the stream's size grows with depth, so pre-norm models end
# with one more norm before the output head.

# %%
depth, C = 24, 32
blocks = {
    nf: [EncoderBlock.standard(C, 4, 4 * C, norm_first=nf).eval() for _ in range(depth)] for nf in (True, False)
}
stream_std = {}
with torch.no_grad():
    for nf, stack in blocks.items():
        h, stds = torch.randn(1, 8, C), []
        for block in stack:
            h, _ = block(h)
            stds.append(h.std().item())
        stream_std[nf] = stds
print("std of the residual stream after blocks 1, 6, 12, 24")
print("  pre-norm :", [round(stream_std[True][i], 2) for i in (0, 5, 11, 23)])
print("  post-norm:", [round(stream_std[False][i], 2) for i in (0, 5, 11, 23)])

# %% [markdown]
# ## 5. The whole block equals torch's
# `EncoderBlock.standard` is the block of the 2017 paper, the same as
# `torch.nn.TransformerEncoderLayer`. torch stores q, k and v as one fused `in_proj_weight` of 3C
# rows, q then k then v; the library keeps three projections named like HF's, so copying the weights
# splits that matrix in three. With the same weights the two agree, pre-norm and post-norm.

# %%
C, H, I = 16, 4, 32
x = torch.randn(2, 5, C)
causal = torch.ones(5, 5, dtype=torch.bool).tril()
for norm_first in (False, True):
    ref = torch.nn.TransformerEncoderLayer(C, H, I, dropout=0.0, batch_first=True, norm_first=norm_first).eval()
    ours = EncoderBlock.standard(C, H, I, norm_first=norm_first).eval()
    sd = ref.state_dict()
    q_w, k_w, v_w = sd["self_attn.in_proj_weight"].chunk(3)  # (3C, C) -> 3 x (C, C)
    q_b, k_b, v_b = sd["self_attn.in_proj_bias"].chunk(3)
    ours.load_state_dict({
        "self_attn.q_proj.weight": q_w, "self_attn.q_proj.bias": q_b,
        "self_attn.k_proj.weight": k_w, "self_attn.k_proj.bias": k_b,
        "self_attn.v_proj.weight": v_w, "self_attn.v_proj.bias": v_b,
        "self_attn.o_proj.weight": sd["self_attn.out_proj.weight"], "self_attn.o_proj.bias": sd["self_attn.out_proj.bias"],
        "mlp.up_proj.weight": sd["linear1.weight"], "mlp.up_proj.bias": sd["linear1.bias"],
        "mlp.down_proj.weight": sd["linear2.weight"], "mlp.down_proj.bias": sd["linear2.bias"],
        "attn_norm.weight": sd["norm1.weight"], "attn_norm.bias": sd["norm1.bias"],
        "mlp_norm.weight": sd["norm2.weight"], "mlp_norm.bias": sd["norm2.bias"],
    })
    with torch.no_grad():
        expected = ref(x, src_mask=~causal)  # torch's boolean mask is True where attention is BLOCKED
        got, _ = ours(x, attn_mask=causal)  # ours is True where attention is allowed
    print(f"norm_first={norm_first!s:5}: max abs diff vs torch.nn.TransformerEncoderLayer {max_abs_diff(got, expected):.2e}")

# %% [markdown]
# ## 6. Picture it

# %%
try:
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3))
    ax1.plot(z, gelu(z), label="GELU")
    ax1.plot(z, gelu_tanh(z), "--", label="GELU (tanh)")
    ax1.plot(z, torch.relu(z), ":", label="ReLU")
    ax1.plot(z, F.silu(z), label="SiLU")
    ax1.legend()
    ax1.set_title("activations")
    ax2.plot(range(1, depth + 1), stream_std[True], label="pre-norm")
    ax2.plot(range(1, depth + 1), stream_std[False], label="post-norm")
    ax2.set_xlabel("block")
    ax2.set_ylabel("std of the residual stream")
    ax2.legend()
    plt.show()  # fig.savefig("block.png") keeps a copy
except ImportError:
    print("install the viz extra (pip install 'minitransformer[viz]') to draw the pictures")

# %% [markdown]
# ## Your turn
# Open `exercises_05.py` and implement 5.1 to 5.6. `minitransformer check 5` tells you which case
# fails and by how much.
#
# From this notebook, `minitransformer.check("5")` prints the same lines (it reads your file
# afresh each time), and `from exercises_05 import ...` brings your functions here to try
# them on the tensors above.
