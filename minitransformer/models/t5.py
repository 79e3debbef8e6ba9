"""T5 (Raffel et al., 2019): an encoder-decoder with relative position biases instead of position embeddings.

    input_ids ──> shared embedding ──> encoder: N x pre-norm [self attn (+ bidirectional bias); MLP]
                                               ──> RMSNorm ──> encoder_hidden_states (B, S, C)
    decoder_input_ids ──> shared embedding ──> decoder: M x pre-norm [causal self attn (+ causal bias);
                                               cross attn over the encoder; MLP] ──> RMSNorm
        ──> (x * d_model ** -0.5 if the head is tied) ──> lm_head ──> logits (B, T, V)

Shapes: B batch, S encoder length, T decoder length, C d_model, H num_heads, D d_kv, V vocab_size.

What differs from the 2017 transformer, each in one place below:

- positions: a learned scalar per head and distance bucket added to the scores
  (:class:`~minitransformer.layers.relative_position.RelativePositionBias`), computed by the first layer
  of each stack and shared by all its layers;
- the norm is RMSNorm (HF's ``T5LayerNorm``: no mean, no bias);
- no bias in any linear layer, and **no 1/sqrt(D) in attention** (see :data:`T5_ATTENTION_SCALE`);
- the feed-forward is ReLU (T5 v1.0, ``feed_forward_proj="relu"``) or gated GELU (v1.1, ``"gated-gelu"``);
- the output head: v1.0 ties it to the embedding and rescales by ``d_model ** -0.5`` first
  (see :func:`tied_head_scale`); v1.1 has its own ``lm_head`` and no rescale.

Example:
    >>> config = T5Config(vocab_size=100, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4)
    >>> model = T5(config).eval()
    >>> model(torch.tensor([[5, 6, 7, 1]]), decoder_input_ids=torch.tensor([[0, 9]])).logits.shape
    torch.Size([1, 2, 100])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from minitransformer.layers.attention import DEFAULT_BACKEND, MultiHeadAttention, fused_kernels
from minitransformer.layers.blocks import DecoderBlock, EncoderBlock
from minitransformer.layers.embeddings import TokenEmbedding
from minitransformer.layers.kv_cache import EncoderDecoderCache
from minitransformer.layers.linear import Linear, linear
from minitransformer.layers.masks import causal_mask, padding_mask, to_additive
from minitransformer.layers.mlp import MLP, GatedMLP, get_activation
from minitransformer.layers.norms import RMSNorm
from minitransformer.layers.relative_position import RelativePositionBias
from minitransformer.models.base import Config, EncoderDecoderModel, check_inputs
from minitransformer.models.outputs import ModelOutput

#: T5 does not divide the attention scores by sqrt(D). Mesh TensorFlow folded that factor into the
#: initialisation of the query projection (std (C * D) ** -0.5 instead of C ** -0.5), so the trained
#: ``q`` weights already carry it; scaling again would shrink every score by sqrt(D).
T5_ATTENTION_SCALE = 1.0


def tied_head_scale(config: T5Config) -> float:
    """The factor on the decoder output before the output projection.

    With a tied head (T5 v1.0) the output matrix is the input embedding, whose rows were trained with
    std about 1 for the *input* side; Mesh TensorFlow multiplied the decoder output by ``d_model ** -0.5``
    so that the logits keep a sensible scale. T5 v1.1 unties the head and drops the rescale.
    """
    return config.d_model ** -0.5 if config.scale_decoder_outputs else 1.0


@dataclass
class T5Config(Config):
    """T5's hyperparameters, named as in HF's ``config.json`` (defaults: t5-small).

    ``feed_forward_proj``: "relu" (v1.0) or "gated-gelu" (v1.1); in general "ACT" or "gated-ACT".
    ``tie_word_embeddings``: True, the output head is the shared embedding (v1.0); False, a separate
    ``lm_head`` (v1.1). ``scale_decoder_outputs`` (transformers 5 writes it) says whether the
    ``d_model ** -0.5`` rescale happens; it defaults to ``tie_word_embeddings``, as in transformers.

    Presets (``T5Config.from_name(name)``): ``t5-small`` (the defaults), ``t5-base``, ``t5-large``,
    ``t5-v1_1-small`` (gated GELU, untied head) and ``t5-tiny`` for tests and lessons.
    """

    model_type: ClassVar[str] = "t5"
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "t5-small": {},
        "t5-base": dict(d_model=768, d_ff=3072, num_layers=12, num_heads=12),
        "t5-large": dict(d_model=1024, d_ff=4096, num_layers=24, num_heads=16),
        "t5-v1_1-small": dict(d_model=512, d_kv=64, d_ff=1024, num_layers=8, num_heads=6,
                              feed_forward_proj="gated-gelu", tie_word_embeddings=False, dropout_rate=0.1),
        "t5-tiny": dict(vocab_size=256, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                        relative_attention_num_buckets=8, relative_attention_max_distance=16),
    }

    vocab_size: int = 32128
    d_model: int = 512
    d_kv: int = 64
    d_ff: int = 2048
    num_layers: int = 6
    num_decoder_layers: int | None = None
    num_heads: int = 8
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    dropout_rate: float = 0.1
    layer_norm_epsilon: float = 1e-6
    initializer_factor: float = 1.0
    feed_forward_proj: str = "relu"
    tie_word_embeddings: bool = True
    scale_decoder_outputs: bool | None = None
    is_encoder_decoder: bool = True
    pad_token_id: int = 0
    eos_token_id: int = 1
    decoder_start_token_id: int = 0
    architectures: list[str] = field(default_factory=lambda: ["T5ForConditionalGeneration"])

    def __post_init__(self):
        if self.num_decoder_layers is None:
            self.num_decoder_layers = self.num_layers
        if self.scale_decoder_outputs is None:
            self.scale_decoder_outputs = self.tie_word_embeddings
        parts = self.feed_forward_proj.split("-")
        if len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated"):
            raise ValueError(f"feed_forward_proj={self.feed_forward_proj!r}: expected 'ACT' or 'gated-ACT', "
                             "e.g. 'relu' (T5 v1.0) or 'gated-gelu' (T5 v1.1)")
        get_activation(self.dense_act_fn)  # fail early on an unknown activation name
        super().__post_init__()

    @property
    def is_gated_act(self) -> bool:
        return self.feed_forward_proj.startswith("gated-")

    @property
    def dense_act_fn(self) -> str:
        """The activation name; "gated-gelu" means GELU's tanh approximation, as the v1.1 checkpoints were trained."""
        if self.feed_forward_proj == "gated-gelu":
            return "gelu_new"
        return self.feed_forward_proj.split("-")[-1]

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> T5Config:
        """Build from a ``config.json`` dict; keys we do not use are kept in ``extra`` for the round trip."""
        if config.get("model_type", "t5") != "t5":
            raise ValueError(f"T5Config reads model_type 't5' configs, got model_type={config['model_type']!r}")
        return super().from_dict(config)

    def to_dict(self) -> dict[str, Any]:
        """The ``config.json`` dict that transformers' ``AutoConfig`` reads back."""
        out = super().to_dict()
        out["model_type"] = self.model_type
        # transformers 5 writes these two derived fields; keep them in step with feed_forward_proj.
        out["dense_act_fn"], out["is_gated_act"] = self.dense_act_fn, self.is_gated_act
        return out


