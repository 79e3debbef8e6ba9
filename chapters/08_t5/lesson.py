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
# # Chapter 8: T5
#
# T5 (Raffel et al., 2019) goes back to the full 2017 transformer: an **encoder** reads the input, a
# **decoder** writes the output one token at a time and reads the encoder through **cross attention**.
# Every task is text to text ("translate English to German: ...", "summarize: ..."). Four details
# differ from chapters 2 to 5, and this chapter takes them one at a time:
#
# - **relative positions**: no position vectors at all; a learned number, per head and per *bucket of
#   distance* between query and key, is added to every attention score;
# - **no 1/sqrt(D)** in attention: the factor lives in the initialisation of the query weights;
# - the **T5 norm** is an RMS norm: no mean subtracted, no bias, pre-norm;
# - **teacher forcing**: during training the decoder reads the target shifted right by one.
#
# Shapes (see the notation page): B batch, S encoder length, T decoder length, H heads, D head size
# (`d_kv`), C model width (`d_model`), V vocabulary.
# Run it with `python lesson.py`; grade the exercises with `minitransformer check 8`.

# %%
import importlib.util
import math
import tempfile

import torch
import torch.nn.functional as F

from minitransformer.layers.norms import RMSNorm
from minitransformer.layers.relative_position import RelativePositionBias, relative_position_bucket
from minitransformer.models.t5 import T5, T5_ATTENTION_SCALE, T5Config
from minitransformer.testing import max_abs_diff

torch.manual_seed(0)
torch.set_num_threads(1)  # the models here are tiny: a second thread costs more in synchronisation than it saves

# %% [markdown]
# ## 1. Relative position buckets
# Attention sees a set, not a sequence (chapter 2). BERT and GPT-2 add a position vector to each token;
# T5 instead asks, for every query i and key j, *how far apart are they*: `relative_position = j - i`.
# Distances are sorted into buckets: small ones exactly (0, 1, 2, ...), larger ones in buckets that grow
# logarithmically, and everything past `max_distance` in one last bucket. Nearby order matters a lot;
# whether a word is 90 or 100 tokens back hardly does.
#
# The encoder looks both ways, so half of the buckets are for keys *after* the query. The decoder is
# causal: it only ever sees keys at or before the query, so all buckets look back.

# %%
relative = torch.arange(-12, 13)  # key position - query position
print("relative position   ", " ".join(f"{r:3d}" for r in relative.tolist()))
for name, bidirectional in (("encoder (both ways)", True), ("decoder (causal)   ", False)):
    buckets = relative_position_bucket(relative, bidirectional, num_buckets=8, max_distance=16)
    print(f"{name} ", " ".join(f"{b:3d}" for b in buckets.tolist()))

# %% [markdown]
# With t5-small's settings (32 buckets, `max_distance` 128): the exact range ends at 8 (encoder), and
# after it each bucket covers a wider span of distances. The log spacing reaches the last bucket before
# `max_distance` itself (at 91 tokens in the encoder); from there on, every distance is the same to T5.

# %%
far = torch.arange(-200, 201)
encoder_buckets = relative_position_bucket(far, True, num_buckets=32, max_distance=128)
decoder_buckets = relative_position_bucket(far, False, num_buckets=32, max_distance=128)
for b in (0, 7, 8, 9, 12, 15):
    distances = (-far[encoder_buckets == b]).tolist()
    print(f"encoder bucket {b:2d} holds keys {min(distances):3d} .. {max(distances):3d} tokens back")
try:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    ax.step(far, encoder_buckets, where="mid", label="encoder (bidirectional)")
    ax.step(far, decoder_buckets, where="mid", label="decoder (causal)")
    ax.axvline(-128, color="grey", lw=0.5)
    ax.axvline(128, color="grey", lw=0.5)
    ax.set_xlabel("relative position (key - query)")
    ax.set_ylabel("bucket")
    ax.legend(fontsize=8)
    plt.show()  # fig.savefig("t5_buckets.png") keeps a copy
except ImportError:
    print("install the viz extra (pip install 'minitransformer[viz]') to draw the buckets")

