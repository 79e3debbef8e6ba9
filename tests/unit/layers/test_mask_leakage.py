"""The classic silent bugs: information reaching a position it must not.

For every attention path (math, fused SDPA) and in fp32 and bf16: under a causal mask, changing a
future token never changes an earlier position's output; with padding, changing a padded token never
changes an unpadded position's output. "Never" means bit-for-bit: a leak through a masked score
would change the output by far more than rounding, but so does nothing else here.
"""

import pytest
import torch

from minitransformer.layers import DecoderBlock, EncoderBlock, decoder_mask, padding_mask

PATHS = ["math", "sdpa", "flash"]
DTYPES = [torch.float32, torch.bfloat16]
C, H, FF = 32, 4, 64


@pytest.mark.parametrize("backend", PATHS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_future_token_never_changes_earlier_positions(backend, dtype):
    torch.manual_seed(0)
    block = DecoderBlock.standard(C, H, FF, cross_attention=False, norm_first=True,
                                  attn_implementation=backend).to(dtype).eval()
    x = torch.randn(2, 8, C, dtype=dtype)
    changed = x.clone()
    changed[:, 5:] = torch.randn(2, 3, C, dtype=dtype) * 10  # rewrite positions 5, 6, 7
    mask = decoder_mask(None, 8)
    with torch.no_grad():
        a, _, _ = block(x, attn_mask=mask)
        b, _, _ = block(changed, attn_mask=mask)
    assert torch.equal(a[:, :5], b[:, :5]), "a future token leaked into an earlier position"
    assert not torch.equal(a[:, 5:], b[:, 5:])  # the test can see a change where one is allowed


@pytest.mark.parametrize("backend", PATHS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("side", ["right", "left"])
def test_padded_token_never_changes_unpadded_positions(backend, dtype, side):
    torch.manual_seed(0)
    block = EncoderBlock.standard(C, H, FF, attn_implementation=backend).to(dtype).eval()
    am = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    if side == "left":
        am = am.flip(-1)
    x = torch.randn(2, 6, C, dtype=dtype)
    changed = x.clone()
    changed[1][am[1] == 0] = torch.randn(2, C, dtype=dtype) * 10
    with torch.no_grad():
        a, _ = block(x, attn_mask=padding_mask(am))
        b, _ = block(changed, attn_mask=padding_mask(am))
    real = am[1].bool()
    assert torch.equal(a[1][real], b[1][real]), "a padded token leaked into a real position"
    assert torch.equal(a[0], b[0])


@pytest.mark.parametrize("backend", PATHS)
def test_causal_and_padding_together_left_padded_decoder(backend):
    torch.manual_seed(0)
    block = DecoderBlock.standard(C, H, FF, cross_attention=False, norm_first=True, attn_implementation=backend).eval()
    am = torch.tensor([[0, 0, 1, 1, 1]])
    x = torch.randn(1, 5, C)
    changed = x.clone()
    changed[0, :2] = torch.randn(2, C) * 10  # padding
    changed[0, 4] = torch.randn(C) * 10  # the future of position 3
    mask = decoder_mask(am, 5)
    with torch.no_grad():
        a, _, _ = block(x, attn_mask=mask)
        b, _, _ = block(changed, attn_mask=mask)
    assert torch.equal(a[0, 2:4], b[0, 2:4])
    assert not torch.isnan(a).any()  # the fully masked padded rows follow the zero rule, no NaN
