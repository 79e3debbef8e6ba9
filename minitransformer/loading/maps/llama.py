"""LLaMA (and Mistral, Qwen2): HF ``LlamaForCausalLM`` checkpoint names <-> ``models.llama.Llama``.

Nearly an identity map: the shared attention and gated MLP use LLaMA's own names. Only the two norms
of a block are renamed. No weight is permuted: HF checkpoints already use the rotate-half RoPE layout
our :class:`RotaryEmbedding` defaults to (Meta's original ``consolidated.*.pth`` files use the
interleaved one; see ``layers.rope.permute_qk_weight_for_rotate_half``). Bias rules match only when
the checkpoint has biases (Qwen2's q/k/v, ``attention_bias``, ``mlp_bias``).
"""

from minitransformer.loading.weight_map import WeightMap, rename

_L = "model.layers.{i}."

WEIGHT_MAP = WeightMap(
    rules=(
        rename("model.embed_tokens.weight", "model.embed_tokens.weight"),
        rename(_L + "input_layernorm.weight", _L + "attn_norm.weight"),
        *(rename(_L + f"self_attn.{p}_proj.{w}", _L + f"self_attn.{p}_proj.{w}")
          for p in "qkvo" for w in ("weight", "bias")),
        rename(_L + "post_attention_layernorm.weight", _L + "mlp_norm.weight"),
        *(rename(_L + f"mlp.{p}_proj.{w}", _L + f"mlp.{p}_proj.{w}")
          for p in ("gate", "up", "down") for w in ("weight", "bias")),
        rename("model.norm.weight", "model.norm.weight"),
        rename("lm_head.weight", "lm_head.weight"),  # only when untied
    ),
    hf_prefix="model.",  # checkpoints saved from LlamaModel have no prefix
    ignore=(r"rotary_emb\.inv_freq$",),  # a buffer old transformers versions saved
    task_heads=("lm_head",),  # a LlamaModel checkpoint has no (untied) head: initialised anew
)
