import pytest
import torch

from minitransformer.layers import causal_mask, combine_masks, decoder_mask, padding_mask, to_additive


def test_causal_mask_square_and_with_cache_offset():
    assert torch.equal(causal_mask(3), torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]], dtype=torch.bool))
    # 2 new queries after 3 cached keys: they are positions 3 and 4 of 5
    assert torch.equal(causal_mask(2, 5), torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.bool))
    with pytest.raises(ValueError, match="key_length=2 must be >= query_length=3"):
        causal_mask(3, 2)


def test_padding_mask_from_hf_attention_mask():
    am = torch.tensor([[1, 1, 0], [0, 1, 1]])
    m = padding_mask(am)
    assert m.shape == (2, 1, 1, 3) and m.dtype == torch.bool
    assert torch.equal(m[:, 0, 0], am.bool())
    with pytest.raises(ValueError, match="only 0"):
        padding_mask(torch.tensor([[1, 2]]))
    with pytest.raises(ValueError, match=r"shape \(batch, seq_len\)"):
        padding_mask(torch.ones(2, 1, 3))


def test_combination_is_and_and_decoder_mask_matches():
    am = torch.tensor([[0, 1, 1]])  # left padded
    combined = combine_masks(causal_mask(3)[None, None], padding_mask(am))
    expected = torch.tensor([[[[0, 0, 0], [0, 1, 0], [0, 1, 1]]]], dtype=torch.bool)
    assert torch.equal(combined, expected)
    assert torch.equal(decoder_mask(am, 3), expected)
    assert combine_masks(None, None) is None
    with pytest.raises(TypeError, match="boolean"):
        combine_masks(torch.zeros(2, 2))


def test_additive_form_is_finite():
    add = to_additive(torch.tensor([True, False]))
    assert add[0] == 0 and add[1] == torch.finfo(torch.float32).min and torch.isfinite(add).all()
    assert to_additive(torch.tensor([False]), torch.bfloat16).dtype == torch.bfloat16


def test_causal_mask_past_length_defaults_to_bottom_right_and_hides_unwritten_static_slots():
    # Dynamic cache: the 2 queries are the last of 5 keys (3 cached), the default alignment.
    assert torch.equal(causal_mask(2, 5, past_length=3), causal_mask(2, 5))
    # Static cache of 8 slots, 3 written, one new query at slot 3: slots 0..3 visible, 4..7 not written yet.
    expected = torch.tensor([[True, True, True, True, False, False, False, False]])
    assert torch.equal(causal_mask(1, 8, past_length=3), expected)
    assert torch.equal(causal_mask(1, 8, past_length=torch.tensor([3])), expected)  # a tensor, as compiled steps pass
