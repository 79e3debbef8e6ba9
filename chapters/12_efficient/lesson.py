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
# # Chapter 12: Efficient training and inference
#
# Chapter 10 trained a model of 0.35M parameters; GPT-2 124M is 350 times bigger, and the models
# people fine-tune today are 50 times bigger again. What stops you is rarely the arithmetic; it is
# memory. This chapter takes four ideas that each remove one big block of bytes, shows each with the
# library's code, and measures what it saves (and what it costs):
#
# 1. **LoRA**: fine-tune through a low-rank update of a few matrices, so gradients and AdamW state
#    exist for 1% of the weights instead of all of them;
# 2. **weight-only quantization**: store the weights in 8 or 4 bits (int8 absmax, int4 group-wise,
#    NF4) instead of 32;
# 3. **flash-style attention**: the online softmax, which computes attention tile by tile and never
#    holds the (T, S) score matrix;
# 4. **memory arithmetic**: what training holds, weights + gradients + AdamW state + activations,
#    predicted from a config before anything is allocated, and what activation checkpointing saves.
#
# Shapes (see the notation page): B batch, T queries, S keys, H heads, D head size, C model width,
# V vocabulary; a Linear weight is (O, I) = (out, in); r the LoRA rank.
#
# Nothing is downloaded. Run it with `python lesson.py` (about 35 s on a 2-core CPU: training the
# small model of section 0 and quantizing a random GPT-2 124M take most of it); grade the exercises with `minitransformer check 12`.

# %%
import codecs
import contextlib
import copy
import io
import math
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from minitransformer.models import GPT2, GPT2Config

torch.manual_seed(0)
torch.set_num_threads(1)  # small matrices: one thread is as fast, and the timings are steadier
MiB = 2**20
workdir = tempfile.TemporaryDirectory()  # section 1 saves an adapter and a model here
tmp = Path(workdir.name)


