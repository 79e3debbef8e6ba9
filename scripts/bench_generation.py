"""Generation benchmark: our generate() against transformers' generate(), side by side in one run.

Random weights, a 32-token prompt, 128 new tokens, greedy, on the CPU with ``--threads`` threads
(default 2). Every ratio is between figures measured in the same run, ours and theirs interleaved
over ``--repeats`` rounds (medians), so that background load hits both alike. The parts:

``bound``    the machine: best of 5 reads of a 1 GiB fp32 tensor (``x.sum()``) with all threads, at the
             start and again in every round of every race; the memory-bandwidth bound of a decode
             step is the weights one token reads / the best of these readings.
``kernels``  the matrix-vector floor of each kernel: one token's worth of products over GPT-2 124M's
             49 weight matrices and its head, nothing between them, per dtype (fp32, bf16, int8) and
             per number of rows (1: a decode step; 8: batch 8), for ``F.linear`` (MKL / oneDNN), the
             compiled reduction of ``layers/linear.py``, and the frozen (oneDNN-packed) weights.
``speed``    the targets of issue 13, one line each with its ratio:
             GPT-2 124M fp32 batch 1: ours ``compile=True`` >= 1.5x transformers, >= 70% of the bound;
             a LLaMA of SmolLM-135M's shape, fp32: >= 1.5x transformers;
             bf16 weights: >= 1.7x our own fp32 (``compile=True`` both);
             batch 8: >= 1.2x transformers;
             time to first token (prefill of 32 tokens), warm: no slower than transformers.
``coldstart`` compile cost and time to first token in fresh processes: once with an empty inductor
             cache (cold), once again with the cache the first left on disk (warm).
``cache``    the targets of issue 5 for the eager loop: cache vs no cache, time per token early vs
             late, speculative decoding with a 2-layer draft.

The outputs of ours and transformers are checked token-identical in fp32.

Run:  python scripts/bench_generation.py [--part bound kernels speed coldstart cache] [--repeats 3]
                                         [--threads 2] [--new-tokens 128]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

PARTS = ("bound", "kernels", "speed", "coldstart", "cache")
PROMPT_LENGTH = 32


# ---- the machine ---------------------------------------------------------------------------------

def read_bandwidth(repeats: int = 5) -> float:
    """Bytes per second of the best of ``repeats`` sums of a 1 GiB fp32 tensor (far larger than any cache)."""
    x = torch.ones(2**28)  # 1 GiB
    x.sum()
    best = min(timed(lambda: x.sum().item())[0] for _ in range(repeats))
    return x.numel() * x.element_size() / best


def weight_bytes_per_token(model) -> int:
    """Every weight is read once per token, except the position table, of which one row is."""
    tensors = {t.data_ptr(): t for t in model.state_dict().values()}  # a tied head is listed twice, stored once
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    wpe = getattr(getattr(model, "transformer", None), "wpe", None)
    if wpe is not None:
        total -= (wpe.weight.shape[0] - 1) * wpe.weight.shape[1] * wpe.weight.element_size()
    return total


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def best_of(fn, repeats: int = 7) -> float:
    fn()
    fn()
    return min(timed(fn)[0] for _ in range(repeats))


# ---- the kernels ---------------------------------------------------------------------------------

class Matrices(torch.nn.Module):
    """GPT-2 124M's 48 layer matrices and its head (out, in), and one token's products with them."""

    def __init__(self, dtype: torch.dtype, hidden: int = 768, layers: int = 12, vocab: int = 50257):
        super().__init__()
        shapes = [(3 * hidden, hidden), (hidden, hidden), (4 * hidden, hidden), (hidden, 4 * hidden)] * layers
        shapes.append((vocab, hidden))
        g = torch.Generator().manual_seed(0)
        if dtype == torch.int8:
            self.weights = torch.nn.ParameterList(
                torch.nn.Parameter(torch.randint(-127, 128, s, generator=g, dtype=torch.int8), requires_grad=False)
                for s in shapes)
            self.scales = torch.nn.ParameterList(torch.nn.Parameter(torch.rand(s[0], generator=g) / 127,
                                                                    requires_grad=False) for s in shapes)
        else:
            self.weights = torch.nn.ParameterList(torch.nn.Parameter(torch.randn(s, generator=g).to(dtype) * 0.02,
                                                                     requires_grad=False) for s in shapes)
            self.scales = None
        self.bytes = sum(w.numel() * w.element_size() for w in self.weights)

    def forward(self, x: torch.Tensor, x4: torch.Tensor, kernel: str) -> list[torch.Tensor]:
        from minitransformer.layers.linear import matvec

        out = []
        for i, w in enumerate(self.weights):
            inp = x if w.shape[1] == x.shape[-1] else x4  # (M, C) or (M, 4C)
            scale = None if self.scales is None else self.scales[i]
            if kernel == "reduction":
                out.append(matvec(inp, w, scale=scale))
            else:
                weight = w if scale is None else w.float() * scale[:, None]
                out.append(F.linear(inp, weight))
        return out


def kernel_floors(rows: int, dtype: torch.dtype) -> dict[str, float]:
    """Seconds of one token's products over GPT-2's matrices, per kernel."""
    import torch._inductor.config as inductor_config

    m = Matrices(dtype).eval()
    act = torch.float32 if dtype == torch.int8 else dtype
    x, x4 = torch.randn(rows, 768).to(act), torch.randn(rows, 3072).to(act)
    out = {}
    with torch.no_grad():
        if dtype != torch.int8:  # int8 has no eager kernel of ours: F.linear would dequantize every weight
            out["F.linear (eager)"] = best_of(lambda: m(x, x4, "linear"))
        step = torch.compile(m, dynamic=False)
        out["reduction (compiled)"] = best_of(lambda: step(x, x4, "reduction"))
        if dtype == torch.bfloat16:
            torch._dynamo.reset()
            with inductor_config.patch(freezing=True):
                frozen = torch.compile(m, dynamic=False)
                out["oneDNN packed (frozen)"] = best_of(lambda: frozen(x, x4, "linear"))
        torch._dynamo.reset()
    return {name: (t, m.bytes) for name, t in out.items()}


def part_kernels() -> None:
    print("\n== the matrix-vector floor of each kernel: GPT-2 124M's 49 matrices, one product each, nothing between")
    for dtype, rows in ((torch.float32, 1), (torch.float32, 8), (torch.bfloat16, 1), (torch.bfloat16, 8),
                        (torch.int8, 1)):
        for name, (t, nbytes) in kernel_floors(rows, dtype).items():
            print(f"  {str(dtype).removeprefix('torch.'):9s} rows {rows}  {name:24s} {t * 1000:7.2f} ms  "
                  f"{nbytes / t / 1e9:5.1f} GB/s of weights  ({nbytes / t / bandwidth():.0%} of the best read)")


# ---- the models ----------------------------------------------------------------------------------

def gpt2_pair(tmp: str, dtype: torch.dtype = torch.float32):
    import transformers

    import minitransformer

    torch.manual_seed(0)
    path = Path(tmp) / "gpt2"
    if not path.exists():
        transformers.GPT2LMHeadModel(transformers.GPT2Config()).save_pretrained(path)
    ours = minitransformer.from_pretrained(path, attn_implementation="sdpa", dtype=dtype)
    theirs = transformers.GPT2LMHeadModel.from_pretrained(path, dtype=dtype).eval()
    return ours, theirs


def smollm_pair(tmp: str):
    """A LLaMA of SmolLM-135M's shape (random weights)."""
    import transformers

    import minitransformer

    torch.manual_seed(0)
    path = Path(tmp) / "smollm"
    config = transformers.LlamaConfig(hidden_size=576, num_hidden_layers=30, num_attention_heads=9,
                                      num_key_value_heads=3, intermediate_size=1536, vocab_size=49152,
                                      tie_word_embeddings=True, max_position_embeddings=2048, rms_norm_eps=1e-5,
                                      rope_theta=10000.0)
    transformers.LlamaForCausalLM(config).save_pretrained(path)
    ours = minitransformer.from_pretrained(path, attn_implementation="sdpa")
    theirs = transformers.LlamaForCausalLM.from_pretrained(path).eval()
    return ours, theirs


