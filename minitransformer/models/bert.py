"""BERT (Devlin et al., 2018): a post-norm transformer encoder, and its two classic heads.

    ids, token types ──> word + token-type + position embeddings ──> LayerNorm
        ──> N x [x = LN(x + attention(x)); x = LN(x + MLP(x))]           (post-norm)
        ──> last_hidden_state (B, T, C)
              ├─ pooler: tanh(dense(first token))                       -> pooler_output (B, C)
              ├─ MLM head: LN(gelu(dense(h))) @ word_embeddings^T + b   -> logits (B, T, V)
              └─ classifier on the pooled first token                   -> logits (B, num_labels)

Shapes: B batch, T sequence length, C hidden_size, H heads, V vocab_size.

Three classes, one per HF architecture, sharing the same body :class:`BERT`:

- :class:`BERT` (HF ``BertModel``): ``.last_hidden_state`` and ``.pooler_output``;
- :class:`BertForMaskedLM`: ``.logits`` (B, T, V), the decoder tied to the word embeddings;
- :class:`BertForSequenceClassification`: ``.logits`` (B, num_labels).

Example:
    >>> config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                     intermediate_size=64)
    >>> out = BERT(config).eval()(torch.tensor([[2, 5, 7, 3]]))
    >>> out.last_hidden_state.shape, out.pooler_output.shape
    (torch.Size([1, 4, 32]), torch.Size([1, 32]))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from minitransformer.layers.attention import DEFAULT_BACKEND, MultiHeadAttention, fused_kernels
from minitransformer.layers.blocks import EncoderBlock
from minitransformer.layers.embeddings import LearnedPositionEmbedding, TokenEmbedding, check_token_ids
from minitransformer.layers.masks import padding_mask
from minitransformer.layers.mlp import MLP, get_activation
from minitransformer.layers.norms import LayerNorm
from minitransformer.models.base import Config, PreTrainedModel, check_inputs
from minitransformer.models.outputs import ModelOutput


@dataclass
class BertConfig(Config):
    """BERT's hyperparameters, named as in HF's ``config.json`` (defaults: bert-base-uncased).

    ``id2label`` fixes the number of classes of a sequence classifier (``num_labels``, 2 when absent,
    as in transformers). ``architectures`` records which head a checkpoint carries.

    Presets (``BertConfig.from_name(name)``): ``bert-base-uncased``, ``bert-large-uncased``,
    ``all-MiniLM-L6-v2`` (sentence-transformers' 6-layer MiniLM) and ``bert-tiny`` for tests and lessons.
    """

    model_type: ClassVar[str] = "bert"
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "bert-base-uncased": {},
        "bert-large-uncased": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                   intermediate_size=4096),
        "all-MiniLM-L6-v2": dict(hidden_size=384, num_hidden_layers=6, intermediate_size=1536),
        "bert-tiny": dict(vocab_size=256, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                          intermediate_size=64, max_position_embeddings=64),
    }

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int | None = 0
    position_embedding_type: str = "absolute"
    classifier_dropout: float | None = None
    tie_word_embeddings: bool = True
    is_decoder: bool = False
    id2label: dict[int, str] | None = None
    label2id: dict[str, int] | None = None
    architectures: list[str] = field(default_factory=lambda: ["BertModel"])

    def __post_init__(self):
        if self.position_embedding_type != "absolute":
            raise ValueError(
                f"position_embedding_type={self.position_embedding_type!r} is not supported: minitransformer's "
                "BERT has learned absolute positions only (position_embedding_type='absolute')"
            )
        if self.is_decoder:
            raise ValueError("is_decoder=True (a causal BERT) is not supported: BERT here is an encoder")
        if self.id2label is not None:
            self.id2label = {int(k): v for k, v in self.id2label.items()}
            if self.label2id is None:
                self.label2id = {v: k for k, v in self.id2label.items()}
        get_activation(self.hidden_act)  # fail early on an unknown activation name
        super().__post_init__()

    @property
    def num_labels(self) -> int:
        return len(self.id2label) if self.id2label else 2

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> BertConfig:
        """Build from a ``config.json`` dict; keys we do not use are kept in ``extra`` for the round trip.

        ``num_labels`` (a transformers keyword) is accepted and becomes ``id2label``.
        """
        if config.get("model_type", "bert") != "bert":
            raise ValueError(f"BertConfig reads model_type 'bert' configs, got model_type={config['model_type']!r}")
        config = dict(config)
        num_labels = config.pop("num_labels", None)
        if num_labels is not None and config.get("id2label") is None:
            config["id2label"] = {i: f"LABEL_{i}" for i in range(int(num_labels))}
        return super().from_dict(config)

    def to_dict(self) -> dict[str, Any]:
        """The ``config.json`` dict that transformers' ``AutoConfig`` reads back."""
        out = super().to_dict()
        out["model_type"] = self.model_type
        for key in ("id2label", "label2id"):
            if out[key] is None:
                del out[key]
        if "id2label" in out:
            out["id2label"] = {str(k): v for k, v in out["id2label"].items()}
        return out


class BertEmbeddings(nn.Module):
    """word + token type + position embeddings, then LayerNorm and dropout: (B, T) ids -> (B, T, C)."""

    def __init__(self, config: BertConfig, fused: bool = False):
        super().__init__()
        self.max_position_embeddings = config.max_position_embeddings
        self.type_vocab_size = config.type_vocab_size
        self.word_embeddings = TokenEmbedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = LearnedPositionEmbedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = TokenEmbedding(config.type_vocab_size, config.hidden_size)
        self.norm = LayerNorm(config.hidden_size, config.layer_norm_eps, fused=fused)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """``position_ids`` (B, T) or (1, T); default 0 .. T-1 in every row, padding or not, as in
        transformers: BERT's padding is on the right, where it moves no real token."""
        B, T = input_ids.shape
        if position_ids is None:
            if T > self.max_position_embeddings:
                raise ValueError(
                    f"input has {T} tokens but BERT's max_position_embeddings={self.max_position_embeddings}: "
                    f"truncate the input to at most {self.max_position_embeddings} tokens"
                )
            position_ids = torch.arange(T, device=input_ids.device)[None]  # (1, T)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)  # every token in segment A
        if token_type_ids.shape != input_ids.shape:
            raise ValueError(f"token_type_ids {tuple(token_type_ids.shape)} must have the shape of input_ids {(B, T)}")
        check_token_ids(token_type_ids, self.type_vocab_size, name="token_type_ids")
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)  # (B, T, C)
        x = x + self.position_embeddings(position_ids)  # (B|1, T, C) broadcast over B
        return self.dropout(self.norm(x))