def best_of(fn, repeat: int = 3) -> float:
    """The fastest of ``repeat`` runs of ``fn()``, in seconds (the least disturbed by other work)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


# %% [markdown]
# ## 0. A small trained model to work on
#
# LoRA fine-tunes a model that already knows something, and quantization is judged by how much it
# hurts a model that has learned something. So first, chapter 10's recipe in short: a character-level
# GPT-2 (3 layers, C = 96) trained for 300 steps on Python's own `help()` text. The vocabulary also
# holds the characters of the text we fine-tune on in section 1, the Zen of Python (`import this`).

# %%
from minitransformer.training.corpus import builtin_corpus
from minitransformer.training.data import TokenBlocks, char_tokenizer
from minitransformer.training.trainer import Trainer, TrainingConfig

with contextlib.redirect_stdout(io.StringIO()):  # importing `this` prints the Zen
    import this
zen = codecs.decode(this.s, "rot13")  # the module keeps it in rot13
text = builtin_corpus()
tokenizer = char_tokenizer(text + zen)
data = TokenBlocks(torch.tensor(tokenizer.encode(text)), block_size=64, seed=0)
V = tokenizer.vocab_size

config = GPT2Config(vocab_size=V, n_positions=64, n_embd=96, n_layer=3, n_head=4,
                    resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
base = GPT2(config, attn_implementation="sdpa")
training = TrainingConfig(max_steps=300, batch_size=16, block_size=64, lr=2e-3, min_lr=2e-4, warmup_steps=20,
                          eval_every=300, eval_batches=5, seed=0, device="cpu", sample_every_eval=False,
                          progress=False)
start = time.perf_counter()
result = Trainer(base, training, data, tokenizer=tokenizer).train()
base.eval()
print(f"{sum(p.numel() for p in base.parameters()):,} parameters, {training.max_steps} steps in "
      f"{time.perf_counter() - start:.0f} s: val loss {result.best_val_loss:.2f} (ln V = {math.log(V):.2f})")


@torch.no_grad()
def corpus_loss(model, batches: int = 5) -> float:
    """Mean loss on the same held-out blocks of the help() text every time."""
    model.eval()
    return sum(model(**data.get_batch("val", i, 16)).loss.item() for i in range(batches)) / batches


zen_ids = torch.tensor(tokenizer.encode(zen))  # (856,)
zen_rows = zen_ids.unfold(0, 65, 32)  # (25, 65): overlapping windows of T + 1 tokens, all of the Zen


@torch.no_grad()
def zen_loss(model) -> float:
    model.eval()
    return model(zen_rows[:, :-1], shift_labels=zen_rows[:, 1:]).loss.item()


print(f"before fine-tuning: loss on the Zen {zen_loss(base):.2f}, on help() text {corpus_loss(base):.2f}")

# %% [markdown]
# ## 1. LoRA: train a low-rank update, not the weights
#
# Fine-tuning every weight of a model needs, per weight, its gradient and AdamW's two moments: three
# more copies of the model. LoRA (Hu et al., 2021) freezes the weight W (out, in) of some linear
# layers and learns a correction of rank r instead, two small matrices A (r, in) and B (out, r):
#
# ```text
# y = x W^T + b + scaling * (x A^T) B^T          scaling = alpha / r
#   = x (W + scaling * B A)^T + b                the same, with the update merged into W
# ```
#
# B starts at zero, so the adapted model starts exactly as the base model; A starts random, so that
# B's gradient is not zero. The update costs r (in + out) numbers instead of in x out: for GPT-2
# 124M's attention input `c_attn` (768 -> 2304) at r = 8, 24,576 instead of 1.77 million.
#
# `apply_lora` (`minitransformer/lora.py`) swaps the targeted linears for `LoRALinear` layers, which
# hold the very same W and b plus `lora_A` and `lora_B`, and freezes everything else. Target names
# are PEFT's (transformers' module names), so adapters move between the two libraries.

# %%
from minitransformer.lora import apply_lora, merge_lora, save_adapter, trainable_parameters, unmerge_lora

with torch.device("meta"):  # shapes only: counting needs no memory
    gpt2_124m = apply_lora(GPT2(GPT2Config.from_name("gpt2")), r=8, alpha=16, target_modules=["c_attn", "c_proj"])
trainable, total = trainable_parameters(gpt2_124m)
print(f"GPT-2 124M, r=8 on c_attn and c_proj: trainable params: {trainable:,d} || all params: {total:,d} || "
      f"trainable%: {100 * trainable / total:.4f}")
print(gpt2_124m.transformer.h[0].self_attn.q_proj)

# %% [markdown]
# Now a real fine-tune: the trained model of section 0 learns the Zen of Python, once with every
# weight trained and once with LoRA (r = 4 on `c_attn`, `c_proj` and `c_fc`), 80 steps each of 8
# windows of 64 characters, the same batches. Besides the loss on the Zen, the table shows the loss
# on the help() text the model was trained on: how much of it the fine-tune overwrote.

# %%
def fine_tune(model, steps: int = 80, lr: float = 3e-3) -> tuple[float, int]:
    """AdamW on the Zen's windows; returns (seconds per step, bytes of AdamW state)."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(1)  # the same batches for both runs
    model.train()
    start = time.perf_counter()
    for _ in range(steps):
        rows = zen_rows[torch.randint(0, len(zen_rows), (8,), generator=g)]  # (8, 65)
        loss = model(rows[:, :-1], shift_labels=rows[:, 1:]).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    seconds = (time.perf_counter() - start) / steps
    state = sum(t.nbytes for s in optimizer.state.values() for t in s.values())
    return seconds, state


full = copy.deepcopy(base)
full_time, full_state = fine_tune(full)
lora = apply_lora(copy.deepcopy(base), r=4, alpha=8, target_modules=["c_attn", "c_proj", "c_fc"])
lora_time, lora_state = fine_tune(lora, lr=1e-2)  # LoRA usually wants a larger learning rate

