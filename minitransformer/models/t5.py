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

from minitransformer.generation import GenerationMixin
from minitransformer.generation.cache import EncoderDecoderCache, StaticCache
from minitransformer.layers.attention import MultiHeadAttention
from minitransformer.layers.blocks import DecoderBlock, EncoderBlock
from minitransformer.layers.embeddings import TokenEmbedding
from minitransformer.layers.masks import causal_mask, padding_mask, to_additive
from minitransformer.layers.mlp import MLP, GatedMLP, get_activation
from minitransformer.layers.norms import RMSNorm
from minitransformer.layers.relative_position import RelativePositionBias
from minitransformer.models.base import Config, PreTrainedModel, check_inputs
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
    """

    model_type: ClassVar[str] = "t5"

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


def static_positions(cache: StaticCache, num_new_tokens: int) -> tuple[torch.Tensor, int]:
    """(past_length, key_length) for T new tokens in a static cache: its first slot to write, as a (1,)
    tensor, and its max_cache_len.

    The slots come from ``cache_position``, a tensor, never from the Python int ``cache.seen``: a
    compiled decode step then traces once and serves every position.
    """
    if tuple(cache.cache_position.shape) != (num_new_tokens,):
        raise ValueError(
            f"the static cache's cache_position has {cache.cache_position.numel()} slots for {num_new_tokens} "
            f"new tokens; call past_key_values.self_attention.prepare({num_new_tokens}) before decode "
            f"and .advance({num_new_tokens}) after it"
        )
    return cache.cache_position[:1], cache.max_cache_len


def t5_attention(config: T5Config, attn_implementation: str) -> MultiHeadAttention:
    """T5's attention: no biases, head size d_kv (not necessarily d_model / H), unscaled scores."""
    return MultiHeadAttention(config.d_model, config.num_heads, head_dim=config.d_kv, bias=False,
                              scale=T5_ATTENTION_SCALE, dropout=config.dropout_rate,
                              attn_implementation=attn_implementation)


def t5_mlp(config: T5Config) -> nn.Module:
    """v1.0: down(relu(up(x))). v1.1: down(gelu(gate(x)) * up(x)). No biases either way."""
    if config.is_gated_act:
        return GatedMLP(config.d_model, config.d_ff, config.dense_act_fn, bias=False, dropout=config.dropout_rate)
    return MLP(config.d_model, config.d_ff, config.dense_act_fn, bias=False, dropout=config.dropout_rate)


class T5Stack(nn.Module):
    """The encoder (``is_decoder=False``) or the decoder stack: pre-norm blocks, then a final RMSNorm.

    The stack does not own the token embedding (the model shares one table between both stacks and
    the tied head); it takes the embedded tokens.
    """

    def __init__(self, config: T5Config, is_decoder: bool, attn_implementation: str = "math"):
        super().__init__()
        self.is_decoder = is_decoder
        C, eps = config.d_model, config.layer_norm_epsilon
        self.relative_position_bias = RelativePositionBias(
            config.relative_attention_num_buckets, config.relative_attention_max_distance, config.num_heads,
            bidirectional=not is_decoder,
        )
        num_layers = config.num_decoder_layers if is_decoder else config.num_layers
        if is_decoder:
            self.layers = nn.ModuleList(
                DecoderBlock(t5_attention(config, attn_implementation), t5_mlp(config), RMSNorm(C, eps),
                             RMSNorm(C, eps), cross_attn=t5_attention(config, attn_implementation),
                             cross_attn_norm=RMSNorm(C, eps), norm_first=True, dropout=config.dropout_rate)
                for _ in range(num_layers)
            )
        else:
            self.layers = nn.ModuleList(
                EncoderBlock(t5_attention(config, attn_implementation), t5_mlp(config), RMSNorm(C, eps),
                             RMSNorm(C, eps), norm_first=True, dropout=config.dropout_rate)
                for _ in range(num_layers)
            )
        self.final_norm = RMSNorm(C, eps)
        self.dropout = nn.Dropout(config.dropout_rate)

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None = None,
                encoder_hidden_states: torch.Tensor | None = None,
                encoder_attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool = False, output_attentions: bool = False,
                caches: list | None = None, past_length: int | torch.Tensor = 0,
                cross_caches: list | None = None, key_length: int | None = None) -> ModelOutput:
        """Args:
            inputs_embeds: (B, T, C) embedded tokens.
            attention_mask: (B, T) 0/1 padding mask of these tokens (with a cache: (B, past_length + T);
                missing slots at the end, up to ``key_length``, count as padding).
            encoder_hidden_states: (B, S, C), decoder only.
            encoder_attention_mask: (B, S) 0/1, or a ready bool (B, 1, 1, S) mask, decoder only.
            caches: decoder only, one KV cache per layer (``update(k, v) -> (k, v)``), holding
                ``past_length`` earlier tokens; None to attend over these T tokens only.
            past_length: an int, or a (1,) tensor (a static cache's first slot to write, so that a
                compiled step does not change with it).
            cross_caches: decoder only, one per layer: where cross attention keeps the encoder's
                projected keys and values, so that they are computed once per generation.
            key_length: the keys self attention sees: ``past_length + T`` (default), or all the
                max_cache_len slots of a static cache.

        Returns:
            ModelOutput with ``last_hidden_state`` (B, T, C); ``hidden_states`` (embeddings, each layer,
            the last one after the final norm), ``attentions`` and ``cross_attentions`` when asked.
        """
        B, T, _ = inputs_embeds.shape
        device = inputs_embeds.device
        S = past_length + T if key_length is None else key_length
        # The position bias is an additive mask; padding and causality join it as -inf-like entries.
        # Queries are at their true positions past_length + i, also among a static cache's S slots.
        bias = self.relative_position_bias(T, S, past_length)  # (1, H, T, S)
        if self.is_decoder:
            allowed = causal_mask(T, S, device, past_length=past_length)[None, None]  # (1, 1, T, S)
            if attention_mask is not None:
                if attention_mask.shape[1] < S:  # a static cache's slots not written yet: padding
                    attention_mask = F.pad(attention_mask, (0, S - attention_mask.shape[1]))  # (B, S)
                allowed = allowed & padding_mask(attention_mask.to(device))  # (B, 1, T, S)
        else:
            allowed = None if attention_mask is None else padding_mask(attention_mask)  # (B, 1, 1, S)
        self_mask = bias if allowed is None else bias + to_additive(allowed, bias.dtype)  # (B or 1, H, T, S)
        cross_mask = encoder_attention_mask
        if encoder_attention_mask is not None and encoder_attention_mask.dim() == 2:
            cross_mask = padding_mask(encoder_attention_mask)  # (B, 1, 1, S_enc)

        x = self.dropout(inputs_embeds)
        hidden_states, attentions, cross_attentions = [x], [], []
        for i, layer in enumerate(self.layers):
            if self.is_decoder:
                x, weights, cross_weights = layer(
                    x, attn_mask=self_mask, encoder_hidden_states=encoder_hidden_states,
                    cross_attn_mask=cross_mask, output_attentions=output_attentions,
                    cache=None if caches is None else caches[i],
                    cross_cache=None if cross_caches is None else cross_caches[i],
                )
                cross_attentions.append(cross_weights)
            else:
                x, weights = layer(x, attn_mask=self_mask, output_attentions=output_attentions)
            hidden_states.append(x)
            attentions.append(weights)
        x = self.dropout(self.final_norm(x))
        hidden_states[-1] = x  # as in transformers: the last hidden state is the normed one
        return ModelOutput(
            last_hidden_state=x,
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
            cross_attentions=tuple(cross_attentions) if output_attentions and self.is_decoder else None,
        )


