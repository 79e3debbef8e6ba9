"""T5: HF ``T5ForConditionalGeneration`` names -> ours.

HF nests each block as ``block.{i}.layer.{j}`` with ``j`` counting sublayers: 0 self attention,
1 cross attention (decoder only), then the feed-forward (1 in the encoder, 2 in the decoder). Our
:class:`~minitransformer.layers.EncoderBlock` / :class:`~minitransformer.layers.DecoderBlock` name
the sublayers instead. Every tensor keeps its layout; the map is renames only.

Layout notes (no tensor changes, only where a weight lives or what it means):

- **shared relative position bias**: T5 computes the bias once per stack, in block 0, and reuses it in
  every layer; HF therefore stores it as ``{stack}.block.0.layer.0.SelfAttention.relative_attention_bias``.
  We hold it on the stack itself (``{stack}.relative_position_bias.weight``, (num_buckets, H)), which is
  where it is used. Old checkpoints also hold an unused cross-attention copy in the decoder; it is dropped.
- **no attention scaling**: there is nothing to convert, but the query weights already include the
  1/sqrt(D) that T5's attention omits (see ``minitransformer.models.t5.T5_ATTENTION_SCALE``).
- **feed-forward**: v1.0 ``wi``/``wo`` = our MLP ``up_proj``/``down_proj``; v1.1 ``wi_0`` is the
  activated (gate) branch = ``gate_proj``, ``wi_1`` the linear branch = ``up_proj``, ``wo`` = ``down_proj``.
- **tied embeddings**: ``encoder.embed_tokens`` and ``decoder.embed_tokens`` are the same table as
  ``shared`` and are dropped if stored. With ``tie_word_embeddings`` the output head is ``shared`` too
  (any stored ``lm_head.weight`` is dropped); without it (v1.1) ``lm_head.weight`` is loaded.
"""

from __future__ import annotations

from minitransformer.loading.weight_map import Rule, WeightMap, rename


def _attention(hf: str, ours: str) -> tuple[Rule, ...]:
    return tuple(rename(f"{hf}.{p}.weight", f"{ours}.{p}_proj.weight") for p in "qkvo")


def _feed_forward(hf: str, ours: str, gated: bool) -> tuple[Rule, ...]:
    if gated:
        pairs = (("wi_0", "gate_proj"), ("wi_1", "up_proj"), ("wo", "down_proj"))
    else:
        pairs = (("wi", "up_proj"), ("wo", "down_proj"))
    return tuple(rename(f"{hf}.DenseReluDense.{a}.weight", f"{ours}.mlp.{b}.weight") for a, b in pairs)


def weight_map(config, architecture: str = "T5ForConditionalGeneration") -> WeightMap:
    """The T5 map; the feed-forward names depend on ``config.feed_forward_proj``, the head on the tie."""
    if architecture != "T5ForConditionalGeneration":
        raise ValueError(f"no T5 weight map for architecture {architecture!r}; supported: T5ForConditionalGeneration")
    gated = config.is_gated_act
    enc, dec = "encoder.block.{i}.layer", "decoder.block.{i}.layer"
    rules = [rename("shared.weight", "shared.weight")]
    for stack in ("encoder", "decoder"):
        rules.append(rename(f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                            f"{stack}.relative_position_bias.weight"))
        rules.append(rename(f"{stack}.final_layer_norm.weight", f"{stack}.final_norm.weight"))
    rules += _attention(f"{enc}.0.SelfAttention", "encoder.layers.{i}.self_attn")
    rules.append(rename(f"{enc}.0.layer_norm.weight", "encoder.layers.{i}.attn_norm.weight"))
    rules += _feed_forward(f"{enc}.1", "encoder.layers.{i}", gated)
    rules.append(rename(f"{enc}.1.layer_norm.weight", "encoder.layers.{i}.mlp_norm.weight"))
    rules += _attention(f"{dec}.0.SelfAttention", "decoder.layers.{i}.self_attn")
    rules.append(rename(f"{dec}.0.layer_norm.weight", "decoder.layers.{i}.attn_norm.weight"))
    rules += _attention(f"{dec}.1.EncDecAttention", "decoder.layers.{i}.cross_attn")
    rules.append(rename(f"{dec}.1.layer_norm.weight", "decoder.layers.{i}.cross_attn_norm.weight"))
    rules += _feed_forward(f"{dec}.2", "decoder.layers.{i}", gated)
    rules.append(rename(f"{dec}.2.layer_norm.weight", "decoder.layers.{i}.mlp_norm.weight"))
    ignore = [r"^(encoder|decoder)\.embed_tokens\.weight$",
              r"^decoder\.block\.0\.layer\.1\.EncDecAttention\.relative_attention_bias\.weight$"]
    if config.tie_word_embeddings:
        ignore.append(r"^lm_head\.weight$")
    else:
        rules.append(rename("lm_head.weight", "lm_head.weight"))
    # A T5Model checkpoint has no (untied) lm_head: it is initialised anew.
    return WeightMap(rules=tuple(rules), ignore=tuple(ignore), task_heads=("lm_head",))