print(f"{'':12s} {'trainable':>10s} {'AdamW state':>12s} {'ms/step':>8s} {'Zen loss':>9s} {'help() loss':>12s}")
print(f"{'base':12s} {'-':>10s} {'-':>12s} {'-':>8s} {zen_loss(base):9.2f} {corpus_loss(base):12.2f}")
for name, model, seconds, state in (("full", full, full_time, full_state), ("LoRA r=4", lora, lora_time, lora_state)):
    n = trainable_parameters(model)[0]
    print(f"{name:12s} {n:10,d} {state / 1024:9.1f} KiB {1000 * seconds:8.1f} {zen_loss(model):9.2f} "
          f"{corpus_loss(model):12.2f}")

# %% [markdown]
# With 5% of the weights trainable, the gradients and the AdamW state shrink by the same factor.
# The full fine-tune learns the Zen better, and pays for it: it has overwritten what it knew of the
# help() text (its loss there more than doubles). LoRA moves each weight matrix only along a rank-4
# direction, so it learns less and forgets far less. A step is *not* faster on a model this small,
# even a little slower: the forward and the backward still run through every frozen weight (the
# gradient must reach the early layers' adapters), and A and B add two small matmuls per layer. What
# LoRA saves is memory, which on a large model is what decides whether it fits at all.
#
# **Merging.** For inference the update folds into W (`merge_lora`): the model is a plain model
# again, as fast as the base, with the same outputs. `unmerge_lora` takes it out. And the adapter
# alone is what you ship: `save_adapter` writes PEFT's two files.

# %%
ids = zen_rows[:4, :-1]
with torch.no_grad():
    before = lora(ids).logits
    merge_lora(lora)
    after = lora(ids).logits
print(f"merged vs unmerged logits: max |diff| = {(before - after).abs().max().item():.1e}")
unmerge_lora(lora)
adapter_dir = save_adapter(lora, tmp / "zen-adapter")
base.save_pretrained(tmp / "base")
adapter_bytes = sum(f.stat().st_size for f in adapter_dir.iterdir())
print(f"adapter on disk {adapter_bytes / 1024:.0f} KiB ({', '.join(sorted(f.name for f in adapter_dir.iterdir()))}); "
      f"the whole model {(tmp / 'base' / 'model.safetensors').stat().st_size / 1024:.0f} KiB")

# %% [markdown]
# ## 2. Quantization: fewer bits a weight
#
# A trained weight matrix does not need 32 bits a number. *Weight-only* quantization stores each
# Linear's weight in 8 or 4 bits plus a few floating-point scales, and rebuilds a float weight to
# multiply with; the activations stay in floating point.
#
# **int8 absmax, one scale per output channel.** Each row is divided by `max|w_row| / 127` and
# rounded: its largest weight becomes +-127, and every weight moves by at most half a step.

# %%
from minitransformer.quantization import (
    NF4_CODE,
    QuantizedLinear,
    dequantize_absmax_int8,
    dequantize_int4_groupwise,
    dequantize_nf4,
    model_memory,
    pack_int4,
    quantize,
    quantize_absmax_int8,
    quantize_int4_groupwise,
    quantize_nf4,
    unpack_int4,
)

w = base.transformer.h[0].mlp.up_proj.weight.detach()  # (384, 96): a trained weight
q, scale = quantize_absmax_int8(w)
back = dequantize_absmax_int8(q, scale)
print(f"int8: q {tuple(q.shape)} {q.dtype} in [{q.min().item()}, {q.max().item()}], scale {tuple(scale.shape)}; "
      f"largest |w - q * scale| / scale = {((w - back).abs() / scale[:, None]).max().item():.3f} (<= 0.5)")

