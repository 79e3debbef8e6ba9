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
# # Chapter 9: the KV cache and generation
#
# Chapter 7 generated text by running the model on the whole sequence at every step. That is
# correct and wasteful: the keys and values of the earlier tokens are recomputed every time, though
# they never change. Keeping them (a *KV cache*) makes each new token cost one token's work.
#
# This chapter:
#
# 1. counts the work of decoding with and without a cache: O(T^2) against O(T);
# 2. looks inside the cache (keys after RoPE, Hkv heads with grouped-query attention) and computes
#    its size, 2 x layers x B x Hkv x S x D x bytes, for GPT-2 124M and Llama-3-8B;
# 3. proves cached equals uncached on a tiny random GPT-2 built by transformers: the same tokens,
#    and the same logits within 1e-5 at every step;
# 4. measures the cost curve, time per token against position, and plots it; then what limits a
#    cached step: reading every weight once per token (the memory-bandwidth bound);
# 5. turns logits into a choice: temperature, top-k, top-p on one logits vector; beam search;
# 6. speeds up greedy decoding with a small draft model (speculative decoding).
#
# Shapes (see the notation page): B batch, T new tokens, S cached tokens, H heads, Hkv key/value
# heads, D head size, C model width, V vocabulary.
#
# Nothing is downloaded. Run it with `python lesson.py` (about 15 s on a 2-core CPU); grade the
# exercises with `minitransformer check 9`.

# %%
import tempfile
import time
from pathlib import Path

import torch
import transformers
from einops import rearrange
from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

import minitransformer
from minitransformer.generation import DynamicCache, cache_nbytes, expected_cache_nbytes, speculative_generate
from minitransformer.generation.logits import apply_temperature, apply_top_k, apply_top_p
from minitransformer.loading import empty_weights
from minitransformer.models import GPT2, GPT2Config, Llama, LlamaConfig
from minitransformer.testing import max_abs_diff

transformers.logging.set_verbosity_error()  # tiny random configs make transformers chatty
transformers.logging.disable_progress_bar()
torch.manual_seed(0)
torch.set_num_threads(1)  # tiny matrices: one thread is faster and the timings below are steadier
workdir = tempfile.TemporaryDirectory()  # the checkpoint of section 3 lives here, removed at the end
tmp = Path(workdir.name)

# %% [markdown]
# ## 1. Why a cache: counting the work
#
# Self-attention at position t needs the query of token t and the keys and values of tokens
# 0..t. In a causal model token j < t never looks ahead, so its keys and values are the same at
# every later step. Without a cache, step t runs all t tokens through every layer again:
#
# ```text
# no cache   step t: t tokens through the model          total for T tokens: 1 + 2 + ... + T = O(T^2)
# cache      step t: 1 token; attention reads t cached   total: O(T) token forwards, each O(1) in the
#            keys and values                             weights plus O(t) to attend over the cache
# ```
#
# A hook on the first block records how many tokens each forward carries.

# %%
counter = GPT2(GPT2Config(vocab_size=100, n_positions=64, n_embd=32, n_layer=2, n_head=4)).eval()
lengths = []
hook = counter.transformer.h[0].register_forward_hook(lambda module, args, out: lengths.append(args[0].shape[1]))
prompt = torch.randint(0, 100, (1, 8))
for use_cache in (False, True):
    lengths.clear()
    counter.generate(prompt, max_new_tokens=24, use_cache=use_cache)
    print(f"use_cache={use_cache!s:5}  tokens per forward {lengths[:5]} ... {lengths[-2:]}  "
          f"total token-forwards {sum(lengths)}")
hook.remove()

# %% [markdown]
# Eight prompt tokens and 24 new ones: 8 + 9 + ... + 31 = 468 token-forwards without the cache,
# 8 + 23 = 31 with it. At 1000 new tokens the ratio is about 500.
#
# ## 2. What the cache stores, and what it costs
#
# Every layer keeps two tensors, keys and values, of shape (B, Hkv, S, D), and appends T tokens
# along the sequence axis (dim 2) at each step. Two details:
#
# - **Keys are stored after RoPE.** LLaMA rotates q and k by their position before the dot
#   product. A cached key was rotated once, at its own position, and never again: the new query
#   is rotated to *its* position, and their dot product depends only on the distance.
# - **Hkv heads, not H.** With grouped-query attention (chapter 3) several query heads share one
#   key/value head. The cache stores the Hkv shared heads; the repeat to H happens inside attention.
#
# A tiny LLaMA with H = 4 and Hkv = 2 shows both: the cached keys of layer 0 have 2 heads, and they
# equal the rotated projection of that layer's input, not the unrotated one.

