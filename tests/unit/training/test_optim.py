"""optim.py against torch: the written-out loss, AdamW step and schedule, and the two decay groups."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from minitransformer.models import GPT2, GPT2Config, Llama, LlamaConfig
from minitransformer.models.bert import BertConfig, BertForMaskedLM
from minitransformer.training.optim import adamw_update, configure_optimizer, cross_entropy, lr_at

# ---------------------------------------------------------------------------------- cross_entropy


@pytest.mark.parametrize("shape", [(7,), (2, 5)])
def test_cross_entropy_equals_torch_value_and_gradient_with_ignored_positions(shape):
    g = torch.Generator().manual_seed(0)
    V = 11
    logits = (torch.randn(*shape, V, generator=g) * 4).requires_grad_()  # large scores: the max shift matters
    targets = torch.randint(0, V, shape, generator=g)
    targets.view(-1)[::3] = -100  # every third position ignored
    ours = cross_entropy(logits, targets)
    (grad_ours,) = torch.autograd.grad(ours, logits)
    theirs = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=-100)
    (grad_theirs,) = torch.autograd.grad(theirs, logits)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    torch.testing.assert_close(grad_ours, grad_theirs, rtol=0, atol=1e-7)
    assert grad_ours.reshape(-1, V)[::3].abs().max() == 0  # ignored rows get no gradient


def test_cross_entropy_other_ignore_index_and_huge_logits_stay_finite():
    logits = torch.tensor([[1000.0, 0.0, -1000.0], [0.0, 1000.0, 0.0], [3.0, 2.0, 1.0]])
    targets = torch.tensor([0, 2, 7])
    ours = cross_entropy(logits, targets, ignore_index=7)
    theirs = F.cross_entropy(logits, targets, ignore_index=7)
    assert math.isfinite(ours.item())
    torch.testing.assert_close(ours, theirs)
    assert ours.item() == pytest.approx(500.0)  # (0 + 1000) / 2 kept rows


# ---------------------------------------------------------------------------------- adamw_update


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adamw_update_equals_torch_adamw_over_several_steps(weight_decay):
    g = torch.Generator().manual_seed(1)
    start = torch.randn(4, 3, generator=g)
    grads = [torch.randn(4, 3, generator=g) for _ in range(6)]
    kwargs = dict(lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=weight_decay)

    reference = torch.nn.Parameter(start.clone())
    optimizer = torch.optim.AdamW([reference], **kwargs)
    ours, m, v = start.clone(), torch.zeros_like(start), torch.zeros_like(start)
    for step, grad in enumerate(grads, start=1):
        reference.grad = grad.clone()
        optimizer.step()
        adamw_update(ours, grad, m, v, step, **kwargs)
        torch.testing.assert_close(ours, reference.detach(), rtol=0, atol=1e-7, msg=f"step {step}")
    torch.testing.assert_close(m, optimizer.state[reference]["exp_avg"], rtol=0, atol=1e-7)
    torch.testing.assert_close(v, optimizer.state[reference]["exp_avg_sq"], rtol=0, atol=1e-7)
    assert not torch.allclose(ours, start)  # it moved


def test_adamw_weight_decay_is_decoupled_from_the_gradient():
    """A zero gradient leaves only the decay: w <- w (1 - lr wd), whatever Adam's scaling."""
    w = torch.tensor([2.0, -4.0])
    adamw_update(w, torch.zeros(2), torch.zeros(2), torch.zeros(2), 1, lr=0.1, weight_decay=0.5)
    torch.testing.assert_close(w, torch.tensor([2.0, -4.0]) * 0.95)


# ---------------------------------------------------------------------------------- lr_at

SCHEDULE = dict(max_lr=1e-3, warmup_steps=10, max_steps=110, min_lr=1e-4)


@pytest.mark.parametrize("step, expected", [
    (0, 1e-3 * 1 / 11),          # warmup starts above 0: the first step already learns
    (5, 1e-3 * 6 / 11),
    (9, 1e-3 * 10 / 11),         # the last warmup step
    (10, 1e-3),                  # end of warmup: the peak
    (60, 1e-4 + 0.5 * 9e-4),     # halfway through the cosine: midway between max and min
    (110, 1e-4),                 # max_steps: the floor
    (111, 1e-4),
    (10_000, 1e-4),              # and beyond
])
def test_lr_at_warmup_then_cosine_to_min_lr(step, expected):
    assert lr_at(step, **SCHEDULE) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_lr_at_rises_through_warmup_then_falls_monotonically():
    lrs = [lr_at(s, **SCHEDULE) for s in range(120)]
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:11]))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    # the cosine at a quarter: min + (max - min) (1 + cos(pi / 4)) / 2
    assert lrs[35] == pytest.approx(1e-4 + 9e-4 * (1 + math.cos(math.pi / 4)) / 2)


