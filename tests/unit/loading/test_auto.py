"""Auto classes: our class picked by the checkpoint's ``model_type`` and the Auto kind, not by ``architectures``.

The unit tests use checkpoints saved by minitransformer itself; the parity test at the end checks that
transformers' Auto class picks the class ours pairs with (same architecture name) on the same checkpoint.
"""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from minitransformer.loading import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    ConfigError,
    get_family,
    save_pretrained,
)
from minitransformer.models.bert import BERT, BertConfig, BertForMaskedLM, BertForSequenceClassification
from minitransformer.models.gpt2 import GPT2, GPT2Config
from minitransformer.models.llama import Llama, LlamaConfig, MistralConfig, Qwen2Config
from minitransformer.models.t5 import T5, T5Config
from minitransformer.testing import seed_weights

pytestmark = pytest.mark.filterwarnings("ignore:Some weights of")  # task heads newly initialised / dropped

CONFIGS = {
    "bert": BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=24, max_position_embeddings=16),
    "gpt2": GPT2Config(vocab_size=40, n_positions=16, n_embd=16, n_layer=1, n_head=2),
    "llama": LlamaConfig(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=16),
    "mistral": MistralConfig(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                             num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=16),
    # head_dim given: a saved "head_dim": null breaks transformers' Qwen2 attention (it reads None ** -0.5)
    "qwen2": Qwen2Config(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=16, head_dim=8),
    "t5": T5Config(vocab_size=40, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2),
}

#: (Auto class, model_type) -> our class; every pair a family has.
PAIRS = {
    (AutoModel, "bert"): BERT,
    (AutoModelForMaskedLM, "bert"): BertForMaskedLM,
    (AutoModelForSequenceClassification, "bert"): BertForSequenceClassification,
    (AutoModelForCausalLM, "gpt2"): GPT2,
    (AutoModelForCausalLM, "llama"): Llama,
    (AutoModelForCausalLM, "mistral"): Llama,
    (AutoModelForCausalLM, "qwen2"): Llama,
    (AutoModelForSeq2SeqLM, "t5"): T5,
}
IDS = [f"{auto.__name__}-{model_type}" for auto, model_type in PAIRS]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """model_type -> a directory with a tiny checkpoint of that family's default class, saved by us."""
    dirs = {}
    for model_type, config in CONFIGS.items():
        model = get_family(model_type).model_class(None)[1](config)
        dirs[model_type] = save_pretrained(seed_weights(model, 0, std=0.1), tmp_path_factory.mktemp(model_type))
    return dirs


@pytest.mark.parametrize(("auto", "model_type"), list(PAIRS), ids=IDS)
def test_from_pretrained_picks_the_class_by_model_type_and_kind(saved, auto, model_type):
    model = auto.from_pretrained(saved[model_type])
    assert type(model) is PAIRS[auto, model_type] and not model.training


@pytest.mark.parametrize(("auto", "model_type"), list(PAIRS), ids=IDS)
def test_from_config_builds_a_fresh_model(auto, model_type):
    model = auto.from_config(CONFIGS[model_type])
    assert type(model) is PAIRS[auto, model_type]
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert any(p.std() > 0 for p in model.parameters() if p.dim() == 2)  # randomly initialised, not zeros


def test_architectures_do_not_decide(saved, tmp_path):
    """A masked-LM checkpoint read with AutoModel gives the encoder; with the classifier kind, the classifier."""
    mlm = save_pretrained(seed_weights(BertForMaskedLM(CONFIGS["bert"]), 0, std=0.1), tmp_path / "mlm")
    assert json.loads((mlm / "config.json").read_text())["architectures"] == ["BertForMaskedLM"]
    assert type(AutoModel.from_pretrained(mlm)) is BERT
    assert type(AutoModelForSequenceClassification.from_pretrained(mlm)) is BertForSequenceClassification


def test_base_checkpoint_into_the_classifier_reports_the_new_head(saved):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = AutoModelForSequenceClassification.from_pretrained(saved["bert"], dtype="bfloat16")
    assert model.classifier.weight.dtype == torch.bfloat16
    lines = [str(w.message) for w in caught if "newly initialized" in str(w.message)]
    assert len(lines) == 1 and "['classifier.weight', 'classifier.bias']" in lines[0]


@pytest.mark.parametrize(("auto", "model_type", "has"), [
    (AutoModelForMaskedLM, "gpt2", "AutoModelForCausalLM"),
    (AutoModel, "gpt2", "AutoModelForCausalLM"),
    (AutoModelForCausalLM, "bert", "AutoModel, AutoModelForMaskedLM, AutoModelForSequenceClassification"),
    (AutoModelForSeq2SeqLM, "llama", "AutoModelForCausalLM"),
    (AutoModelForCausalLM, "t5", "AutoModelForSeq2SeqLM"),
])
def test_a_kind_the_family_lacks_lists_the_kinds_it_has(saved, auto, model_type, has):
    message = f"model_type '{model_type}' has no {auto.__name__} class in minitransformer; the Auto classes it has: {has}"
    with pytest.raises(ValueError) as err:
        auto.from_pretrained(saved[model_type])
    assert str(err.value) == message
    with pytest.raises(ValueError, match="the Auto classes it has"):
        auto.from_config(CONFIGS[model_type])


@pytest.mark.parametrize("model_type", list(CONFIGS))
def test_auto_config_gives_our_typed_config(saved, model_type):
    config = AutoConfig.from_pretrained(saved[model_type])
    assert type(config) is type(CONFIGS[model_type]) and config == CONFIGS[model_type]


def test_auto_config_unknown_model_type(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mamba"}))
    with pytest.raises(ConfigError, match="supported model types: bert, gpt2"):
        AutoConfig.from_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="model_type 'mamba' is not supported"):
        AutoModel.from_pretrained(tmp_path)


def test_auto_classes_are_not_built_directly():
    with pytest.raises(TypeError, match=r"AutoModel.from_pretrained\(path\)"):
        AutoModel()


# ---- parity: transformers' Auto class picks the class ours pairs with -----------------------------------

@pytest.mark.parity
@pytest.mark.parametrize(("auto", "model_type"), list(PAIRS), ids=IDS)
def test_transformers_auto_class_picks_the_same_architecture(saved, auto, model_type):
    transformers = pytest.importorskip("transformers")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf = getattr(transformers, auto.__name__).from_pretrained(saved[model_type])
    ours = auto.from_pretrained(saved[model_type])
    assert type(hf).__name__ == get_family(model_type).architecture_of(type(ours))
