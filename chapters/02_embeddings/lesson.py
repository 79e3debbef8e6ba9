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
# # Chapter 2: embeddings and positions
#
# A tokenizer turns text into integer ids. The model's first step turns each id into a vector of
# width C by looking it up in a (V, C) table. Attention itself is blind to order: permute the
# tokens and every output is permuted the same way. So a model must also be told *where* each token
# is. This chapter builds the three ways the models of this course do it:
#
# - learned absolute positions (BERT, GPT-2): a second table, one row per position, added in;
# - sinusoidal positions ("Attention Is All You Need"): the same idea with a fixed table of waves;
# - rotary embeddings, RoPE (LLaMA and most models since): no table added to the input, but queries
#   and keys rotated by an angle that grows with position, so that attention scores depend on the
#   *distance* between tokens.
#
# Shapes (see the notation page): B batch, H heads, T sequence length, D head size, C model width,
# V vocabulary.
#
# Run it with `python lesson.py`; grade the exercises with `minitransformer check 2`.

# %%
import math

import torch
import torch.nn.functional as F

from minitransformer.layers import (
    LearnedPositionEmbedding,
    RotaryEmbedding,
    TokenEmbedding,
    apply_rope_half,
    apply_rope_interleaved,
    interleaved_to_half_permutation,
    rope_inv_freq,
    sinusoidal_position_encoding,
)
from minitransformer.testing import max_abs_diff

torch.manual_seed(0)

# %% [markdown]
# ## 1. A lookup is a matrix product
# Row i of the table is token i's vector. Multiplying a one-hot row by the table picks out that
# row, so the lookup is a linear layer on one-hot inputs, done without building the (B, T, V)
# one-hot tensor (for V = 50257 that tensor would be large, and almost all zeros). It is also why
# GPT-2 can reuse the same (V, C) matrix, transposed, to turn vectors back into logits.

# %%
emb = TokenEmbedding(vocab_size=10, hidden_size=4)
ids = torch.tensor([[1, 5, 5, 9]])  # (B, T) = (1, 4)
looked_up = emb(ids)  # (B, T, C) = (1, 4, 4)
one_hot = F.one_hot(ids, num_classes=10).float()  # (1, 4, 10)
print("lookup", tuple(looked_up.shape), " equals one_hot @ W:", torch.allclose(looked_up, one_hot @ emb.weight))
try:
    emb(torch.tensor([[10]]))
except IndexError as err:
    print("an id outside the vocabulary:", err)

# %% [markdown]
# ## 2. Learned absolute positions
# BERT and GPT-2 keep a second table, one row per position up to `max_position_embeddings`, and
# add row t to the token at position t. During generation with a KV cache the new token's position
# is the number of tokens already seen, not 0: the positions passed in must say so.

# %%
pos = LearnedPositionEmbedding(max_position_embeddings=16, hidden_size=4)
x = emb(ids) + pos(torch.arange(4))  # (1, 4, 4) + (4, 4): broadcasts over the batch
print("input to the first block", tuple(x.shape))
next_token = emb(torch.tensor([[3]])) + pos(torch.tensor([4]))  # the fifth token sits at position 4

# %% [markdown]
# ## 3. Sinusoidal positions
# The 2017 paper fixes the table instead of learning it: coordinate pair i of position p holds
# sin and cos of p / 10000^(2i/C). Low coordinates wiggle fast, high ones slowly, like the digits
# of a counter. For each frequency, the encoding of position p + k is a rotation of the encoding of
# p by an angle that depends only on k: the idea RoPE builds on.

# %%
pe = sinusoidal_position_encoding(num_positions=50, dim=16)  # (T, C)
by_hand = [math.sin(7 / 10000 ** (0 / 16)), math.cos(7 / 10000 ** (0 / 16)), math.sin(7 / 10000 ** (2 / 16))]
print("PE[7, :3] =", [round(v, 5) for v in pe[7, :3].tolist()], " by hand:", [round(v, 5) for v in by_hand])
print("every row has the same norm:", pe.norm(dim=-1)[:4].tolist())

# %% [markdown]
# ## 4. Rotary embeddings
# RoPE splits a head vector of size D into D/2 pairs and rotates pair i at position p by the angle
# p * inv_freq[i], with inv_freq[i] = rope_theta^(-2i/D). A rotation is multiplication by e^{i angle}
# if the pair is read as a complex number a + ib. The score between a query at position m and a key at
# position n is then Re(sum q k* e^{i (m - n) w}): it depends on m - n only.

