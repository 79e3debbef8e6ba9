"""Checks for chapter 12. The references are independent of your code: the library's LoRA layer and
``apply_lora`` on a GPT-2, its int8 and int4 quantization functions, torch's fused attention and the
library's tiled ``flash_attention``, torch's AdamW state and the library's ``training_memory``, and
values worked out by hand. Nothing is downloaded."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from minitransformer.exercises import expect_close, expect_equal
from minitransformer.layers.flash_attention import flash_attention
from minitransformer.lora import LoRALinear as LibraryLoRALinear
from minitransformer.lora import apply_lora, lora_layers
from minitransformer.models import GPT2, GPT2Config
from minitransformer.quantization import dequantize_absmax_int8, pack_int4, quantize_absmax_int8, unpack_int4
from minitransformer.training.memory import count_parameters, training_memory

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see the fixture


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# 12.1 -----------------------------------------------------------------------------------------

NO_SCALING = "your output equals x W^T + b + (x A^T) B^T without the factor scaling = alpha / r: multiply the update by self.scaling"
INVERTED_SCALING = "your update is scaled by r / alpha: self.scaling already is alpha / r, multiply by it"


def _lora(ex, in_features=12, out_features=10, r=4, alpha=8.0, bias=True, seed=0):
    """Your LoRALinear around a seeded linear, with A and B set to seeded random values (B is zero at
    the start, which would hide every mistake in the update)."""
    torch.manual_seed(seed)
    base = nn.Linear(in_features, out_features, bias=bias)
    layer = ex.LoRALinear(base, r, alpha)
    g = _gen(seed + 1)
    with torch.no_grad():
        layer.lora_A.copy_(torch.randn(r, in_features, generator=g) * 0.3)
        layer.lora_B.copy_(torch.randn(out_features, r, generator=g) * 0.3)
    return layer


def _by_hand(layer, x, scaling):
    W, b = layer.base.weight.detach(), layer.base.bias
    out = x @ W.T + (0 if b is None else b.detach())
    return out + scaling * (x @ layer.lora_A.detach().T) @ layer.lora_B.detach().T


def test_12_1_starts_as_the_base_layer(ex):
    torch.manual_seed(1)
    base = nn.Linear(16, 8)
    layer = ex.LoRALinear(base, 4, 8.0)  # B = 0 as __init__ leaves it
    x = torch.randn(3, 5, 16, generator=_gen(2))
    got = layer(x)
    expect_close(got, base(x), exercise="12.1",
                 case="B = 0 (as __init__ sets it): the update B A x is 0, so the output must be the base layer's")


@pytest.mark.parametrize("shape, bias", [((4, 12), True), ((2, 5, 12), True), ((2, 5, 12), False)],
                         ids=["x (4, in)", "x (B, T, in)", "no bias"])
def test_12_1_forward_is_the_lora_formula(ex, shape, bias):
    layer = _lora(ex, bias=bias)
    x = torch.randn(*shape, generator=_gen(3))
    got = layer(x)
    case = f"in=12 out=10 r=4 alpha=8 (scaling 2), x {tuple(shape)}, bias={bias}"
    expect_close(got, _by_hand(layer, x, 2.0), exercise="12.1", case=f"{case}: x W^T + b + scaling (x A^T) B^T",
                 mistakes={NO_SCALING: _by_hand(layer, x, 1.0), INVERTED_SCALING: _by_hand(layer, x, 0.5)})
    # the library's LoRA layer, holding the very same W, b, A and B
    A, B = nn.Linear(12, 4, bias=False), nn.Linear(4, 10, bias=False)
    with torch.no_grad():
        A.weight.copy_(layer.lora_A)
        B.weight.copy_(layer.lora_B)
    reference = LibraryLoRALinear(copy.deepcopy(layer.base), A, B, nn.Identity(), scaling=2.0, rows=slice(None))
    expect_close(got, reference(x), exercise="12.1", case=f"{case}: vs minitransformer.lora.LoRALinear")


def test_12_1_only_A_and_B_learn(ex):
    layer = _lora(ex, seed=4)
    x = torch.randn(6, 12, generator=_gen(5))
    target = torch.randn(6, 10, generator=_gen(6))
    ((layer(x) - target) ** 2).mean().backward()
    for name in ("weight", "bias"):
        expect_equal(getattr(layer.base, name).grad is None, True, exercise="12.1",
                     case=f"after backward, base.{name}.grad must be None: the base is frozen (use it as it is, "
                          "do not copy it into a new tensor that requires grad)")
    A = layer.lora_A.detach().clone().requires_grad_()
    B = layer.lora_B.detach().clone().requires_grad_()
    out = layer.base(x) + 2.0 * (x @ A.T) @ B.T
    ((out - target) ** 2).mean().backward()
    for name, mine, theirs in (("lora_A", layer.lora_A, A), ("lora_B", layer.lora_B, B)):
        if mine.grad is None:
            raise AssertionError(f"Exercise 12.1, case 'gradients': {name}.grad is None after backward; the "
                                 f"forward must use self.{name} (not a copy, not under torch.no_grad)")
        expect_close(mine.grad, theirs.grad, exercise="12.1",
                     case=f"d loss / d {name} vs autograd through the formula")


def test_12_1_merge_gives_one_plain_linear(ex):
    layer = _lora(ex, seed=7)
    W_before = layer.base.weight.detach().clone()
    merged = layer.merge()
    if type(merged) is not nn.Linear:
        raise AssertionError(f"Exercise 12.1, case 'merge': expected a plain nn.Linear, got {type(merged).__name__}")
    expected_W = W_before + 2.0 * layer.lora_B.detach() @ layer.lora_A.detach()  # (out, r) @ (r, in)
    expect_close(merged.weight, expected_W, exercise="12.1", case="merge: the weight is W + scaling * B A",
                 mistakes={"your merged weight is W + B A: multiply B A by self.scaling":
                           W_before + layer.lora_B.detach() @ layer.lora_A.detach()})
    expect_close(merged.bias, layer.base.bias, exercise="12.1", case="merge: the bias is the base layer's")
    expect_close(layer.base.weight, W_before, exercise="12.1",
                 case="merge: self.base.weight must be left unchanged (build the new weight in a new tensor)")
    x = torch.randn(2, 5, 12, generator=_gen(8))
    with torch.no_grad():
        expect_close(merged(x), layer(x), exercise="12.1", case="merge: the merged layer's outputs equal the LoRA layer's")


def test_12_1_in_a_gpt2_equals_apply_lora(ex):
    """Your layer on every MLP up-projection of gpt2-tiny against the library's apply_lora on the same model."""
    torch.manual_seed(9)
    model = GPT2(GPT2Config.from_name("gpt2-tiny", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)).eval()
    reference = apply_lora(copy.deepcopy(model), r=2, alpha=6, target_modules=["c_fc"])  # c_fc: HF's up_proj
    g = _gen(10)
    for name, lib in lora_layers(reference).items():
        with torch.no_grad():
            lib.lora_A.weight.copy_(torch.randn(lib.lora_A.weight.shape, generator=g) * 0.3)
            lib.lora_B.weight.copy_(torch.randn(lib.lora_B.weight.shape, generator=g) * 0.3)
        mlp = model.get_submodule(name.rpartition(".")[0])
        mine = ex.LoRALinear(mlp.up_proj, 2, 6)
        with torch.no_grad():
            mine.lora_A.copy_(lib.lora_A.weight)
            mine.lora_B.copy_(lib.lora_B.weight)
        mlp.up_proj = mine
    ids = torch.randint(0, 256, (2, 12), generator=_gen(11))
    with torch.no_grad():
        got, expected = model(ids).logits, reference(ids).logits
    expect_close(got, expected, exercise="12.1",
                 case="gpt2-tiny with your LoRALinear on both layers' mlp.up_proj (r=2, alpha=6) vs "
                      "apply_lora(model, r=2, alpha=6, target_modules=['c_fc']), the same A and B: the logits")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    # the embeddings and the other layers are still trainable here: count the adapters alone
    adapters = sum(p.numel() for name, p in model.named_parameters() if "lora_" in name)
    expect_equal(adapters, 2 * 2 * (32 + 128), exercise="12.1",
                 case="the adapters' numbers: 2 layers x r (in + out) = 2 x 2 x (32 + 128)")
    expect_equal(trainable < sum(p.numel() for p in model.parameters()), True, exercise="12.1",
                 case="the wrapped up_proj weights must be frozen")


