"""GPT-2 (Radford et al. 2019), built from the shared layers.

    ids -> token embedding + learned position embedding -> n_layer pre-norm decoder blocks
        -> final LayerNorm -> LM head (tied to the token embedding) -> logits

Shapes: B batch, T sequence length, C = n_embd, H = n_head, V = vocab_size.

The module names follow HF's GPT2LMHeadModel (``transformer.wte``, ``transformer.h.{i}``,
``transformer.ln_f``, ``lm_head``) except inside a block, where the shared layers' names are used
(``self_attn.q_proj``, ``attn_norm``, ``mlp.up_proj``...). ``loading/maps/gpt2.py`` maps one to the
other, including the Conv1D transpose and the split of the fused ``c_attn``.

Example:
    >>> model = GPT2(GPT2Config(vocab_size=100, n_positions=16, n_embd=32, n_layer=2, n_head=4))
    >>> model(torch.tensor([[1, 2, 3]])).logits.shape
    torch.Size([1, 3, 100])
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from minitransformer.layers import (
    MLP,
    DecoderBlock,
    LayerNorm,
    LearnedPositionEmbedding,
    MultiHeadAttention,
    TokenEmbedding,
)
from minitransformer.layers.attention import DEFAULT_BACKEND, fused_kernels
from minitransformer.layers.kv_cache import DynamicCache, StaticCache
from minitransformer.layers.linear import Linear
from minitransformer.models.base import Config, DecoderOnlyModel, next_token_loss
from minitransformer.models.outputs import ModelOutput


@dataclass
class GPT2Config(Config):
    """GPT-2's hyperparameters under the names of HF's ``config.json``. Defaults: the 124M model.

    Presets (``GPT2Config.from_name(name)``): the four published sizes, ``gpt2`` (124M), ``gpt2-medium``
    (355M), ``gpt2-large`` (774M), ``gpt2-xl`` (1.5B), and ``gpt2-tiny`` for tests and lessons.
    """

    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "gpt2": {},
        "gpt2-medium": dict(n_embd=1024, n_layer=24, n_head=16),
        "gpt2-large": dict(n_embd=1280, n_layer=36, n_head=20),
        "gpt2-xl": dict(n_embd=1600, n_layer=48, n_head=25),
        "gpt2-tiny": dict(vocab_size=256, n_positions=64, n_embd=32, n_layer=2, n_head=4),
    }

    vocab_size: int = 50257
    n_positions: int = 1024  # max_position_embeddings
    n_embd: int = 768  # C
    n_layer: int = 12
    n_head: int = 12  # H
    n_inner: int | None = None  # MLP width, default 4 * C
    activation_function: str = "gelu_new"
    resid_pdrop: float = 0.1
    embd_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02
    scale_attn_weights: bool = True  # False: scores are not divided by sqrt(D)
    scale_attn_by_inverse_layer_idx: bool = False  # True: layer i also divides them by i + 1
    tie_word_embeddings: bool = True
    bos_token_id: int = 50256
    eos_token_id: int = 50256
    model_type: str = "gpt2"
    architectures: list[str] = field(default_factory=lambda: ["GPT2LMHeadModel"])


class GPT2(DecoderOnlyModel):
    """GPT-2 with its language-modelling head (HF's ``GPT2LMHeadModel``).

    Args:
        config: a :class:`GPT2Config`.
        attn_implementation: "math" (default: every operation written out, as the library reads) or
            "sdpa" (torch's fused kernels for attention, norms and activations; see
            ``layers.attention.fused_kernels``). The same switch and default in every family.
    """

    def __init__(self, config: GPT2Config, attn_implementation: str = DEFAULT_BACKEND):
        super().__init__()
        self.config = config
        C, H = config.n_embd, config.n_head
        fused = fused_kernels(attn_implementation)

        def block(layer_idx: int) -> DecoderBlock:
            scale = 1.0 / math.sqrt(C // H) if config.scale_attn_weights else 1.0
            if config.scale_attn_by_inverse_layer_idx:
                scale /= layer_idx + 1
            return DecoderBlock(
                self_attn=MultiHeadAttention(C, H, bias=True, scale=scale, dropout=config.attn_pdrop,
                                             attn_implementation=attn_implementation),
                mlp=MLP(C, config.n_inner or 4 * C, config.activation_function, fused=fused),
                attn_norm=LayerNorm(C, config.layer_norm_epsilon, fused=fused),
                mlp_norm=LayerNorm(C, config.layer_norm_epsilon, fused=fused),
                norm_first=True,
                dropout=config.resid_pdrop,
            )

        self.transformer = nn.ModuleDict(dict(
            wte=TokenEmbedding(config.vocab_size, C),
            wpe=LearnedPositionEmbedding(config.n_positions, C),
            drop=nn.Dropout(config.embd_pdrop),
            h=nn.ModuleList(block(i) for i in range(config.n_layer)),
            ln_f=LayerNorm(C, config.layer_norm_epsilon, fused=fused),
        ))
        self.lm_head = Linear(C, config.vocab_size, bias=False)
        self.apply(self._init_weights)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.transformer.wte.weight  # one matrix reads and writes tokens

    def _init_weights(self, module: nn.Module) -> None:
        """GPT-2's init: N(0, 0.02), and the projections into the residual stream scaled down by
        sqrt(2 * n_layer) so the stream's variance does not grow with depth."""
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, TokenEmbedding, LearnedPositionEmbedding)):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
        if isinstance(module, DecoderBlock):
            for proj in (module.self_attn.o_proj, module.mlp.down_proj):
                nn.init.normal_(proj.weight, mean=0.0, std=std / math.sqrt(2 * self.config.n_layer))

    @property
    def layers(self) -> nn.ModuleList:
        return self.transformer.h

    @property
    def max_positions(self) -> int:
        return self.config.n_positions

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
        token_type_ids: torch.Tensor | None = None,
        prepared_mask: torch.Tensor | None = None,
        shift_labels: torch.Tensor | None = None,
    ) -> ModelOutput:
        """Args:
            input_ids: (B, T) token ids; with a cache, only the tokens it does not hold yet.
            attention_mask: (B, S_past + T), 1 for tokens and 0 for padding (left or right).
            position_ids: (B, T) or (1, T); default ``S_past .. S_past + T - 1`` whatever the mask says,
                as in transformers: a left-padded row then does not equal the row alone. Pass
                ``positions_from_attention_mask(attention_mask, ...)`` for that, as ``generate`` does
                (see ``default_position_ids`` in ``models/base.py`` for why the forward does not).
            labels: (B, T) ids to predict; the loss compares position t's logits with labels[t + 1]
                (-100 is ignored).
            output_hidden_states: return the embedding output and every block's output (the last
                after ``ln_f``), like transformers.
            output_attentions: return each layer's attention probabilities (B, H, T, S).
            past_key_values: a KV cache holding the keys and values of the S_past earlier tokens
                (see ``minitransformer.layers.kv_cache``); it is updated in place.
            use_cache: True starts a :class:`DynamicCache` when ``past_key_values`` is None. None
                (default) and False keep none; they differ only for ``position_ids`` given with no mask:
                False reads a position that does not follow the previous one as the start of a packed
                sequence, as transformers does with ``use_cache=False``; None does not, as transformers'
                default, which keeps a cache (see ``DecoderOnlyModel.prepare_inputs`` in ``models/base.py``).
            logits_to_keep: compute the logits of the last ``logits_to_keep`` positions only (0: all);
                generation needs only the last one, and the head is the largest matrix.
            token_type_ids: (B, T) segment ids, embedded with the *token* table ``wte`` and added, as in
                transformers' GPT2Model (GPT-2 has no segment table of its own); default none added.
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
        x = self.transformer.wte(input_ids) + self.transformer.wpe(position_ids)  # (B, T, C)
        if token_type_ids is not None:
            x = x + self.transformer.wte(token_type_ids)  # (B, T, C)
        x = self.transformer.drop(x)

        hidden_states, attentions = [], []
        for i, block in enumerate(self.transformer.h):
            hidden_states.append(x)
            cache = None if past_key_values is None else past_key_values[i]
            x, probs, _ = block(x, attn_mask=mask, output_attentions=output_attentions, cache=cache)
            attentions.append(probs)
        x = self.transformer.ln_f(x)  # (B, T, C)
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
