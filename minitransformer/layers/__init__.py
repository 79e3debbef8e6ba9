"""The shared layers every model in minitransformer is built from."""

from minitransformer.layers.attention import (
    BACKENDS,
    MultiHeadAttention,
    dispatch_attention,
    fused_attention,
    repeat_kv,
    scaled_dot_product_attention,
)
from minitransformer.layers.blocks import DecoderBlock, EncoderBlock, residual
from minitransformer.layers.embeddings import (
    LearnedPositionEmbedding,
    SinusoidalPositionEncoding,
    TokenEmbedding,
    check_positions,
    check_token_ids,
    sinusoidal_position_encoding,
)
from minitransformer.layers.masks import (
    causal_mask,
    check_mask,
    combine_masks,
    decoder_mask,
    padding_mask,
    to_additive,
)
from minitransformer.layers.mlp import (
    ACTIVATIONS,
    GEGLU,
    MLP,
    GatedMLP,
    SwiGLU,
    gelu,
    gelu_tanh,
    get_activation,
    relu,
    silu,
)
from minitransformer.layers.norms import LayerNorm, RMSNorm
from minitransformer.layers.rope import (
    RotaryEmbedding,
    apply_rope_half,
    apply_rope_interleaved,
    interleaved_to_half_permutation,
    permute_qk_weight_for_rotate_half,
    rope_inv_freq,
    rotate_half,
)

__all__ = [name for name in dir() if not name.startswith("_")]
from minitransformer.layers.relative_position import RelativePositionBias, relative_position_bucket  # noqa: E402

__all__ += ["RelativePositionBias", "relative_position_bucket"]
