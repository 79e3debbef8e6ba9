"""``torchrun ... -m minitransformer.cli train --distributed {ddp,fsdp2}`` equals ``minitransformer train``.

The command of docs/distributed.md, end to end: two CPU ranks over gloo, the same global batch as one
process, dropout off (each rank draws its own masks, so with dropout on the runs differ by design).
The logged losses must agree within 1e-5 and the saved models give the same logits.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minitransformer.loading import from_pretrained
from minitransformer.models import GPT2Config

TOL = 1e-5  # fp32: the ranks' reductions add the same numbers in another order
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
ARGS = ["--max-steps", "4", "--eval-every", "2", "--batch-size", "4", "--block-size", "32", "--device", "cpu"]


def train(out: Path, config: Path, *prefix: str, distributed: str | None = None) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_ENV}
    env["OMP_NUM_THREADS"] = "1"  # two ranks on a shared CPU: one thread each
    command = [*prefix, "-m", "minitransformer.cli", "train", "--model", str(config), "--out", str(out), *ARGS]
    if distributed:
        command += ["--distributed", distributed]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-4000:]}"
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def config_json(tmp_path_factory) -> Path:
    config = GPT2Config.from_name("gpt2-tiny", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    path = tmp_path_factory.mktemp("config") / "config.json"
    path.write_text(json.dumps(config.to_dict()))
    return path


@pytest.fixture(scope="module")
def single(tmp_path_factory, config_json) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("single") / "run"
    return out, train(out, config_json, sys.executable)


@pytest.mark.parametrize("strategy", ["ddp", "fsdp2"])
def test_torchrun_train_equals_one_process(tmp_path, config_json, single, strategy):
    single_out, single_rows = single
    out = tmp_path / strategy
    rows = train(out, config_json, sys.executable, "-m", "torch.distributed.run", "--standalone",
                 "--nproc-per-node", "2", distributed=strategy)
    assert [r["step"] for r in rows] == [r["step"] for r in single_rows] == [1, 2, 3, 4]
    for ours, ref in zip(rows, single_rows):
        assert abs(ours["train_loss"] - ref["train_loss"]) <= TOL, (strategy, ours, ref)
        if ref["val_loss"] is not None:
            assert abs(ours["val_loss"] - ref["val_loss"]) <= TOL, (strategy, ours, ref)

    # The main rank wrote the whole model under the single-process names: it loads in one process.
    probe = torch.arange(32).reshape(1, 32) % 20
    with torch.no_grad():
        got = from_pretrained(out).eval()(input_ids=probe).logits
        want = from_pretrained(single_out).eval()(input_ids=probe).logits
    assert (got - want).abs().max().item() <= TOL
    assert json.loads((out / "train_result.json").read_text())["steps"] == 4