def prompt_ids(vocab_size: int, batch: int = 1) -> torch.Tensor:
    return torch.randint(0, vocab_size, (batch, PROMPT_LENGTH), generator=torch.Generator().manual_seed(0))


def quiet(theirs) -> None:
    theirs.generation_config.eos_token_id = None  # random weights: never stop early, in either
    theirs.generation_config.pad_token_id = 0


#: Every read bandwidth measured in this run: the bound uses the best, since the machine's other work
#: only ever takes bandwidth away (a single reading taken at a busy moment put ours past 100% of it).
BANDWIDTHS: list[float] = []


def bandwidth() -> float:
    return max(BANDWIDTHS)


def race(runs: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each run, the runs interleaved round by round; each is warmed up once first.
    Every round also reads the 1 GiB tensor again (``BANDWIDTHS``)."""
    with torch.no_grad():
        for fn in runs.values():
            fn()
        times = {name: [] for name in runs}
        for _ in range(repeats):
            BANDWIDTHS.append(read_bandwidth(2))
            for name, fn in runs.items():
                times[name].append(timed(fn)[0])
    return {name: statistics.median(t) for name, t in times.items()}


def part_speed(args, tmp: str) -> None:
    new = args.new_tokens
    ours, theirs = gpt2_pair(tmp)
    quiet(theirs)
    ids = prompt_ids(ours.config.vocab_size)
    kw = dict(max_new_tokens=new, eos_token_id=[])

    def ours_compiled(model=ours, x=ids):
        return model.generate(x, compile=True, **kw)

    with torch.no_grad():
        same = torch.equal(ours_compiled(), theirs.generate(ids, max_new_tokens=new, do_sample=False))
        same = same and torch.equal(ours.generate(ids, **kw), ours_compiled())
    t = race({"theirs": lambda: theirs.generate(ids, max_new_tokens=new, do_sample=False),
              "eager": lambda: ours.generate(ids, **kw),
              "compiled": ours_compiled}, args.repeats)
    bound = bandwidth() / weight_bytes_per_token(ours)
    tps = {name: new / s for name, s in t.items()}
    print(f"\n== speed: {new} new tokens after a {PROMPT_LENGTH}-token prompt, greedy, {torch.get_num_threads()} "
          f"threads, median of {args.repeats}")
    print(f"  GPT-2 124M fp32 batch 1 (token-identical to transformers: {same}); bound {bound:.1f} tokens/s "
          f"({weight_bytes_per_token(ours) / 1e6:.1f} MB a token at {bandwidth() / 1e9:.1f} GB/s, the best read so far)")
    print(f"    transformers generate (cache)   {tps['theirs']:7.1f} tokens/s   the bound is "
          f"{bound / tps['theirs']:.2f}x it: no fp32 path can beat that ratio")
    print(f"    ours, eager (dynamic cache)     {tps['eager']:7.1f} tokens/s   {tps['eager'] / tps['theirs']:.2f}x")
    print(f"    ours, compile=True              {tps['compiled']:7.1f} tokens/s   "
          f"{tps['compiled'] / tps['theirs']:.2f}x transformers (target >= 1.5x), "
          f"{tps['compiled'] / bound:.0%} of the bound (target >= 70%)")

    # batch 8
    ids8 = prompt_ids(ours.config.vocab_size, 8)
    with torch.no_grad():
        same8 = torch.equal(ours_compiled(x=ids8), theirs.generate(ids8, max_new_tokens=new, do_sample=False))
    t8 = race({"theirs": lambda: theirs.generate(ids8, max_new_tokens=new, do_sample=False),
               "compiled": lambda: ours_compiled(x=ids8)}, args.repeats)
    print(f"  GPT-2 124M fp32 batch 8 (token-identical: {same8})")
    print(f"    transformers                    {8 * new / t8['theirs']:7.1f} tokens/s")
    print(f"    ours, compile=True              {8 * new / t8['compiled']:7.1f} tokens/s   "
          f"{t8['theirs'] / t8['compiled']:.2f}x transformers (target >= 1.2x)")

    # time to first token: the prefill of 32 tokens and the first pick, warm
    first = race({"theirs": lambda: theirs.generate(ids, max_new_tokens=1, do_sample=False),
                  "ours": lambda: ours.generate(ids, max_new_tokens=1, eos_token_id=[], compile=True)},
                 max(args.repeats, 5))
    print(f"  time to first token, warm (prefill of {PROMPT_LENGTH} tokens): transformers "
          f"{first['theirs'] * 1000:.1f} ms, ours {first['ours'] * 1000:.1f} ms "
          f"({first['theirs'] / first['ours']:.2f}x; target: no slower, >= 1.00x)")

    # bf16 weights, against our own fp32
    ours_bf16, theirs_bf16 = gpt2_pair(tmp, torch.bfloat16)
    quiet(theirs_bf16)
    tb = race({"theirs": lambda: theirs_bf16.generate(ids, max_new_tokens=new, do_sample=False),
               "compiled": lambda: ours_compiled(model=ours_bf16),
               "fp32": ours_compiled}, args.repeats)
    print("  GPT-2 124M bf16 weights, batch 1")
    print(f"    transformers bf16               {new / tb['theirs']:7.1f} tokens/s")
    print(f"    ours bf16, compile=True         {new / tb['compiled']:7.1f} tokens/s   "
          f"{tb['fp32'] / tb['compiled']:.2f}x our fp32 compile=True of this round ({new / tb['fp32']:.1f} tokens/s; "
          f"target >= 1.7x), {new / tb['compiled'] / (bandwidth() / weight_bytes_per_token(ours_bf16)):.0%} of "
          f"the bf16 bound")

    # SmolLM-135M's shape
    ours, theirs = smollm_pair(tmp)
    quiet(theirs)
    ids = prompt_ids(ours.config.vocab_size)
    with torch.no_grad():
        same = torch.equal(ours_compiled(model=ours, x=ids), theirs.generate(ids, max_new_tokens=new, do_sample=False))
    ts = race({"theirs": lambda: theirs.generate(ids, max_new_tokens=new, do_sample=False),
               "compiled": lambda: ours_compiled(model=ours, x=ids)}, args.repeats)
    bound = bandwidth() / weight_bytes_per_token(ours)
    print(f"  LLaMA of SmolLM-135M's shape, fp32 batch 1 (token-identical: {same}); bound {bound:.1f} tokens/s")
    print(f"    transformers                    {new / ts['theirs']:7.1f} tokens/s")
    print(f"    ours, compile=True              {new / ts['compiled']:7.1f} tokens/s   "
          f"{ts['theirs'] / ts['compiled']:.2f}x transformers (target >= 1.5x), "
          f"{new / ts['compiled'] / bound:.0%} of the bound")


COLDSTART = """
import json, sys, time, torch
torch.set_num_threads({threads})
import minitransformer
model = minitransformer.from_pretrained({path!r}, attn_implementation="sdpa")
ids = torch.randint(0, model.config.vocab_size, (1, {prompt}), generator=torch.Generator().manual_seed(0))
marks = []
class Clock:
    def put(self, value): marks.append(time.perf_counter())
    def end(self): pass
start = time.perf_counter()
model.generate(ids, max_new_tokens={new}, eos_token_id=[], compile=True, streamer=Clock())
end = time.perf_counter()
print(json.dumps(dict(first=marks[1] - start, second=marks[2] - start, total=end - start)))
"""


def part_coldstart(args, tmp: str) -> None:
    gpt2_pair(tmp)  # writes the checkpoint
    cache = Path(tmp) / "inductor-cache"
    script = COLDSTART.format(threads=args.threads, path=str(Path(tmp) / "gpt2"), prompt=PROMPT_LENGTH,
                              new=args.new_tokens)
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(cache))
    print("\n== cold start: GPT-2 124M fp32, compile=True, a fresh process each (streamer timestamps)")
    for label in ("empty inductor cache (cold)", "the cache of the run above (warm from disk)"):
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
        m = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"  {label:44s} first token {m['first']:6.2f} s, second {m['second']:6.2f} s (the compile), "
              f"all {args.new_tokens} {m['total']:6.2f} s")


# ---- issue 5's targets for the eager loop ------------------------------------------------------------

def per_token_times(model, positions: list[int], steps: int, vocab_size: int) -> list[float]:
    """Median seconds of one decode step with the dynamic cache, at each of ``positions``, their steps
    interleaved (one session per position, prefilled with that many tokens)."""
    from minitransformer.generation.sessions import DecoderOnlySession

    g = torch.Generator().manual_seed(1)
    runs = []
    for P in positions:
        tokens = torch.randint(0, vocab_size, (1, P + steps), generator=g)
        runs.append((DecoderOnlySession(model, None, 1, P, P + steps, tokens.device), tokens, []))
    with torch.no_grad():
        for session, tokens, _ in runs:
            session.prefill(tokens)
        for i in range(1, steps):
            for session, tokens, times in runs:
                start = time.perf_counter()
                session.decode(tokens, session.prompt_length + i)
                times.append(time.perf_counter() - start)
    return [statistics.median(times[2:]) for _, _, times in runs]


def part_cache(args, tmp: str) -> None:
    from minitransformer.generation import speculative_generate
    from minitransformer.models.gpt2 import GPT2

    new = args.new_tokens
    ours, _ = gpt2_pair(tmp)
    ids = prompt_ids(ours.config.vocab_size)
    kw = dict(max_new_tokens=new, eos_token_id=[])
    t = race({"cache": lambda: ours.generate(ids, **kw), "nocache": lambda: ours.generate(ids, use_cache=False, **kw)},
             1)
    draft = GPT2(dataclasses.replace(ours.config, n_layer=2), attn_implementation="sdpa").eval()
    draft.load_state_dict({k: v for k, v in ours.state_dict().items() if k in draft.state_dict()})
    with torch.no_grad():
        t_target, target = timed(lambda: ours.generate(ids, **kw))
        t_spec, spec = timed(lambda: speculative_generate(ours, draft, ids, max_new_tokens=new, num_draft_tokens=4,
                                                          eos_token_id=[]))
    positions = [16, 128, 256, 384, 496]
    steps = per_token_times(ours, positions, 17, ours.config.vocab_size)
    print("\n== the eager loop (issue 5): GPT-2 124M fp32, dynamic cache")
    print(f"  with the cache {new / t['cache']:.1f} tokens/s, without {new / t['nocache']:.1f}: "
          f"{t['nocache'] / t['cache']:.1f}x (target >= 3x)")
    for p, s in zip(positions, steps):
        print(f"  time per token, positions {p:3d}-{p + 16:3d}  {s * 1000:7.2f} ms")
    print(f"  ratio 496-512 / 16-32  {steps[-1] / steps[0]:.2f} (target within 20%: 0.8-1.2)")
    print(f"  speculative, 2-layer draft, k=4: {new / t_spec:.1f} tokens/s, acceptance rate {spec.acceptance_rate:.0%}, "
          f"{t_target / t_spec:.2f}x the target alone (identical: {torch.equal(spec.sequences, target)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--new-tokens", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import transformers

    transformers.logging.set_verbosity_error()
    BANDWIDTHS.append(read_bandwidth())
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {torch.get_num_threads()} threads")
    print(f"read bandwidth: best of 5 sums of a 1 GiB fp32 tensor: {BANDWIDTHS[0] / 1e9:.1f} GB/s")
    with tempfile.TemporaryDirectory() as tmp:
        if "kernels" in args.part:
            part_kernels()
        if "speed" in args.part:
            part_speed(args, tmp)
        if "coldstart" in args.part:
            part_coldstart(args, tmp)
        if "cache" in args.part:
            part_cache(args, tmp)
    BANDWIDTHS.append(read_bandwidth())
    print(f"\nread bandwidth: {len(BANDWIDTHS)} readings in this run, {min(BANDWIDTHS) / 1e9:.1f} to "
          f"{max(BANDWIDTHS) / 1e9:.1f} GB/s; the bounds above use the best so far when printed")


if __name__ == "__main__":
    main()