# %%
llama = Llama(LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)).eval()
ids = torch.randint(0, 100, (1, 6))
with torch.no_grad():
    cache = llama(ids, use_cache=True).past_key_values
    layer0 = llama.model.layers[0]
    h = layer0.attn_norm(llama.model.embed_tokens(ids))  # (B, T, C): what layer 0's attention reads
    k = rearrange(layer0.self_attn.k_proj(h), "b t (h d) -> b h t d", h=2)  # (B, Hkv, T, D) before RoPE
    q = rearrange(layer0.self_attn.q_proj(h), "b t (h d) -> b h t d", h=4)  # (B, H, T, D)
    _, k_rotated = layer0.self_attn.rotary(q, k, torch.arange(6)[None])
print("cached keys of layer 0:", tuple(cache[0].key.shape), "(B, Hkv, S, D)")
print("cached == rotated k_proj:", torch.allclose(cache[0].key, k_rotated),
      "   cached == unrotated k_proj:", torch.allclose(cache[0].key, k))

# %% [markdown]
# So the size is
#
# ```text
# bytes = 2 (keys and values) x layers x B x Hkv x S x D x bytes per element
# ```
#
# `cache_nbytes` adds up the tensors a cache really holds; `expected_cache_nbytes` is the formula.

# %%
print("tiny LLaMA (2 layers, B=1, Hkv=2, S=6, D=8, fp32): measured", cache_nbytes(cache), "bytes, formula",
      expected_cache_nbytes(num_layers=2, batch_size=1, num_key_value_heads=2, seq_len=6, head_dim=8))

# %% [markdown]
# For real models the configs are enough: built on the `meta` device (chapter 7), a model has
# shapes and no memory, so we can read its sizes for free. GPT-2 124M has 12 layers of 12 heads of
# D = 64 and no grouping; Llama-3-8B has 32 layers, 32 query heads and 8 key/value heads of D = 128,
# and runs in bfloat16 (2 bytes).

# %%
llama3_8b = LlamaConfig.from_name("llama-3-8b")  # a named preset: Llama-3-8B's sizes (LlamaConfig.presets)
with empty_weights():
    n_gpt2, n_llama = GPT2(GPT2Config.from_name("gpt2")).num_parameters(), Llama(llama3_8b).num_parameters()

S = 4096
rows = [  # name, layers, Hkv, D, dtype, weights in bytes
    ("GPT-2 124M, fp32", 12, 12, 64, torch.float32, 4 * n_gpt2),
    ("GPT-2 124M, fp16", 12, 12, 64, torch.float16, 2 * n_gpt2),
    ("Llama-3-8B, bf16 (Hkv=8)", 32, 8, 128, torch.bfloat16, 2 * n_llama),
    ("Llama-3-8B if Hkv=H=32", 32, 32, 128, torch.bfloat16, 2 * n_llama),
]
print(f"{'':26} {'per token':>10} {'4k tokens':>10} {'4k x 32 rows':>13} {'weights':>9}")
for name, layers, kv_heads, head_dim, dtype, weights in rows:
    per_token = expected_cache_nbytes(layers, 1, kv_heads, 1, head_dim, dtype)
    at_4k = expected_cache_nbytes(layers, 1, kv_heads, S, head_dim, dtype)
    print(f"{name:26} {per_token / 2**10:7.0f} KiB {at_4k / 2**20:6.0f} MiB {32 * at_4k / 2**30:9.1f} GiB "
          f"{weights / 2**30:6.2f} GiB")

# %% [markdown]
# (GPT-2's context is 1024 tokens; at 4k it is a what-if.) One 4k-token sequence of Llama-3-8B
# costs 512 MiB of cache, 3% of its 15 GiB of weights; a batch of 32 such sequences costs 16 GiB,
# more than the weights. That is why serving systems care so much about the cache, and why
# grouped-query attention (4x smaller here) became the default.
#
# ## 3. Cached equals uncached
#
# transformers builds a tiny random GPT-2 and saves it; `minitransformer.from_pretrained` loads it
# (chapter 7). The weights are large (`initializer_range=0.3`) so that greedy decoding wanders
# instead of repeating one token.

