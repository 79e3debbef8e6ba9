"""Full-size BERT and T5 configs built on the meta device: every parameter shape, no download, no memory.

Our model and transformers' are both built on ``meta``; our state dict is mapped to HF names through
the family's weight map and must give exactly HF's names and shapes (tied copies aside).
"""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from minitransformer.loading import empty_weights, get_family  # noqa: E402

pytestmark = pytest.mark.parity

# config.json of google-bert/bert-base-uncased, as published.
BERT_BASE_UNCASED = {
    "architectures": ["BertForMaskedLM"],
    "attention_probs_dropout_prob": 0.1,
    "gradient_checkpointing": False,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "hidden_size": 768,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-12,
    "max_position_embeddings": 512,
    "model_type": "bert",
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "pad_token_id": 0,
    "position_embedding_type": "absolute",
    "transformers_version": "4.6.0.dev0",
    "type_vocab_size": 2,
    "use_cache": True,
    "vocab_size": 30522,
}

# config.json of google-t5/t5-small (task_specific_params left out).
T5_SMALL = {
    "architectures": ["T5ForConditionalGeneration"],
    "d_ff": 2048,
    "d_kv": 64,
    "d_model": 512,
    "decoder_start_token_id": 0,
    "dropout_rate": 0.1,
    "eos_token_id": 1,
    "initializer_factor": 1.0,
    "is_encoder_decoder": True,
    "layer_norm_epsilon": 1e-06,
    "model_type": "t5",
    "n_positions": 512,
    "num_heads": 8,
    "num_layers": 6,
    "output_past": True,
    "pad_token_id": 0,
    "relative_attention_num_buckets": 32,
    "vocab_size": 32128,
}

# google/t5-v1_1-small: gated-GELU, untied head, d_ff not 4 * d_model, 8 decoder layers like the encoder.
T5_V1_1_SMALL = {
    "architectures": ["T5ForConditionalGeneration"],
    "d_ff": 1024,
    "d_kv": 64,
    "d_model": 512,
    "decoder_start_token_id": 0,
    "dropout_rate": 0.1,
    "eos_token_id": 1,
    "feed_forward_proj": "gated-gelu",
    "initializer_factor": 1.0,
    "is_encoder_decoder": True,
    "layer_norm_epsilon": 1e-06,
    "model_type": "t5",
    "num_decoder_layers": 8,
    "num_heads": 6,
    "num_layers": 8,
    "output_past": True,
    "pad_token_id": 0,
    "relative_attention_num_buckets": 32,
    "tie_word_embeddings": False,
    "vocab_size": 32128,
}

CASES = {
    "bert-base-uncased/BertForMaskedLM": (BERT_BASE_UNCASED, "BertForMaskedLM", 109_514_298),
    "bert-base-uncased/BertModel": (BERT_BASE_UNCASED, "BertModel", 109_482_240),
    "t5-small": (T5_SMALL, "T5ForConditionalGeneration", 60_506_624),
    "t5-v1_1-small": (T5_V1_1_SMALL, "T5ForConditionalGeneration", 76_961_152),
}


def _ours_on_meta(config_dict, architecture):
    family = get_family(config_dict["model_type"])
    config = family.config_class().from_dict(config_dict)
    _, cls = family.model_class([architecture])
    with empty_weights():
        model = cls(config)
    return family, config, model


def _theirs_on_meta(config_dict, architecture):
    hf_config = transformers.AutoConfig.for_model(**config_dict)
    if config_dict.get("tie_word_embeddings") is False:
        hf_config.tie_word_embeddings = False  # transformers 5's T5Config forces True; v1.1 is untied
    with torch.device("meta"):
        model = getattr(transformers, architecture)(hf_config)
    return model


@pytest.mark.parametrize("case", CASES)
def test_full_size_shapes_match_transformers(case):
    config_dict, architecture, count = CASES[case]
    family, config, ours = _ours_on_meta(config_dict, architecture)
    assert all(p.device.type == "meta" for p in ours.parameters())
    theirs = _theirs_on_meta(config_dict, architecture)

    mapped = family.weight_map_for(config, architecture).to_hf(ours.state_dict())
    tied = set(getattr(theirs, "_tied_weights_keys", None) or {})
    if config_dict.get("tie_word_embeddings") is False:
        tied.discard("lm_head.weight")
    expected = {k: tuple(v.shape) for k, v in theirs.state_dict().items() if k not in tied}
    got = {k: tuple(v.shape) for k, v in mapped.items()}
    assert sorted(set(expected) - set(got)) == [], "HF weights our model lacks"
    assert sorted(set(got) - set(expected)) == [], "weights of ours that HF lacks"
    assert got == expected

    assert sum(p.numel() for p in ours.parameters()) == count
    if config_dict.get("tie_word_embeddings") is not False:
        assert sum(p.numel() for p in theirs.parameters()) == count
