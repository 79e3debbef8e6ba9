"""GPT-2: HF ``GPT2LMHeadModel`` checkpoint names <-> ``minitransformer.models.gpt2.GPT2``.

Two layout changes, both in ``loading/transforms.py``: HF's GPT-2 uses ``Conv1D`` layers, which
store weights transposed relative to ``nn.Linear`` (CONV1D_TRANSPOSE), and computes q, k, v with one
fused ``c_attn`` projection that we split into three (FUSED_QKV_CONV1D, FUSED_QKV_BIAS).
"""

from minitransformer.loading.transforms import CONV1D_TRANSPOSE, FUSED_QKV_BIAS, FUSED_QKV_CONV1D
from minitransformer.loading.weight_map import WeightMap, convert, rename

_HF = "transformer.h.{i}."
_OURS = "transformer.h.{i}."
_QKV = tuple(f"{_OURS}self_attn.{p}_proj" for p in "qkv")

WEIGHT_MAP = WeightMap(
    rules=(
        rename("transformer.wte.weight", "transformer.wte.weight"),
        rename("transformer.wpe.weight", "transformer.wpe.weight"),
        rename(_HF + "ln_1.weight", _OURS + "attn_norm.weight"),
        rename(_HF + "ln_1.bias", _OURS + "attn_norm.bias"),
        convert(_HF + "attn.c_attn.weight", tuple(f"{n}.weight" for n in _QKV), FUSED_QKV_CONV1D),
        convert(_HF + "attn.c_attn.bias", tuple(f"{n}.bias" for n in _QKV), FUSED_QKV_BIAS),
        convert(_HF + "attn.c_proj.weight", _OURS + "self_attn.o_proj.weight", CONV1D_TRANSPOSE),
        rename(_HF + "attn.c_proj.bias", _OURS + "self_attn.o_proj.bias"),
        rename(_HF + "ln_2.weight", _OURS + "mlp_norm.weight"),
        rename(_HF + "ln_2.bias", _OURS + "mlp_norm.bias"),
        convert(_HF + "mlp.c_fc.weight", _OURS + "mlp.up_proj.weight", CONV1D_TRANSPOSE),
        rename(_HF + "mlp.c_fc.bias", _OURS + "mlp.up_proj.bias"),
        convert(_HF + "mlp.c_proj.weight", _OURS + "mlp.down_proj.weight", CONV1D_TRANSPOSE),
        rename(_HF + "mlp.c_proj.bias", _OURS + "mlp.down_proj.bias"),
        rename("transformer.ln_f.weight", "transformer.ln_f.weight"),
        rename("transformer.ln_f.bias", "transformer.ln_f.bias"),
        rename("lm_head.weight", "lm_head.weight"),  # only when untied; a tied head is the embedding
    ),
    hf_prefix="transformer.",  # checkpoints saved from GPT2Model (the hub's "gpt2") have no prefix
    ignore=(r"\.attn\.(masked_)?bias$",),  # the causal-mask buffers old transformers versions saved
    task_heads=("lm_head",),  # an untied head, which a GPT2Model checkpoint lacks: initialised anew
)