# 12.2 -----------------------------------------------------------------------------------------


def _weight(seed: int, O: int = 48, I: int = 64) -> torch.Tensor:
    w = torch.randn(O, I, generator=_gen(seed)) * 0.05  # about a trained layer's scale
    w[3, 5] = 1.5  # one outlier: row 3 gets a coarse scale, the other rows must not
    return w


def _expect_q(got, expected, case: str, mistakes: dict[str, torch.Tensor]) -> None:
    if isinstance(got, torch.Tensor) and got.shape == expected.shape and not torch.equal(got.long(), expected.long()):
        for explanation, wrong in mistakes.items():
            if torch.equal(got.long(), wrong.long()):
                raise AssertionError(f"Exercise 12.2, case '{case}': {explanation}")
    expect_equal(got, expected, exercise="12.2", case=case)


def test_12_2_by_hand(ex):
    w = torch.tensor([[0.5, -1.0, 0.25], [2.0, 0.0, -2.0]])
    q, scale = ex.quantize_int8(w)
    expect_close(scale, torch.tensor([1.0, 2.0]) / 127, exercise="12.2",
                 case="w [[0.5, -1, 0.25], [2, 0, -2]]: scale = max|row| / 127 per row", atol=1e-9)
    _expect_q(q, torch.tensor([[64, -127, 32], [127, 0, -127]], dtype=torch.int8),
              "w [[0.5, -1, 0.25], [2, 0, -2]]: q = round(w / scale), as torch.int8 (0.5 x 127 = 63.5 -> 64)",
              {"you truncated instead of rounding (.to(torch.int8) drops the fraction): torch.round first":
               torch.tensor([[63, -127, 31], [127, 0, -127]])})


