"""A checkpoint without the task head, read into a class with one, against transformers.

A tiny ``BertModel`` / ``GPT2Model`` / ``LlamaModel`` (seeded weights, saved by transformers) is loaded into
our head classes. The head is newly initialised and named in one warning line; transformers does the same,
so its fresh head is copied into ours and the outputs compared in fp32 (max abs diff 1e-5). A checkpoint
missing a weight of the body still fails with a LoadingError naming it.
"""

from __future__ import annotations

import ast
import re
import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file

transformers = pytest.importorskip("transformers")

from minitransformer.loading import LoadingError, from_pretrained  # noqa: E402
from minitransformer.models import GPT2, Llama  # noqa: E402
from minitransformer.models.bert import BERT, BertForMaskedLM, BertForSequenceClassification  # noqa: E402
from minitransformer.testing import assert_close, seed_weights  # noqa: E402

pytestmark = pytest.mark.parity

BERT_TINY = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                 max_position_embeddings=24, num_labels=3)
GPT2_TINY = dict(vocab_size=64, n_positions=32, n_embd=32, n_layer=2, n_head=4, bos_token_id=0, eos_token_id=0)
LLAMA_TINY = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=64, bos_token_id=0, eos_token_id=0)
IDS = torch.tensor([[1, 5, 9, 2, 33, 7], [4, 4, 60, 3, 2, 1]])
MASK = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])


def save_hf(tmp_path, name, cls, config, seed=0, std=0.02):
    """``cls(config)`` with seeded weights, saved by transformers' own ``save_pretrained``."""
    model = seed_weights(cls(config), seed=seed, std=std).eval()
    directory = tmp_path / name
    model.save_pretrained(directory)
    return directory


def load_reporting(directory, model_class):
    """(our model, names in the "newly initialized" line or None, names in the "not used" line or None)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = from_pretrained(directory, model_class=model_class)
    lines = [str(w.message) for w in caught if str(w.message).startswith("Some weights of")]
    assert all("\n" not in line for line in lines), lines
    new = [line for line in lines if "newly initialized" in line]
    unused = [line for line in lines if "were not used" in line]
    assert len(new) <= 1 and len(unused) <= 1, lines
    found = lambda ls, pattern: ast.literal_eval(re.search(pattern, ls[0]).group(1)) if ls else None  # noqa: E731
    return (model, found(new, r"newly initialized: (\[.*?\])\. You should probably TRAIN"),
            found(unused, r"when initializing \w+: (\[.*?\])\."))


def hf_load(cls, directory):
    model, info = cls.from_pretrained(directory, output_loading_info=True, attn_implementation="eager")
    return model.eval(), info


def copy_into(ours, hf, pairs):
    """Copy transformers' freshly initialised head (HF name -> our name) into ours."""
    hf_state, our_params = hf.state_dict(), dict(ours.named_parameters())
    with torch.no_grad():
        for hf_name, our_name in pairs.items():
            our_params[our_name].copy_(hf_state[hf_name])


# ---- BERT --------------------------------------------------------------------------------------------------

@pytest.fixture
def bert_base(tmp_path):
    return save_hf(tmp_path, "bert_base", transformers.BertModel, transformers.BertConfig(**BERT_TINY))


def test_base_bert_into_the_classifier_as_transformers(bert_base):
    ours, new, unused = load_reporting(bert_base, BertForSequenceClassification)
    assert new == ["classifier.weight", "classifier.bias"] and unused is None
    hf, info = hf_load(transformers.BertForSequenceClassification, bert_base)
    assert set(info["missing_keys"]) == set(new) and not info["unexpected_keys"]
    copy_into(ours, hf, {n: n for n in new})
    with torch.no_grad():
        assert_close(ours(IDS, attention_mask=MASK).logits, hf(IDS, attention_mask=MASK).logits)


def test_base_bert_into_the_masked_lm_as_transformers(bert_base):
    ours, new, unused = load_reporting(bert_base, BertForMaskedLM)
    head = {"cls.predictions.transform.dense.weight": "mlm_head.dense.weight",
            "cls.predictions.transform.dense.bias": "mlm_head.dense.bias",
            "cls.predictions.transform.LayerNorm.weight": "mlm_head.norm.weight",
            "cls.predictions.transform.LayerNorm.bias": "mlm_head.norm.bias",
            "cls.predictions.bias": "mlm_head.bias"}
    assert sorted(new) == sorted(head.values()) and unused is None
    # our own init, as the class's __init__ gives it: LayerNorm identity, zero output bias
    assert torch.equal(ours.mlm_head.norm.weight, torch.ones(32)) and not ours.mlm_head.bias.any()
    assert 0.01 < ours.mlm_head.dense.weight.std() < 0.03  # N(0, initializer_range = 0.02)
    hf, info = hf_load(transformers.BertForMaskedLM, bert_base)
    assert set(head) <= set(info["missing_keys"]) | {"cls.predictions.bias"}
    copy_into(ours, hf, head)
    with torch.no_grad():
        assert_close(ours(IDS, attention_mask=MASK).logits, hf(IDS, attention_mask=MASK).logits)


def test_masked_lm_checkpoint_into_the_classifier_gets_a_new_pooler_too(tmp_path):
    """BertForMaskedLM has no pooler, so the classifier needs a new one (transformers: the same)."""
    directory = save_hf(tmp_path, "mlm", transformers.BertForMaskedLM, transformers.BertConfig(**BERT_TINY))
    ours, new, unused = load_reporting(directory, BertForSequenceClassification)
    assert sorted(new) == ["bert.pooler.dense.bias", "bert.pooler.dense.weight", "classifier.bias",
                           "classifier.weight"]
    assert unused and all(k.startswith("cls.predictions.") for k in unused)
    hf, info = hf_load(transformers.BertForSequenceClassification, directory)
    assert set(info["missing_keys"]) == set(new)
    copy_into(ours, hf, {n: n for n in new})
    with torch.no_grad():
        assert_close(ours(IDS, attention_mask=MASK).logits, hf(IDS, attention_mask=MASK).logits)