# %% [markdown]
# ## 2. The bias: a table of (num_buckets, H) numbers
# Each head learns one number per bucket. For T queries and S keys, look up the bucket of every pair:
# a (1, H, T, S) tensor that is added to the scores `q . k` before the softmax. Only the first layer
# of each stack owns the table; all layers of that stack reuse the same bias.

# %%
bias_table = RelativePositionBias(num_buckets=8, max_distance=16, num_heads=2, bidirectional=False)
with torch.no_grad():
    bias_table.weight.copy_(torch.arange(16.0).reshape(8, 2))  # value = 2 * bucket + head, easy to read
bias = bias_table(query_length=5, key_length=5).detach()  # (1, H, T, S)
print("bias", tuple(bias.shape), "\nhead 0 (row = query, column = key):\n", bias[0, 0])
print("every diagonal is constant: the bias depends on j - i only, not on where in the text we are")

# %% [markdown]
# ## 3. Why T5's attention has no 1/sqrt(D)
# Chapter 3 divided `q . k` by sqrt(D) so that the scores have variance about 1. Mesh TensorFlow, where
# T5 was trained, put that factor into the *initialisation* instead: the query projection starts with
# std `(C * D) ** -0.5` instead of `C ** -0.5`. Scaling once more would shrink every score by sqrt(D), so
# the library's T5 attention uses `scale = T5_ATTENTION_SCALE`.

# %%
C, D = 512, 64
x = torch.randn(1000, C)
w_q_t5, w_k = torch.randn(D, C) * (C * D) ** -0.5, torch.randn(D, C) * C**-0.5
w_q_usual = torch.randn(D, C) * C**-0.5
scores_t5 = ((x @ w_q_t5.T) * (x @ w_k.T)).sum(-1)  # no scale
scores_usual = ((x @ w_q_usual.T) * (x @ w_k.T)).sum(-1) / math.sqrt(D)
print(f"T5_ATTENTION_SCALE = {T5_ATTENTION_SCALE}")
print(f"variance of the scores: T5 init, unscaled {scores_t5.var():.2f};  usual init / sqrt(D) {scores_usual.var():.2f}")

# %% [markdown]
# ## 4. The T5 norm is an RMS norm
# HF calls it `T5LayerNorm`, but it divides by the root mean square only: no mean subtracted, no bias
# (chapter 5's RMSNorm). It is used pre-norm, `x + sublayer(norm(x))`, plus once at the end of each stack.

# %%
h = torch.randn(2, 3, 8) + 4.0  # far from mean 0
norm = RMSNorm(8, eps=1e-6)
print("ours vs F.rms_norm:", max_abs_diff(norm(h), F.rms_norm(h, (8,), norm.weight, 1e-6)))
print("mean of each output row (not 0: nothing is centred):", norm(h).mean(-1)[0].tolist())

# %% [markdown]
# ## 5. The encoder-decoder
# A tiny random T5. The encoder runs once over the input; the decoder reads its own tokens (causal
# self attention, with the causal bias) and, in every layer, the encoder's output by cross attention:
# queries from the decoder, keys and values from the encoder, no position bias, no causal mask.

# %%
config = T5Config(vocab_size=40, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                  relative_attention_num_buckets=8, relative_attention_max_distance=16, dropout_rate=0.0)
model = T5(config).eval()
print(model.decoder.layers[0])

input_ids = torch.tensor([[5, 6, 7, 8, 9, 10, config.eos_token_id]])  # (B, S) = (1, 7)
decoder_input_ids = torch.tensor([[config.decoder_start_token_id, 11, 12, 13]])  # (B, T) = (1, 4)
with torch.no_grad():
    out = model(input_ids, decoder_input_ids=decoder_input_ids, output_attentions=True)
print("logits", tuple(out.logits.shape), " encoder output", tuple(out.encoder_last_hidden_state.shape))
print("cross attention of layer 0:", tuple(out.cross_attentions[0].shape), "(B, H, T, S): decoder rows, encoder columns")

# %% [markdown]
# What may reach what: changing a *later* decoder token leaves earlier positions' logits untouched
# (causal), while changing any encoder token changes all of them (cross attention sees everything).

# %%
with torch.no_grad():
    changed_decoder = decoder_input_ids.clone()
    changed_decoder[0, 3] = 20
    a = model(input_ids, decoder_input_ids=changed_decoder).logits
    changed_input = input_ids.clone()
    changed_input[0, 5] = 20
    b = model(changed_input, decoder_input_ids=decoder_input_ids).logits
