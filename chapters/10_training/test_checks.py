"""Checks for chapter 10. The references are independent of your code: ``F.cross_entropy`` (value and
gradient), ``torch.optim.AdamW`` (the parameter and its state after several steps), torch's
``LinearLR`` and ``CosineAnnealingLR`` schedulers and values computed by hand, the loss the library's
GPT-2 reaches, and the gradient of the whole batch computed by autograd. Nothing is downloaded."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from minitransformer.exercises import expect_close, expect_equal
from minitransformer.models import GPT2, GPT2Config

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see the fixture


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# 10.1 -----------------------------------------------------------------------------------------


def _expect_like_torch(ex, logits: torch.Tensor, targets: torch.Tensor, case: str, **kwargs) -> None:
    """Your loss and its gradient against F.cross_entropy's, on the same logits."""
    mine = logits.clone().requires_grad_()
    theirs = logits.clone().requires_grad_()
    got = ex.cross_entropy(mine, targets, **kwargs)
    expected = F.cross_entropy(theirs, targets, **kwargs)
    if not isinstance(got, torch.Tensor) or got.dim() != 0:
        raise AssertionError(f"Exercise 10.1, case '{case}': expected a scalar tensor (the mean), got "
                             f"{got.shape if isinstance(got, torch.Tensor) else type(got).__name__}")
    expect_close(got, expected, exercise="10.1", case=f"{case}: the loss vs F.cross_entropy",
                 atol=1e-5 * max(1.0, expected.abs().item()))
    if not got.requires_grad:
        raise AssertionError(f"Exercise 10.1, case '{case}': your loss has no gradient. Build it from the logits "
                             "with torch operations only (no .item(), no .detach() of the result)")
    got.backward()
    expected.backward()
    expect_close(mine.grad, theirs.grad, exercise="10.1",
                 case=f"{case}: the gradient d loss / d logits (softmax - one_hot, over the kept rows) vs torch's")


@pytest.mark.parametrize("N, V", [(8, 11), (64, 256)])
def test_10_1_matches_torch_on_random_logits(ex, N, V):
    g = _gen(N + V)
    logits = 3.0 * torch.randn(N, V, generator=g)
    targets = torch.randint(0, V, (N,), generator=g)
    _expect_like_torch(ex, logits, targets, f"N={N} V={V}, random logits")


def test_10_1_uniform_logits_give_ln_V(ex):
    V = 50
    got = ex.cross_entropy(torch.zeros(6, V), torch.arange(6))
    expect_close(got, torch.tensor(math.log(V)), exercise="10.1",
                 case="all logits 0: every token has probability 1/V, so the loss is ln V = 3.912")


def test_10_1_extreme_logits_stay_finite(ex):
    g = _gen(3)
    logits = 1e4 * torch.randn(5, 20, generator=g)  # exp(1e4) is inf in float32: a naive softmax gives NaN
    logits[0] = torch.tensor([5e4] + [-5e4] * 19)  # one certain, correct prediction: loss 0
    logits[1] = torch.tensor([-5e4] + [5e4] * 19)  # confidently wrong: loss 1e5 - ln(1/19)
    targets = torch.tensor([0, 0, 3, 7, 19])
    _expect_like_torch(ex, logits, targets, "logits of size 1e4 and 5e4 (exp overflows unless you subtract the max)")


@pytest.mark.parametrize("ignore_index", [-100, 3])
def test_10_1_ignored_positions_do_not_count(ex, ignore_index):
    g = _gen(4)
    logits = 2.0 * torch.randn(12, 9, generator=g)
    targets = torch.randint(0, 9, (12,), generator=g)
    targets[[1, 4, 5, 11]] = ignore_index
    if ignore_index != -100:
        targets[targets == 3] = ignore_index  # every 3 is ignored
    _expect_like_torch(ex, logits, targets, f"N=12 V=9, rows with target {ignore_index} ignored (the mean is "
                       "over the other rows only)", ignore_index=ignore_index)


def test_10_1_equals_gpt2s_own_loss(ex):
    torch.manual_seed(5)
    model = GPT2(GPT2Config.from_name("gpt2-tiny")).eval()
    ids = torch.randint(0, 256, (2, 16), generator=_gen(6))
    labels = ids.clone()
    labels[0, 10:] = -100  # padding at the end of row 0
    with torch.no_grad():
        out = model(ids, labels=labels)
    V = out.logits.shape[-1]
    got = ex.cross_entropy(out.logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1))  # t predicts t + 1
    expect_close(got, out.loss, exercise="10.1",
                 case="gpt2-tiny's logits, shifted by one (position t predicts token t + 1) vs model(ids, labels).loss")


