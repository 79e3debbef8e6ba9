"""Task heads: a checkpoint without the head loads into a class with one, the head newly initialised.

Checkpoints are tiny models saved by minitransformer itself (BERT saves as ``BertModel``, no prefix);
transformers is not needed (``tests/parity/test_loading_task_heads.py`` compares with it).
"""

from __future__ import annotations

import json
import re
import shutil
import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file

from minitransformer.loading import (
    LoadingError,
    WeightMap,
    from_pretrained,
    get_family,
    rename,
    save_pretrained,
)
from minitransformer.models.bert import BERT, BertConfig, BertForMaskedLM, BertForSequenceClassification
from minitransformer.models.llama import Llama, LlamaConfig
from minitransformer.testing import assert_close, seed_weights

pytestmark = pytest.mark.filterwarnings("ignore:Some weights of")  # each test that looks records them

WEIGHTS = "model.safetensors"
IDS = torch.tensor([[2, 7, 11, 3, 5]])
BERT_CONFIG = dict(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
                   max_position_embeddings=16)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    """A tiny BertModel checkpoint, saved by us (keys without the ``bert.`` prefix)."""
    model = seed_weights(BERT(BertConfig(**BERT_CONFIG)), 0, std=0.1)
    return save_pretrained(model, tmp_path_factory.mktemp("bert") / "base"), model


@pytest.fixture
def bert_copy(bert_dir, tmp_path):
    return shutil.copytree(bert_dir[0], tmp_path / "copy")


def edit_weights(directory, edit):
    weights = load_file(directory / WEIGHTS)
    edit(weights)
    save_file(weights, directory / WEIGHTS, metadata={"format": "pt"})


