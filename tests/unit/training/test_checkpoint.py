"""checkpoint.py: a round trip of everything a resume needs, atomic writes, keep-K, and the resume checks."""

from __future__ import annotations

import json
import random
import warnings

import numpy as np
import pytest
import torch

import minitransformer.training.checkpoint as checkpoint_module
from minitransformer.models import GPT2, GPT2Config
from minitransformer.training.checkpoint import (
    CheckpointError,
    check_compatible,
    join_tensors,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    remove_unfinished,
    save_checkpoint,
    set_rng_state,
    split_tensors,
)
from minitransformer.training.optim import configure_optimizer

FINGERPRINT = "ab" * 32


def trained(steps: int = 2, seed: int = 0) -> tuple[GPT2, torch.optim.AdamW]:
    """gpt2-tiny and its AdamW after ``steps`` updates (so the moments are not zero)."""
    torch.manual_seed(seed)
    model = GPT2(GPT2Config.from_name("gpt2-tiny"))
    optimizer = configure_optimizer(model, lr=1e-2, weight_decay=0.1)
    ids = torch.randint(0, 256, (2, 16))
    for _ in range(steps):
        model(ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model, optimizer


def save(root, step, model, optimizer, keep=3, **state):
    state = {"model_config": model.config.to_dict(), "tokenizer": FINGERPRINT, **state}
    return save_checkpoint(root, step, model=model.state_dict(), optimizer=optimizer.state_dict(), state=state,
                           keep=keep)


def test_split_and_join_tensors_round_trip_a_nested_state():
    state = {"state": {0: {"step": torch.tensor(3.0), "m": torch.ones(2)}, 7: {"m": torch.zeros(1)}},
             "groups": [{"lr": 0.1, "betas": (0.9, 0.95), "params": [0, 7], "name": None}]}
    skeleton, tensors = split_tensors(state)
    json.dumps(skeleton)  # JSON all through
    back = join_tensors(json.loads(json.dumps(skeleton)), tensors)
    assert list(back["state"]) == [0, 7]  # integer keys stay integers
    assert torch.equal(back["state"][0]["m"], torch.ones(2)) and back["groups"][0]["betas"] == [0.9, 0.95]
    with pytest.raises(TypeError, match="cannot store set"):
        split_tensors({"x": {1, 2}})


def test_model_optimizer_rng_and_step_round_trip(tmp_path):
    model, optimizer = trained()
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    path = save(tmp_path, 7, model, optimizer, data_index=14, bad_evals=1)
    after_save = (torch.rand(3), np.random.rand(3), random.random())  # what the saved generators give next

    ckpt = load_checkpoint(path)
    assert ckpt.step == 7 and ckpt.path == path
    assert ckpt.state["data_index"] == 14 and ckpt.state["bad_evals"] == 1
    assert ckpt.state["model_config"] == json.loads(json.dumps(model.config.to_dict()))
    for name, tensor in model.state_dict().items():
        assert torch.equal(ckpt.model[name], tensor), name

    # A fresh model and optimizer loaded from it take the next step exactly as the originals do.
    model2, optimizer2 = trained(steps=0, seed=1)
    model2.load_state_dict(ckpt.model)
    optimizer2.load_state_dict(ckpt.optimizer)
    ids = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(5))
    for m, opt in ((model, optimizer), (model2, optimizer2)):
        m.eval()  # no dropout: the two forwards see the same numbers
        m(ids, labels=ids).loss.backward()
        opt.step()
    for (name, a), b in zip(model.named_parameters(), model2.parameters()):
        assert torch.equal(a, b), name

    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    set_rng_state(ckpt.rng)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(again[0], after_save[0])
    assert np.array_equal(again[1], after_save[1]) and again[2] == after_save[2]


def test_the_folder_holds_safetensors_and_json_only(tmp_path):
    model, optimizer = trained(steps=1)
    path = save(tmp_path, 1, model, optimizer)
    assert path.name == "step-0000001"
    assert sorted(p.name for p in path.iterdir()) == ["manifest.json", "model.safetensors",
                                                      "optimizer.safetensors", "rng.safetensors", "state.json"]
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["model.safetensors"]["bytes"] == (path / "model.safetensors").stat().st_size