def test_classifier_checkpoint_into_the_base_model_drops_the_head(tmp_path):
    directory = save_hf(tmp_path, "cls", transformers.BertForSequenceClassification,
                        transformers.BertConfig(**BERT_TINY))
    ours, new, unused = load_reporting(directory, BERT)
    assert new is None and sorted(unused) == ["classifier.bias", "classifier.weight"]
    hf, info = hf_load(transformers.BertModel, directory)
    assert not info["missing_keys"]
    with torch.no_grad():
        a, b = ours(IDS, attention_mask=MASK), hf(IDS, attention_mask=MASK)
    assert_close(a.last_hidden_state, b.last_hidden_state)
    assert_close(a.pooler_output, b.pooler_output)


def drop_key(directory, key):
    path = directory / "model.safetensors"
    tensors = load_file(path)
    assert key in tensors, sorted(tensors)
    del tensors[key]
    save_file(tensors, path, metadata={"format": "pt"})


def test_a_missing_body_weight_is_still_an_error(bert_base):
    drop_key(bert_base, "encoder.layer.1.attention.self.key.weight")
    with pytest.raises(LoadingError) as err:
        from_pretrained(bert_base, model_class=BertForSequenceClassification)
    assert err.value.missing == ["bert.layers.1.self_attn.k_proj.weight  "
                                 "(checkpoint key: encoder.layer.1.attention.self.key.weight)"]
    assert "classifier" not in str(err.value)


# ---- GPT-2 and LLaMA: headless checkpoints into the causal LMs -------------------------------------------

def test_gpt2_model_checkpoint_tied_head_has_nothing_new(tmp_path):
    directory = save_hf(tmp_path, "gpt2", transformers.GPT2Model, transformers.GPT2Config(**GPT2_TINY), std=0.1)
    ours, new, unused = load_reporting(directory, GPT2)
    assert new is None and unused is None
    hf, info = hf_load(transformers.GPT2LMHeadModel, directory)
    assert not info["missing_keys"]
    with torch.no_grad():
        assert_close(ours(IDS).logits, hf(IDS).logits)


def test_gpt2_model_checkpoint_untied_gets_a_new_lm_head(tmp_path):
    config = transformers.GPT2Config(**GPT2_TINY, tie_word_embeddings=False)
    directory = save_hf(tmp_path, "gpt2_untied", transformers.GPT2Model, config, std=0.1)
    ours, new, _ = load_reporting(directory, GPT2)
    assert new == ["lm_head.weight"]
    assert ours.lm_head.weight is not ours.transformer.wte.weight
    hf, info = hf_load(transformers.GPT2LMHeadModel, directory)
    assert set(info["missing_keys"]) == {"lm_head.weight"}
    copy_into(ours, hf, {"lm_head.weight": "lm_head.weight"})
    with torch.no_grad():
        assert_close(ours(IDS).logits, hf(IDS).logits)


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_llama_model_checkpoint_into_the_causal_lm(tmp_path, tied):
    config = transformers.LlamaConfig(**LLAMA_TINY, tie_word_embeddings=tied)
    directory = save_hf(tmp_path, "llama", transformers.LlamaModel, config, std=0.1)
    ours, new, unused = load_reporting(directory, Llama)
    assert new == (None if tied else ["lm_head.weight"]) and unused is None
    hf, info = hf_load(transformers.LlamaForCausalLM, directory)
    assert set(info["missing_keys"]) == (set() if tied else {"lm_head.weight"})
    if not tied:
        assert 0.01 < ours.lm_head.weight.std() < 0.03  # N(0, initializer_range = 0.02), not zeros
        copy_into(ours, hf, {"lm_head.weight": "lm_head.weight"})
    with torch.no_grad():
        assert_close(ours(IDS, attention_mask=MASK).logits, hf(IDS, attention_mask=MASK).logits)


def test_llama_model_checkpoint_missing_a_body_weight_is_an_error(tmp_path):
    directory = save_hf(tmp_path, "llama", transformers.LlamaModel, transformers.LlamaConfig(**LLAMA_TINY))
    drop_key(directory, "layers.0.mlp.up_proj.weight")
    with pytest.raises(LoadingError) as err:
        from_pretrained(directory, model_class=Llama)
    assert err.value.missing == ["model.layers.0.mlp.up_proj.weight  (checkpoint key: layers.0.mlp.up_proj.weight)"]
    assert "lm_head" not in str(err.value)


def test_hf_checkpoint_with_generation_config_loads_it(tmp_path):
    """generation_config.json travels with the checkpoint (read by from_pretrained, written by save)."""
    generation = pytest.importorskip("minitransformer.generation.config")
    hf = seed_weights(transformers.GPT2LMHeadModel(transformers.GPT2Config(**GPT2_TINY)), seed=0, std=0.1)
    hf.generation_config = transformers.GenerationConfig(max_new_tokens=7, do_sample=True, top_k=3)
    hf.save_pretrained(tmp_path / "hf")
    ours = from_pretrained(tmp_path / "hf")
    assert isinstance(ours.generation_config, generation.GenerationConfig)
    assert (ours.generation_config.max_new_tokens, ours.generation_config.do_sample,
            ours.generation_config.top_k) == (7, True, 3)
    ours.save_pretrained(tmp_path / "ours")
    again = transformers.GenerationConfig.from_pretrained(tmp_path / "ours")
    assert (again.max_new_tokens, again.do_sample, again.top_k) == (7, True, 3)