def reports(fn):
    """(result, every "Some weights..." warning line)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn()
    return result, [str(w.message) for w in caught if str(w.message).startswith("Some weights of")]


def test_the_report_is_one_line_naming_the_new_head(bert_dir):
    directory, _ = bert_dir
    model, lines = reports(lambda: from_pretrained(directory, model_class=BertForSequenceClassification))
    assert isinstance(model, BertForSequenceClassification)
    assert lines == [f"Some weights of BertForSequenceClassification were not initialized from the model checkpoint "
                     f"at {directory} and are newly initialized: ['classifier.weight', 'classifier.bias']. You should "
                     "probably TRAIN this model on a down-stream task to be able to use it for predictions and "
                     "inference."]


def test_the_body_is_the_checkpoint_and_the_head_is_the_models_own_init(bert_dir):
    directory, base = bert_dir
    torch.manual_seed(0)
    model = from_pretrained(directory, model_class=BertForSequenceClassification)
    with torch.no_grad():
        assert_close(model.bert(IDS).pooler_output, base.eval()(IDS).pooler_output)
    assert model.classifier.weight.device.type == "cpu" and not model.classifier.bias.any()
    assert 0.01 < model.classifier.weight.std() < 0.03  # N(0, initializer_range=0.02), as BERT's _init_weights
    with torch.no_grad():
        assert model(IDS).logits.shape == (1, 2)
    torch.manual_seed(0)
    again = from_pretrained(directory, model_class=BertForSequenceClassification)
    assert torch.equal(again.classifier.weight, model.classifier.weight)  # torch's RNG, as any init


def test_masked_lm_head_init(bert_dir):
    model, lines = reports(lambda: from_pretrained(bert_dir[0], model_class=BertForMaskedLM))
    assert len(lines) == 1
    assert sorted(re.findall(r"'([\w.]+)'", lines[0])) == ["mlm_head.bias", "mlm_head.dense.bias",
                                                           "mlm_head.dense.weight", "mlm_head.norm.bias",
                                                           "mlm_head.norm.weight"]
    assert torch.equal(model.mlm_head.norm.weight, torch.ones(16)) and not model.mlm_head.norm.bias.any()
    assert not model.mlm_head.bias.any()


def test_new_head_takes_the_loading_dtype(bert_dir):
    model = from_pretrained(bert_dir[0], model_class=BertForSequenceClassification, dtype="bfloat16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_only_the_missing_half_of_a_head_is_new(bert_copy):
    def add_classifier_weight(w):
        w["classifier.weight"] = torch.full((2, 16), 0.5)
    edit_weights(bert_copy, add_classifier_weight)
    model, lines = reports(lambda: from_pretrained(bert_copy, model_class=BertForSequenceClassification))
    assert "newly initialized: ['classifier.bias']." in lines[0]
    assert torch.equal(model.classifier.weight, torch.full((2, 16), 0.5))


def test_a_missing_body_weight_is_still_an_error(bert_copy):
    edit_weights(bert_copy, lambda w: w.pop("encoder.layer.0.output.dense.weight"))
    with pytest.raises(LoadingError) as err:
        from_pretrained(bert_copy, model_class=BertForSequenceClassification)
    assert err.value.missing == ["bert.layers.0.mlp.down_proj.weight  "
                                 "(checkpoint key: encoder.layer.0.output.dense.weight)"]
    assert not err.value.unexpected


def test_an_unknown_key_is_still_an_error(bert_copy):
    def add(w):
        w["classifier_extra.weight"] = torch.zeros(2)
    edit_weights(bert_copy, add)
    with pytest.raises(LoadingError, match="classifier_extra.weight"):
        from_pretrained(bert_copy, model_class=BertForSequenceClassification)


def test_a_head_of_the_wrong_shape_is_still_an_error(bert_copy):
    def add(w):
        w["classifier.weight"], w["classifier.bias"] = torch.zeros(5, 16), torch.zeros(5)
    edit_weights(bert_copy, add)
    with pytest.raises(LoadingError, match=r"classifier.weight: checkpoint gives \(5, 16\), model expects \(2, 16\)"):
        from_pretrained(bert_copy, model_class=BertForSequenceClassification)


def test_a_classifier_checkpoint_into_the_base_model_drops_the_head(tmp_path, bert_dir):
    clf = seed_weights(BertForSequenceClassification(BertConfig(**BERT_CONFIG)), 1, std=0.1)
    directory = save_pretrained(clf, tmp_path / "clf")
    base, lines = reports(lambda: from_pretrained(directory, model_class=BERT))
    assert lines == [f"Some weights of the model checkpoint at {directory} were not used when initializing BERT: "
                     "['classifier.bias', 'classifier.weight']. This IS expected if the checkpoint is of another "
                     "task head (a classifier read into the base model)."]
    with torch.no_grad():
        assert_close(base(IDS).pooler_output, clf.bert.eval()(IDS).pooler_output)


def test_saved_back_the_classifier_round_trips_without_a_report(tmp_path, bert_dir):
    model = from_pretrained(bert_dir[0], model_class=BertForSequenceClassification)
    directory = save_pretrained(model, tmp_path / "clf")
    again, lines = reports(lambda: from_pretrained(directory))
    assert isinstance(again, BertForSequenceClassification) and not lines
    assert torch.equal(again.classifier.weight, model.classifier.weight)


def test_llama_base_checkpoint_gets_a_new_lm_head(tmp_path):
    """A LlamaModel save: no ``model.`` prefix and no lm_head (made here from one of ours)."""
    config = LlamaConfig(vocab_size=48, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32)
    directory = save_pretrained(seed_weights(Llama(config), 0, std=0.1), tmp_path / "llama")
    weights = load_file(directory / WEIGHTS)
    weights = {k.removeprefix("model."): v for k, v in weights.items() if k != "lm_head.weight"}
    save_file(weights, directory / WEIGHTS, metadata={"format": "pt"})
    model, lines = reports(lambda: from_pretrained(directory))
    assert len(lines) == 1 and "newly initialized: ['lm_head.weight']." in lines[0]
    assert model.lm_head.weight is not model.model.embed_tokens.weight
    assert 0.01 < model.lm_head.weight.std() < 0.03  # initializer_range 0.02


def test_task_heads_are_declared_per_class():
    bert = get_family("bert")
    config = BertConfig(**BERT_CONFIG)
    assert bert.weight_map_for(config, "BertForSequenceClassification").task_heads == ("bert.pooler", "classifier")
    assert bert.weight_map_for(config, "BertForMaskedLM").task_heads == ("mlm_head",)
    assert bert.weight_map_for(config, "BertModel").task_heads == ("pooler",)
    for model_type in ("gpt2", "llama", "mistral", "qwen2"):
        family = get_family(model_type)
        assert family.weight_map_for(None, next(iter(family.architectures))).task_heads == ("lm_head",)


def test_task_head_of_matches_whole_module_names():
    wmap = WeightMap(rules=(rename("a", "a"),), task_heads=("classifier", "bert.pooler"))
    assert wmap.task_head_of("classifier.weight") == "classifier"
    assert wmap.task_head_of("bert.pooler.dense.bias") == "bert.pooler"
    assert wmap.task_head_of("classifier_extra.weight") is None
    assert wmap.task_head_of("bert.layers.0.self_attn.q_proj.weight") is None


def test_strip_prefix_and_other_heads_in_the_map():
    wmap = WeightMap(rules=(rename("embeddings.w", "embeddings.w"),), strip_prefix="bert.", other_heads=(r"^cls\.",))
    state = {"bert.embeddings.w": torch.ones(1), "cls.bias": torch.ones(1), "stray": torch.ones(1)}
    mapped = wmap.map_checkpoint(state, state.__getitem__)
    assert list(mapped.ours) == ["embeddings.w"] and mapped.sources["embeddings.w"] == ("bert.embeddings.w",)
    assert mapped.unused_heads == ["cls.bias"] and mapped.unexpected == ["stray"]
    assert mapped.checkpoint_key("embeddings.w") == "bert.embeddings.w"


def test_architecture_of_our_classes_and_subclasses():
    bert = get_family("bert")
    assert bert.architecture_of(BERT) == "BertModel"
    assert bert.architecture_of(BertForSequenceClassification) == "BertForSequenceClassification"

    class MyClassifier(BertForSequenceClassification):
        pass

    assert bert.architecture_of(MyClassifier) == "BertForSequenceClassification"
    assert bert.architecture_of(Llama) is None


def test_generation_config_json_round_trip(tmp_path, bert_dir):
    generation = pytest.importorskip("minitransformer.generation.config")
    directory = shutil.copytree(bert_dir[0], tmp_path / "gen")
    assert not hasattr(from_pretrained(directory), "generation_config")  # absent file: nothing set
    (directory / "generation_config.json").write_text(json.dumps({"max_new_tokens": 4, "foo": 1}))
    model = from_pretrained(directory)
    assert model.generation_config.max_new_tokens == 4 and model.generation_config.extra == {"foo": 1}
    save_pretrained(model, tmp_path / "out")
    assert json.loads((tmp_path / "out" / "generation_config.json").read_text()) == {"max_new_tokens": 4, "foo": 1}
    model.generation_config = None
    save_pretrained(model, tmp_path / "none")
    assert not (tmp_path / "none" / "generation_config.json").exists()
    assert isinstance(generation.GenerationConfig.from_dict({}), generation.GenerationConfig)
