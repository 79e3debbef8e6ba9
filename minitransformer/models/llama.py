"""LLaMA (Touvron et al. 2023, and Llama 2/3), built from the shared layers; Mistral and Qwen2 too.

    ids -> token embedding -> num_hidden_layers pre-norm decoder blocks -> RMSNorm -> LM head -> logits

    block:  x = x + attn(rmsnorm(x))    attention with RoPE on q and k, grouped-query heads
            x = x + swiglu(rmsnorm(x))  down(silu(gate(x)) * up(x))

Shapes: B batch, T sequence length, C = hidden_size, H = num_attention_heads,
Hkv = num_key_value_heads, D = head_dim, V = vocab_size.

There are no position embeddings to add: positions enter attention as rotations of q and k
(:class:`RotaryEmbedding`), with HF's ``rope_theta`` and ``rope_scaling`` ("linear", "llama3").
Mistral and Qwen2 checkpoints are the same network with another config: Mistral may limit attention
to a sliding window, Qwen2 adds a bias to the q, k and v projections.

Example:
    >>> config = LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
    ...                      num_attention_heads=4, num_key_value_heads=2)
    >>> Llama(config)(torch.tensor([[1, 2, 3]])).logits.shape
    torch.Size([1, 3, 100])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from minitransformer.layers import (
    DecoderBlock,
    GatedMLP,
    MultiHeadAttention,
    RMSNorm,
    RotaryEmbedding,
    TokenEmbedding,
    causal_mask,
    check_positions,
    decoder_mask,
)
from minitransformer.layers.attention import DEFAULT_BACKEND, fused_kernels
from minitransformer.layers.kv_cache import DynamicCache, StaticCache
from minitransformer.layers.linear import Linear
from minitransformer.models.base import Config, DecoderOnlyModel, next_token_loss
from minitransformer.models.outputs import ModelOutput


@dataclass
class LlamaConfig(Config):
    """LLaMA's hyperparameters under the names of HF's ``config.json``. Defaults: Llama-2-7B.

    Presets (``LlamaConfig.from_name(name)``): ``llama-2-7b``, ``llama-3-8b``, ``tinyllama-1.1b``,
    ``smollm-135m`` (HuggingFaceTB/SmolLM-135M's shape), and ``llama-tiny`` for tests and lessons.
    """

    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "llama-2-7b": {},
        "llama-3-8b": dict(vocab_size=128256, intermediate_size=14336, num_key_value_heads=8,
                           max_position_embeddings=8192, rope_theta=500000.0, rms_norm_eps=1e-5,
                           bos_token_id=128000, eos_token_id=128001),
        "tinyllama-1.1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                               num_attention_heads=32, num_key_value_heads=4, rms_norm_eps=1e-5),
        "smollm-135m": dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                            num_attention_heads=9, num_key_value_heads=3, rms_norm_eps=1e-5, rope_theta=10000.0,
                            tie_word_embeddings=True, bos_token_id=0, eos_token_id=0),
        "llama-tiny": dict(vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64),
    }

    vocab_size: int = 32000
    hidden_size: int = 4096  # C
    intermediate_size: int = 11008  # SwiGLU width
    num_hidden_layers: int = 32
    num_attention_heads: int = 32  # H
    num_key_value_heads: int | None = None  # Hkv; None = H (no grouping)
    head_dim: int | None = None  # D; None = C // H
    hidden_act: str = "silu"
    max_position_embeddings: int = 2048
    initializer_range: float = 0.02
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None  # {"rope_type": "linear" | "llama3", "factor": ..., ...}
    attention_bias: bool = False  # bias on q, k, v and o projections
    attention_dropout: float = 0.0
    mlp_bias: bool = False
    tie_word_embeddings: bool = False
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 2
    pad_token_id: int | None = None
    model_type: str = "llama"
    architectures: list[str] = field(default_factory=lambda: ["LlamaForCausalLM"])

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> LlamaConfig:
        config = dict(config)
        rope = config.pop("rope_parameters", None)
        if rope:  # transformers >= 5 writes rope_theta and rope_scaling together as rope_parameters
            rope = dict(rope)
            config["rope_theta"] = rope.pop("rope_theta", config.get("rope_theta", 10000.0))
            if config.get("rope_scaling") is None and rope.get("rope_type", rope.get("type")) != "default":
                config["rope_scaling"] = rope
        return super().from_dict(config)

    def to_dict(self) -> dict[str, Any]:
        """The ``config.json`` dict; ``head_dim`` only when set (transformers' Qwen2 reads a null as a number)."""
        out = super().to_dict()
        if out.get("head_dim") is None:
            out.pop("head_dim", None)
        return out

    @property
    def qkv_bias(self) -> bool:
        return self.attention_bias

    @property
    def o_bias(self) -> bool:
        return self.attention_bias

    @property
    def window(self) -> int | None:
        """Sliding-window size (each token sees at most this many keys, itself included), or None."""
        return None


@dataclass
class MistralConfig(LlamaConfig):
    """Mistral: LLaMA with an optional sliding attention window. Preset: ``mistral-7b`` (v0.1)."""

    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "mistral-7b": dict(intermediate_size=14336, num_key_value_heads=8, max_position_embeddings=32768,
                           rms_norm_eps=1e-5, sliding_window=4096),
    }

    sliding_window: int | None = 4096
    model_type: str = "mistral"
    architectures: list[str] = field(default_factory=lambda: ["MistralForCausalLM"])

    @property
    def window(self) -> int | None:
        return self.sliding_window


@dataclass
class Qwen2Config(LlamaConfig):
    """Qwen2: LLaMA with a bias on the q, k and v projections (not on o)."""

    presets: ClassVar[dict[str, dict[str, Any]]] = {}

    use_sliding_window: bool = False
    sliding_window: int | None = None
    max_window_layers: int = 28
    model_type: str = "qwen2"
    architectures: list[str] = field(default_factory=lambda: ["Qwen2ForCausalLM"])

    def __post_init__(self):
        if self.use_sliding_window:
            raise NotImplementedError("Qwen2 with use_sliding_window=True is not supported; "
                                      "set use_sliding_window to false in config.json")
        super().__post_init__()

    @property
    def qkv_bias(self) -> bool:
        return True

    @property
    def o_bias(self) -> bool:
        return False


class Llama(DecoderOnlyModel):
    """LLaMA with its language-modelling head (HF's ``LlamaForCausalLM``).

    Args:
        config: a :class:`LlamaConfig` (or Mistral's, Qwen2's).
        attn_implementation: "math" (default, written out) or "sdpa" (torch's fused kernels for
            attention, RMSNorm and SiLU), as in every family (``layers.attention.fused_kernels``).
    """

    def __init__(self, config: LlamaConfig, attn_implementation: str = DEFAULT_BACKEND):
        super().__init__()
        self.config = config
        fused = fused_kernels(attn_implementation)
        C, H = config.hidden_size, config.num_attention_heads
        Hkv = config.num_key_value_heads or H
        D = config.head_dim or C // H
        # One rotary module, shared by every layer: it holds only its frequency table (not a weight).
        rotary = RotaryEmbedding(D, config.max_position_embeddings, config.rope_theta, config.rope_scaling)

        def block() -> DecoderBlock:
            return DecoderBlock(
                self_attn=MultiHeadAttention(C, H, Hkv, head_dim=D, bias=config.qkv_bias, out_bias=config.o_bias,
                                             dropout=config.attention_dropout, rotary=rotary,
                                             attn_implementation=attn_implementation),
                mlp=GatedMLP(C, config.intermediate_size, config.hidden_act, bias=config.mlp_bias, fused=fused),
                attn_norm=RMSNorm(C, config.rms_norm_eps, fused=fused),
                mlp_norm=RMSNorm(C, config.rms_norm_eps, fused=fused),
                norm_first=True,
            )

        self.model = nn.ModuleDict(dict(
            embed_tokens=TokenEmbedding(config.vocab_size, C),
            rotary_emb=rotary,
            layers=nn.ModuleList(block() for _ in range(config.num_hidden_layers)),
            norm=RMSNorm(C, config.rms_norm_eps, fused=fused),
        ))
        self.lm_head = Linear(C, config.vocab_size, bias=False)
        self.apply(self._init_weights)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def _init_weights(self, module: nn.Module) -> None:
        """N(0, initializer_range) for every matrix, zero biases (norms start at one)."""
        if isinstance(module, (nn.Linear, TokenEmbedding)):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)

    @property
    def layers(self) -> nn.ModuleList:
        return self.model.layers

    @property
    def max_positions(self) -> int:
        return self.config.max_position_embeddings

    def build_mask(self, attention_mask: torch.Tensor | None, T: int, S: int | None = None,
                   device: torch.device | None = None) -> torch.Tensor:
        """Causal AND padding AND (Mistral) sliding window: bool (B|1, 1, T, S), True = attend.

        The T queries are the last T of the S keys (S > T when a cache holds S - T earlier tokens).
        """
        S = T if S is None else S
        mask = decoder_mask(attention_mask, T, S, device=device)  # (B|1, 1, T, S)
        if self.config.window is not None and S > self.config.window:
            # query i sits at position i + S - T; key j is visible only if (i + S - T) - j < window
            too_old = causal_mask(T, S, device=device).tril(S - T - self.config.window)  # (T, S)
            mask = mask & ~too_old
        return mask

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        past_key_values: DynamicCache | StaticCache | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int = 0,
        prepared_mask: torch.Tensor | None = None,
        shift_labels: torch.Tensor | None = None,
    ) -> ModelOutput:
        """Args:
            input_ids: (B, T) token ids; with a cache, only the tokens it does not hold yet.
            attention_mask: (B, S_past + T), 1 for tokens and 0 for padding (left or right).
            position_ids: (B, T) or (1, T); default ``S_past .. S_past + T - 1`` whatever the mask says,
                as in transformers (see ``default_position_ids`` in ``models/base.py``). RoPE sees only
                differences of positions, so a left-padded row's real tokens equal the row alone either
                way; its padding's outputs do not. ``generate`` passes ``positions_from_attention_mask``.
            labels: (B, T) ids to predict; position t's logits are scored against labels[t + 1].
            output_hidden_states: the embedding output and every layer's output (the last after the
                final norm), like transformers.
            output_attentions: each layer's attention probabilities (B, H, T, S).
            past_key_values: a KV cache holding the (rotated) keys and values of the S_past earlier
                tokens, Hkv heads each (see ``minitransformer.layers.kv_cache``); updated in place.
            use_cache: True starts a :class:`DynamicCache` when ``past_key_values`` is None. None
                (default) and False keep none; they differ only for ``position_ids`` given with no mask:
                False reads a position that does not follow the previous one as the start of a packed
                sequence, as transformers does with ``use_cache=False``; None does not, as transformers'
                default, which keeps a cache (see ``DecoderOnlyModel.prepare_inputs`` in ``models/base.py``).
            logits_to_keep: compute the logits of the last ``logits_to_keep`` positions only (0: all);
                generation needs only the last one, and the head is the largest matrix.
            prepared_mask: instead of ``attention_mask``, a ready (B|1, 1, T, S) mask over the keys
                attention will see, bool (True = attend) or additive; ``position_ids`` must be given
                too (``generate`` builds one per generation and slices it).
            shift_labels: (B, T) targets already shifted, transformers' name: position t is scored
                against ``shift_labels[t]``, the last position too; replaces ``labels`` (the Trainer's
                batches, cut from T + 1 tokens as nanoGPT's are).

        Returns:
            :class:`ModelOutput` with ``logits`` (B, T, V), ``last_hidden_state`` (B, T, C) and the
            cache in ``past_key_values``.
        """
        past_key_values, mask, position_ids = self.prepare_inputs(
            input_ids, attention_mask=attention_mask, prepared_mask=prepared_mask, position_ids=position_ids,
            past_key_values=past_key_values, use_cache=use_cache,
        )  # mask (B|1, 1, T, S)
        check_positions(position_ids, self.config.max_position_embeddings)
        x = self.model.embed_tokens(input_ids)  # (B, T, C)

        hidden_states, attentions = [], []
        for i, layer in enumerate(self.model.layers):
            hidden_states.append(x)
            cache = None if past_key_values is None else past_key_values[i]
            x, probs, _ = layer(x, attn_mask=mask, position_ids=position_ids, output_attentions=output_attentions,
                                cache=cache)
            attentions.append(probs)
        x = self.model.norm(x)  # (B, T, C)
        hidden_states.append(x)
        logits = self.lm_head(x[:, -logits_to_keep:])  # (B, T, V), or (B, logits_to_keep, V)

        return ModelOutput(
            logits=logits,
            last_hidden_state=x,
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
            past_key_values=past_key_values,
            loss=next_token_loss(logits, labels, shift_labels),
        )