# %% [markdown]
# **int4, group-wise, two values a byte.** 16 levels are coarse, so each group of 64 inputs of a
# row gets its own (scale, minimum): `q = round((w - min) / scale)` in 0..15. No byte type holds
# 4 bits: two values share one byte, the even one in the low four bits.

# %%
print("pack [1, 2, 15, 0] ->", pack_int4(torch.tensor([1, 2, 15, 0], dtype=torch.uint8)).tolist(),
      "  unpack [33, 15] ->", unpack_int4(torch.tensor([33, 15], dtype=torch.uint8)).tolist())
packed, scale4, minimum = quantize_int4_groupwise(w, group_size=32)
back4 = dequantize_int4_groupwise(packed, scale4, minimum)
print(f"int4 g=32: packed {tuple(packed.shape)} uint8, scale and minimum {tuple(scale4.shape)}; "
      f"relative error {((w - back4).norm() / w.norm()).item():.4f} (int8: {((w - back).norm() / w.norm()).item():.4f})")

# %% [markdown]
# **NF4** (QLoRA, Dettmers et al. 2023): trained weights are roughly normal, so evenly spaced levels
# waste most of them on the rare tails. NF4's 16 levels are quantiles of a normal distribution,
# denser near 0; each block of 64 weights is scaled by its absmax into [-1, 1] and each weight becomes
# the index of its nearest level. With *double quantization* the absmax constants are themselves
# stored in 8-bit floats.

# %%
print("NF4 levels:", " ".join(f"{x:+.2f}" for x in NF4_CODE.tolist()))
back_nf4 = dequantize_nf4(quantize_nf4(w))
print(f"nf4: relative error {((w - back_nf4).norm() / w.norm()).item():.4f}")

# %% [markdown]
# What it does to the model: `quantize(model, bits, scheme=...)` swaps every Linear for a quantized
# one (the head, tied to the token embedding, stays fp32 and tied). The loss on held-out text, and
# the time of a forward of 16 x 64 tokens:

# %%
def linear_bytes(model) -> int:
    """Bytes of the blocks' Linears, quantized or not: their own parameters and buffers."""
    return sum(t.nbytes for name, module in model.named_modules()
               if ".h." in name and isinstance(module, torch.nn.Linear | QuantizedLinear)
               for t in (*module.parameters(recurse=False), *module.buffers(recurse=False)))


variants = {"fp32": base}
for name, bits, scheme, group in (("int8", 8, "absmax", None), ("int4 g=32", 4, "int4", 32), ("nf4", 4, "nf4", 32)):
    variants[name] = quantize(copy.deepcopy(base), bits=bits, scheme=scheme, group_size=group).eval()
batch = data.get_batch("val", 0, 16)["input_ids"]  # (16, 64)
with torch.no_grad():
    reference = base(batch).logits
print(f"{'':10s} {'help() loss':>11s} {'logits error':>12s} {'Linears':>11s} {'forward':>9s}")
for name, model in variants.items():
    with torch.no_grad():
        error = ((model(batch).logits - reference).norm() / reference.norm()).item()  # relative, over the batch
        seconds = best_of(lambda m=model: m(batch))
    print(f"{name:10s} {corpus_loss(model):11.4f} {error:12.4f} {linear_bytes(model) / 1024:7.0f} KiB "
          f"{1000 * seconds:6.1f} ms")

# %% [markdown]
# On this small model none of the schemes moves the loss by more than a thousandth, though 4 bits
# move the logits by about 1%. Larger trained models feel 4 bits more: `docs/quantization.md`
# measures a sentence-embedding BERT, whose embeddings keep a cosine of 0.9996 to fp32 with int8 and
# 0.97 with int4 and NF4. The honest part is the last column: **quantized is not faster here, it is slower.** Each quantized Linear
# rebuilds its fp32 weight at every call (`dequantize()`), then multiplies as `nn.Linear` does: the
# memory at rest shrinks, the arithmetic does not. Decoding faster needs a fused kernel that reads
# the packed bytes straight into the matmul (the decode-speed issue will make it stream).
#
# Memory is what it buys, and it shows on a real size: GPT-2 124M (random weights: the bytes do
# not depend on the values), measured by `model_memory`, which adds up every parameter and buffer
# by dtype. Building and quantizing it takes most of this lesson's time (NF4 alone about 8 s: it
# looks up the nearest of 16 levels for each of 85M weights).

