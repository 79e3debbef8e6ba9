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
# # Chapter 3: attention
#
# Attention lets every position look at every other position and take a weighted average of what
# it finds. Queries ask, keys answer, values are what gets averaged:
#
# $$\mathrm{Attention}(Q, K, V) = \mathrm{softmax}\left(\frac{Q K^\top}{\sqrt{D}}\right) V$$
#
# Shapes (see the notation page): B batch, H heads, T queries, S keys, D head size, C model width.
#
# This file is a notebook in jupytext's percent format, and `lesson.ipynb` beside it is the same
# notebook, generated from it: open that in Jupyter, or run this file top to bottom with
# `python lesson.py`. Your exercises are in `exercises_03.py`; grade them with
# `minitransformer check 3`.

# %%
import math

import torch
import torch.nn.functional as F

from minitransformer.layers import MultiHeadAttention, scaled_dot_product_attention
from minitransformer.testing import max_abs_diff

torch.manual_seed(0)

# %% [markdown]
# ## 1. Scores, by hand
# One head, three tokens, head size 4. The score of query i against key j is their dot product,
# divided by sqrt(D) so that the scores' variance stays near 1 whatever D is.

# %%
q = torch.randn(3, 4)
k = torch.randn(3, 4)
v = torch.randn(3, 4)
scores = q @ k.T / math.sqrt(4)  # (T, S) = (3, 3)
weights = scores.softmax(dim=-1)  # each row sums to 1
print("scores\n", scores)
print("row sums", weights.sum(-1))
out = weights @ v  # (3, 4): each output row is a weighted mix of the value rows
print("output shape", tuple(out.shape))

# %% [markdown]
# ## 2. Why divide by sqrt(D)?
# For random unit-variance q and k, q·k has variance D. Without the scale, large D pushes softmax
# into a one-hot corner where gradients vanish.

# %%
for D in (4, 64, 1024):
    qs, ks = torch.randn(10000, D), torch.randn(10000, D)
    dots = (qs * ks).sum(-1)
    print(f"D={D:5d}  var(q.k)={dots.var():8.1f}  var(q.k/sqrt(D))={(dots / math.sqrt(D)).var():.2f}")

# %% [markdown]
# ## 3. The library's function equals torch's fused one
# `minitransformer.layers.scaled_dot_product_attention` is the formula written out with matmul and
# softmax. torch ships a fused kernel with the same arguments; the two agree to float32 precision.

# %%
Q, K, V = torch.randn(2, 4, 5, 8), torch.randn(2, 4, 5, 8), torch.randn(2, 4, 5, 8)
causal = torch.ones(5, 5, dtype=torch.bool).tril()
ours = scaled_dot_product_attention(Q, K, V, attn_mask=causal)
theirs = F.scaled_dot_product_attention(Q, K, V, attn_mask=causal)
print("max abs diff, ours vs torch:", max_abs_diff(ours, theirs))
assert max_abs_diff(ours, theirs) < 1e-6

# %% [markdown]
# ## 4. Many heads
# Multi-head attention projects the input C-wide vector into H heads of size D = C / H, attends in
# each head separately, then concatenates and mixes them with an output projection. Grouped-query
# attention (LLaMA 2 70B, Llama 3) keeps fewer key/value heads (Hkv) and shares each among H / Hkv
# query heads: the KV cache shrinks by that factor.

# %%
mha = MultiHeadAttention(hidden_size=32, num_attention_heads=8, num_key_value_heads=2)
x = torch.randn(1, 6, 32)
y, probs = mha(x, output_attentions=True)
print("output", tuple(y.shape), " probabilities", tuple(probs.shape))  # (B, T, C), (B, H, T, S)
print("k_proj weight", tuple(mha.k_proj.weight.shape), "(Hkv * D, C): 4x smaller than q_proj's",
      tuple(mha.q_proj.weight.shape))

# %% [markdown]
# ## 5. Picture it
# A heatmap of one head's probabilities: row = query, column = key.

# %%
try:
    import matplotlib.pyplot as plt

    from minitransformer.viz import plot_attention

    tokens = [f"t{i}" for i in range(6)]
    fig = plot_attention((probs,), tokens, layer=0, head=0, title="one head of random-weight attention")
    plt.show()  # plot_attention(..., path="attention_head0.png") also writes it to a file
except ImportError:
    print("install the viz extra (pip install 'minitransformer[viz]') to draw the heatmap")

# %% [markdown]
# ## Your turn
# Open `exercises_03.py` and implement 3.1 to 3.6. `minitransformer check 3` tells you which case
# fails and by how much.
#
# From this notebook, `minitransformer.check("3")` prints the same lines (it reads your file
# afresh each time), and `from exercises_03 import ...` brings your functions here to try
# them on the tensors above.
