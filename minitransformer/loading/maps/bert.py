"""BERT: HF ``BertModel`` / ``BertForMaskedLM`` / ``BertForSequenceClassification`` names -> ours.

Every BERT weight is stored exactly as we store it (``nn.Linear`` layout, no fused projections), so
the map is renames only. What HF splits into ``attention.self`` / ``attention.output`` /
``intermediate`` / ``output`` is, in our :class:`~minitransformer.layers.EncoderBlock`, the attention
(q/k/v/o projections), its post-norm, the MLP (up/down) and its post-norm.

Layout notes (no tensor changes, only where a weight lives):

- **the tied MLM decoder**: ``cls.predictions.decoder.weight`` *is* the word-embedding table; our MLM
  head multiplies by ``bert.embeddings.word_embeddings.weight`` directly, so the checkpoint's copy (if
  present) is dropped and only ``cls.predictions.bias`` is loaded. ``cls.predictions.decoder.bias`` is
  the same tensor as ``cls.predictions.bias`` in transformers and is dropped too.
- **old buffers**: checkpoints saved by older transformers hold ``embeddings.position_ids`` (an arange).
- **task heads**: a checkpoint of one class loads into another (``bert-base-uncased`` into a classifier,
  as with transformers): the heads it lacks (``HEADS``) are initialised anew and reported, the heads
  it has that the class lacks (``OTHER_HEADS``) are dropped and reported. The body must be complete.
- **old names**: the original Google checkpoints (``bert-base-uncased`` on the hub) call the LayerNorm
  parameters ``gamma`` / ``beta``, TensorFlow's names; ``LEGACY_NAMES`` reads them as ``weight`` / ``bias``.
"""

from __future__ import annotations

from minitransformer.loading.weight_map import Rule, WeightMap, rename

_LAYER = "encoder.layer.{i}."
_OURS = "layers.{i}."


def body_rules(hf: str = "", ours: str = "") -> tuple[Rule, ...]:
    """The encoder body, with ``hf`` / ``ours`` prefixes (``"bert."`` in the head models)."""
    pairs = [
        ("embeddings.word_embeddings.weight", "embeddings.word_embeddings.weight"),
        ("embeddings.position_embeddings.weight", "embeddings.position_embeddings.weight"),
        ("embeddings.token_type_embeddings.weight", "embeddings.token_type_embeddings.weight"),
        ("embeddings.LayerNorm.weight", "embeddings.norm.weight"),
        ("embeddings.LayerNorm.bias", "embeddings.norm.bias"),
    ]
    per_layer = [
        ("attention.self.query", "self_attn.q_proj"),
        ("attention.self.key", "self_attn.k_proj"),
        ("attention.self.value", "self_attn.v_proj"),
        ("attention.output.dense", "self_attn.o_proj"),
        ("attention.output.LayerNorm", "attn_norm"),
        ("intermediate.dense", "mlp.up_proj"),
        ("output.dense", "mlp.down_proj"),
        ("output.LayerNorm", "mlp_norm"),
    ]
    for hf_name, our_name in per_layer:
        for param in ("weight", "bias"):
            pairs.append((f"{_LAYER}{hf_name}.{param}", f"{_OURS}{our_name}.{param}"))
    return tuple(rename(hf + a, ours + b) for a, b in pairs)


def pooler_rules(hf: str = "", ours: str = "") -> tuple[Rule, ...]:
    return tuple(rename(f"{hf}pooler.dense.{p}", f"{ours}pooler.dense.{p}") for p in ("weight", "bias"))


MLM_HEAD_RULES = (
    rename("cls.predictions.transform.dense.weight", "mlm_head.dense.weight"),
    rename("cls.predictions.transform.dense.bias", "mlm_head.dense.bias"),
    rename("cls.predictions.transform.LayerNorm.weight", "mlm_head.norm.weight"),
    rename("cls.predictions.transform.LayerNorm.bias", "mlm_head.norm.bias"),
    rename("cls.predictions.bias", "mlm_head.bias"),
)

CLASSIFIER_RULES = (
    rename("classifier.weight", "classifier.weight"),
    rename("classifier.bias", "classifier.bias"),
)

_OLD_BUFFERS = (r"embeddings\.position_ids$", r"embeddings\.token_type_ids$")
LEGACY_NAMES = ((r"LayerNorm\.gamma$", "LayerNorm.weight"), (r"LayerNorm\.beta$", "LayerNorm.bias"))


# The task heads: what a checkpoint of another BERT class may lack (our module names, in each class).
# The pooler counts as one: it is trained only by next-sentence prediction, and BertForMaskedLM has
# none, so transformers, too, initialises it anew when a masked-LM checkpoint becomes a classifier.
HEADS = {
    "BertModel": ("pooler",),
    "BertForMaskedLM": ("mlm_head",),
    "BertForSequenceClassification": ("bert.pooler", "classifier"),
}
# Checkpoint keys of the heads a class does not have: dropped, and reported, when read into it.
OTHER_HEADS = {
    "BertModel": (r"^cls\.", r"^classifier\."),
    "BertForMaskedLM": (r"^classifier\.",),
    "BertForSequenceClassification": (r"^cls\.",),
}


def weight_map(config, architecture: str) -> WeightMap:
    """The map for one BERT architecture (the prefixes and heads differ, the body does not)."""
    heads = dict(task_heads=HEADS.get(architecture, ()), other_heads=OTHER_HEADS.get(architecture, ()),
                 load_aliases=LEGACY_NAMES)
    if architecture == "BertModel":
        # A head model's checkpoint (BertForSequenceClassification's) puts "bert." before every body key.
        return WeightMap(rules=body_rules() + pooler_rules(), strip_prefix="bert.", ignore=_OLD_BUFFERS, **heads)
    if architecture == "BertForMaskedLM":
        return WeightMap(
            rules=body_rules("bert.", "bert.") + MLM_HEAD_RULES,
            hf_prefix="bert.",
            # The tied decoder; and the pre-training checkpoints' pooler and next-sentence head,
            # which the MLM model has no use for (transformers drops them too).
            ignore=_OLD_BUFFERS + (r"^cls\.predictions\.decoder\.(weight|bias)$", r"^bert\.pooler\.",
                                   r"^cls\.seq_relationship\."),
            **heads,
        )
    if architecture == "BertForSequenceClassification":
        return WeightMap(rules=body_rules("bert.", "bert.") + pooler_rules("bert.", "bert.") + CLASSIFIER_RULES,
                         hf_prefix="bert.", ignore=_OLD_BUFFERS, **heads)
    raise ValueError(f"no BERT weight map for architecture {architecture!r}; "
                     "supported: BertModel, BertForMaskedLM, BertForSequenceClassification")
