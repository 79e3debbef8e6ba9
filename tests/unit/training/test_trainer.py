"""trainer.py on tiny models: it learns, its options keep their promises, its files and its resume."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from minitransformer.models import GPT2, GPT2Config, Llama, LlamaConfig
from minitransformer.models.bert import BertConfig, BertForMaskedLM
from minitransformer.training import (
    MaskedTokenBlocks,
    TokenBlocks,
    Trainer,
    TrainingConfig,
    char_tokenizer,
    lr_at,
)
from minitransformer.training.corpus import builtin_corpus
from minitransformer.training.trainer import enable_activation_checkpointing, is_degenerate

NO_DROPOUT = dict(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)


def gpt2(seed: int = 0, **changes) -> GPT2:
    torch.manual_seed(seed)
    return GPT2(dataclasses.replace(GPT2Config.from_name("gpt2-tiny"), **changes))


def config(**changes) -> TrainingConfig:
    base = dict(max_steps=10, batch_size=4, block_size=16, lr=1e-2, warmup_steps=0, eval_every=10,
                eval_batches=2, device="cpu", progress=False, sample_every_eval=False)
    return TrainingConfig(**{**base, **changes})


class Repeated:
    """One batch of random ids, served for every index and both splits: something to memorise."""

    def __init__(self, rows: int = 4, T: int = 16):
        self.ids = torch.randint(0, 256, (rows, T), generator=torch.Generator().manual_seed(0))

    def get_batch(self, split, index, batch_size):
        return {"input_ids": self.ids, "labels": self.ids}


class Halves:
    """Batch ``i`` of 2B rows is micro-batches ``2i`` and ``2i + 1`` of B rows, one under the other.

    ``Trainer.step`` with ``grad_accum=2`` reads micro-batches ``2 step`` and ``2 step + 1``: so the two
    runs below see the same rows, once as one batch and once as two accumulated halves.
    """

    B = 2

    def half(self, index: int) -> torch.Tensor:
        return torch.randint(0, 256, (self.B, 16), generator=torch.Generator().manual_seed(index))

    def get_batch(self, split, index, batch_size):
        if batch_size == self.B:
            ids = self.half(index)
        else:
            assert batch_size == 2 * self.B
            ids = torch.cat([self.half(2 * index), self.half(2 * index + 1)])
        return {"input_ids": ids, "labels": ids}


@pytest.fixture(scope="module")
def corpus_tokens():
    text = builtin_corpus()[:30_000]
    tok = char_tokenizer(text)
    return tok, np.array(tok.encode(text), dtype=np.int64)


# ---------------------------------------------------------------------------------- learning


def test_tiny_gpt2_overfits_one_repeated_batch():
    result = Trainer(gpt2(), config(max_steps=60, eval_every=60), Repeated()).train()
    first = result.history[0]["train_loss"]
    assert first == pytest.approx(math.log(256), abs=0.1)  # starts at chance
    # measured: 0.083 after 60 steps (fp32, CPU); chance is 5.55
    assert result.best_val_loss < 0.25
    assert result.steps == 60 and result.train_loss == result.history[-1]["train_loss"]


def test_grad_accum_2_of_b_rows_is_one_step_of_2b_rows():
    one = gpt2(**NO_DROPOUT)  # no dropout: its masks would differ between one forward and two
    two = gpt2(**NO_DROPOUT)
    big = Trainer(one, config(max_steps=4, batch_size=4, lr=1e-3, warmup_steps=2), Halves()).train()
    acc = Trainer(two, config(max_steps=4, batch_size=2, grad_accum=2, lr=1e-3, warmup_steps=2), Halves()).train()
    for (name, a), b in zip(one.named_parameters(), two.parameters()):
        assert (a - b).abs().max().item() < 1e-6, name  # measured: 7e-7 after 5 steps
    for r, s in zip(big.history, acc.history):
        assert r["train_loss"] == pytest.approx(s["train_loss"], abs=1e-5)
    # and the rows really are different from B rows without accumulation
    alone = gpt2(**NO_DROPOUT)
    Trainer(alone, config(max_steps=4, batch_size=2, lr=1e-3, warmup_steps=2), Halves()).train()
    assert (alone.transformer.wte.weight - one.transformer.wte.weight).abs().max() > 1e-4


def test_bf16_on_cpu_runs_and_stays_close_to_fp32():
    fp32 = Trainer(gpt2(), config(max_steps=30, eval_every=30), Repeated()).train()
    bf16 = Trainer(gpt2(), config(max_steps=30, eval_every=30, precision="bf16"), Repeated()).train()
    diffs = [abs(a["train_loss"] - b["train_loss"]) for a, b in zip(fp32.history, bf16.history)]
    assert max(diffs) < 0.03  # measured: at most 0.0027 (1.1%) over 60 steps
    assert max(diffs) > 0  # autocast really ran in bf16: the numbers are not fp32's
    assert bf16.best_val_loss == pytest.approx(fp32.best_val_loss, rel=0.05)


def test_activation_checkpointing_recomputes_and_gives_the_same_gradients():
    plain, checkpointed = gpt2(), gpt2()  # dropout on: the recomputation must replay its masks
    enable_activation_checkpointing(checkpointed)
    calls = []
    checkpointed.transformer.h[0].mlp.register_forward_hook(lambda *a: calls.append(1))
    ids = torch.randint(0, 256, (3, 16), generator=torch.Generator().manual_seed(1))
    for model in (plain, checkpointed):
        model.train()
        torch.manual_seed(7)
        model(ids, labels=ids).loss.backward()
    assert len(calls) == 2  # the block ran again in the backward: it was checkpointed
    for (name, a), b in zip(plain.named_parameters(), checkpointed.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=0, atol=1e-6, msg=name)


def test_activation_checkpointing_through_the_trainer_gives_the_same_run():
    a = Trainer(gpt2(), config(max_steps=4, eval_every=2), Repeated()).train()
    b = Trainer(gpt2(), config(max_steps=4, eval_every=2, activation_checkpointing=True), Repeated()).train()
    for r, s in zip(a.history, b.history):
        assert r["train_loss"] == pytest.approx(s["train_loss"], abs=1e-6)


def test_activation_checkpointing_on_a_model_without_layers_is_a_clear_error():
    with pytest.raises(ValueError, match="activation checkpointing needs the decoder blocks in model.layers"):
        enable_activation_checkpointing(torch.nn.Linear(2, 2))


# ---------------------------------------------------------------------------------- early stopping, samples


def test_early_stopping_stops_after_patience_evaluations_without_improvement(tmp_path):
    # lr 1e-30 moves no weight (each update is below float32's resolution): the val loss never improves.
    cfg = config(max_steps=20, eval_every=1, lr=1e-30, patience=2)
    result = Trainer(gpt2(**NO_DROPOUT), cfg, Repeated(), out_dir=tmp_path).train()
    assert result.stopped_early and result.steps == 3  # best at eval 1, then 2 without improvement
    vals = [r["val_loss"] for r in result.history]
    assert vals[0] == vals[1] == vals[2]
    saved = json.loads((tmp_path / "checkpoints" / "step-0000003" / "state.json").read_text())
    assert saved["stopped_early"] is True and saved["bad_evals"] == 2
    assert not Trainer(gpt2(), config(max_steps=5, eval_every=1, lr=1e-30), Repeated()).train().stopped_early


@pytest.mark.parametrize("ids, degenerate", [
    ([1, 1, 2, 3], True),        # one token is half
    ([7, 7, 7, 7, 7, 7], True),
    ([1, 2, 1, 3, 4], False),    # 2 of 5
    ([1, 2, 3, 4], False),
    ([5, 5, 5], False),          # too short to say
    ([], False),
])
def test_is_degenerate(ids, degenerate):
    assert is_degenerate(ids) is degenerate


# ---------------------------------------------------------------------------------- files


def test_metrics_jsonl_loss_png_and_samples_are_written(tmp_path, corpus_tokens):
    tok, tokens = corpus_tokens
    cfg = config(max_steps=6, eval_every=3, lr=3e-3, warmup_steps=2, sample_every_eval=True, sample_tokens=8)
    model = gpt2(vocab_size=len(tok))
    result = Trainer(model, cfg, TokenBlocks(tokens, 16), tokenizer=tok, out_dir=tmp_path).train()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    for r in rows:
        assert {"step", "train_loss", "val_loss", "lr", "tokens_per_s"} <= set(r)
        assert r["lr"] == pytest.approx(lr_at(r["step"] - 1, max_lr=3e-3, warmup_steps=2, max_steps=6,
                                              min_lr=3e-4))
        assert r["tokens_per_s"] > 0 and math.isfinite(r["train_loss"])
        assert (r["val_loss"] is not None) == (r["step"] % 3 == 0)
    assert rows[2]["val_perplexity"] == pytest.approx(math.exp(rows[2]["val_loss"]))
    assert result.best_val_loss == min(rows[2]["val_loss"], rows[5]["val_loss"])

    import matplotlib.image

    png = tmp_path / "loss.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert matplotlib.image.imread(png).shape[:2] == (400, 600)
    samples = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert [s["step"] for s in samples] == [3, 6]
    prompt = TokenBlocks(tokens, 16).get_batch("val", 0, 1)["input_ids"][0, :1].tolist()
    for s in samples:
        assert len(s["ids"]) == 8 and s["degenerate"] == is_degenerate(s["ids"])
        assert s["text"] == tok.decode(prompt + s["ids"])  # after the first validation token
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (tmp_path / name).is_file(), name
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-0000003", "step-0000006"]


class StopAt:
    """``data`` until train batch ``index``, then a crash (as a kill would stop the run)."""

    def __init__(self, data, index):
        self.data, self.index = data, index

    def get_batch(self, split, index, batch_size):
        if split == "train" and index == self.index:
            raise KeyboardInterrupt
        return self.data.get_batch(split, index, batch_size)


def test_resume_gives_the_uninterrupted_run_exactly(tmp_path, corpus_tokens):
    tok, tokens = corpus_tokens
    data = TokenBlocks(tokens, 16, seed=1)
    cfg = config(max_steps=6, eval_every=3, lr=3e-3, warmup_steps=2)  # dropout on: the RNG state matters too
    clean_model = gpt2(vocab_size=len(tok))
    clean = Trainer(clean_model, cfg, data, tokenizer=tok, out_dir=tmp_path / "clean").train()

    out = tmp_path / "stopped"
    with pytest.raises(KeyboardInterrupt):  # stops in step 4, after the checkpoint of step 3
        Trainer(gpt2(vocab_size=len(tok)), cfg, StopAt(data, 4), tokenizer=tok, out_dir=out).train()
    with pytest.raises(ValueError, match="already holds a training run"):
        Trainer(gpt2(vocab_size=len(tok)), cfg, data, tokenizer=tok, out_dir=out).train()
    resumed_model = gpt2(seed=99, vocab_size=len(tok))  # other initial weights: the checkpoint replaces them
    resumed = Trainer(resumed_model, cfg, data, tokenizer=tok, out_dir=out).train(resume=True)

    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in clean.history]
    assert [r["val_loss"] for r in resumed.history] == [r["val_loss"] for r in clean.history]
    assert resumed.steps == 6 and resumed.best_val_loss == clean.best_val_loss
    for (name, a), b in zip(clean_model.named_parameters(), resumed_model.parameters()):
        assert torch.equal(a, b), name
    logged = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert logged == [1, 2, 3, 4, 5, 6]  # step 4's row was never logged twice


def test_fp16_on_cpu_is_refused_naming_bf16():
    with pytest.raises(ValueError, match="fp16 needs a GPU.*--precision bf16"):
        Trainer(gpt2(), config(precision="fp16"), Repeated())


@pytest.mark.parametrize("field, value", [("max_steps", 0), ("grad_accum", 0), ("precision", "fp8"),
                                          ("lr", 0.0), ("patience", 0), ("device", "tpu")])
def test_a_bad_training_config_is_refused_by_name(field, value):
    with pytest.raises(ValueError, match=field if field != "lr" else "lr must be positive"):
        config(**{field: value})


# ---------------------------------------------------------------------------------- other families


def test_llama_tiny_trains_through_the_trainer(corpus_tokens):
    tok, tokens = corpus_tokens
    torch.manual_seed(0)
    model = Llama(dataclasses.replace(LlamaConfig.from_name("llama-tiny"), vocab_size=len(tok)))
    result = Trainer(model, config(max_steps=30, eval_every=10, lr=3e-3), TokenBlocks(tokens, 16)).train()
    vals = [r["val_loss"] for r in result.history if r["val_loss"] is not None]
    assert len(vals) == 3 and vals[-1] < vals[0] - 0.2  # measured: 3.95 -> 3.50


def test_bert_masked_lm_trains_through_the_trainer(corpus_tokens):
    tok, tokens = corpus_tokens
    V = len(tok) + 1  # [MASK] after the characters
    data = MaskedTokenBlocks(tokens, 32, mask_token_id=V - 1, vocab_size=V)
    torch.manual_seed(0)
    model = BertForMaskedLM(dataclasses.replace(BertConfig.from_name("bert-tiny"), vocab_size=V,
                                                pad_token_id=None))
    result = Trainer(model, config(max_steps=30, eval_every=10, batch_size=8, lr=3e-3), data).train()
    vals = [r["val_loss"] for r in result.history if r["val_loss"] is not None]
    assert vals[0] > 3.5 and vals[-1] < vals[0] - 0.15  # measured: 3.83 -> 3.51 (chance: ln 92 = 4.5)
    assert result.samples == []  # an encoder is not sampled from