class BertPooler(nn.Module):
    """The sentence vector BERT's next-sentence task trained: tanh(dense(hidden state of [CLS]))."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden_states[:, 0]))  # (B, T, C) -> (B, C)


def bert_block(config: BertConfig, attn_implementation: str = DEFAULT_BACKEND) -> EncoderBlock:
    """One post-norm encoder layer: x = LN(x + attn(x)); x = LN(x + MLP(x))."""
    C, fused = config.hidden_size, fused_kernels(attn_implementation)
    return EncoderBlock(
        self_attn=MultiHeadAttention(C, config.num_attention_heads, bias=True,
                                     dropout=config.attention_probs_dropout_prob,
                                     attn_implementation=attn_implementation),
        mlp=MLP(C, config.intermediate_size, config.hidden_act, fused=fused),
        attn_norm=LayerNorm(C, config.layer_norm_eps, fused=fused),
        mlp_norm=LayerNorm(C, config.layer_norm_eps, fused=fused),
        norm_first=False,
        dropout=config.hidden_dropout_prob,
    )


class _BertPreTrained(PreTrainedModel):
    """What the three BERT classes share: the config and HF's initialisation."""

    config_class = BertConfig

    def _init_weights(self, module: nn.Module) -> None:
        """Normal(0, initializer_range) for matrices and tables, zero biases, LayerNorm = identity."""
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (TokenEmbedding, LearnedPositionEmbedding)):
            nn.init.normal_(module.weight, std=std)
            if getattr(module, "padding_idx", None) is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


class BERT(_BertPreTrained):
    """The BERT encoder (HF ``BertModel``): embeddings, N post-norm blocks, and the pooler.

    Args:
        config: a :class:`BertConfig`.
        add_pooling_layer: False for the MLM head, which never uses the pooler (HF has none there either).
        attn_implementation: "math" (default, written out; the only one that returns attention maps)
            or "sdpa" (torch's fused kernels for attention, LayerNorm and GELU), as in every family.
    """

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True,
                 attn_implementation: str = DEFAULT_BACKEND):
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config, fused=fused_kernels(attn_implementation))
        self.layers = nn.ModuleList(bert_block(config, attn_implementation) for _ in range(config.num_hidden_layers))
        self.pooler = BertPooler(config.hidden_size) if add_pooling_layer else None
        self.apply(self._init_weights)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, output_hidden_states: bool = False,
                output_attentions: bool = False, position_ids: torch.Tensor | None = None) -> ModelOutput:
        """Args:
            input_ids: (B, T) token ids.
            attention_mask: (B, T), 1 for tokens and 0 for padding; padded keys are never attended to.
            token_type_ids: (B, T) segment ids (0 for sentence A, 1 for B); default all 0.
            position_ids: (B, T) or (1, T); default 0 .. T-1, whatever the mask says, as in transformers.
            output_hidden_states: also return the embedding output and every layer's output.
            output_attentions: also return every layer's attention probabilities (B, H, T, T).

        Returns:
            ModelOutput with ``last_hidden_state`` (B, T, C), ``pooler_output`` (B, C) or None,
            ``hidden_states`` (N + 1 tensors) and ``attentions`` (N tensors) when asked.
        """
        check_inputs(input_ids, attention_mask)
        mask = None if attention_mask is None else padding_mask(attention_mask.to(input_ids.device))  # (B, 1, 1, T)
        x = self.embeddings(input_ids, token_type_ids, position_ids)  # (B, T, C)
        hidden_states, attentions = [x], []
        for layer in self.layers:
            x, weights = layer(x, attn_mask=mask, output_attentions=output_attentions)
            hidden_states.append(x)
            attentions.append(weights)
        return ModelOutput(
            last_hidden_state=x,
            pooler_output=self.pooler(x) if self.pooler is not None else None,
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
        )


