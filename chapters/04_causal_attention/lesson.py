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
# # Chapter 4: causal and padding masks
#
# Chapter 3's attention lets every query see every key. Two things must be hidden from it:
#
# - **the future.** A language model is trained to predict token t+1 from tokens 0..t, all
#   positions at once. If position t could see position t+1 it would copy the answer. The causal
#   mask lets query i see only keys j <= i.
# - **padding.** Sequences of different lengths are batched by padding the short ones. A padded
#   key is not a token; no query may attend to it.
#
# Convention (as in `torch.nn.functional.scaled_dot_product_attention`): a boolean mask is True
# where attention is *allowed*. Masks broadcast to (B, H, T, S).
#
# Run it with `python lesson.py`; grade the exercises with `minitransformer check 4`.

# %%
import torch

from minitransformer.layers import (
    MultiHeadAttention,
    causal_mask,
    decoder_mask,
    padding_mask,
    scaled_dot_product_attention,
    to_additive,
)

torch.manual_seed(0)

# %% [markdown]
# ## 1. The causal mask
# Query i may see key j iff j <= i: the lower triangle. During generation with a KV cache the T new
# queries come after S - T cached keys, so they are the *last* T rows of the big triangle: query i
# sees keys j <= i + (S - T).

# %%
print("causal_mask(4):\n", causal_mask(4).int())
print("causal_mask(2, 5), two new tokens after three cached ones:\n", causal_mask(2, 5).int())

# %% [markdown]
# ## 2. The padding mask
# Tokenizers return an `attention_mask` of 1 (token) and 0 (padding) of shape (B, S). Right
# padding puts the zeros at the end (BERT); decoder-only models are usually *left* padded for
# generation, so that every sequence's last token sits in the same column. Turned into a boolean
# (B, 1, 1, S) mask it broadcasts over heads and queries.

# %%
attention_mask = torch.tensor([[1, 1, 1, 1, 1],
                               [0, 0, 1, 1, 1]])  # sequence 1 is left padded
pad = padding_mask(attention_mask)
print("padding_mask", tuple(pad.shape), "\n", pad[:, 0, 0].int())

# %% [markdown]
# ## 3. Both at once
# A decoder needs causal AND padding: (1, 1, T, S) & (B, 1, 1, S) broadcasts to (B, 1, T, S).
# Look at sequence 1: its first two rows are empty. Query 0 may only see key 0, which is padding;
# query 1 may only see keys 0 and 1, both padding. Those queries may attend to *nothing*.

# %%
mask = decoder_mask(attention_mask, query_length=5)
print("decoder_mask", tuple(mask.shape))
print("sequence 1:\n", mask[1, 0].int())

# %% [markdown]
# ## 4. A row with nothing to see
# The usual way to mask is to set forbidden scores to -inf before the softmax. On a row where
# every score is -inf, softmax computes exp(-inf) / sum(exp(-inf)) = 0 / 0 = NaN, and NaN spreads:
# through the value product, the next layer, the loss, and every gradient.

# %%
scores = torch.randn(5, 5)
naive = torch.softmax(scores.masked_fill(~mask[1, 0], float("-inf")), dim=-1)
print("naive softmax, sequence 1:\n", naive)

# %% [markdown]
# A common workaround adds the dtype's most negative number instead of -inf (`to_additive`).
# That avoids the NaN but gives the empty row a uniform distribution over padding, a number that
# means nothing. This library's rule (see `minitransformer/layers/masks.py`): a query with no
# allowed key has all-zero probabilities and a zero output. It is only ever a padded query, whose
# output nothing downstream should read, and zeros keep every number finite.

# %%
finite = torch.softmax(scores + to_additive(mask[1, 0]), dim=-1)
print("finfo.min instead of -inf, row 0:", finite[0].tolist())
q, k, v = torch.randn(2, 1, 5, 4), torch.randn(2, 1, 5, 4), torch.randn(2, 1, 5, 4)
out, probs = scaled_dot_product_attention(q, k, v, attn_mask=mask, return_weights=True)
print("the library, sequence 1 probabilities:\n", probs[1, 0])
print("any NaN in the output:", bool(out.isnan().any()))

# %% [markdown]
# ## 5. Mask leakage
# The test that catches a wrong mask: change a token and watch which outputs move. Under a causal
# mask, changing token 3 may change the outputs at positions 3 and later, never at 0..2. Without
# the mask the change leaks backwards into every position. Here with the library's
# `MultiHeadAttention` on a sequence of 6 random vectors:

# %%
mha = MultiHeadAttention(hidden_size=16, num_attention_heads=4).eval()
x = torch.randn(1, 6, 16)
x_changed = x.clone()
x_changed[0, 3] = torch.randn(16)  # a different token at position 3


def change_per_position(attn_mask):
    with torch.no_grad():
        before, _ = mha(x, attn_mask=attn_mask)
        after, _ = mha(x_changed, attn_mask=attn_mask)
    return (after - before).abs().amax(dim=-1)[0]  # (T,): the largest change at each position


print("no mask:    ", [f"{d:.3f}" for d in change_per_position(None).tolist()])
print("causal mask:", [f"{d:.3f}" for d in change_per_position(causal_mask(6)).tolist()])

# %% [markdown]
# The same test with padding: in the left-padded sequence, whatever sits in the padded slots must
# not change the real positions' outputs.

# %%
am = torch.tensor([[0, 0, 1, 1, 1, 1]])
x_pad = x.clone()
x_pad[0, :2] = 100.0  # garbage in the two padded slots
with torch.no_grad():
    clean, _ = mha(x, attn_mask=decoder_mask(am, 6))
    garbage, _ = mha(x_pad, attn_mask=decoder_mask(am, 6))
print("change at real positions 2..5:", (garbage - clean)[0, 2:].abs().max().item())
print("padded positions output zeros' projection (the o_proj bias):",
      torch.allclose(clean[0, 0], mha.o_proj.bias))

# %% [markdown]
# ## 6. Picture it

# %%
try:
    import matplotlib.pyplot as plt

    panels = [("causal (5, 5)", causal_mask(5)), ("padding, seq 1", pad[1, 0].expand(5, 5)),
              ("causal & padding, seq 1", mask[1, 0]), ("cached: causal (2, 5)", causal_mask(2, 5))]
    fig, axes = plt.subplots(1, 4, figsize=(11, 3))
    for ax, (title, m) in zip(axes, panels):
        ax.imshow(m.int(), cmap="Greys", vmin=0, vmax=1)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("key")
        ax.set_ylabel("query")
    fig.suptitle("black = allowed", fontsize=9)
    plt.show()  # fig.savefig("masks.png") keeps a copy
except ImportError:
    print("install the viz extra (pip install 'minitransformer[viz]') to draw the masks")

# %% [markdown]
# ## Your turn
# Open `exercises_04.py` and implement 4.1 to 4.5. `minitransformer check 4` tells you which case
# fails and by how much.
#
# From this notebook, `minitransformer.check("4")` prints the same lines (it reads your file
# afresh each time), and `from exercises_04 import ...` brings your functions here to try
# them on the tensors above.