def test_12_2_matches_the_library(ex):
    w = _weight(0)
    q, scale = ex.quantize_int8(w)
    q_ref, scale_ref = quantize_absmax_int8(w)
    case = "w (48, 64) with one outlier in row 3"
    expect_close(scale, scale_ref, exercise="12.2", case=f"{case}: the scale per row (O,)", atol=1e-9,
                 mistakes={"your scale is one number for the whole matrix: take max|w| per row (dim=1)":
                           torch.full_like(scale_ref, w.abs().max().item() / 127),
                           "your scale is max|w_row| / 128: divide by 127, so that +-127 is the largest q":
                           scale_ref * 127 / 128})
    ratio = w / torch.where(scale_ref == 0, 1.0, scale_ref)[:, None]
    _expect_q(q, q_ref, f"{case}: q vs quantize_absmax_int8",
              {"you truncated instead of rounding (.to(torch.int8) drops the fraction): torch.round first":
               ratio.trunc()})
    expect_close(ex.dequantize_int8(q_ref, scale_ref), dequantize_absmax_int8(q_ref, scale_ref), exercise="12.2",
                 case=f"{case}: dequantize_int8 vs the library's dequantize_absmax_int8")


def test_12_2_error_is_at_most_half_a_step(ex):
    w = _weight(1, 32, 128)
    q, scale = ex.quantize_int8(w)
    if q.dtype != torch.int8 or int(q.min()) < -127 or int(q.max()) > 127:
        raise AssertionError(f"Exercise 12.2, case 'range': q must be torch.int8 in [-127, 127], got {q.dtype} in "
                             f"[{int(q.min())}, {int(q.max())}]")
    back = ex.dequantize_int8(q, scale)
    worst = ((back - w).abs() / scale[:, None]).max().item()
    if not worst <= 0.5 + 1e-4:
        raise AssertionError(f"Exercise 12.2, case 'round trip': rounding moves a weight by at most half a step, "
                             f"|w - q * scale| <= scale / 2 in every row; yours moves one by {worst:.3f} steps")
    q_neg, _ = ex.quantize_int8(-w)
    expect_equal(q_neg, -q, exercise="12.2", case="symmetry: -w must quantize to -q (the range is [-127, 127])")


