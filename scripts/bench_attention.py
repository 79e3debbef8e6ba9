"""Attention memory benchmark: the tiled flash path against the naive math path, measured side by side.

B=1, H=4, T=S=4096, D=64, fp32 on the CPU by default. Printed for each path, forward only (under
no_grad, as in inference) and forward + backward (as in training):

1. the peak memory the call adds on top of its inputs, and the ratio flash / naive (target <= 0.1);
2. the wall time, and its ratio to torch's fused ``scaled_dot_product_attention`` ("sdpa").

How the memory is measured, and why it can be trusted: each (path, mode) runs in a fresh Python
process. After the inputs are made and the path has run once on a tiny case (so that code pages and
thread pools are already resident), the process resets its peak resident set size to its current
size (Linux: write "5" to ``/proc/self/clear_refs``), runs the call, and reads the new peak (VmHWM
in ``/proc/self/status``). The difference is every page the call touched at its worst moment:
tensors, temporaries, the allocator's own slack. A fresh process per measurement keeps one path's
freed-but-cached heap from hiding the next path's allocations. The script first checks the method
on a tensor of known size (``--calibrate``, always run): a 64 MiB ``torch.ones`` must read
64 MiB within 5%, else it stops. Where ``clear_refs`` cannot be written it falls back to
``ru_maxrss`` (the process's lifetime peak) minus the resident size before the call, which is also
sound in a fresh process whose warm-up stayed small.

What to expect: the naive path holds the (B, H, T, S) fp32 scores and their softmax,
4 * 4096 * 4096 * 4 bytes = 256 MiB each; the flash path holds the output, one row statistic per
query and one tile. Times are the median of ``--repeats`` runs after the measured one.

Run:  python scripts/bench_attention.py [--T 4096] [--H 4] [--D 64] [--block 128] [--causal]
          [--no-backward] [--threads 1] [--repeats 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minitransformer.layers.attention import fused_attention, scaled_dot_product_attention  # noqa: E402
from minitransformer.layers.flash_attention import flash_attention  # noqa: E402

PATHS = ("naive", "flash", "sdpa")
TARGET_RATIO = 0.1


def _status_bytes(field: str) -> int:
    """A ``kB`` field of /proc/self/status (VmRSS, VmHWM) in bytes."""
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M).group(1)) * 1024


class PeakMemory:
    """Peak resident memory added by the code inside ``with PeakMemory() as peak:``; read ``peak.bytes``."""

    def __enter__(self):
        try:
            Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS
            self.method = "VmHWM after clear_refs"
        except OSError:
            self.method = "ru_maxrss minus RSS before"
        self.start = _status_bytes("VmRSS")
        return self

    def __exit__(self, *exc):
        if self.method.startswith("VmHWM"):
            peak = _status_bytes("VmHWM")
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports kB
        self.bytes = max(0, peak - self.start)


def attention_call(path: str, causal: bool, block: int):
    """The call to measure: (q, k, v) -> output, for one of PATHS."""
    if path == "naive":
        return lambda q, k, v: scaled_dot_product_attention(q, k, v, is_causal=causal)
    if path == "sdpa":
        return lambda q, k, v: fused_attention(q, k, v, is_causal=causal)
    return lambda q, k, v: flash_attention(q, k, v, causal=causal, block_q=block, block_k=block)


def worker(args) -> dict:
    """One measurement, in this (fresh) process."""
    torch.set_num_threads(args.threads)
    if args.path == "calibrate":
        with PeakMemory() as peak:
            x = torch.ones(16 * 2**20)  # 64 MiB, every page written
            del x
        return {"path": "calibrate", "peak_bytes": peak.bytes, "expected_bytes": 64 * 2**20, "method": peak.method}
    call = attention_call(args.path, args.causal, args.block)
    backward = args.mode == "fwd+bwd"

    def inputs(T):
        g = torch.Generator().manual_seed(0)
        return [torch.randn(1, args.H, T, args.D, generator=g).requires_grad_(backward) for _ in range(3)]

    def run(q, k, v):
        if backward:
            out = call(q, k, v)
            out.backward(torch.ones_like(out))
            return out
        with torch.no_grad():
            return call(q, k, v)

    run(*inputs(64))  # warm-up on a tiny case: code pages, thread pool, allocator
    q, k, v = inputs(args.T)
    with PeakMemory() as peak:
        out = run(q, k, v)
    del out
    times = []  # after the memory run, so that the timed runs find the pages already mapped
    for _ in range(args.repeats):
        for x in (q, k, v):
            x.grad = None
        start = time.perf_counter()
        out = run(q, k, v)
        times.append(time.perf_counter() - start)
        del out
    seconds = statistics.median(times)
    return {"path": args.path, "mode": args.mode, "peak_bytes": peak.bytes, "seconds": seconds, "method": peak.method}


def measure(args, path: str, mode: str) -> dict:
    """Run ``worker`` for (path, mode) in a fresh interpreter and return its result."""
    command = [sys.executable, __file__, "--worker", "--path", path, "--mode", mode, "--T", str(args.T),
               "--H", str(args.H), "--D", str(args.D), "--block", str(args.block), "--threads", str(args.threads),
               "--repeats", str(args.repeats)]
    if args.causal:
        command.append("--causal")
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the {path} {mode} measurement failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=int, default=4096, help="query and key length T = S (default 4096)")
    parser.add_argument("--H", type=int, default=4, help="heads (default 4)")
    parser.add_argument("--D", type=int, default=64, help="head size (default 64)")
    parser.add_argument("--block", type=int, default=128, help="flash tile size block_q = block_k (default 128)")
    parser.add_argument("--causal", action="store_true", help="causal attention (default: no mask)")
    parser.add_argument("--no-backward", action="store_true", help="measure the forward only")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a shared 2-core machine, more threads make small tile ops wait on each other)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per path, median reported (default 3)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--path", choices=PATHS + ("calibrate",), help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=("fwd", "fwd+bwd"), default="fwd", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return {}

    calibration = measure(args, "calibrate", "fwd")
    error = abs(calibration["peak_bytes"] - calibration["expected_bytes"]) / calibration["expected_bytes"]
    if error > 0.05:
        raise SystemExit(f"memory measurement untrustworthy here: a 64 MiB tensor read "
                         f"{calibration['peak_bytes'] / 2**20:.1f} MiB ({calibration['method']})")
    modes = ("fwd",) if args.no_backward else ("fwd", "fwd+bwd")
    results = {mode: {path: measure(args, path, mode) for path in PATHS} for mode in modes}
    report = {"config": {"B": 1, "H": args.H, "T": args.T, "S": args.T, "D": args.D, "block": args.block,
                         "causal": args.causal, "dtype": "float32", "threads": args.threads,
                         "method": calibration["method"],
                         "calibration_mib": calibration["peak_bytes"] / 2**20}}
    for mode, by_path in results.items():
        naive, flash, sdpa = (by_path[p] for p in PATHS)
        report[mode] = {
            **{f"{p}_peak_mib": by_path[p]["peak_bytes"] / 2**20 for p in PATHS},
            **{f"{p}_seconds": by_path[p]["seconds"] for p in PATHS},
            "memory_ratio_flash_over_naive": flash["peak_bytes"] / max(naive["peak_bytes"], 1),
            "time_ratio_flash_over_sdpa": flash["seconds"] / sdpa["seconds"],
            "time_ratio_flash_over_naive": flash["seconds"] / naive["seconds"],
        }
    if args.json:
        print(json.dumps(report))
        return report

    c = report["config"]
    print(f"attention B=1 H={c['H']} T=S={c['T']} D={c['D']} fp32 {'causal' if c['causal'] else 'no mask'}, "
          f"flash tiles {c['block']}x{c['block']}, {c['threads']} threads")
    print(f"memory: peak RSS added by the call, {c['method']}, one fresh process each "
          f"(calibration: a 64 MiB tensor reads {c['calibration_mib']:.1f} MiB)")
    for mode in modes:
        r = report[mode]
        print(f"\n{mode}")
        print(f"  {'path':<6} {'peak MiB':>10} {'seconds':>9}")
        for p in PATHS:
            print(f"  {p:<6} {r[f'{p}_peak_mib']:>10.1f} {r[f'{p}_seconds']:>9.3f}")
        ratio = r["memory_ratio_flash_over_naive"]
        print(f"  flash / naive memory: {ratio:.3f}  (target <= {TARGET_RATIO}: "
              f"{'met' if ratio <= TARGET_RATIO else 'NOT met'})")
        print(f"  flash time: {r['time_ratio_flash_over_sdpa']:.1f}x sdpa, {r['time_ratio_flash_over_naive']:.1f}x naive")
    return report


if __name__ == "__main__":
    main()