def t5_attention(config: T5Config, attn_implementation: str) -> MultiHeadAttention:
    """T5's attention: no biases, head size d_kv (not necessarily d_model / H), unscaled scores."""
    return MultiHeadAttention(config.d_model, config.num_heads, head_dim=config.d_kv, bias=False,
                              scale=T5_ATTENTION_SCALE, dropout=config.dropout_rate,
                              attn_implementation=attn_implementation)


def t5_mlp(config: T5Config, fused: bool = False) -> nn.Module:
    """v1.0: down(relu(up(x))). v1.1: down(gelu(gate(x)) * up(x)). No biases either way."""
    mlp = GatedMLP if config.is_gated_act else MLP
    return mlp(config.d_model, config.d_ff, config.dense_act_fn, bias=False, dropout=config.dropout_rate, fused=fused)


class T5Stack(nn.Module):
    """What T5's two stacks share: the relative position bias, the blocks, a final RMSNorm, dropout.

    The stacks do not own the token embedding (the model shares one table between both and the tied
    head); they take the embedded tokens. :class:`T5EncoderStack` and :class:`T5DecoderStack` differ
    in their blocks, their mask and their bias's direction; each is written out in its own class.
    """

    def __init__(self, config: T5Config, layers: list[nn.Module], bidirectional: bool, fused: bool):
        super().__init__()
        self.relative_position_bias = RelativePositionBias(
            config.relative_attention_num_buckets, config.relative_attention_max_distance, config.num_heads,
            bidirectional=bidirectional,
        )
        self.layers = nn.ModuleList(layers)
        self.final_norm = RMSNorm(config.d_model, config.layer_norm_epsilon, fused=fused)
        self.dropout = nn.Dropout(config.dropout_rate)