def test_12_2_zero_row_is_not_nan(ex):
    w = _weight(2, 6, 16)
    w[2] = 0.0
    q, scale = ex.quantize_int8(w)
    expect_equal(q[2], torch.zeros(16, dtype=torch.int8), exercise="12.2",
                 case="an all-zero row: q must be 0 there (scale is 0: divide by 1 for that row instead of 0)")
    back = ex.dequantize_int8(q, scale)
    expect_close(back[2], torch.zeros(16), exercise="12.2", case="an all-zero row comes back as zeros, not NaN")


# 12.3 -----------------------------------------------------------------------------------------


def test_12_3_by_hand(ex):
    q = torch.tensor([1, 2, 15, 0], dtype=torch.uint8)
    got = ex.pack_int4(q)
    if isinstance(got, torch.Tensor) and got.tolist() == [18, 240]:
        raise AssertionError("Exercise 12.3, case '[1, 2, 15, 0]': you put the first element of each pair in the "
                             "high four bits; element 2j goes in the low bits: q[2j] | (q[2j + 1] << 4)")
    expect_equal(got, torch.tensor([33, 15], dtype=torch.uint8), exercise="12.3",
                 case="[1, 2, 15, 0] -> [1 | 2 << 4, 15 | 0 << 4] = [33, 15], uint8")
    expect_equal(ex.unpack_int4(torch.tensor([33, 15], dtype=torch.uint8)), q, exercise="12.3",
                 case="unpack [33, 15] -> [1, 2, 15, 0]")


@pytest.mark.parametrize("shape", [(8,), (3, 16), (2, 4, 6)])
def test_12_3_matches_the_library(ex, shape):
    q = torch.randint(0, 16, shape, generator=_gen(sum(shape)), dtype=torch.uint8)
    packed = ex.pack_int4(q)
    expect_equal(packed, pack_int4(q), exercise="12.3", case=f"pack_int4 of {shape} random values 0..15")
    expect_equal(ex.unpack_int4(pack_int4(q)), q, exercise="12.3",
                 case=f"unpack_int4(library's pack_int4(q)) for {shape} gives q back")


def test_12_3_every_byte_unpacks_like_the_library(ex):
    every = torch.arange(256, dtype=torch.uint8)
    expect_equal(ex.unpack_int4(every), unpack_int4(every), exercise="12.3",
                 case="unpack_int4 of all 256 byte values (keep the dtype uint8)")


@pytest.mark.parametrize("bad, why", [
    (torch.tensor([1, 2, 3], dtype=torch.uint8), "an odd last dimension (3): no partner for the last value"),
    (torch.tensor([1, 16], dtype=torch.uint8), "a value of 16: it does not fit in 4 bits"),
    (torch.tensor([1, 2], dtype=torch.int64), "int64 values: pack_int4 takes uint8"),
], ids=["odd length", "value 16", "not uint8"])
def test_12_3_refuses_what_cannot_be_packed(ex, bad, why):
    try:
        ex.pack_int4(bad)
    except ValueError:
        return
    except NotImplementedError:
        raise
    except Exception as err:  # any other error is the wrong one
        raise AssertionError(f"Exercise 12.3, case '{why}': expected a ValueError, got {type(err).__name__}: {err}") from None
    raise AssertionError(f"Exercise 12.3, case '{why}': expected a ValueError saying what to fix, and nothing was raised")


# 12.4 -----------------------------------------------------------------------------------------


def _part(s: torch.Tensor, v: torch.Tensor):
    """(m, l, o) of one set of keys, written out: s (..., T, n) scores, v (..., n, D)."""
    m = s.amax(dim=-1, keepdim=True)
    p = torch.exp(s - m)
    l = p.sum(dim=-1, keepdim=True)
    return m, l, (p @ v) / l


NO_RESCALE = ("you added the two sums without re-expressing them against the new max: multiply each part's l by "
              "exp(m_part - m) before adding and before weighting its o")


