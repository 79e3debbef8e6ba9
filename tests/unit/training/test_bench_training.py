"""scripts/bench_training.py --quick: it runs, exits 0 and prints every row the benchmark is read by.

The figures of a --quick run mean nothing (a few steps of gpt2-tiny on one thread); the rows do:
the ratios against transformers, and the recipe's val loss, wall time, tokens/s and sample.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
SCRIPT = REPO_ROOT / "scripts" / "bench_training.py"
TINYSHAKESPEARE = REPO_ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"


def run_quick(part: str) -> str:
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--part", part],
                            capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert result.returncode == 0, f"--quick --part {part} exited {result.returncode}:\n{result.stderr[-3000:]}"
    return result.stdout


def test_quick_throughput_prints_the_ratio_rows():
    pytest.importorskip("transformers", reason="the reference of the benchmark is transformers' GPT2LMHeadModel")
    out = run_quick("throughput,experiments")
    assert "torch " in out and "transformers " in out and "threads" in out  # versions and thread count recorded
    for precision in ("fp32", "bf16"):
        assert f"gpt2-tiny (0.0M), batch 4 x block 32, {precision}" in out
    assert out.count("ratio ours (sdpa) / transformers") == 2, out
    assert out.count("ratio ours (math) / transformers") == 2, out
    assert out.count("x transformers") >= 16, out  # the experiments' rows, both precisions
    assert "load average" in out


def test_quick_recipe_prints_val_loss_wall_time_and_sample():
    try:
        from minitransformer.training.trainer import Trainer, TrainingConfig  # noqa: F401
    except ImportError:
        pytest.skip("minitransformer.training has no Trainer yet (minitransformer/training/trainer.py): "
                    "the recipe part needs it")
    if not TINYSHAKESPEARE.is_file():
        pytest.skip(f"{TINYSHAKESPEARE} is absent (only developer machines and CI have ../shared)")
    out = run_quick("recipe")
    for row in ("val loss per character", "wall time of Trainer.train()", "tokens/s", "sample ("):
        assert row in out, out