# %%
hf_config = transformers.GPT2Config(vocab_size=100, n_positions=64, n_embd=32, n_layer=2, n_head=4,
                                    initializer_range=0.3, bos_token_id=None, eos_token_id=None)
hf_model = transformers.GPT2LMHeadModel(hf_config).eval()
hf_model.save_pretrained(tmp / "tiny-gpt2")
ours = minitransformer.from_pretrained(tmp / "tiny-gpt2")

# %% [markdown]
# The cached loop: the whole prompt once (the *prefill*), which fills the cache; then one token per
# forward, passing the cache back in (the *decode steps*). Beside it, at every step, the uncached
# forward over the whole sequence; its last position must give the same logits.

# %%
prompt = torch.randint(0, 100, (2, 5))
ids, worst = prompt, 0.0
with torch.no_grad():
    out = ours(prompt, use_cache=True)  # prefill: logits (B, 5, V), cache of 5 tokens
    for _ in range(20):
        uncached = ours(ids).logits[:, -1]  # (B, V): the whole sequence again
        worst = max(worst, max_abs_diff(out.logits[:, -1], uncached))
        next_id = out.logits[:, -1].argmax(dim=-1, keepdim=True)  # (B, 1)
        ids = torch.cat([ids, next_id], dim=1)  # (B, T + 1)
        out = ours(next_id, past_key_values=out.past_key_values, use_cache=True)  # 1 token; the cache grows by 1
    hf_ids = hf_model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=20, do_sample=False)

print("cache holds", out.past_key_values.get_seq_length(), "tokens")
print(f"largest |cached - uncached| logit over 20 steps: {worst:.1e}  (within 1e-5: {worst < 1e-5})")
for use_cache in (False, True):
    print(f"our loop == generate(use_cache={use_cache}):",
          torch.equal(ids, ours.generate(prompt, max_new_tokens=20, use_cache=use_cache)))
print("our loop == transformers' generate    :", torch.equal(ids, hf_ids))
print("row 0:", ids[0, 5:].tolist())

# %% [markdown]
# The library's `generate` splits the same loop into `prefill` and `decode_step`
# (`generation/sessions.py`) and builds the mask and positions once per generation. Its cache
# (`layers/kv_cache.py`) does not grow with `torch.cat`, which would copy the whole cache at every
# step: it reserves room and writes each step's keys in place.
#
# ## 4. The cost curve: time per token against position
#
# A 4-layer GPT-2 of width 128 generates 256 tokens, timed token by token. Without the cache the
# step at position t processes t tokens: the time grows with t. With the cache every step
# processes one token and reads t cached keys per layer: at this size the step is dominated by the
# fixed cost of running 4 layers, and the curve is flat. Each curve is measured twice and the
# faster time of each position kept, to hide the machine's hiccups.

# %%
N = 256
timed = GPT2(GPT2Config(vocab_size=512, n_positions=N, n_embd=128, n_layer=4, n_head=4)).eval()
sequence = torch.randint(0, 512, (1, N))


@torch.no_grad()
def time_per_token(use_cache: bool) -> torch.Tensor:
    """Milliseconds to compute the next-token logits at positions 1 .. N-1, one forward each."""
    cache = DynamicCache(len(timed.transformer.h)) if use_cache else None
    if use_cache:
        timed(sequence[:, :1], past_key_values=cache)  # prefill with one token
    times = []
    for pos in range(1, N):
        start = time.perf_counter()
        if use_cache:
            timed(sequence[:, pos:pos + 1], past_key_values=cache, logits_to_keep=1)  # 1 token, pos cached
        else:
            timed(sequence[:, :pos + 1], logits_to_keep=1)  # all pos + 1 tokens again
        times.append(time.perf_counter() - start)
    return 1e3 * torch.tensor(times)


start = time.perf_counter()
cached, uncached = time_per_token(True), time_per_token(False)
cached, uncached = torch.minimum(cached, time_per_token(True)), torch.minimum(uncached, time_per_token(False))
print(f"measured in {time.perf_counter() - start:.1f} s")
print(f"{'positions':>10} {'cache':>9} {'no cache':>9} {'ratio':>6}")
for lo in (16, 64, 128, 192, 240):
    c, u = cached[lo - 1:lo + 15].median().item(), uncached[lo - 1:lo + 15].median().item()
    print(f"{lo:4d}-{lo + 15:<5d} {c:6.2f} ms {u:6.2f} ms {u / c:5.1f}x")