@pytest.mark.parametrize("split", [1, 5, 11])
def test_12_4_combine_two_sets_of_keys(ex, split):
    g = _gen(12 + split)
    s = 3.0 * torch.randn(2, 3, 4, 12, generator=g)  # (B, H, T, S) scores
    v = torch.randn(2, 3, 12, 8, generator=g)  # (B, H, S, D)
    s[..., :split] += 4.0  # the first part holds the larger scores: its max wins
    m1, l1, o1 = _part(s[..., :split], v[..., :split, :])
    m2, l2, o2 = _part(s[..., split:], v[..., split:, :])
    m, l, o = ex.combine_softmax_partials(m1, l1, o1, m2, l2, o2)
    case = f"S=12 keys split {split} + {12 - split}"
    expect_close(m, s.amax(dim=-1, keepdim=True), exercise="12.4", case=f"{case}: m, the max over all keys")
    l_expected = torch.exp(s - s.amax(dim=-1, keepdim=True)).sum(dim=-1, keepdim=True)  # between 1 and 12
    expect_close(l, l_expected, exercise="12.4", case=f"{case}: l, the sum of exp(s - m) over all keys, against the new m",
                 atol=1e-5 * l_expected.max().item(), mistakes={NO_RESCALE: l1 + l2})
    expect_close(o, torch.softmax(s, dim=-1) @ v, exercise="12.4", case=f"{case}: o, softmax attention over all keys",
                 mistakes={NO_RESCALE: (l1 * o1 + l2 * o2) / (l1 + l2),
                           "your o is the plain mean of the two outputs: weight each by its share of the total, "
                           "l_part * exp(m_part - m)": (o1 + o2) / 2})


def test_12_4_an_empty_part_changes_nothing(ex):
    g = _gen(13)
    s, v = torch.randn(1, 2, 3, 5, generator=g), torch.randn(1, 2, 5, 4, generator=g)
    m2, l2, o2 = _part(s, v)
    empty = (torch.full_like(m2, -math.inf), torch.zeros_like(l2), torch.zeros_like(o2))
    for first, second, order in ((empty, (m2, l2, o2), "empty first"), ((m2, l2, o2), empty, "empty second")):
        m, l, o = ex.combine_softmax_partials(*first, *second)
        case = f"one part with no keys (m = -inf, l = 0, o = 0), {order}"
        expect_close(m, m2, exercise="12.4", case=f"{case}: m is the other part's")
        expect_close(l, l2, exercise="12.4", case=f"{case}: l is the other part's")
        expect_close(o, o2, exercise="12.4", case=f"{case}: o is the other part's (exp(-inf - m) is 0, not NaN)")


@pytest.mark.parametrize("block_size", [1, 3, 4, 10, 64])
def test_12_4_tiled_attention_equals_softmax_attention(ex, block_size):
    g = _gen(14)
    q = torch.randn(2, 3, 7, 8, generator=g)  # (B, H, T, D)
    k, v = torch.randn(2, 3, 10, 8, generator=g), torch.randn(2, 3, 10, 8, generator=g)  # (B, H, S, D)
    got = ex.tiled_attention(q, k, v, block_size)
    expected = F.scaled_dot_product_attention(q, k, v)
    case = f"B=2 H=3 T=7 S=10 D=8, blocks of {block_size}" + (" (the last one shorter)" if 10 % block_size else "")
    expect_close(got, expected, exercise="12.4", case=f"{case} vs F.scaled_dot_product_attention", atol=1e-5,
                 mistakes={"your output misses the 1/sqrt(D) scale of the scores (scale None means 1 / sqrt(D))":
                           F.scaled_dot_product_attention(q, k, v, scale=1.0)})
    expect_close(got, flash_attention(q, k, v, block_k=block_size), exercise="12.4",
                 case=f"{case} vs minitransformer's flash_attention(block_k={block_size})", atol=1e-5)


def test_12_4_large_scores_stay_finite(ex):
    g = _gen(15)
    q, k, v = (torch.randn(1, 2, 6, 8, generator=g) for _ in range(3))
    got = ex.tiled_attention(q, k, v, 4, scale=30.0)  # scores of several hundred: exp overflows float32 above 88
    expect_close(got, F.scaled_dot_product_attention(q, k, v, scale=30.0), exercise="12.4",
                 case="scale=30, scores of several hundred: subtract each block's max before exp (and rescale)",
                 atol=1e-5)


