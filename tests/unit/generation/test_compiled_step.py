"""The fast decode step (``generate(..., compile=True)``, ``generation/compiled.py``) and the
matrix-vector kernel it uses for int8 weights (``layers/linear.py``).

The tests that compile with inductor take 10 to 60 s each on 2 cores: they are marked slow and run in
CI's own step (``pytest -m slow tests/unit/generation``)."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from minitransformer.generation.compiled import EagerFallback, compile_options, compiled_step, weights_version
from minitransformer.layers.linear import MATVEC_MAX_ROWS, Linear, linear, matvec, use_matvec
from minitransformer.models.gpt2 import GPT2, GPT2Config
from minitransformer.quantization import quantize

V = 40


def gpt2(seed: int = 0, n_layer: int = 2) -> GPT2:
    torch.manual_seed(seed)
    return GPT2(GPT2Config(vocab_size=V, n_positions=32, n_embd=32, n_layer=n_layer, n_head=4,
                           initializer_range=0.3)).eval()


PROMPT = torch.tensor([[5, 9, 12, 7], [1, 30, 2, 8]])


# ---- the kernel -------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(7,), (3, 7), (2, 1, 7), (2, 3, 7)])
def test_matvec_equals_f_linear(shape):
    g = torch.Generator().manual_seed(0)
    x, w, b = torch.randn(shape, generator=g), torch.randn(5, 7, generator=g), torch.randn(5, generator=g)
    torch.testing.assert_close(matvec(x, w, b), F.linear(x, w, b), atol=1e-6, rtol=1e-6)
    assert matvec(x, w).shape == shape[:-1] + (5,)


def test_matvec_reads_int8_codes_with_their_row_scales():
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(-127, 128, (6, 16), generator=g, dtype=torch.int8)
    scale, x, b = torch.rand(6, generator=g), torch.randn(2, 16, generator=g), torch.randn(6, generator=g)
    expected = F.linear(x, codes.float() * scale[:, None], b)
    torch.testing.assert_close(matvec(x, codes, b, scale=scale), expected, atol=1e-5, rtol=1e-5)


def test_matvec_keeps_the_activations_dtype_and_accumulates_in_fp32():
    x, w = torch.randn(1, 512).bfloat16(), torch.randn(3, 512).bfloat16()
    out = matvec(x, w)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), (x.float() @ w.float().T).bfloat16().float())


def test_eager_linear_never_takes_the_reduction():
    """Eagerly the reduction would build an (O, M, I) tensor: only a compiled step may take it."""
    x, w = torch.randn(1, 8), torch.randint(-5, 5, (4, 8), dtype=torch.int8)
    assert not use_matvec(x, w)
    layer = Linear(8, 4)
    torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias))
    torch.testing.assert_close(linear(x, layer.weight), F.linear(x, layer.weight))
    assert isinstance(layer, torch.nn.Linear) and set(layer.state_dict()) == {"weight", "bias"}


def test_the_reduction_is_chosen_under_compile_for_the_listed_dtypes_only():
    seen = []

    def probe(x, w):
        seen.append(use_matvec(x, w))
        return x

    compiled = torch.compile(probe, backend="eager", fullgraph=True)
    compiled(torch.randn(1, 8), torch.zeros(4, 8, dtype=torch.int8))  # a decode step's row, int8
    compiled(torch.randn(8, 8), torch.zeros(4, 8))  # fp32 batch 8
    compiled(torch.randn(2, 8).bfloat16(), torch.zeros(4, 8).bfloat16())  # bf16 batch 2: oneDNN's
    compiled(torch.randn(MATVEC_MAX_ROWS[torch.int8] + 1, 8), torch.zeros(4, 8, dtype=torch.int8))  # a prefill
    compiled(torch.randn(1, 8).half(), torch.zeros(4, 8).half())  # fp16: not measured, not listed
    assert seen == [True, True, False, False, False]


# ---- choosing and caching the compiled step ----------------------------------------------------------

def test_compile_alone_picks_the_static_cache_and_dynamic_with_compile_is_refused():
    model = gpt2()
    expected = model.generate(PROMPT, max_new_tokens=6, eos_token_id=[])
    got = model.generate(PROMPT, max_new_tokens=6, eos_token_id=[], compile={"backend": "eager"})
    assert torch.equal(got, expected)
    with pytest.raises(ValueError, match="static"):
        model.generate(PROMPT, max_new_tokens=6, compile=True, cache_implementation="dynamic")


def test_bf16_batches_on_the_cpu_are_frozen_and_batch_1_and_fp32_are_not():
    model = gpt2()
    cpu = torch.device("cpu")
    assert compile_options(model, cpu, rows=8) == {"dynamic": False}  # fp32: the reduction up to 8 rows
    model = model.bfloat16()
    assert compile_options(model, cpu, rows=1) == {"dynamic": False}  # bf16 batch 1: the reduction
    assert compile_options(model, cpu, rows=8)["options"] == {"freezing": True}  # batch 8: oneDNN, packed
    assert compile_options(model, cpu, {"options": {}}, rows=8)["options"] == {}  # the user's keys win


def test_one_compiled_step_per_model_and_a_new_one_when_frozen_weights_change():
    model = gpt2().bfloat16()
    cpu = torch.device("cpu")
    first = compiled_step(model, model, cpu, {"backend": "eager"}, rows=8)  # frozen: bf16, batch 8
    again = compiled_step(model, model, cpu, {"backend": "eager"}, rows=8)
    assert first is again
    version = weights_version(model)
    with torch.no_grad():
        model.lm_head.weight.mul_(2)  # training, or load_state_dict, writes in place
    assert weights_version(model) != version
    changed = compiled_step(model, model, cpu, {"backend": "eager"}, rows=8)
    assert changed is not first


def test_an_unsupported_device_decodes_eagerly_with_one_line_of_warning():
    model = gpt2()
    with pytest.warns(UserWarning, match="supports cpu, cuda, not meta; decoding eagerly"):
        step = compiled_step(model, model, torch.device("meta"), True)
    assert step is model


def test_a_compiler_that_fails_falls_back_to_eager_once():
    calls = []

    def broken(*args):
        raise torch._dynamo.exc.BackendCompilerFailed(broken, RuntimeError("no C++ compiler found"), None)

    step = EagerFallback(broken, lambda x: calls.append(x) or x)
    with pytest.warns(UserWarning, match="torch.compile failed .*decoding eagerly"):
        assert step(1) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second call neither warns nor tries to compile again
        assert step(2) == 2
    assert calls == [1, 2]


# ---- with inductor (slow) ----------------------------------------------------------------------------

@pytest.mark.slow
def test_int8_decode_compiles_to_the_reduction_and_matches_eager():
    model = quantize(gpt2(n_layer=2), bits=8)
    expected = model.generate(PROMPT, max_new_tokens=8, eos_token_id=[])
    torch._dynamo.reset()
    got = model.generate(PROMPT, max_new_tokens=8, eos_token_id=[], compile=True)
    assert torch.equal(got, expected)


@pytest.mark.slow
def test_bf16_decode_matches_eager_frozen_or_not_and_sees_new_weights():
    """PROMPT is 2 rows: bf16 past MATVEC_MAX_ROWS, so frozen; its first row alone takes the reduction."""
    model = gpt2().bfloat16()
    torch._dynamo.reset()
    first = PROMPT[:1]
    assert torch.equal(model.generate(first, max_new_tokens=8, eos_token_id=[], compile=True),
                       model.generate(first, max_new_tokens=8, eos_token_id=[]))
    for _ in range(2):
        expected = model.generate(PROMPT, max_new_tokens=8, eos_token_id=[])
        got = model.generate(PROMPT, max_new_tokens=8, eos_token_id=[], compile=True)
        assert (got == expected).float().mean() >= 0.9  # bf16: oneDNN's sums round differently, rarely a token
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(-1)  # the frozen graph must not keep the old weights