def test_lr_at_without_warmup_starts_at_the_peak():
    assert lr_at(0, max_lr=1.0, warmup_steps=0, max_steps=4, min_lr=0.0) == 1.0
    assert lr_at(2, max_lr=1.0, warmup_steps=0, max_steps=4, min_lr=0.0) == pytest.approx(0.5)


# ---------------------------------------------------------------------------------- configure_optimizer


def tiny_bert() -> BertForMaskedLM:
    return BertForMaskedLM(BertConfig.from_name("bert-tiny"))


def group_names(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[set[str], set[str]]:
    """The (decayed, not decayed) parameter names, each parameter by its first name."""
    name_of = {id(p): n for n, p in model.named_parameters()}
    decay, no_decay = (optimizer.param_groups[i]["params"] for i in (0, 1))
    return {name_of[id(p)] for p in decay}, {name_of[id(p)] for p in no_decay}


@pytest.mark.parametrize("build", [
    lambda: GPT2(GPT2Config.from_name("gpt2-tiny")),
    lambda: Llama(LlamaConfig.from_name("llama-tiny")),
    tiny_bert,
], ids=["gpt2", "llama", "bert"])
def test_every_parameter_is_in_exactly_one_group_tied_ones_once(build):
    model = build()
    optimizer = configure_optimizer(model, lr=1e-3, weight_decay=0.1)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    assert len(params) == len({id(p) for p in params})  # nothing twice
    assert {id(p) for p in params} == {id(p) for p in model.parameters()}  # nothing missing
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.1, 0.0]
    decay, no_decay = group_names(model, optimizer)
    for name, p in model.named_parameters():
        if name in decay:
            assert p.dim() == 2, name  # only matrices are decayed


def test_gpt2_groups_matrices_decayed_norms_biases_embeddings_not():
    model = GPT2(GPT2Config.from_name("gpt2-tiny"))
    assert model.lm_head.weight is model.transformer.wte.weight  # tied
    decay, no_decay = group_names(model, configure_optimizer(model, lr=1e-3, weight_decay=0.1))
    assert {"transformer.wte.weight", "transformer.wpe.weight"} <= no_decay  # token and position tables
    assert "lm_head.weight" not in decay  # the tied head is the embedding: not decayed, not listed twice
    assert {"transformer.ln_f.weight", "transformer.ln_f.bias", "transformer.h.0.attn_norm.weight",
            "transformer.h.0.self_attn.q_proj.bias", "transformer.h.1.mlp.down_proj.bias"} <= no_decay
    assert decay == {f"transformer.h.{i}.{m}.weight" for i in range(2) for m in
                     ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                      "mlp.up_proj", "mlp.down_proj")}


def test_llama_untied_head_is_decayed_rmsnorm_and_embedding_are_not():
    model = Llama(LlamaConfig.from_name("llama-tiny"))
    decay, no_decay = group_names(model, configure_optimizer(model, lr=1e-3, weight_decay=0.1))
    assert "lm_head.weight" in decay  # an untied head is a Linear like any other
    assert no_decay == {"model.embed_tokens.weight", "model.norm.weight",
                        *(f"model.layers.{i}.{n}.weight" for i in range(2) for n in ("attn_norm", "mlp_norm"))}


def test_bert_embeddings_and_head_bias_are_not_decayed():
    model = tiny_bert()
    decay, no_decay = group_names(model, configure_optimizer(model, lr=1e-3, weight_decay=0.1))
    assert {"bert.embeddings.word_embeddings.weight", "bert.embeddings.position_embeddings.weight",
            "bert.embeddings.token_type_embeddings.weight", "bert.embeddings.norm.weight",
            "mlm_head.bias", "mlm_head.norm.weight"} <= no_decay
    assert "mlm_head.dense.weight" in decay


def test_frozen_parameters_are_left_out():
    model = GPT2(GPT2Config.from_name("gpt2-tiny"))
    model.transformer.wpe.weight.requires_grad_(False)
    _, no_decay = group_names(model, configure_optimizer(model, lr=1e-3, weight_decay=0.1))
    assert "transformer.wpe.weight" not in no_decay