# 10.2 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("hyper", [
    dict(lr=1e-2),  # torch's defaults: betas (0.9, 0.999), eps 1e-8, weight decay 0.01
    dict(lr=3e-3, betas=(0.9, 0.95), eps=1e-6, weight_decay=0.1),  # GPT-2-style training
    dict(lr=1e-1, betas=(0.8, 0.99), eps=1e-8, weight_decay=0.0),
], ids=["torch defaults", "gpt2 style", "no decay"])
def test_10_2_matches_torch_adamw_over_several_steps(ex, hyper):
    g = _gen(7)
    start = torch.randn(5, 7, generator=g)
    grads = [torch.randn(5, 7, generator=g) * s for s in (1.0, 0.1, 3.0, 1.0, 0.01, 1.0)]

    reference = torch.nn.Parameter(start.clone())
    optimizer = torch.optim.AdamW([reference], **hyper)
    param, exp_avg, exp_avg_sq = start.clone(), torch.zeros_like(start), torch.zeros_like(start)
    for step, grad in enumerate(grads, start=1):
        reference.grad = grad.clone()
        optimizer.step()
        ex.adamw_step(param, grad.clone(), exp_avg, exp_avg_sq, step, **hyper)
        state = optimizer.state[reference]
        case = f"{hyper}, after step {step}"
        expect_close(exp_avg, state["exp_avg"], exercise="10.2",
                     case=f"{case}: exp_avg (m, the running mean of the gradient, updated in place)")
        expect_close(exp_avg_sq, state["exp_avg_sq"], exercise="10.2",
                     case=f"{case}: exp_avg_sq (v, the running mean of grad**2, updated in place)")
        expect_close(param, reference.detach(), exercise="10.2",
                     case=f"{case}: the parameter (updated in place) vs torch.optim.AdamW")


def test_10_2_weight_decay_is_decoupled(ex):
    param = torch.full((3,), 2.0)
    exp_avg, exp_avg_sq = torch.zeros(3), torch.zeros(3)
    ex.adamw_step(param, torch.zeros(3), exp_avg, exp_avg_sq, 1, lr=0.5, weight_decay=0.1)
    expect_close(param, torch.full((3,), 2.0 * (1 - 0.5 * 0.1)), exercise="10.2",
                 case="zero gradient, lr 0.5, weight decay 0.1: AdamW shrinks the weight by 1 - lr x wd (2 -> 1.9). "
                      "Adding wd x param to the gradient instead (L2, Adam's way) would move it by about lr, to 1.5")


# 10.3 -----------------------------------------------------------------------------------------


def _expect_lr(got, expected: float, case: str) -> None:
    if not isinstance(got, float):
        raise AssertionError(f"Exercise 10.3, case '{case}': expected a Python float, got {type(got).__name__}")
    if not math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-15):
        raise AssertionError(f"Exercise 10.3, case '{case}': expected {expected:.6g}, got {got:.6g}")


def test_10_3_by_hand(ex):
    hp = dict(max_lr=6e-4, warmup_steps=10, max_steps=110, min_lr=6e-5)
    points = [
        (0, 6e-4 * 1 / 11, "step 0: the first warmup step, max_lr x 1 / (warmup + 1), not 0"),
        (4, 6e-4 * 5 / 11, "step 4: max_lr x 5 / 11"),
        (9, 6e-4 * 10 / 11, "step 9: the last warmup step, max_lr x 10 / 11"),
        (10, 6e-4, "step 10 = warmup_steps: the peak, max_lr"),
        (60, (6e-4 + 6e-5) / 2, "step 60, halfway through the decay: cos(pi / 2) = 0, the mean of max and min"),
        (110, 6e-5, "step 110 = max_steps: min_lr"),
        (500, 6e-5, "step 500 > max_steps: min_lr"),
    ]
    for step, expected, case in points:
        _expect_lr(ex.lr_at(step, **hp), expected, f"{hp}, {case}")


def test_10_3_no_warmup_starts_at_the_peak(ex):
    _expect_lr(ex.lr_at(0, max_lr=1.0, warmup_steps=0, max_steps=100, min_lr=0.0), 1.0,
               "warmup_steps=0: step 0 is already the top of the cosine")
    _expect_lr(ex.lr_at(25, max_lr=1.0, warmup_steps=0, max_steps=100, min_lr=0.0),
               0.5 * (1 + math.cos(math.pi / 4)), "warmup_steps=0, step 25: a quarter of the way down")


