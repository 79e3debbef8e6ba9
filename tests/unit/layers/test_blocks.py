"""Our blocks, stacked, equal torch.nn.Transformer once its weights are copied in."""

import pytest
import torch
from torch import nn

from minitransformer.layers import DecoderBlock, EncoderBlock, LayerNorm, MultiHeadAttention, causal_mask
from minitransformer.testing import max_abs_diff

C, H, FF = 16, 4, 32


def copy_attention(ref: nn.MultiheadAttention, ours: MultiHeadAttention) -> None:
    """Split torch's fused in_proj (3C, C) into our q/k/v projections."""
    for name, w, b in zip(("q_proj", "k_proj", "v_proj"), ref.in_proj_weight.chunk(3), ref.in_proj_bias.chunk(3)):
        getattr(ours, name).weight.data.copy_(w)
        getattr(ours, name).bias.data.copy_(b)
    ours.o_proj.load_state_dict(ref.out_proj.state_dict())


def copy_encoder_layer(ref: nn.TransformerEncoderLayer, ours: EncoderBlock) -> None:
    copy_attention(ref.self_attn, ours.self_attn)
    ours.mlp.up_proj.load_state_dict(ref.linear1.state_dict())
    ours.mlp.down_proj.load_state_dict(ref.linear2.state_dict())
    ours.attn_norm.load_state_dict(ref.norm1.state_dict())
    ours.mlp_norm.load_state_dict(ref.norm2.state_dict())


def copy_decoder_layer(ref: nn.TransformerDecoderLayer, ours: DecoderBlock) -> None:
    copy_attention(ref.self_attn, ours.self_attn)
    copy_attention(ref.multihead_attn, ours.cross_attn)
    ours.mlp.up_proj.load_state_dict(ref.linear1.state_dict())
    ours.mlp.down_proj.load_state_dict(ref.linear2.state_dict())
    ours.attn_norm.load_state_dict(ref.norm1.state_dict())
    ours.cross_attn_norm.load_state_dict(ref.norm2.state_dict())
    ours.mlp_norm.load_state_dict(ref.norm3.state_dict())


def randomize(module: nn.Module) -> None:
    """LayerNorms start at weight 1, bias 0: randomise every parameter so a swapped copy would show."""
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.3)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("backend", ["math", "sdpa"])
def test_stack_equals_torch_transformer(norm_first, activation, backend):
    torch.manual_seed(0)
    ref = nn.Transformer(C, H, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=FF, dropout=0.0,
                         activation=activation, batch_first=True, norm_first=norm_first).eval()
    randomize(ref)
    enc = [EncoderBlock.standard(C, H, FF, norm_first=norm_first, activation=activation, attn_implementation=backend)
           for _ in range(2)]
    dec = [DecoderBlock.standard(C, H, FF, norm_first=norm_first, activation=activation, attn_implementation=backend)
           for _ in range(2)]
    for r, o in zip(ref.encoder.layers, enc):
        copy_encoder_layer(r, o)
    for r, o in zip(ref.decoder.layers, dec):
        copy_decoder_layer(r, o)
    enc_norm, dec_norm = LayerNorm(C), LayerNorm(C)  # nn.Transformer always ends each stack with a LayerNorm
    enc_norm.load_state_dict(ref.encoder.norm.state_dict())
    dec_norm.load_state_dict(ref.decoder.norm.state_dict())

    src, tgt = torch.randn(2, 7, C), torch.randn(2, 5, C)
    src_padding = torch.tensor([[1] * 7, [1] * 5 + [0] * 2])
    with torch.no_grad():
        expected = ref(src, tgt, tgt_mask=ref.generate_square_subsequent_mask(5, dtype=torch.bool),
                       src_key_padding_mask=~src_padding.bool(), memory_key_padding_mask=~src_padding.bool())
        keep = src_padding.bool()[:, None, None, :]  # (B, 1, 1, S)
        memory = src
        for block in enc:
            memory, _ = block(memory, attn_mask=keep)
        memory = enc_norm(memory)
        out = tgt
        for block in dec:
            out, _, _ = block(out, attn_mask=causal_mask(5), encoder_hidden_states=memory, cross_attn_mask=keep)
        out = dec_norm(out)
    assert max_abs_diff(out, expected) <= 1e-5


def test_decoder_block_without_cross_attention_and_missing_memory_error():
    block = DecoderBlock.standard(C, H, FF, cross_attention=False)
    out, w, cw = block(torch.randn(1, 3, C), attn_mask=causal_mask(3), output_attentions=True)
    assert out.shape == (1, 3, C) and w.shape == (1, H, 3, 3) and cw is None
    assert torch.all(w[0, :, 0, 1:] == 0)
    with pytest.raises(ValueError, match="encoder_hidden_states"):
        DecoderBlock.standard(C, H, FF)(torch.randn(1, 3, C))
    with pytest.raises(ValueError, match="both cross_attn and cross_attn_norm"):
        DecoderBlock(block.self_attn, block.mlp, block.attn_norm, block.mlp_norm, cross_attn=block.self_attn)


def test_pre_and_post_norm_differ():
    torch.manual_seed(0)
    pre = EncoderBlock.standard(C, H, FF, norm_first=True)
    post = EncoderBlock.standard(C, H, FF, norm_first=False)
    post.load_state_dict(pre.state_dict())
    x = torch.randn(1, 4, C)
    assert max_abs_diff(pre(x)[0], post(x)[0]) > 1e-3
    assert post(x)[0].std(-1).mean().item() == pytest.approx(1.0, abs=0.05)  # post-norm output is normalised