print(f"all {N - 1} tokens: {cached.sum().item():.0f} ms with the cache, {uncached.sum().item():.0f} ms without")

try:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    positions = range(1, N)
    ax.plot(positions, uncached, label="no cache: whole sequence each step", color="tab:red")
    ax.plot(positions, cached, label="KV cache: one token each step", color="tab:blue")
    ax.set_xlabel("position of the new token")
    ax.set_ylabel("ms per token")
    ax.set_title("GPT-2, 4 layers, C=128, CPU, 1 thread")
    ax.set_ylim(bottom=0)
    ax.legend()
    fig.tight_layout()
    plt.show()
except ImportError:
    print("install matplotlib (pip install 'minitransformer[viz]') to draw the cost curve")

# %% [markdown]
# For a model this small the no-cache curve is a line: the work per step is t tokens through the
# weights (the attention scores, t x t per head, are still cheap). Summed over a generation, the
# area under the red line grows with T^2, under the blue one with T. For GPT-2 124M at 512 tokens
# the figures are in `docs/generation.md`: about 3x faster with the cache, the time per token within
# 20% from token 16 to 512.
#
# ## 4b. What limits a cached step
#
# With the cache, a step multiplies every weight matrix by one vector: each weight is read from
# memory once and used for one multiply-add. The processor could do far more arithmetic than that
# in the time the read takes, so the step is *memory-bound*: it cannot take less than
#
#     bytes of weights read per token / read bandwidth of the machine
#
# which gives a ceiling on tokens per second, whatever the code does. A real step is slower than
# that ceiling for two reasons, and the measurement below separates them:
#
# 1. **kernel efficiency**: the matrix-vector kernel does not stream at the machine's full
#    bandwidth (its loop is not memory-bound after all: converting, multiplying, adding);
# 2. **overhead**: everything else in a step (norms, attention over the cache, residual adds,
#    the argmax, and the Python that launches each of a hundred small kernels).
#
# Here a GPT-2 of width 768 with 4 layers and a 32k vocabulary (about 210 MB in fp32, more than
# this CPU's caches hold) is timed: the bound, from a bandwidth measured now (the best of three
# reads of 512 MiB); the 25 matrix-vector products of one token alone, back to back, in fp32 and
# in bf16 (half the bytes); and a whole cached decode step.

# %%
wide = GPT2(GPT2Config(vocab_size=32000, n_positions=64, n_embd=768, n_layer=4, n_head=12)).eval()
weight_bytes = sum(p.numel() * p.element_size() for p in wide.parameters())
weight_bytes -= wide.transformer.wpe.weight[1:].numel() * 4  # one row of the position table is read per token


