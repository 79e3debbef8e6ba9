"""Full-size configs (gpt2 124M, Llama-3-8B) checked on the meta device: no download, no memory.

Both our model and transformers' are built on ``meta`` (shapes only); transformers' state dict is
then run through our weight map exactly as a real checkpoint would be. If a single name or shape
disagreed, loading the real weights would fail; here it is caught in a second.
"""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from minitransformer.loading import empty_weights, get_family, load_weights  # noqa: E402

pytestmark = pytest.mark.parity

GPT2_124M = {
    "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": 50257, "n_positions": 1024,
    "n_ctx": 1024, "n_embd": 768, "n_layer": 12, "n_head": 12, "activation_function": "gelu_new",
    "layer_norm_epsilon": 1e-5, "initializer_range": 0.02, "bos_token_id": 50256, "eos_token_id": 50256,
}
LLAMA_3_8B = {
    "model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 128256, "hidden_size": 4096,
    "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
    "hidden_act": "silu", "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
    "rope_scaling": None, "tie_word_embeddings": False, "attention_bias": False, "mlp_bias": False,
    "bos_token_id": 128000, "eos_token_id": 128001, "torch_dtype": "bfloat16",
}


class MetaCheckpoint:
    """A Checkpoint look-alike holding transformers' meta tensors."""

    def __init__(self, state_dict):
        self.state, self.directory = state_dict, "<meta>"

    def keys(self):
        return list(self.state)

    def get(self, name):
        return self.state[name]


@pytest.mark.parametrize(("config", "n_params"), [(GPT2_124M, 124_439_808), (LLAMA_3_8B, 8_030_261_248)],
                         ids=["gpt2", "llama-3-8b"])
def test_full_size_shapes_on_meta(config, n_params):
    family = get_family(config["model_type"])
    architecture, cls = family.model_class(config["architectures"])
    our_config = family.config_class().from_dict(config)
    with empty_weights():
        ours = cls(our_config)
    assert all(p.device.type == "meta" for p in ours.parameters())
    assert sum(p.numel() for p in ours.parameters()) == n_params

    hf_config = transformers.AutoConfig.for_model(**{k: v for k, v in config.items() if k != "architectures"})
    with torch.device("meta"):
        hf = transformers.AutoModelForCausalLM.from_config(hf_config)
    hf_state = {k: v for k, v in hf.state_dict().items()}
    if hf_config.tie_word_embeddings:
        hf_state.pop("lm_head.weight")  # transformers does not save a tied head
    load_weights(ours, MetaCheckpoint(hf_state), family.weight_map_for(our_config, architecture))
    assert sum(p.numel() for p in ours.parameters()) == n_params