# %%
D = 8
inv_freq = rope_inv_freq(D, rope_theta=10000.0)  # (D/2,)
print("inv_freq", [f"{f:.4f}" for f in inv_freq.tolist()])
rope = RotaryEmbedding(head_dim=D)
q, k = torch.randn(1, 1, 1, D), torch.randn(1, 1, 1, D)


def score(m: int, n: int) -> float:
    qm, _ = rope(q, q, torch.tensor([[m]]))
    kn, _ = rope(k, k, torch.tensor([[n]]))
    return (qm * kn).sum().item()


for m, n in [(3, 1), (10, 8), (100, 98), (3, 2)]:
    print(f"q at {m:3d}, k at {n:3d} (distance {m - n}): score {score(m, n): .5f}")

# %% [markdown]
# Rotation keeps lengths, so RoPE never changes a vector's norm, only its direction.

# %%
q_rot, _ = rope(q, q, torch.tensor([[37]]))
print("norm before", q.norm().item(), " after", q_rot.norm().item())

# %% [markdown]
# ## 5. Two layouts of the same rotation
# Which coordinates form a pair is a convention. The RoFormer paper and Meta's original LLaMA code
# pair neighbours (x[2i], x[2i+1]): the "interleaved" layout. HF's `transformers` pairs the two
# halves (x[i], x[i + D/2]) and rotates with `rotate_half`. Reordering the coordinates as
# [0, 2, 4, ..., 1, 3, 5, ...] turns one into the other. That is why checkpoint converters permute
# the rows of the q and k projections: a model trained with one layout runs in the other once its
# weights are permuted, and q.k is unchanged because q and k are permuted alike.

# %%
x = torch.randn(1, 2, 5, D)  # (B, H, T, D)
cos, sin = rope.cos_sin(torch.arange(5)[None], x.dtype)  # (1, T, D/2) each
perm = interleaved_to_half_permutation(D)
print("perm", perm.tolist())
diff = max_abs_diff(apply_rope_half(x[..., perm], cos, sin), apply_rope_interleaved(x, cos, sin)[..., perm])
print("rotate-half on permuted x vs interleaved, permuted after: max abs diff", diff)

# %% [markdown]
# ## 6. rope_theta
# The base sets the slowest rotation. Pair i completes a turn every 2 pi / inv_freq[i] positions.
# With 10000 the slowest pair of a 128-wide head turns once in about 54000 positions; Llama 3 raised
# the base to 500000 to spread positions further apart in its long contexts.

# %%
for theta in (10000.0, 500000.0):
    wavelengths = 2 * math.pi / rope_inv_freq(128, theta)
    print(f"rope_theta={theta:>9g}: wavelengths from {wavelengths[0]:.1f} to {wavelengths[-1]:,.0f} positions")

# %% [markdown]
# ## 7. Picture it
# The sinusoidal table, and how the RoPE score between a fixed q and k falls and oscillates with
# their distance.

# %%
try:
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8, 3))
    ax1.imshow(pe.T, aspect="auto", cmap="RdBu")
    ax1.set_xlabel("position")
    ax1.set_ylabel("coordinate")
    ax1.set_title("sinusoidal encoding")
    rope64, qq = RotaryEmbedding(head_dim=64), torch.ones(1, 1, 1, 64)
    distances = list(range(0, 200, 2))
    scores = [(rope64(qq, qq, torch.tensor([[d]]))[0] * qq).sum().item() for d in distances]
    ax2.plot(distances, scores)
    ax2.set_xlabel("distance m - n")
    ax2.set_title("RoPE score, q = k = ones")
    plt.show()  # fig.savefig("positions.png") keeps a copy
except ImportError:
    print("install the viz extra (pip install 'minitransformer[viz]') to draw the pictures")

# %% [markdown]
# ## Your turn
# Open `exercises_02.py` and implement 2.1 to 2.6. `minitransformer check 2` tells you which case
# fails and by how much.
#
# From this notebook, `minitransformer.check("2")` prints the same lines (it reads your file
# afresh each time), and `from exercises_02 import ...` brings your functions here to try
# them on the tensors above.
