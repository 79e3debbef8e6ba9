"""scripts/bench_quantization.py --quick: it runs, exits 0 and prints the rows the benchmark is read by.

The --quick figures mean little (30 steps of a 2-layer model), except one that must hold at any
size: int8 weights cost the trained model under 1% of validation perplexity.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_quantization.py"


def test_quick_run_prints_perplexity_memory_and_decode_rows():
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for name in ("fp32", "int8 absmax", "int4 g32", "int4 g64", "nf4 b64"):
        assert re.search(rf"^  {re.escape(name)} +\d+\.\d{{4}} +\d+\.\d{{3}} +[+-]\d+\.\d\d%", out, re.M), name
    increase = float(re.search(r"^  int8 absmax +\S+ +\S+ +([+-]\d+\.\d\d)%", out, re.M).group(1))
    assert increase < 1.0, out
    assert "decode: gpt2-tiny" in out and "ours fp32 (sdpa)" in out
    assert re.search(r"^  int8 absmax +\d+\.\d\d MB \(0\.\d{3}x\) +\d+\.\d +\d+\.\d\dx", out, re.M), out