@pytest.mark.parametrize("max_lr, warmup, max_steps, min_lr", [(1e-3, 20, 200, 1e-4), (6e-4, 5, 40, 0.0)])
def test_10_3_matches_torch_schedulers(ex, max_lr, warmup, max_steps, min_lr):
    """The curve of torch's LinearLR (the warmup) and CosineAnnealingLR (the decay), step by step."""
    def curve(scheduler_of, steps: int) -> list[float]:
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=max_lr)
        scheduler, lrs = scheduler_of(optimizer), []
        for _ in range(steps):
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        return lrs

    warm = curve(lambda o: torch.optim.lr_scheduler.LinearLR(
        o, start_factor=1 / (warmup + 1), end_factor=warmup / (warmup + 1), total_iters=warmup - 1), warmup)
    decay = curve(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(
        o, T_max=max_steps - warmup, eta_min=min_lr), max_steps - warmup + 1)
    reference = warm + decay + [min_lr] * 10  # steps 0 .. max_steps + 10
    hp = dict(max_lr=max_lr, warmup_steps=warmup, max_steps=max_steps, min_lr=min_lr)
    for step, expected in enumerate(reference):
        got = ex.lr_at(step, **hp)
        if not isinstance(got, float) or not math.isclose(got, expected, rel_tol=1e-6, abs_tol=1e-12):
            part = "warmup (LinearLR)" if step < warmup else "decay (CosineAnnealingLR)" if step <= max_steps else \
                "after max_steps (min_lr)"
            raise AssertionError(f"Exercise 10.3, case '{hp}, step {step}, {part}': torch's scheduler gives "
                                 f"{expected:.6g}, you gave {got!r}")


# 10.4 -----------------------------------------------------------------------------------------


def test_10_4_overfits_one_batch_of_gpt2_tiny(ex):
    torch.manual_seed(8)
    model = GPT2(GPT2Config.from_name("gpt2-tiny"))  # V = 256, 2 layers, C = 32
    ids = torch.randint(0, 256, (4, 32), generator=_gen(9))  # random tokens: nothing to learn but the batch
    batch = {"input_ids": ids, "labels": ids}
    steps = 100
    losses = ex.overfit_one_batch(model, batch, steps, lr=1e-2)
    if not isinstance(losses, list) or len(losses) != steps or not all(isinstance(x, float) for x in losses):
        raise AssertionError(f"Exercise 10.4, case 'the return value': expected a list of {steps} Python floats "
                             f"(loss.item() of every step), got {type(losses).__name__} of "
                             f"{len(losses) if hasattr(losses, '__len__') else '?'} items")
    if abs(losses[0] - math.log(256)) > 0.3:
        raise AssertionError(f"Exercise 10.4, case 'the first loss': at initialisation the model should be about "
                             f"uniform over V=256 tokens, a loss near ln 256 = 5.55; your first loss is "
                             f"{losses[0]:.3f}. Record the loss of each step before the optimiser updates")
    if losses[-1] > 0.1:
        raise AssertionError(f"Exercise 10.4, case 'the last loss': after {steps} steps at lr 1e-2 the loss on the "
                             f"batch should be below 0.1; yours went {losses[0]:.2f} -> {losses[steps // 2]:.2f} -> "
                             f"{losses[-1]:.3f}. Do you call optimizer.step() and zero the gradients every step?")
    model.eval()
    with torch.no_grad():
        final = model(**batch).loss.item()
    if final > 0.1:
        raise AssertionError(f"Exercise 10.4, case 'the trained model': model(**batch).loss, re-evaluated in eval "
                             f"mode, is {final:.3f}, above 0.1: train the model that was passed in")


# 10.5 -----------------------------------------------------------------------------------------


def _no_dropout_gpt2(seed: int) -> GPT2:
    torch.manual_seed(seed)
    return GPT2(GPT2Config.from_name("gpt2-tiny", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0))


@pytest.mark.parametrize("micro_batches", [2, 4])
def test_10_5_accumulated_gradient_equals_the_big_batch(ex, micro_batches):
    model = _no_dropout_gpt2(10)
    reference = copy.deepcopy(model)
    ids = torch.randint(0, 256, (8, 16), generator=_gen(11))
    batch = {"input_ids": ids, "labels": ids}
    reference(**batch).loss.backward()  # the whole batch at once
    ex.accumulate_gradients(model, batch, micro_batches)
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        if p.grad is None:
            raise AssertionError(f"Exercise 10.5, case '{micro_batches} micro-batches': {name} has no gradient; "
                                 "call loss.backward() on every micro-batch")
        expect_close(p.grad, q.grad, exercise="10.5",
                     case=f"B=8 in {micro_batches} micro-batches: {name}.grad vs the gradient of the whole batch "
                          f"(if yours is {micro_batches}x too big, divide each micro-batch's loss by {micro_batches})")


def test_10_5_uneven_split_raises(ex):
    model = _no_dropout_gpt2(12)
    ids = torch.randint(0, 256, (6, 8), generator=_gen(13))
    with pytest.raises(ValueError):
        ex.accumulate_gradients(model, {"input_ids": ids, "labels": ids}, 4)
    expect_equal(all(p.grad is None for p in model.parameters()), True, exercise="10.5",
                 case="6 rows in 4 micro-batches: raise ValueError before any backward")