class BertMLMHead(nn.Module):
    """Predicts the masked tokens: LN(act(dense(h))) @ word_embeddings^T + bias -> (B, T, V).

    The decoder matrix is the word-embedding table itself (tied, as in every BERT checkpoint), so the
    head owns only the transform and a per-token output ``bias``.
    """

    def __init__(self, config: BertConfig, fused: bool = False):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = get_activation(config.hidden_act, fused)
        self.norm = LayerNorm(config.hidden_size, config.layer_norm_eps, fused=fused)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden_states: torch.Tensor, word_embeddings: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.act(self.dense(hidden_states)))  # (B, T, C)
        return F.linear(h, word_embeddings, self.bias)  # (B, T, V)


class BertForMaskedLM(_BertPreTrained):
    """BERT with the masked-language-model head: ``.logits`` (B, T, V)."""

    def __init__(self, config: BertConfig, attn_implementation: str = DEFAULT_BACKEND):
        super().__init__()
        if not config.tie_word_embeddings:
            raise ValueError("BertForMaskedLM ties its decoder to the word embeddings; "
                             "set tie_word_embeddings=True (an untied MLM decoder is not supported)")
        self.config = config
        self.bert = BERT(config, add_pooling_layer=False, attn_implementation=attn_implementation)
        self.mlm_head = BertMLMHead(config, fused=fused_kernels(attn_implementation))
        self.apply(self._init_weights)
        nn.init.zeros_(self.mlm_head.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, output_hidden_states: bool = False,
                output_attentions: bool = False, position_ids: torch.Tensor | None = None,
                labels: torch.Tensor | None = None) -> ModelOutput:
        """Same arguments as :meth:`BERT.forward`; adds ``logits`` (B, T, V).

        ``labels`` (B, T): the token to predict at each position, -100 where nothing is scored (the
        tokens that were not masked); ``loss`` is their mean cross-entropy, as in transformers.
        """
        out = self.bert(input_ids, attention_mask, token_type_ids, output_hidden_states, output_attentions,
                        position_ids)
        out.logits = self.mlm_head(out.last_hidden_state, self.bert.embeddings.word_embeddings.weight)
        if labels is not None:
            out.loss = F.cross_entropy(out.logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        return out


class BertForSequenceClassification(_BertPreTrained):
    """BERT with a linear classifier on the pooled [CLS] vector: ``.logits`` (B, num_labels)."""

    def __init__(self, config: BertConfig, attn_implementation: str = DEFAULT_BACKEND):
        super().__init__()
        self.config = config
        self.bert = BERT(config, attn_implementation=attn_implementation)
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(p)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.apply(self._init_weights)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, output_hidden_states: bool = False,
                output_attentions: bool = False, position_ids: torch.Tensor | None = None,
                labels: torch.Tensor | None = None) -> ModelOutput:
        """Same arguments as :meth:`BERT.forward`; adds ``logits`` (B, num_labels).

        ``labels``: (B,) class ids, or (B,) / (B, num_labels) floats; ``loss`` as transformers picks it
        (its ``problem_type``, read from the config or guessed the same way): mean squared error for
        one label (regression), cross-entropy for integer labels, binary cross-entropy on each label
        for float ones (multi-label).
        """
        out = self.bert(input_ids, attention_mask, token_type_ids, output_hidden_states, output_attentions,
                        position_ids)
        out.logits = self.classifier(self.dropout(out.pooler_output))  # (B, num_labels)
        if labels is not None:
            out.loss = self.loss(out.logits, labels)
        return out

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The loss of ``forward(labels=...)``, chosen by the config's ``problem_type`` as in transformers."""
        n = self.config.num_labels
        problem = self.config.extra.get("problem_type")
        if problem is None:  # transformers' guess: from the number of labels and their dtype
            if n == 1:
                problem = "regression"
            elif labels.dtype in (torch.long, torch.int):
                problem = "single_label_classification"
            else:
                problem = "multi_label_classification"
        if problem == "regression":
            return F.mse_loss(logits.squeeze(), labels.squeeze()) if n == 1 else F.mse_loss(logits, labels)
        if problem == "single_label_classification":
            return F.cross_entropy(logits.view(-1, n), labels.view(-1))
        if problem == "multi_label_classification":
            return F.binary_cross_entropy_with_logits(logits, labels)
        raise ValueError(f"problem_type={problem!r} in the config: expected 'regression', "
                         "'single_label_classification' or 'multi_label_classification'")