def best_of(fn, repeats: int = 5) -> float:
    """Seconds of the fastest of ``repeats`` calls (the machine's hiccups only ever add time)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def read_bandwidth() -> float:
    """Bytes per second that ``sum`` streams through 512 MiB, far more than any cache holds."""
    big = torch.ones(2**27)
    big.sum()
    return big.numel() * big.element_size() / best_of(lambda: big.sum().item(), 3)


bandwidth = read_bandwidth()

linears = [m for m in wide.modules() if isinstance(m, torch.nn.Linear)]  # q, k, v, o, fc, proj per layer + head
vectors = {m.in_features: torch.randn(1, 1, m.in_features) for m in linears}  # (B=1, T=1, in)
halves = [m.weight.bfloat16() for m in linears]  # the same matrices in bf16: half the bytes
half_vectors = {n: v.bfloat16() for n, v in vectors.items()}

with torch.no_grad():
    matvecs = best_of(lambda: [torch.nn.functional.linear(vectors[m.in_features], m.weight) for m in linears])
    matvecs_bf16 = best_of(lambda: [torch.nn.functional.linear(half_vectors[w.shape[1]], w) for w in halves])
    step_cache = DynamicCache(len(wide.transformer.h))
    wide(torch.randint(0, 32000, (1, 16)), past_key_values=step_cache)  # a 16-token prompt
    one_token = torch.randint(0, 32000, (1, 1))

    def decode_one() -> None:
        wide(one_token, past_key_values=step_cache, logits_to_keep=1)
        step_cache.crop(16)  # forget it again: every timed step sees the same 16 cached tokens

    step = best_of(decode_one)

bound = weight_bytes / bandwidth
print(f"weights read per token {weight_bytes / 1e6:.0f} MB, read bandwidth {bandwidth / 1e9:.1f} GB/s")
print(f"{'bound (bytes / bandwidth)':30} {bound * 1e3:6.2f} ms per token")
print(f"{'the matvecs alone, fp32':30} {matvecs * 1e3:6.2f} ms per token  "
      f"kernel efficiency {bound / matvecs:.0%} of the bandwidth")
print(f"{'the matvecs alone, bf16':30} {matvecs_bf16 * 1e3:6.2f} ms per token  "
      f"kernel efficiency {bound / 2 / matvecs_bf16:.0%} of the bandwidth, {matvecs / matvecs_bf16:.2f}x fp32 "
      f"(half the bytes: 2x at best)")
print(f"{'a whole cached step, fp32':30} {step * 1e3:6.2f} ms per token  "
      f"overhead {(step - matvecs) * 1e3:.2f} ms ({(step - matvecs) / step:.0%} of the step)")

# %% [markdown]
# Read the three lines as a budget (a figure past 100% means the bandwidth was measured at a busier
# moment than the kernel: the machine's other work changes both; run the cell again). In fp32 the BLAS kernel (MKL) streams close to the bandwidth,
# so its line sits near the bound; the step is longer by the overhead. In bf16 there are half the
# bytes, but the kernel falls short of twice as fast: it is the kernel's efficiency, not the
# memory, that limits it. Measured on our benchmark machine (2 cores, `docs/generation.md`), for
# GPT-2 124M: 494 MB a token at 23 to 33 GB/s, a bound of 47 to 67 tokens/s; transformers reaches
# 41 to 44, our eager loop 43 to 46, and `generate(..., compile=True)` 48 to 53, 88% to 93% of the
# bound: compiling removes most of the overhead, and its matrix-vector reduction
# (`layers/linear.py`) streams the weights. In bf16 the same step reaches 79 to 85 tokens/s: 1.6x,
# not the 2x that half the bytes allows, because converting each bf16 weight to fp32 before the
# multiply makes that loop compute-bound.
#
# What else helps is reading the weights fewer times per token: batching many sequences (8 rows
# read each weight once), smaller weights (chapter 12's quantization), or speculative decoding,
# next.
#
# ## 5. From logits to a token: temperature, top-k, top-p
#
# Greedy decoding takes the argmax. Sampling draws from softmax(logits), usually reshaped first,
# in transformers' order:
#
# - **temperature** divides the logits: below 1 sharpens the distribution, above 1 flattens it;
# - **top-k** keeps the k most likely tokens;
# - **top-p** (nucleus) keeps the fewest most likely tokens whose probability reaches p.
#
# Filtered tokens get -inf, hence probability 0. One logits vector, the tiny GPT-2's prediction after
# the prompt above:

# %%
with torch.no_grad():
    logits = ours(prompt[:1]).logits[:, -1]  # (1, V)


def describe(name: str, scores: torch.Tensor) -> None:
    probs = scores.softmax(dim=-1)[0]
    entropy = -(probs[probs > 0] * probs[probs > 0].log()).sum().item()
    print(f"{name:22} kept {int((probs > 0).sum()):3d} tokens   top p {probs.max().item():.3f}   "
          f"entropy {entropy:.2f} nats")


for temperature in (0.5, 1.0, 2.0):
    describe(f"temperature {temperature}", apply_temperature(logits, temperature))
describe("top-k = 5", apply_top_k(logits, 5))
describe("top-p = 0.9", apply_top_p(logits, 0.9))
describe("T=0.7, top-k 20, top-p 0.9", apply_top_p(apply_top_k(apply_temperature(logits, 0.7), 20), 0.9))

unused = torch.zeros(1, 1, dtype=torch.long)  # the warpers take the ids so far; these two ignore them
print("top-k equal to transformers' TopKLogitsWarper:",
      torch.equal(apply_top_k(logits, 5), TopKLogitsWarper(5)(unused, logits)))
print("top-p equal to transformers' TopPLogitsWarper:",
      torch.equal(apply_top_p(logits, 0.9), TopPLogitsWarper(0.9)(unused, logits)))

# %% [markdown]
# Sampling is random, and reproducible with a seeded `torch.Generator`:

# %%
def sampled():
    return ours.generate(prompt[:1], max_new_tokens=10, do_sample=True, temperature=0.8, top_p=0.9,
                         generator=torch.Generator().manual_seed(7))[0, 5:].tolist()


print("seed 7:", sampled(), " again:", sampled())

# %% [markdown]
# ## 6. Beam search, briefly
#
# Greedy takes the best token at each step; the best *sequence* may start with a worse token.
# Beam search keeps the K best partial sequences (beams), extends each by every token, and keeps
# the K best of the K x V candidates, scored by the sum of their log-probabilities (divided by
# length ** `length_penalty` once finished). The cache follows: each step reorders its batch rows
# to the beams they continue. Same tokens as transformers.

# %%
def sequence_log_prob(model, ids: torch.Tensor, prompt_length: int) -> float:
    """Sum of log p(token | everything before it) over the generated tokens."""
    with torch.no_grad():
        log_probs = model(ids).logits[:, :-1].log_softmax(dim=-1)  # (1, L-1, V): position t predicts t+1
    picked = log_probs.gather(-1, ids[:, 1:, None])[0, prompt_length - 1:, 0]  # the generated tokens
    return picked.sum().item()


greedy = ours.generate(prompt[:1], max_new_tokens=8)
beams = ours.generate(prompt[:1], max_new_tokens=8, num_beams=4)
with torch.no_grad():
    hf_beams = hf_model.generate(prompt[:1], attention_mask=torch.ones_like(prompt[:1]), max_new_tokens=8,
                                 num_beams=4, do_sample=False)
print(f"greedy  {greedy[0, 5:].tolist()}  log p = {sequence_log_prob(ours, greedy, 5):.2f}")
print(f"4 beams {beams[0, 5:].tolist()}  log p = {sequence_log_prob(ours, beams, 5):.2f}")
print("beam search equal to transformers':", torch.equal(beams, hf_beams))

# %% [markdown]
# ## 7. Speculative decoding
#
# With the cache, a decode step of a big model is limited by reading its weights once per token.
# Speculative decoding lets a small *draft* model guess k tokens cheaply; the big *target* model
# then checks all k in one forward (one pass over its weights for k + 1 positions). Guesses are kept
# up to the first one the target disagrees with, and the target's own token is added there. The
# output is exactly the target's greedy output, whatever the draft guesses; a good draft only makes
# it faster. The *acceptance rate* (accepted / drafted guesses) says how good the draft is.
#
# A random target of 6 layers, and two drafts of one layer: one made of the target's own
# embeddings, first layer and head, one unrelated and random. (`initializer_range=0.05`: with
# GPT-2's 0.02 a random model, its head tied to its embedding, mostly predicts the token it just read,
# and any draft guesses that.)

# %%
small = dict(vocab_size=512, n_positions=128, n_embd=64, n_head=4, initializer_range=0.05)
target = GPT2(GPT2Config(n_layer=6, **small)).eval()
own_first_layer = GPT2(GPT2Config(n_layer=1, **small)).eval()
own_first_layer.load_state_dict(target.state_dict(), strict=False)  # wte, wpe, h.0, ln_f: the names match
unrelated = GPT2(GPT2Config(n_layer=1, **small)).eval()

spec_prompt = torch.randint(0, 512, (1, 8))
alone = target.generate(spec_prompt, max_new_tokens=48)
for name, draft in (("target's first layer", own_first_layer), ("unrelated random", unrelated)):
    result = speculative_generate(target, draft, spec_prompt, max_new_tokens=48, num_draft_tokens=4)
    same = torch.equal(result.sequences, alone)
    print(f"draft = {name:20}  acceptance {result.acceptance_rate:4.0%}  target forwards "
          f"{result.target_forwards:2d} for 48 tokens   same as the target alone: {same}")

# %% [markdown]
# With random weights the embeddings still weigh a lot in the residual stream, so the target's
# own first layer guesses most tokens right and the target runs about 4 times fewer forwards than
# tokens; the unrelated draft is mostly wrong, and most rounds yield only the target's own token.
# Both give the target's output exactly. In practice the draft is a smaller model of the same
# family, sharing the tokenizer; what it saves is target forwards, each a full read of the weights.

# %%
workdir.cleanup()

# %% [markdown]
# ## Your turn
# Open `exercises_09.py` and implement 9.1 to 9.6: the cache itself (the checks plug it into GPT-2
# and LLaMA and compare with the uncached forward), its size, the mask and position of a new token
# in a left-padded batch, greedy decoding with the cache, top-k/top-p filtering and the repetition
# penalty. `minitransformer check 9` compares each with transformers and tells you which case fails.