# 12.5 -----------------------------------------------------------------------------------------

KEYS = ("weights", "gradients", "optimizer_state")


def _expect_state(got, expected: dict[str, int], case: str) -> None:
    if not isinstance(got, dict) or set(got) != set(KEYS):
        raise AssertionError(f"Exercise 12.5, case '{case}': expected a dict with the keys {list(KEYS)}, got "
                             f"{sorted(got) if isinstance(got, dict) else type(got).__name__}")
    for key in KEYS:
        if not isinstance(got[key], int) or isinstance(got[key], bool):
            raise AssertionError(f"Exercise 12.5, case '{case}': {key} must be an int (bytes), got {got[key]!r}")
    hints = {"optimizer_state": "AdamW keeps exp_avg and exp_avg_sq (8 bytes a number) and a 4-byte step per tensor",
             "gradients": "one float32 .grad per parameter: 4 bytes a number", "weights": "float32: 4 bytes a number"}
    for key in KEYS:
        if got[key] != expected[key]:
            raise AssertionError(f"Exercise 12.5, case '{case}': {key} expected {expected[key]:,} bytes, got "
                                 f"{got[key]:,} ({hints[key]})")


def test_12_5_gpt2_124m_like_training_memory(ex):
    config = GPT2Config.from_name("gpt2", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    n_params, n_tensors = count_parameters(config)  # 124,439,808 numbers in 196 tensors (meta device: no memory)
    got = ex.training_state_bytes(n_params, n_tensors)
    reference = training_memory(config, 1, 8)
    _expect_state(got, {"weights": reference.weights, "gradients": reference.gradients,
                        "optimizer_state": reference.optimizer_state},
                  f"GPT-2 124M, {n_params:,} numbers in {n_tensors} tensors, vs minitransformer's training_memory")


def test_12_5_equals_what_torch_allocates(ex):
    torch.manual_seed(16)
    model = GPT2(GPT2Config.from_name("gpt2-tiny", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0))
    params = list(model.parameters())  # each tensor once: the tied head is the embedding
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    ids = torch.randint(0, 256, (2, 16), generator=_gen(17))
    model(ids, labels=ids).loss.backward()
    optimizer.step()
    measured = {
        "weights": sum(p.nbytes for p in params),
        "gradients": sum(p.grad.nbytes for p in params),
        "optimizer_state": sum(t.nbytes for state in optimizer.state.values() for t in state.values()),
    }
    got = ex.training_state_bytes(sum(p.numel() for p in params), len(params))
    _expect_state(got, measured, f"gpt2-tiny after one torch.optim.AdamW step ({len(params)} tensors): the bytes of "
                                 "its parameters, their .grad and the optimizer's state")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_12_5_attention_scores_bytes_like_torch(ex, dtype):
    q = torch.zeros(2, 3, 5, 4, dtype=dtype)  # (B, H, T, D)
    k = torch.zeros(2, 3, 7, 4, dtype=dtype)  # (B, H, S, D)
    expected = (q @ k.transpose(-2, -1)).nbytes  # the (B, H, T, S) scores torch allocates
    got = ex.attention_scores_bytes(2, 3, 5, 7, dtype)
    if not isinstance(got, int) or got != expected:
        raise AssertionError(f"Exercise 12.5, case 'B=2 H=3 T=5 S=7 in {dtype}': q @ k^T allocates {expected} bytes, "
                             f"you said {got!r} (the element size of {dtype} is "
                             f"{torch.empty((), dtype=dtype).element_size()} bytes)")


def test_12_5_attention_scores_grow_with_t_squared(ex):
    got = ex.attention_scores_bytes(8, 12, 1024, 1024, torch.float32)
    expect_equal(got, 8 * 12 * 1024 * 1024 * 4, exercise="12.5",
                 case="GPT-2 124M's scores for one layer, B=8, H=12, T=S=1024, float32: 384 MiB")
    twice = ex.attention_scores_bytes(8, 12, 2048, 2048, torch.float32)
    expect_equal(twice, 4 * got, exercise="12.5", case="twice the context (T=S=2048): four times the bytes")
