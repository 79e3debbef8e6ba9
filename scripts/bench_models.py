"""Benchmarks for the models and the loader; every ratio is against a reference measured in the same run.

1. Forward pass of a GPT-2 124M config (random weights), batch 4 x 256 tokens, fp32, CPU: our GPT2
   (attention on the fused "sdpa" path, its default when no attention maps are asked for) against
   transformers' GPT2LMHeadModel with the same weights. Target: ratio <= 1.0.
2. Loading that checkpoint with ``minitransformer.loading.from_pretrained``: peak resident memory of a
   fresh subprocess minus its resident memory just before loading, divided by the size of
   the weights (peak = VmHWM, reset just before loading). The weights are touched after loading (a forward pass) so a lazily mapped file counts
   in full. Target: <= 1.3. transformers' own from_pretrained is measured the same way for reference.

Run:  python scripts/bench_models.py [--repeats 5] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import torch

LOAD_PROBE = textwrap.dedent("""
    import sys, torch
    def rss_mb():
        with open("/proc/self/status") as f:
            return int(f.read().split("VmRSS:")[1].split()[0]) / 1024
    def hwm_mb():  # peak RSS of this process (ru_maxrss would include the parent's, inherited at fork)
        with open("/proc/self/status") as f:
            return int(f.read().split("VmHWM:")[1].split()[0]) / 1024
    which, path, dtype = sys.argv[1], sys.argv[2], sys.argv[3]
    if which == "ours":
        from minitransformer.loading import from_pretrained
        load = lambda: from_pretrained(path, dtype=None if dtype == "auto" else dtype)
    else:
        import transformers
        load = lambda: transformers.AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype) if dtype != "auto" else "auto")
    import gc; gc.collect()
    open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
    before = rss_mb()
    model = load()
    with torch.no_grad():
        model(torch.zeros(1, 8, dtype=torch.long))
        checksum = sum(float(p.float().sum()) for p in model.parameters())  # touch every weight
    peak = hwm_mb()
    weights = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    print(peak - before, weights)
""")


def time_forward(model, ids, repeats: int) -> list[float]:
    times = []
    with torch.no_grad():
        model(ids)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            model(ids)
            times.append(time.perf_counter() - start)
    return times


def bench_forward(directory: Path, repeats: int) -> None:
    import transformers

    from minitransformer.loading import from_pretrained

    ours = from_pretrained(directory, attn_implementation="sdpa")  # fused, as transformers' default is
    theirs = transformers.GPT2LMHeadModel.from_pretrained(directory).eval()  # default attention: sdpa
    ids = torch.randint(0, 50257, (4, 256), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (ours(ids).logits - theirs(ids).logits).abs().max().item()
    ours_t, theirs_t = [], []
    for _ in range(repeats):  # interleave so background noise hits both alike
        ours_t += time_forward(ours, ids, 1)
        theirs_t += time_forward(theirs, ids, 1)
    o, t = statistics.median(ours_t), statistics.median(theirs_t)
    print(f"forward GPT-2 124M, 4x256, fp32, CPU ({torch.get_num_threads()} threads), median of {repeats}:")
    print(f"  minitransformer GPT2 (sdpa)   {o * 1000:8.1f} ms")
    print(f"  transformers GPT2LMHeadModel  {t * 1000:8.1f} ms   ({theirs.config._attn_implementation})")
    print(f"  ratio ours / transformers     {o / t:8.2f}x   (target <= 1.0x; max |logit diff| {diff:.1e})")


def bench_loading(directory: Path) -> None:
    print("loading peak memory (fresh subprocess, peak RSS during load minus RSS before, weights touched):")
    for which, dtype in (("ours", "auto"), ("ours", "bfloat16"), ("transformers", "auto")):
        out = subprocess.run([sys.executable, "-c", LOAD_PROBE, which, str(directory), dtype],
                             capture_output=True, text=True, check=True).stdout.split()
        peak, weights = float(out[-2]), float(out[-1])
        print(f"  {which:13s} dtype={dtype:9s} peak {peak:7.1f} MiB / weights {weights:7.1f} MiB = "
              f"{peak / weights:.2f}x" + ("   (target <= 1.3x)" if which == "ours" and dtype == "auto" else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import transformers

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        transformers.GPT2LMHeadModel(transformers.GPT2Config()).save_pretrained(directory)  # 124M, random
        bench_forward(directory, args.repeats)
        bench_loading(directory)


if __name__ == "__main__":
    main()