# %%
torch.manual_seed(0)
gpt2 = GPT2(GPT2Config.from_name("gpt2")).eval()
fp32_linears = linear_bytes(gpt2)


def memory_row(name: str, model) -> None:
    memory = model_memory(model)
    by_dtype = ", ".join(f"{dtype} {n / 1e6:.1f} MB" for dtype, n in memory.items())
    print(f"{name:19s} {by_dtype:53s} {sum(memory.values()) / 1e6:6.1f} MB {linear_bytes(model) / 1e6:6.1f} MB "
          f"{linear_bytes(model) / fp32_linears:6.3f}")


print(f"{'GPT-2 124M':19s} {'model_memory, by dtype':53s} {'total':>9s} {'Linears':>9s} {'x fp32':>6s}")
memory_row("fp32", gpt2)
for name, bits, scheme in (("int8 absmax", 8, "absmax"), ("int4 g=64", 4, "int4"), ("nf4 (double quant)", 4, "nf4")):
    quantized = quantize(copy.deepcopy(gpt2), bits=bits, scheme=scheme)
    memory_row(name, quantized)
    del quantized
print(f"kept fp32: the token embedding, also the tied head, {gpt2.transformer.wte.weight.nbytes / 1e6:.1f} MB")
del gpt2

# %% [markdown]
# The Linears go from 340 MB to a quarter (int8) and to 13-16% (4 bits: the scales and minimums add
# 0.1 to 1 bit a weight); the 154 MB embedding table stays in fp32, so the whole model shrinks less.
# For a 7B model, whose Linears are nearly everything, 4 bits turn 28 GB into about 4 GB.
#
# ## 3. Flash attention: the softmax, one tile at a time
#
# The math path of attention builds the (B, H, T, S) scores and then their softmax, another matrix of
# the same size: memory that grows with T^2. The softmax needs the max and the sum of a whole row, so
# it seems to need the whole row at once. It does not. Split the keys into two parts and summarise
# each by three numbers per query row: its max m, its sum l = sum exp(s - m), and its own attention
# output o. Two summaries combine exactly, once each sum is re-expressed against the larger max:
#
# ```text
# m = max(m1, m2)     l = l1 exp(m1 - m) + l2 exp(m2 - m)     o = (l1 exp(m1 - m) o1 + l2 exp(m2 - m) o2) / l
# ```

# %%
g = torch.Generator().manual_seed(0)
s, v = 3 * torch.randn(10, generator=g), torch.randn(10, 4, generator=g)  # one query: 10 scores, 10 values


def summary(s, v):
    m = s.max()
    p = torch.exp(s - m)
    return m, p.sum(), p @ v / p.sum()


(m1, l1, o1), (m2, l2, o2) = summary(s[:6], v[:6]), summary(s[6:], v[6:])
m = torch.maximum(m1, m2)
l = l1 * torch.exp(m1 - m) + l2 * torch.exp(m2 - m)
o = (l1 * torch.exp(m1 - m) * o1 + l2 * torch.exp(m2 - m) * o2) / l
print(f"combined halves vs softmax(s) @ v: max |diff| = {(o - s.softmax(-1) @ v).abs().max().item():.1e}")

# %% [markdown]
# Folding in one tile of keys after another, FlashAttention (Dao et al. 2022) keeps only m, l and
# the running output per query, and one tile of scores at a time. The backward keeps only the
# output and m + log l per row, and recomputes each tile's probabilities. The library's
# `flash_attention` (`layers/flash_attention.py`) is that algorithm in plain PyTorch; it equals the
# math path in values and gradients:

# %%
from minitransformer.layers.attention import scaled_dot_product_attention
from minitransformer.layers.flash_attention import flash_attention

q, k, v = (torch.randn(1, 4, 256, 64, generator=g, requires_grad=True) for _ in range(3))
upstream = torch.randn(1, 4, 256, 64, generator=g)  # d loss / d output, the same for both
grads = []
for attention in (lambda: scaled_dot_product_attention(q, k, v, is_causal=True),
                  lambda: flash_attention(q, k, v, causal=True, block_q=64, block_k=64)):
    out = attention()
    grads.append((out, *torch.autograd.grad(out, (q, k, v), grad_outputs=upstream)))
print("flash vs math path, causal, T = 256, tiles of 64: max |diff| output, dq, dk, dv =",
      ", ".join(f"{(a - b).abs().max().item():.1e}" for a, b in zip(*grads)))

# %% [markdown]
# What it saves, first by arithmetic. Per head and row the math path holds S scores and S
# probabilities; flash holds one tile of block_k. For one layer of GPT-2 124M (H = 12, D = 64),
# B = 1, fp32:

# %%
H, D, block = 12, 64, 128
print(f"{'T = S':>7s} {'scores + probs':>15s} {'flash: O, L, one tile':>22s}")
for T in (512, 1024, 4096, 16384):
    naive = 2 * H * T * T * 4
    flash = (H * T * D + H * T + H * block * block) * 4
    print(f"{T:7d} {naive / MiB:11.0f} MiB {flash / MiB:18.1f} MiB")

# %% [markdown]
# Then measured: every tensor that autograd keeps from the forward for the backward passes through a
# `saved_tensors_hooks` pack hook, so we can add up their bytes (each storage once, the inputs q, k, v
# not counted). T = 1024, H = 4, D = 64, causal:

# %%
from minitransformer.training.memory import saved_for_backward  # the pack hook, each storage once

q, k, v = (torch.randn(1, 4, 1024, 64, generator=g, requires_grad=True) for _ in range(3))
paths = {
    "math path": lambda: scaled_dot_product_attention(q, k, v, is_causal=True),
    "flash (plain PyTorch)": lambda: flash_attention(q, k, v, causal=True, block_q=128, block_k=128),
    "torch sdpa (fused)": lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True),
}
print(f"{'':22s} {'kept for backward':>18s} {'forward':>9s}")
for name, fn in paths.items():
    kept = saved_for_backward(fn, exclude=(q, k, v))[1]
    with torch.no_grad():
        seconds = best_of(fn)
    print(f"{name:22s} {kept / MiB:14.1f} MiB {1000 * seconds:6.1f} ms")

# %% [markdown]
# The math path keeps the 4 x 1024 x 1024 probabilities (16 MiB) and more of that size (the masked
# scores, the mask); flash keeps its output and one number a row, as torch's fused kernel does. The
# time is the other honest part: **in plain PyTorch on a CPU, flash saves memory, not time.** It is
# about as fast as the math path (a little faster with a causal mask, whose tiles above the diagonal
# it skips) and several times slower than `sdpa`: every tile is a handful of small ops launched from
# Python, where torch's fused kernel does the same tiling in C++.
# On a GPU, the real FlashAttention kernel is faster too, because it keeps each tile in on-chip
# memory instead of writing the (T, S) matrices out and reading them back.
# `scripts/bench_attention.py` measures peak memory at T = 4096 (docs/flash-attention.md).
#
# ## 4. Memory arithmetic: what training holds
#
# fp32 training with AdamW holds, per parameter, the weight (4 bytes), its gradient (4) and AdamW's
# exp_avg and exp_avg_sq (8): **16 bytes a parameter**, before a single token. Then the activations:
# what each op saves for the backward, which grows with B x T. `training_memory` predicts all four
# from a config (counted op by op, `training/memory.py`); `measure_training_memory` measures them on a
# real model. They agree to the byte:

