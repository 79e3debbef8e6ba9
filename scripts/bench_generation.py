"""Generation benchmark: our generate() against transformers' generate(), measured side by side in one run.

GPT-2 124M config with random weights, fp32, a 32-token prompt, 128 new tokens, greedy decoding, on
the CPU with ``--threads`` threads (default 2). Printed, with the targets of issue 5:

1. tokens/s of ours (dynamic and static cache) and of transformers with its cache: ratio >= 1.3x;
2. the memory-bandwidth bound: read bandwidth of this machine, measured now (the sum of a 1 GiB
   tensor), divided by the bytes of weights one token reads (every parameter once, except the
   position table, of which one row is read): ours >= 75% of it;
3. ours with the cache against ours without it (recomputing the sequence every step): >= 3x;
4. time per decode step at positions 16..32 against 496..512: within 20% (one session per
   position, their steps interleaved);
5. speculative decoding with a draft made of the target's first 2 layers: acceptance rate, speed-up;
6. the floor: one token's matrix-vector products alone (every Linear once, nothing between), and how
   many milliseconds per token 1.3x transformers leaves for everything else once they are paid.

The outputs of ours and transformers are checked token-identical. Timings are medians over
``--repeats`` runs, ours and theirs interleaved so that background load hits both alike.

Run:  python scripts/bench_generation.py [--repeats 3] [--threads 2] [--device cpu|cuda] [--compile]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import torch


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def read_bandwidth(device: str, repeats: int = 5) -> float:
    """Bytes per second that ``sum`` streams through a 1 GiB fp32 tensor (far larger than any cache)."""
    x = torch.ones(2**28, device=device)  # 1 GiB
    for _ in range(2):
        x.sum()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        x.sum().item()
        times.append(time.perf_counter() - start)
    return x.numel() * x.element_size() / statistics.median(times)


def weight_bytes_per_token(model) -> int:
    """Every parameter is read once per token, except the position table: one row of it."""
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    wpe = model.transformer.wpe.weight
    return total - wpe.numel() * wpe.element_size() + wpe.shape[1] * wpe.element_size()


def matvec_seconds(model, device: str, repeats: int = 7) -> float:
    """Seconds of one token's matrix-vector products alone: every ``nn.Linear`` once, nothing between.

    This is what any fp32 implementation built on torch's matmul must pay per token (the weights
    streamed from memory), whatever it does around them: the floor under our step and transformers'.
    """
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]  # 72 in the layers + the head
    inputs = {m.in_features: torch.randn(1, 1, m.in_features, device=device) for m in linears}  # (B=1, T=1, in)

    def one_token() -> None:
        for m in linears:
            torch.nn.functional.linear(inputs[m.in_features], m.weight, m.bias)

    one_token()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        one_token()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def timed(fn, device: str):
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


def per_token_times(model, positions: list[int], steps: int, vocab_size: int, device: str) -> list[float]:
    """Median seconds of one decode step with the dynamic cache, at each of ``positions``.

    One session per position (prefilled with that many tokens), their steps interleaved, so that a
    change of background load while measuring hits every position alike.
    """
    from minitransformer.generation.sessions import DecoderOnlySession

    g = torch.Generator().manual_seed(1)
    runs = []
    for P in positions:
        tokens = torch.randint(0, vocab_size, (1, P + steps), generator=g).to(device)
        session = DecoderOnlySession(model, None, 1, P, P + steps, tokens.device)
        runs.append((session, tokens, []))
    with torch.no_grad():
        for session, tokens, _ in runs:
            session.prefill(tokens)
        for i in range(1, steps):
            for session, tokens, times in runs:
                sync(device)
                start = time.perf_counter()
                session.decode(tokens, session.prompt_length + i)
                sync(device)
                times.append(time.perf_counter() - start)
    return [statistics.median(times[2:]) for _, _, times in runs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--compile", action="store_true", help="also time the static cache + torch.compile path")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = args.device
    import transformers

    import minitransformer

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        config = transformers.GPT2Config()  # 124M
        transformers.GPT2LMHeadModel(config).save_pretrained(tmp)
        # the fused path, as transformers' default: the models' own default is the written-out "math"
        ours = minitransformer.from_pretrained(Path(tmp), device=device, attn_implementation="sdpa")
        theirs = transformers.GPT2LMHeadModel.from_pretrained(tmp).to(device).eval()  # default attention (sdpa)
    theirs.generation_config.eos_token_id = None  # random weights: never stop early, in either
    theirs.generation_config.pad_token_id = 0
    prompt = torch.randint(0, config.vocab_size, (1, 32), generator=torch.Generator().manual_seed(0)).to(device)
    new = args.new_tokens
    kw = dict(max_new_tokens=new, eos_token_id=[])

    with torch.no_grad():
        ours.generate(prompt, max_new_tokens=4, eos_token_id=[])  # warm-up
        ours.generate(prompt, max_new_tokens=4, eos_token_id=[], cache_implementation="static")
        theirs.generate(prompt, max_new_tokens=4, do_sample=False)
        t_ours, t_static, t_theirs, bandwidths, matvecs = [], [], [], [], []
        for _ in range(args.repeats):  # the bandwidth too, in every round: the load of the machine varies
            bandwidths.append(read_bandwidth(device))
            matvecs.append(matvec_seconds(ours, device))
            t, a = timed(lambda: ours.generate(prompt, **kw), device)
            t_ours.append(t)
            t, s = timed(lambda: ours.generate(prompt, cache_implementation="static", **kw), device)
            t_static.append(t)
            t, b = timed(lambda: theirs.generate(prompt, max_new_tokens=new, do_sample=False), device)
            t_theirs.append(t)
        same = torch.equal(a, b) and torch.equal(s, b)
        if args.compile:
            compile_seconds, _ = timed(lambda: ours.generate(prompt, cache_implementation="static", compile=True, **kw),
                                       device)
            t_compiled = []
            for _ in range(args.repeats):
                t, d = timed(lambda: ours.generate(prompt, cache_implementation="static", compile=True, **kw), device)
                t_compiled.append(t)
                same = same and torch.equal(d, b)
        t_nocache, c = timed(lambda: ours.generate(prompt, use_cache=False, **kw), device)
        same = same and torch.equal(c, b)
        # Speculative decoding: the draft is the target's first 2 layers (with its embeddings, final norm, head).
        from minitransformer.generation import speculative_generate
        from minitransformer.models.gpt2 import GPT2

        draft = GPT2(dataclasses.replace(ours.config, n_layer=2), attn_implementation="sdpa").to(device).eval()
        draft.load_state_dict({k: v for k, v in ours.state_dict().items() if k in draft.state_dict()})
        t_target, target_out = timed(lambda: ours.generate(prompt, **kw), device)
        t_spec, spec = timed(lambda: speculative_generate(ours, draft, prompt, max_new_tokens=new, num_draft_tokens=4,
                                                          eos_token_id=[]), device)
        spec_same = torch.equal(spec.sequences, target_out)
        positions = [16, 128, 256, 384, 496]
        step_times = per_token_times(ours, positions, 17, config.vocab_size, device)  # steps at p .. p + 16

    tps = {name: new / statistics.median(t) for name, t in
           (("ours", t_ours), ("static", t_static), ("theirs", t_theirs))}
    tps["nocache"] = new / t_nocache
    if args.compile:
        tps["compiled"] = new / statistics.median(t_compiled)
    bandwidth = statistics.median(bandwidths)
    bytes_per_token = weight_bytes_per_token(ours)
    bound = bandwidth / bytes_per_token
    early, late = step_times[0], step_times[-1]
    floor = statistics.median(matvecs)  # seconds per token of the matvecs alone
    needed = 1.3 * tps["theirs"]  # tokens/s that 1.3x transformers means in this run
    print(f"GPT-2 124M (random weights), fp32, {device}, {torch.get_num_threads()} threads, prompt 32, "
          f"{new} new tokens, greedy; median of {args.repeats}; outputs token-identical: {same}")
    print(f"  read bandwidth (sum of 1 GiB)        {bandwidth / 1e9:8.2f} GB/s")
    print(f"  weights read per token                {bytes_per_token / 1e6:8.1f} MB")
    print(f"  bandwidth bound                       {bound:8.1f} tokens/s")
    print(f"  transformers generate (cache)         {tps['theirs']:8.1f} tokens/s")
    print(f"  ours, dynamic cache                   {tps['ours']:8.1f} tokens/s   "
          f"{tps['ours'] / tps['theirs']:.2f}x transformers (target >= 1.3x), "
          f"{tps['ours'] / bound:.0%} of the bound (target >= 75%)")
    print(f"  ours, static cache                    {tps['static']:8.1f} tokens/s   "
          f"{tps['static'] / tps['theirs']:.2f}x transformers, {tps['static'] / bound:.0%} of the bound")
    print(f"  ours, no cache                        {tps['nocache']:8.1f} tokens/s   "
          f"cache {tps['ours'] / tps['nocache']:.1f}x faster (target >= 3x)")
    print(f"  speculative, 2-layer draft, k=4       {new / t_spec:8.1f} tokens/s   acceptance rate "
          f"{spec.acceptance_rate:.0%}, {new / t_spec / (new / t_target):.2f}x the target alone "
          f"(identical: {spec_same})")
    print(f"  matvecs alone (73 Linear, nothing else) {1 / floor:8.1f} tokens/s   {floor * 1000:.1f} ms per token, "
          f"{bytes_per_token / floor / 1e9:.1f} GB/s, {1 / floor / bound:.0%} of the bound")
    print(f"  1.3x transformers = {needed:.1f} tokens/s = {1000 / needed:.1f} ms per token: after the matvecs, "
          f"{1000 / needed - floor * 1000:.1f} ms for everything else (ours: {1000 / tps['ours'] - floor * 1000:.1f} ms "
          f"eager dynamic, transformers: {1000 / tps['theirs'] - floor * 1000:.1f} ms)")
    for p, t in zip(positions, step_times):
        print(f"  time per token, positions {p:3d}-{p + 16:3d}    {t * 1000:8.2f} ms")
    print(f"  ratio 496-512 / 16-32                 {late / early:8.2f}      (target within 20%: 0.8-1.2)")
    if args.compile:
        print(f"  ours, static cache + torch.compile    {tps['compiled']:8.1f} tokens/s   "
              f"{tps['compiled'] / tps['theirs']:.2f}x transformers, {tps['compiled'] / bound:.0%} of the bound "
              f"(compiling took {compile_seconds:.0f} s, not counted); "
              f"{1000 / tps['compiled'] - floor * 1000:.1f} ms per token beyond the matvecs")


if __name__ == "__main__":
    main()
