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
# # Chapter 0: a PyTorch refresher
#
# Everything in this course is plain PyTorch. This chapter recalls the five tools the rest of it
# leans on: tensors and their shapes, broadcasting, autograd, `nn.Module`, and the two ways to say
# "multiply these axes together" or "move these axes around" by name: `torch.einsum` and `einops`.
#
# Shapes (see the notation page): B batch, T sequence length, H heads, D head size, C model width,
# V vocabulary.
#
# This file is a notebook in jupytext's percent format, and `lesson.ipynb` beside it is the same
# notebook, generated from it: open that in Jupyter, or run this file top to bottom with
# `python lesson.py`. Your exercises are in `exercises_00.py`; grade them with
# `minitransformer check 0`.

# %%
import torch
from einops import rearrange, reduce
from torch import nn

torch.manual_seed(0)

# %% [markdown]
# ## 1. Tensors: shape, dtype, views
# A tensor is a block of numbers plus a shape that says how to read it. `view` and `transpose`
# change only the reading, not the numbers: they share storage with the original. That is why a
# transposed tensor is not "contiguous", and why `.view` on it fails where `.reshape` copies.

# %%
x = torch.arange(12, dtype=torch.float32)
m = x.view(3, 4)  # (3, 4): same 12 numbers, read as 3 rows of 4
print(m)
print("dtype", m.dtype, " shape", tuple(m.shape), " stride", m.stride())
mt = m.T  # (4, 3): a new view, strides swapped, nothing copied
print("m.T shares storage with m:", mt.data_ptr() == m.data_ptr(), " contiguous:", mt.is_contiguous())
try:
    mt.view(12)
except RuntimeError as err:
    print("mt.view(12) fails:", str(err).split(".")[0])
print("mt.reshape(12) copies instead:", mt.reshape(12).tolist())

# %% [markdown]
# ## 2. Broadcasting
# Two shapes are lined up from the right. Each pair of sizes must be equal, or one of them 1 (it is
# stretched, without copying), or missing (treated as 1). This one rule builds outer sums, adds a
# bias to every row, and applies one mask to every head.

# %%
a = torch.tensor([0.0, 10.0, 20.0])  # (3,)
b = torch.tensor([1.0, 2.0, 3.0, 4.0])  # (4,)
print("a[:, None] + b[None, :] =\n", a[:, None] + b[None, :])  # (3, 1) + (1, 4) -> (3, 4)

scores = torch.randn(2, 4, 5, 5)  # (B, H, T, S)
mask = torch.ones(5, 5, dtype=torch.bool).tril()  # (T, S), broadcast over B and H
print("masked scores", tuple(scores.masked_fill(~mask, float("-inf")).shape))

# %% [markdown]
# Broadcasting is also the most common source of silent bugs: a (3,) tensor and a (3, 1) tensor
# combine into a (3, 3) one without complaint. Check shapes when a result looks too big.

# %%
col = torch.ones(3, 1)
print("(3,) - (3, 1) ->", tuple((a - col).shape), " (probably not what was meant)")

# %% [markdown]
# ## 3. Softmax, and why it subtracts the maximum
# softmax(x)_i = exp(x_i) / sum_j exp(x_j). In float32 `exp(89)` is already inf, and inf / inf is
# NaN. Subtracting the row's maximum first changes nothing mathematically (the factor exp(-max)
# cancels) but keeps every exponent <= 0. Exercise 0.2 asks you to write it.

# %%
big = torch.tensor([1000.0, 1001.0, 1002.0])
naive = big.exp() / big.exp().sum()
shifted = (big - big.max()).exp()
print("naive  ", naive.tolist())
print("shifted", (shifted / shifted.sum()).tolist())
print("torch  ", torch.softmax(big, dim=0).tolist())

# %% [markdown]
# ## 4. Autograd
# A tensor with `requires_grad=True` records the operations applied to it. `backward()` on a
# scalar walks that record backwards and leaves d(scalar)/d(tensor) in `.grad`.

