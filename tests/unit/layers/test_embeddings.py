import math

import pytest
import torch

from minitransformer.layers import (
    LearnedPositionEmbedding,
    SinusoidalPositionEncoding,
    TokenEmbedding,
    sinusoidal_position_encoding,
)


def test_token_embedding_equals_one_hot_matmul_and_nn_embedding():
    emb = TokenEmbedding(11, 6)
    ids = torch.tensor([[0, 3, 10], [5, 5, 1]])
    one_hot = torch.nn.functional.one_hot(ids, 11).float()  # (B, T, V)
    torch.testing.assert_close(emb(ids), one_hot @ emb.weight, atol=0, rtol=0)
    ref = torch.nn.Embedding(11, 6)
    ref.weight.data.copy_(emb.weight.data)
    assert torch.equal(emb(ids), ref(ids))


@pytest.mark.parametrize("bad", [-1, 11, 1000])
def test_token_embedding_rejects_out_of_vocab_before_indexing(bad):
    emb = TokenEmbedding(11, 6)
    with pytest.raises(IndexError, match=r"outside the vocabulary \[0, 11\)"):
        emb(torch.tensor([[1, bad]]))


def test_token_embedding_rejects_float_ids():
    with pytest.raises(TypeError, match="integer tensor"):
        TokenEmbedding(11, 6)(torch.tensor([[1.0]]))


def test_learned_positions_lookup_and_length_error():
    pos = LearnedPositionEmbedding(8, 4)
    torch.testing.assert_close(pos(torch.arange(3)), pos.weight[:3], atol=0, rtol=0)
    with pytest.raises(ValueError, match="max_position_embeddings=8"):
        pos(torch.arange(9))


def test_sinusoidal_matches_formula_computed_independently():
    T, C = 50, 16
    pe = sinusoidal_position_encoding(T, C)
    expected = torch.empty(T, C)
    for p in range(T):
        for i in range(C // 2):
            angle = p / (10000 ** (2 * i / C))
            expected[p, 2 * i] = math.sin(angle)
            expected[p, 2 * i + 1] = math.cos(angle)
    torch.testing.assert_close(pe, expected, atol=1e-6, rtol=0)
    assert pe[0, 0::2].abs().max() == 0 and torch.all(pe[0, 1::2] == 1)


def test_sinusoidal_module_is_not_in_state_dict_and_odd_dim_errors():
    mod = SinusoidalPositionEncoding(10, 8)
    assert len(mod.state_dict()) == 0
    torch.testing.assert_close(mod(torch.arange(4)), sinusoidal_position_encoding(10, 8)[:4])
    with pytest.raises(ValueError, match="even"):
        sinusoidal_position_encoding(4, 7)