def test_keep_last_k(tmp_path):
    model, optimizer = trained(steps=1)
    for step in range(1, 6):
        save(tmp_path, step, model, optimizer, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-0000004", "step-0000005"]
    save(tmp_path, 6, model, optimizer, keep=None)
    assert len(list_checkpoints(tmp_path)) == 3  # None keeps them all


def test_saving_the_same_step_again_replaces_it_whole(tmp_path):
    model, optimizer = trained(steps=1)
    save(tmp_path, 3, model, optimizer, note="first")
    save(tmp_path, 3, model, optimizer, note="second")
    assert load_checkpoint(tmp_path / "step-0000003").state["note"] == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["step-0000003"]  # no .old- folder left


def test_a_save_killed_midway_leaves_the_previous_checkpoint_and_a_temp_folder_that_is_ignored(tmp_path,
                                                                                                monkeypatch):
    model, optimizer = trained(steps=1)
    save(tmp_path, 1, model, optimizer)
    monkeypatch.setattr(checkpoint_module.os, "replace", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):  # killed just before the rename that publishes step 2
        save(tmp_path, 2, model, optimizer)
    monkeypatch.undo()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    assert leftovers and leftovers[0].startswith(".tmp-step-0000002")
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-0000001"]
    assert latest_checkpoint(tmp_path).step == 1
    (tmp_path / ".old-step-0000009-1").mkdir()  # and the half of a replace
    remove_unfinished(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["step-0000001"]


def corrupt(path, how):
    """Damage one file of checkpoint ``path`` the way a crash or a bad disk would."""
    target = path / "model.safetensors"
    data = target.read_bytes()
    if how == "truncated":
        target.write_bytes(data[: len(data) // 2])
    elif how == "flipped":
        target.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    elif how == "missing":
        target.unlink()
    elif how == "manifest":
        (path / "manifest.json").write_text("{not json")


@pytest.mark.parametrize("how, says", [
    ("truncated", r"is truncated: model.safetensors has \d+ bytes, the manifest says \d+"),
    ("flipped", "is corrupt: model.safetensors does not match its sha256"),
    ("missing", "is incomplete: model.safetensors is missing"),
    ("manifest", "is corrupt: manifest.json is not JSON"),
])
def test_a_damaged_checkpoint_is_a_checkpoint_error_naming_the_file(tmp_path, how, says):
    model, optimizer = trained(steps=1)
    path = save(tmp_path, 1, model, optimizer)
    corrupt(path, how)
    with pytest.raises(CheckpointError, match=says) as err:
        load_checkpoint(path)
    assert "step-0000001" in str(err.value)
    # the only checkpoint: nothing to fall back to, and the error says what to do
    with pytest.raises(CheckpointError) as err:
        latest_checkpoint(tmp_path)
    message = str(err.value)
    assert "no checkpoint in" in message and ("model.safetensors" in message or "manifest.json" in message)
    assert "new --out" in message and "\n" not in message


def test_latest_checkpoint_falls_back_to_the_newest_complete_one_with_a_warning(tmp_path):
    model, optimizer = trained(steps=1)
    for step in (1, 2, 3):
        save(tmp_path, step, model, optimizer)
    corrupt(tmp_path / "step-0000003", "truncated")
    with pytest.warns(UserWarning, match=r"step-0000003 is truncated.*resuming from step-0000002"):
        assert latest_checkpoint(tmp_path).step == 2


def test_latest_checkpoint_of_an_empty_or_absent_folder_is_none_silently(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert latest_checkpoint(tmp_path / "nothing") is None
        assert latest_checkpoint(tmp_path) is None


def test_check_compatible_refuses_another_model_config(tmp_path):
    model, optimizer = trained(steps=1)
    ckpt = load_checkpoint(save(tmp_path, 1, model, optimizer))
    check_compatible(ckpt, model.config.to_dict(), FINGERPRINT)  # the same: passes
    other = GPT2Config.from_name("gpt2-tiny").to_dict() | {"n_layer": 3, "n_embd": 48}
    with pytest.raises(CheckpointError, match=r"is of another model \(n_embd: checkpoint 32 vs now 48, "
                                              r"n_layer: checkpoint 2 vs now 3\); resume with the same "
                                              r"--model, or train into a new --out"):
        check_compatible(ckpt, other, FINGERPRINT)


def test_check_compatible_refuses_another_tokenizer_even_when_the_vocabulary_size_differs_too(tmp_path):
    model, optimizer = trained(steps=1)
    ckpt = load_checkpoint(save(tmp_path, 1, model, optimizer))
    with pytest.raises(CheckpointError, match=r"was trained with another tokenizer \(fingerprint ababababab"
                                              r"ab vs now cdcdcdcdcdcd\); resume with the same --tokenizer"):
        check_compatible(ckpt, model.config.to_dict(), "cd" * 32)
    # Another tokenizer usually brings another vocabulary size: the tokenizer is named as the cause.
    bigger = model.config.to_dict() | {"vocab_size": 300}
    with pytest.raises(CheckpointError, match="another tokenizer"):
        check_compatible(ckpt, bigger, "cd" * 32)
