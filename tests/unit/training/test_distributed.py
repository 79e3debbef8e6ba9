"""Data parallelism on PyTorch's engine equals one process: torchrun, 2 CPU ranks over gloo.

``dist_worker.py`` trains gpt2-tiny for a few AdamW steps, each rank on its half of the global batch,
under DDP and under FSDP2 in one torchrun launch; here the same steps run in this process on the
whole batch. The tests compare the loss traces and move checkpoints both ways between the two.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from minitransformer.training.distributed import (
    DistContext,
    all_reduce_mean,
    barrier,
    gather_state_dict,
    init_distributed,
    load_full_state_dict,
    rows_of_rank,
    shutdown,
    strip_prefixes,
    wrap_model,
)

WORKER = Path(__file__).with_name("dist_worker.py")
STRATEGIES = ["ddp", "fsdp2"]
TOL = 1e-5  # fp32: the ranks' reductions add the same numbers in another order
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def load_worker():
    spec = importlib.util.spec_from_file_location("dist_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


worker = load_worker()


@pytest.fixture
def world_of_one(monkeypatch) -> DistContext:
    for name in TORCHRUN_ENV:
        monkeypatch.delenv(name, raising=False)
    return init_distributed("cpu")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """The single-process reference (here), then ``torchrun --nproc-per-node 2`` on the worker."""
    single, dist = tmp_path_factory.mktemp("single"), tmp_path_factory.mktemp("dist")
    ctx = DistContext()
    (single / "none.json").write_text(json.dumps({"trace": worker.train(None, ctx, single)}))

    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_ENV}
    env["OMP_NUM_THREADS"] = "1"  # two ranks on a shared CPU: one thread each
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               str(WORKER), str(dist), "--strategies", *STRATEGIES, "--resume-from", str(single / "none")]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"torchrun failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return {"single": single, "dist": dist}


def trace(path: Path, key: str = "trace") -> list[float]:
    return json.loads(path.read_text())[key]


def logits(path: Path) -> torch.Tensor:
    return load_file(str(path))["logits"]


def test_world_of_one_is_a_no_op(world_of_one):
    ctx = world_of_one
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.backend) == (0, 1, True, None)
    assert not torch.distributed.is_initialized()
    model = worker.tiny_model()
    for strategy in (None, "ddp", "fsdp2"):
        assert wrap_model(model, strategy, ctx) is model
    t = torch.tensor(2.5)
    assert all_reduce_mean(t, ctx) is t
    state = gather_state_dict(model, ctx)
    assert state.keys() == model.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    barrier(ctx)
    shutdown(ctx)


def test_a_state_dict_without_the_tied_head_loads(world_of_one):
    """``save_pretrained`` writes the tied matrix once; the head takes the embedding's tensor."""
    source, target = worker.tiny_model(), worker.tiny_model()
    torch.nn.init.normal_(source.transformer.wte.weight)
    state = {k: v for k, v in source.state_dict().items() if k != "lm_head.weight"}
    load_full_state_dict(target, state, world_of_one)
    assert torch.equal(target.lm_head.weight, source.transformer.wte.weight)
    assert target.lm_head.weight is target.transformer.wte.weight


def test_bad_strategy_and_missing_strategy_say_what_to_pass(world_of_one):
    with pytest.raises(ValueError, match="'ddp', 'fsdp2'"):
        wrap_model(worker.tiny_model(), "zero3", world_of_one)
    with pytest.raises(ValueError, match="pass 'ddp' or 'fsdp2'"):
        wrap_model(worker.tiny_model(), None, DistContext(world_size=2))


def test_rows_of_rank_splits_the_global_batch_evenly():
    batch = {"input_ids": torch.arange(12).reshape(6, 2), "labels": torch.arange(12).reshape(6, 2)}
    second = rows_of_rank(batch, DistContext(rank=1, world_size=3, is_main=False))
    assert second["input_ids"].tolist() == second["labels"].tolist() == [[4, 5], [6, 7]]
    assert rows_of_rank(batch, DistContext()) is batch
    with pytest.raises(ValueError, match="multiple of 4"):
        rows_of_rank(batch, DistContext(world_size=4))


def test_strip_prefixes_removes_ddp_and_compile_names():
    state = {"module._orig_mod.lm_head.weight": 1, "_orig_mod.transformer.wte.weight": 2, "lm_head.bias": 3}
    assert strip_prefixes(state) == {"lm_head.weight": 1, "transformer.wte.weight": 2, "lm_head.bias": 3}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_loss_trace_equals_single_process(runs, strategy):
    ours = trace(runs["dist"] / f"{strategy}.json")
    reference = trace(runs["single"] / "none.json")
    run = json.loads((runs["dist"] / f"{strategy}.json").read_text())
    assert run["world_size"] == 2
    assert run["wrapped_as"] == {"ddp": "DistributedDataParallel", "fsdp2": "FSDPGPT2"}[strategy]
    assert len(ours) == len(reference) == worker.STEPS
    diff = max(abs(a - b) for a, b in zip(ours, reference))
    assert diff < TOL, f"{strategy}: loss traces differ by {diff:.2e}\n{ours}\n{reference}"


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_gathered_state_dict_loads_into_one_process(runs, strategy):
    """The full state dict gathered from 2 ranks has the single-process names and gives the same logits."""
    state = load_file(str(runs["dist"] / strategy / "model.safetensors"))
    model = worker.tiny_model()
    assert sorted(state) == sorted(model.state_dict())  # no module. / _orig_mod. prefix, tied head included
    model.load_state_dict(state, strict=True)
    expected = logits(runs["dist"] / strategy / "logits.safetensors")  # the wrapped model's, on its ranks
    torch.testing.assert_close(worker.probe_logits(model), expected, rtol=0, atol=TOL)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_single_process_checkpoint_resumes_distributed(runs, strategy):
    """Model and optimizer state saved by one process load into the wrapped model: same logits, same steps."""
    single_logits = logits(runs["single"] / "none" / "logits.safetensors")
    torch.testing.assert_close(logits(runs["dist"] / f"{strategy}-resumed-logits.safetensors"), single_logits,
                               rtol=0, atol=TOL)
    resumed = trace(runs["dist"] / f"{strategy}.json", "resumed_trace")
    reference = trace(runs["single"] / "none.json")[worker.RESUME_STEP:]
    diff = max(abs(a - b) for a, b in zip(resumed, reference))
    assert len(resumed) == len(reference) and diff < TOL, f"{strategy}: {resumed} vs {reference}"


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_distributed_checkpoint_resumes_in_one_process(runs, strategy, tmp_path):
    """Model and optimizer state gathered from 2 ranks resume here and take the steps the run took."""
    resumed = worker.train(None, DistContext(), tmp_path, resume_from=runs["dist"] / strategy)
    expected = trace(runs["dist"] / f"{strategy}.json")[worker.RESUME_STEP:]
    diff = max(abs(a - b) for a, b in zip(resumed, expected))
    assert len(resumed) == len(expected) and diff < TOL, f"{strategy}: {resumed} vs {expected}"