class T5EncoderStack(T5Stack):
    """The encoder: ``num_layers`` pre-norm blocks of self attention (bidirectional bias) and MLP."""

    def __init__(self, config: T5Config, attn_implementation: str = DEFAULT_BACKEND):
        fused, C, eps = fused_kernels(attn_implementation), config.d_model, config.layer_norm_epsilon
        layers = [EncoderBlock(t5_attention(config, attn_implementation), t5_mlp(config, fused),
                               RMSNorm(C, eps, fused=fused), RMSNorm(C, eps, fused=fused),
                               norm_first=True, dropout=config.dropout_rate)
                  for _ in range(config.num_layers)]
        super().__init__(config, layers, bidirectional=True, fused=fused)

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool = False, output_attentions: bool = False) -> ModelOutput:
        """``inputs_embeds`` (B, S, C), ``attention_mask`` (B, S) 0/1 -> ``last_hidden_state`` (B, S, C).

        ``hidden_states`` (the embeddings, each layer, the last one after the final norm) and
        ``attentions`` when asked.
        """
        S = inputs_embeds.shape[1]
        # The position bias is an additive mask; padding joins it as -inf-like entries.
        mask = self.relative_position_bias(S, S)  # (1, H, S, S)
        if attention_mask is not None:
            mask = mask + to_additive(padding_mask(attention_mask), mask.dtype)  # (B, H, S, S)
        x = self.dropout(inputs_embeds)
        hidden_states, attentions = [x], []
        for layer in self.layers:
            x, weights = layer(x, attn_mask=mask, output_attentions=output_attentions)
            hidden_states.append(x)
            attentions.append(weights)
        x = self.dropout(self.final_norm(x))
        hidden_states[-1] = x  # as in transformers: the last hidden state is the normed one
        return ModelOutput(
            last_hidden_state=x,
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
        )


class T5DecoderStack(T5Stack):
    """The decoder: ``num_decoder_layers`` pre-norm blocks of causal self attention (causal bias),
    cross attention over the encoder output, and MLP."""

    def __init__(self, config: T5Config, attn_implementation: str = DEFAULT_BACKEND):
        fused, C, eps = fused_kernels(attn_implementation), config.d_model, config.layer_norm_epsilon
        layers = [DecoderBlock(t5_attention(config, attn_implementation), t5_mlp(config, fused),
                               RMSNorm(C, eps, fused=fused), RMSNorm(C, eps, fused=fused),
                               cross_attn=t5_attention(config, attn_implementation),
                               cross_attn_norm=RMSNorm(C, eps, fused=fused), norm_first=True,
                               dropout=config.dropout_rate)
                  for _ in range(config.num_decoder_layers)]
        super().__init__(config, layers, bidirectional=False, fused=fused)

    def forward(self, inputs_embeds: torch.Tensor, encoder_hidden_states: torch.Tensor,
                attention_mask: torch.Tensor | None = None, encoder_attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool = False, output_attentions: bool = False,
                past_key_values: EncoderDecoderCache | None = None) -> ModelOutput:
        """Args:
            inputs_embeds: (B, T) embedded decoder tokens (B, T, C); with a cache, only the new ones.
            encoder_hidden_states: (B, S, C).
            attention_mask: (B, S_past + T) 0/1 padding mask of the decoder tokens, cached ones included.
            encoder_attention_mask: (B, S) 0/1 padding mask of the encoder output.
            past_key_values: the self- and cross-attention caches, updated in place, or None.

        Returns:
            ModelOutput with ``last_hidden_state`` (B, T, C); ``hidden_states`` (embeddings, each layer,
            the last one after the final norm), ``attentions`` and ``cross_attentions`` when asked.
        """
        T, device = inputs_embeds.shape[1], inputs_embeds.device
        past, S = 0, T  # the first new position, and the keys self attention sees
        if past_key_values is not None:  # a static cache gives its first slot as a tensor and all its slots
            past, S = past_key_values.self_attention.step(T)
        # Queries are at their true positions past + i, also among a static cache's S slots.
        mask = self.relative_position_bias(T, S, past)  # (1, H, T, S)
        allowed = causal_mask(T, S, device, past_length=past)[None, None]  # (1, 1, T, S)
        if attention_mask is not None:
            if attention_mask.shape[1] < S:  # a static cache's slots not written yet: padding
                attention_mask = F.pad(attention_mask, (0, S - attention_mask.shape[1]))  # (B, S)
            allowed = allowed & padding_mask(attention_mask.to(device))  # (B, 1, T, S)
        mask = mask + to_additive(allowed, mask.dtype)  # (B|1, H, T, S)
        cross_mask = None if encoder_attention_mask is None else padding_mask(encoder_attention_mask)  # (B, 1, 1, S_enc)

        x = self.dropout(inputs_embeds)
        hidden_states, attentions, cross_attentions = [x], [], []
        for i, layer in enumerate(self.layers):
            cache = None if past_key_values is None else past_key_values.self_attention[i]
            cross_cache = None if past_key_values is None else past_key_values.cross_attention[i]
            x, weights, cross_weights = layer(
                x, attn_mask=mask, encoder_hidden_states=encoder_hidden_states, cross_attn_mask=cross_mask,
                output_attentions=output_attentions, cache=cache, cross_cache=cross_cache,
            )
            hidden_states.append(x)
            attentions.append(weights)
            cross_attentions.append(cross_weights)
        x = self.dropout(self.final_norm(x))
        hidden_states[-1] = x  # as in transformers: the last hidden state is the normed one
        return ModelOutput(
            last_hidden_state=x,
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
            cross_attentions=tuple(cross_attentions) if output_attentions else None,
        )