print("decoder token 3 changed -> positions 0..2 move by", max_abs_diff(a[:, :3], out.logits[:, :3]))
print("encoder token 5 changed -> position 0 moves by   ", max_abs_diff(b[:, :1], out.logits[:, :1]))

# %% [markdown]
# ## 6. Teacher forcing and shift_right
# To train, the decoder is given the *target* shifted one step right, behind `decoder_start_token_id`
# (T5 uses the pad id, 0): position t reads the true tokens before t and must predict token t. All T
# positions are trained at once, in one forward pass. Labels padded with -100 (ignored by the loss)
# become the pad id in the decoder input.

# %%
labels = torch.tensor([[21, 22, 23, config.eos_token_id, -100, -100]])
decoder_input_ids = model.shift_right(labels)
print("labels            ", labels[0].tolist())
print("decoder_input_ids ", decoder_input_ids[0].tolist())
with torch.no_grad():
    logits = model(input_ids, decoder_input_ids=decoder_input_ids).logits  # (B, T, V): one pass, all positions
loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
print(f"teacher-forced loss {loss:.3f}  (a model that spread its bets evenly would score ln V = "
      f"{math.log(config.vocab_size):.3f}; a random one is confidently wrong and scores worse)")

# %% [markdown]
# The teacher-forced logits at position t are exactly what the decoder computes when it is given only
# the first t + 1 inputs: that is what makes one parallel training pass equal to decoding step by step.

# %%
encoder_output = model.encode(input_ids).last_hidden_state  # (B, S, C), computed once
with torch.no_grad():
    step_by_step = torch.cat([model.decode(decoder_input_ids[:, : t + 1], encoder_output).logits[:, -1:]
                              for t in range(decoder_input_ids.shape[1])], dim=1)
print("teacher forcing vs one position at a time:", max_abs_diff(step_by_step, logits))

# %% [markdown]
# ## 7. Equal to transformers
# transformers builds a tiny random `T5ForConditionalGeneration` and saves it (`config.json` +
# `model.safetensors`); `minitransformer.from_pretrained` reads the same folder into our T5. The weight
# map is renames only (`block.{i}.layer.0.SelfAttention.q` -> `layers.{i}.self_attn.q_proj`, the bias
# table moved from block 0 to the stack). Same inputs, same logits.

# %%
if importlib.util.find_spec("transformers") is not None:
    import transformers

    from minitransformer.loading import from_pretrained

    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(1)
    hf_config = transformers.T5Config(vocab_size=40, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                                      relative_attention_num_buckets=8, relative_attention_max_distance=16,
                                      dropout_rate=0.0, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    theirs = transformers.T5ForConditionalGeneration(hf_config).eval()
    with tempfile.TemporaryDirectory() as folder:
        theirs.save_pretrained(folder)
        ours = from_pretrained(folder)
    print(type(ours).__name__, "loaded from a transformers save")
    source = torch.randint(2, 40, (2, 9))
    mask = torch.tensor([[1] * 9, [1] * 6 + [0] * 3])
    labels = torch.randint(2, 40, (2, 5))
    with torch.no_grad():
        expected = theirs(input_ids=source, attention_mask=mask, labels=labels)
        got = ours(source, attention_mask=mask, decoder_input_ids=ours.shift_right(labels))
    print("logits, max abs diff:", max_abs_diff(got.logits, expected.logits))
    our_loss = F.cross_entropy(got.logits.flatten(0, 1), labels.flatten())
    print(f"loss: ours {our_loss:.6f}, transformers {expected.loss:.6f}")
else:
    print("transformers is not installed (pip install 'minitransformer[hf]'): skipping the comparison")

# %% [markdown]
# ## Your turn
# Open `exercises_08.py` and implement 8.1 to 8.6: the buckets, the bias tensor, the T5 norm, shift_right,
# unscaled cross attention, and the teacher-forced loss. `minitransformer check 8` compares them with
# transformers' own T5 code.
#
# From this notebook, `minitransformer.check("8")` prints the same lines (it reads your file
# afresh each time), and `from exercises_08 import ...` brings your functions here to try
# them on the tensors above.