# %%
from minitransformer.training.memory import measure_training_memory, training_memory

small = GPT2Config(vocab_size=V, n_positions=64, n_embd=96, n_layer=3, n_head=4,
                   resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
predicted = training_memory(small, 8, 64)
measured = measure_training_memory(GPT2(small, attn_implementation="sdpa"), 8, 64)
for field in ("weights", "gradients", "optimizer_state", "activations"):
    print(f"{field:16s} predicted {getattr(predicted, field):>10,d}   measured {getattr(measured, field):>10,d}")

# %% [markdown]
# Now GPT-2 124M, predicted from its config alone (built on the `meta` device: no memory), at
# nanoGPT's batch of 8 x 1024. With **activation checkpointing** each block keeps only its input;
# its activations are recomputed in the backward, one block at a time (about a third more compute).

# %%
gpt2_config = GPT2Config.from_name("gpt2", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
print(f"{'8 x 1024':24s} {'weights':>8s} {'grads':>8s} {'AdamW':>8s} {'activations':>12s} {'recompute':>10s} "
      f"{'total':>9s}")
for name, kwargs in (("math attention", dict(attn_implementation="math")),
                     ("sdpa", dict(attn_implementation="sdpa")),
                     ("sdpa + checkpointing", dict(attn_implementation="sdpa", activation_checkpointing=True))):
    m = training_memory(gpt2_config, 8, 1024, **kwargs)
    print(f"{name:24s} {m.weights / MiB:8.0f} {m.gradients / MiB:8.0f} {m.optimizer_state / MiB:8.0f} "
          f"{m.activations / MiB:12.0f} {m.recompute / MiB:10.0f} {m.total / 2**30:5.2f} GiB")
print("(MiB, total in GiB)")

# %% [markdown]
# At a block of 1024 the activations are most of it: the math path's (B, H, T, T) scores and
# probabilities alone are 12 layers x 2 x 384 MiB. A fused (flash-style) attention removes them;
# checkpointing then cuts what is left by 3.5x; gradient accumulation (chapter 10) splits the batch.
# The 16 bytes a parameter stay, and they are what LoRA and quantization attack. For a 7-billion-
# parameter model:

# %%
n = 6.74e9  # Llama-2-7B's parameters
lora_share = 0.006  # r = 16 on the attention and MLP projections: about 0.6% of the weights
rows = (("full fine-tune, fp32 + AdamW", 16 * n),
        ("LoRA on an fp32 base", 4 * n + 16 * lora_share * n),
        ("LoRA on a bf16 base", 2 * n + 16 * lora_share * n),
        ("QLoRA: NF4 base (~4.13 bits)", 4.13 / 8 * n + 16 * lora_share * n))
for name, bytes_ in rows:
    print(f"{name:32s} {bytes_ / 2**30:6.1f} GiB  + activations")

# %% [markdown]
# From 100 GiB, a cluster's worth, to about 4 GiB, a laptop's: that is why QLoRA (LoRA adapters on a
# quantized base, `apply_lora` on a model after `quantize`; see docs/lora.md) is how most people
# fine-tune large models. Spreading the 16 bytes over several GPUs instead (FSDP) is in
# docs/distributed.md.
#
# ## Your turn
# Open `exercises_12.py` and implement 12.1 to 12.5: a LoRA layer's forward and merge, int8 absmax
# quantization per output channel, packing two 4-bit values a byte, the online softmax (combining two
# partial results, then a tiled attention over key blocks), and the bytes of training state and of
# one attention-score matrix. `minitransformer check 12` compares each with the library's own
# (`lora.py`, `quantization.py`, `flash_attention`, `training_memory`) and with torch.

# %%
workdir.cleanup()