# %%
w = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
loss = (w**2).sum()  # d/dw = 2w
loss.backward()
print("grad of sum(w^2) at w=[1, -2, 3]:", w.grad.tolist())

# torch.autograd.grad returns the gradient instead of accumulating it into .grad.
v = torch.tensor(0.5, requires_grad=True)
(dv,) = torch.autograd.grad(torch.sin(v) * v, v)
print(f"d/dv [v sin v] at 0.5: autograd {dv.item():.6f}, by hand {(torch.cos(v) * v + torch.sin(v)).item():.6f}")

# %% [markdown]
# ## 5. nn.Module
# A module holds parameters (registered by assigning an `nn.Parameter` to an attribute) and
# sub-modules, and defines `forward`. Registration is what makes `parameters()`, `state_dict()`,
# `.to(device)` and optimisers see the weights. The attribute name becomes the state-dict key, which
# is why this library names its weights like the checkpoints it loads.

# %%
class TwoLayer(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.up = nn.Linear(width, 4 * width)
        self.down = nn.Linear(4 * width, width)
        self.register_buffer("scale", torch.tensor(0.5), persistent=False)  # not a weight: not saved

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(torch.relu(self.up(x))) * self.scale


net = TwoLayer(8)
print("state_dict keys:", list(net.state_dict()))
print("parameters:", sum(p.numel() for p in net.parameters()))
print("nn.Linear stores weight as (out, in):", tuple(net.up.weight.shape))

# %% [markdown]
# ## 6. einsum: products by axis name
# `torch.einsum` names every axis with a letter. Letters that appear in the inputs but not in the
# output are summed over. Attention scores, Q K^T for every batch and head, read:

# %%
Q, K = torch.randn(2, 4, 5, 8), torch.randn(2, 4, 6, 8)  # (B, H, T, D), (B, H, S, D)
scores = torch.einsum("bhtd,bhsd->bhts", Q, K)  # sum over d
print("scores", tuple(scores.shape), " equal to Q @ K^T:",
      torch.allclose(scores, Q @ K.transpose(-2, -1), atol=1e-6))

# %% [markdown]
# ## 7. einops: layouts by axis name
# `rearrange` says a layout change in words. Splitting a model-width vector into heads is the
# reshape every transformer does; with view and transpose the reader has to work out which axis
# went where, with einops the pattern says it.

# %%
x = torch.randn(2, 5, 32)  # (B, T, C) with C = H * D = 4 * 8
heads = rearrange(x, "b t (h d) -> b h t d", h=4)  # (B, H, T, D)
same = x.view(2, 5, 4, 8).transpose(1, 2)  # the same thing, unnamed
print("heads", tuple(heads.shape), " equal to view+transpose:", torch.equal(heads, same))
print("mean over heads", tuple(reduce(heads, "b h t d -> b t d", "mean").shape))

# %% [markdown]
# ## 8. Picture it
# Broadcasting an outer sum, as an image: row i is a[i] + b.

# %%
try:
    import matplotlib.pyplot as plt

    grid = torch.linspace(0, 1, 20)[:, None] + torch.sin(torch.linspace(0, 6.28, 30))[None, :]  # (20, 30)
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.imshow(grid, cmap="viridis")
    ax.set_xlabel("j: sin(b_j)")
    ax.set_ylabel("i: a_i")
    ax.set_title("a[:, None] + b[None, :]")
    plt.show()  # fig.savefig("outer_sum.png") keeps a copy
except ImportError:
    print("install the viz extra (pip install 'minitransformer[viz]') to draw the picture")

# %% [markdown]
# ## Your turn
# Open `exercises_00.py` and implement 0.1 to 0.6. `minitransformer check 0` tells you which case
# fails and by how much.
#
# From this notebook, `minitransformer.check("0")` prints the same lines (it reads your file
# afresh each time), and `from exercises_00 import ...` brings your functions here to try
# them on the tensors above.