class T5(EncoderDecoderModel):
    """T5 for conditional generation (HF ``T5ForConditionalGeneration``).

    ``forward`` runs both halves; :meth:`encode` and :meth:`decode` run one each, so that generation can
    encode once and decode token by token.

    Args:
        config: a :class:`T5Config`.
        attn_implementation: "math" (default, written out; the only one that returns attention maps)
            or "sdpa" (torch's fused kernels for attention, RMSNorm and activations), as in every family.
    """

    config_class = T5Config

    def __init__(self, config: T5Config, attn_implementation: str = DEFAULT_BACKEND):
        super().__init__()
        self.config = config
        self.shared = TokenEmbedding(config.vocab_size, config.d_model)
        self.encoder = T5EncoderStack(config, attn_implementation)
        self.decoder = T5DecoderStack(config, attn_implementation)
        self.lm_head = None if config.tie_word_embeddings else Linear(config.d_model, config.vocab_size, bias=False)
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        """Mesh TensorFlow's initialisation, as in transformers: std 1 for tables, fan-in scaled matrices.

        The query projection gets std (d_model * d_kv) ** -0.5: the 1/sqrt(D) that attention omits.
        """
        f, C, D, H = self.config.initializer_factor, self.config.d_model, self.config.d_kv, self.config.num_heads
        if isinstance(module, (TokenEmbedding, RelativePositionBias)):
            nn.init.normal_(module.weight, std=f * (1.0 if isinstance(module, TokenEmbedding) else C ** -0.5))
        elif isinstance(module, RMSNorm):
            nn.init.constant_(module.weight, f)
        elif isinstance(module, MultiHeadAttention):
            nn.init.normal_(module.q_proj.weight, std=f * (C * D) ** -0.5)
            nn.init.normal_(module.k_proj.weight, std=f * C ** -0.5)
            nn.init.normal_(module.v_proj.weight, std=f * C ** -0.5)
            nn.init.normal_(module.o_proj.weight, std=f * (H * D) ** -0.5)
        elif isinstance(module, (MLP, GatedMLP)):
            for name in ("gate_proj", "up_proj"):
                if hasattr(module, name):
                    nn.init.normal_(getattr(module, name).weight, std=f * C ** -0.5)
            nn.init.normal_(module.down_proj.weight, std=f * self.config.d_ff ** -0.5)
        elif module is self.lm_head:
            nn.init.normal_(module.weight, std=f)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               output_hidden_states: bool = False, output_attentions: bool = False) -> ModelOutput:
        """Run the encoder: (B, S) ids -> ModelOutput with ``last_hidden_state`` (B, S, C)."""
        check_inputs(input_ids, attention_mask)
        return self.encoder(self.shared(input_ids), attention_mask,
                            output_hidden_states=output_hidden_states, output_attentions=output_attentions)

    def decode(self, decoder_input_ids: torch.Tensor, encoder_hidden_states: torch.Tensor,
               attention_mask: torch.Tensor | None = None, decoder_attention_mask: torch.Tensor | None = None,
               output_hidden_states: bool = False, output_attentions: bool = False,
               past_key_values: EncoderDecoderCache | None = None, use_cache: bool = False) -> ModelOutput:
        """Run the decoder and the head.

        Args:
            decoder_input_ids: (B, T) ids; with a cache, only the new tokens.
            encoder_hidden_states: (B, S, C), the encoder's ``last_hidden_state``.
            attention_mask: (B, S) the encoder's 0/1 padding mask, so that cross attention skips padding.
            decoder_attention_mask: (B, S_past + T) 0/1 padding mask of the decoder tokens.
            past_key_values: an :class:`EncoderDecoderCache` (self attention and cross attention),
                updated in place (``new_cache()`` makes one). If its self attention is a static cache,
                call ``past_key_values.prepare(T)`` before and ``.advance(T)`` after, as for any static cache.
            use_cache: start an :class:`EncoderDecoderCache` when ``past_key_values`` is None.

        Returns:
            ModelOutput with ``logits`` (B, T, V), ``last_hidden_state`` (B, T, C, before the rescale),
            decoder ``hidden_states``, ``attentions``, ``cross_attentions`` when asked, and the cache
            in ``past_key_values`` when one is used.
        """
        check_inputs(decoder_input_ids, ids_name="decoder_input_ids")
        check_inputs(encoder_hidden_states[..., 0], attention_mask, ids_name="encoder_hidden_states[..., 0]")
        if use_cache and past_key_values is None:
            past_key_values = self.new_cache()
        static = past_key_values is not None and past_key_values.is_static
        if not static:  # a static cache's mask covers its slots, not the tokens seen
            past = 0 if past_key_values is None else past_key_values.get_seq_length()
            check_inputs(decoder_input_ids, decoder_attention_mask, past, "decoder_input_ids",
                         "decoder_attention_mask")
        out = self.decoder(self.shared(decoder_input_ids), encoder_hidden_states, decoder_attention_mask,
                           attention_mask, output_hidden_states, output_attentions, past_key_values)
        out.past_key_values = past_key_values
        h = out.last_hidden_state * tied_head_scale(self.config)  # (B, T, C)
        weight = self.shared.weight if self.lm_head is None else self.lm_head.weight  # (V, C)
        out.logits = linear(h, weight)  # (B, T, V)
        return out

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                decoder_input_ids: torch.Tensor | None = None, decoder_attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool = False, output_attentions: bool = False,
                encoder_outputs: ModelOutput | None = None, past_key_values: EncoderDecoderCache | None = None,
                use_cache: bool = False, labels: torch.Tensor | None = None) -> ModelOutput:
        """Encode ``input_ids`` (B, S), decode ``decoder_input_ids`` (B, T) -> ``logits`` (B, T, V).

        Like transformers' ``Seq2SeqLMOutput``: ``hidden_states``/``attentions`` are the decoder's,
        ``cross_attentions`` (B, H, T, S) the decoder's attention over the encoder, and
        ``encoder_last_hidden_state``/``encoder_hidden_states``/``encoder_attentions`` the encoder's.
        ``encoder_outputs`` (from :meth:`encode`) skips the encoder; ``past_key_values``/``use_cache``
        as in :meth:`decode`.

        ``labels`` (B, T): the target tokens, -100 where nothing is scored. Without
        ``decoder_input_ids`` the decoder reads ``shift_right(labels)`` (teacher forcing), as in
        transformers; ``loss`` is the mean cross-entropy of position t's logits against labels[t]
        (not t + 1: the shift is in the decoder input).
        """
        if decoder_input_ids is None and labels is not None:
            decoder_input_ids = self.shift_right(labels)  # (B, T)
        if decoder_input_ids is None:
            raise ValueError("T5 needs decoder_input_ids (B, T) or labels: for training, labels (the decoder "
                             "then reads model.shift_right(labels)); to start generating, "
                             "torch.full((B, 1), config.decoder_start_token_id)")
        enc = encoder_outputs or self.encode(input_ids, attention_mask, output_hidden_states, output_attentions)
        out = self.decode(decoder_input_ids, enc.last_hidden_state, attention_mask, decoder_attention_mask,
                          output_hidden_states, output_attentions, past_key_values=past_key_values,
                          use_cache=use_cache)
        out.encoder_last_hidden_state = enc.last_hidden_state
        out.encoder_hidden_states = enc.hidden_states
        out.encoder_attentions = enc.attentions
        if labels is not None:
            out.loss = F.cross_entropy(out.logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        return out

    def shift_right(self, labels: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: the decoder input is the target shifted right behind ``decoder_start_token_id``.

        Label positions set to -100 (ignored by the loss) become ``pad_token_id``.
        """
        shifted = torch.full_like(labels, self.config.decoder_start_token_id)
        shifted[:, 1:] = labels[:, :-1]  # (B, T)
        return shifted.masked_fill(shifted == -100, self.config.pad_token_id)