class T5(GenerationMixin, PreTrainedModel):
    """T5 for conditional generation (HF ``T5ForConditionalGeneration``).

    ``forward`` runs both halves; :meth:`encode` and :meth:`decode` run one each, so that generation can
    encode once and decode token by token.

    Args:
        config: a :class:`T5Config`.
        attn_implementation: "math" (can return attention maps) or "sdpa".
    """

    config_class = T5Config

    def __init__(self, config: T5Config, attn_implementation: str = "math"):
        super().__init__()
        self.config = config
        self.shared = TokenEmbedding(config.vocab_size, config.d_model)
        self.encoder = T5Stack(config, is_decoder=False, attn_implementation=attn_implementation)
        self.decoder = T5Stack(config, is_decoder=True, attn_implementation=attn_implementation)
        self.lm_head = None if config.tie_word_embeddings else nn.Linear(config.d_model, config.vocab_size, bias=False)
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
               caches: list | None = None, past_length: int = 0,
               past_key_values: EncoderDecoderCache | None = None, use_cache: bool = False) -> ModelOutput:
        """Run the decoder and the head.

        Args:
            decoder_input_ids: (B, T) ids; with a cache, only the new tokens.
            encoder_hidden_states: (B, S, C), the encoder's ``last_hidden_state``.
            attention_mask: (B, S) the encoder's padding mask, so that cross attention skips padding;
                or a ready bool (B, 1, 1, S) mask (``generate`` builds it once per generation).
            decoder_attention_mask: (B, past_length + T) padding mask of the decoder tokens.
            caches, past_length: one KV cache per decoder layer, and how many tokens they already hold.
            past_key_values: an :class:`EncoderDecoderCache` (self attention and cross attention),
                updated in place; it replaces ``caches`` and ``past_length``. If its self attention
                is a static cache, set the slots first (``past_key_values.self_attention.prepare(T)``)
                and record them after (``.advance(T)``), as for any static cache.
            use_cache: start an :class:`EncoderDecoderCache` when ``past_key_values`` is None.

        Returns:
            ModelOutput with ``logits`` (B, T, V), ``last_hidden_state`` (B, T, C, before the rescale),
            decoder ``hidden_states``, ``attentions``, ``cross_attentions`` when asked, and the cache
            in ``past_key_values`` when one is used.
        """
        check_inputs(decoder_input_ids, ids_name="decoder_input_ids")
        if attention_mask is not None and attention_mask.dim() == 2:  # the encoder's mask, one entry per memory slot
            check_inputs(encoder_hidden_states[..., 0], attention_mask, ids_name="encoder_hidden_states[..., 0]")
        if use_cache and past_key_values is None:
            past_key_values = EncoderDecoderCache(self.config.num_decoder_layers)
        cross_caches, key_length = None, None
        if past_key_values is not None:
            caches, cross_caches = past_key_values.self_attention, past_key_values.cross_attention
            if past_key_values.is_static:
                past_length, key_length = static_positions(caches, decoder_input_ids.shape[1])
            else:
                past_length = past_key_values.get_seq_length()
        if key_length is None:  # a static cache's mask covers its slots, not the tokens seen
            check_inputs(decoder_input_ids, decoder_attention_mask, past_length, "decoder_input_ids",
                         "decoder_attention_mask")
        out = self.decoder(self.shared(decoder_input_ids), decoder_attention_mask, encoder_hidden_states,
                           attention_mask, output_hidden_states, output_attentions, caches, past_length,
                           cross_caches, key_length)
        out.past_key_values = past_key_values
        h = out.last_hidden_state * tied_head_scale(self.config)  # (B, T, C)
        weight = self.shared.weight if self.lm_head is None else self.lm_head.weight  # (V, C)
        out.logits = F.linear(h, weight)  # (B, T, V)
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
