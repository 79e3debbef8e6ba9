import pytest
import torch
import torch.nn.functional as F

from minitransformer.layers import (
    GEGLU,
    MLP,
    GatedMLP,
    LayerNorm,
    RMSNorm,
    SwiGLU,
    gelu,
    gelu_tanh,
    get_activation,
    relu,
    silu,
)
from minitransformer.testing import assert_close, max_abs_diff


@pytest.mark.parametrize("bias", [True, False])
def test_layer_norm_equals_torch(bias):
    torch.manual_seed(0)
    ref = torch.nn.LayerNorm(12, eps=1e-6, bias=bias)
    torch.nn.init.normal_(ref.weight)
    if bias:
        torch.nn.init.normal_(ref.bias)
    ours = LayerNorm(12, eps=1e-6, bias=bias)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(3, 5, 12) * 4 + 2
    assert max_abs_diff(ours(x), ref(x)) <= 1e-5


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_layer_norm_equals_written_out_formula(dtype):
    torch.manual_seed(0)
    slow, fast = LayerNorm(12), LayerNorm(12, fused=True)
    torch.nn.init.normal_(slow.weight)
    torch.nn.init.normal_(slow.bias)
    fast.load_state_dict(slow.state_dict())
    slow, fast = slow.to(dtype), fast.to(dtype)
    x = (torch.randn(3, 5, 12) * 4 + 2).to(dtype)
    assert_close(fast(x), slow(x), what=f"fused LayerNorm ({dtype})")


def test_rms_norm_equals_torch():
    torch.manual_seed(0)
    ref = torch.nn.RMSNorm(12, eps=1e-6)
    torch.nn.init.normal_(ref.weight)
    ours = RMSNorm(12, eps=1e-6)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(3, 5, 12) * 3
    assert max_abs_diff(ours(x), ref(x)) <= 1e-5


def test_rms_norm_does_not_centre_and_layer_norm_does():
    x = torch.randn(4, 8) + 10.0
    assert LayerNorm(8)(x).mean(-1).abs().max() < 1e-5
    assert RMSNorm(8)(x).mean(-1).abs().min() > 0.5


def test_norms_reject_wrong_width():
    with pytest.raises(ValueError, match="expects last dimension 8"):
        LayerNorm(8)(torch.randn(2, 7))
    with pytest.raises(ValueError, match="expects last dimension 8"):
        RMSNorm(8)(torch.randn(2, 7))


def test_activations_equal_torch():
    x = torch.linspace(-6, 6, 1001)
    assert max_abs_diff(gelu(x), F.gelu(x)) <= 1e-6
    assert max_abs_diff(gelu_tanh(x), F.gelu(x, approximate="tanh")) <= 1e-6
    assert max_abs_diff(relu(x), F.relu(x)) == 0
    assert max_abs_diff(silu(x), F.silu(x)) <= 1e-6
    assert max_abs_diff(gelu(x), gelu_tanh(x)) > 1e-5  # they are different functions
    with pytest.raises(ValueError, match="unknown activation 'mish'"):
        get_activation("mish")


@pytest.mark.parametrize("activation, ref", [("gelu", F.gelu), ("relu", F.relu),
                                             ("gelu_new", lambda t: F.gelu(t, approximate="tanh"))])
def test_mlp_equals_explicit_formula(activation, ref):
    mlp = MLP(8, 32, activation)
    x = torch.randn(2, 3, 8)
    expected = F.linear(ref(F.linear(x, mlp.up_proj.weight, mlp.up_proj.bias)), mlp.down_proj.weight, mlp.down_proj.bias)
    assert max_abs_diff(mlp(x), expected) <= 1e-6


@pytest.mark.parametrize("cls, act", [(SwiGLU, F.silu), (GEGLU, lambda t: F.gelu(t, approximate="tanh"))])
def test_gated_mlps_equal_explicit_formula(cls, act):
    mlp = cls(8, 24)
    x = torch.randn(2, 3, 8)
    expected = (act(x @ mlp.gate_proj.weight.T) * (x @ mlp.up_proj.weight.T)) @ mlp.down_proj.weight.T
    assert max_abs_diff(mlp(x), expected) <= 1e-6
    assert isinstance(mlp, GatedMLP) and mlp.gate_proj.bias is None
