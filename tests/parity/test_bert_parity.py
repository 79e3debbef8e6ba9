"""BERT against transformers: tiny random checkpoints saved by transformers, loaded by us.

fp32, eager attention on the HF side; every output within the fp32 policy (max abs diff 1e-5).
Component tests copy one HF module's weights into the matching module of ours, so that a failure
names the part that broke.
"""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

import minitransformer  # noqa: E402
from minitransformer.layers.masks import padding_mask, to_additive  # noqa: E402
from minitransformer.loading import from_pretrained as _loading_from_pretrained  # noqa: E402
from minitransformer.models.bert import (  # noqa: E402
    BERT,
    BertConfig,
    BertEmbeddings,
    BertForMaskedLM,
    BertForSequenceClassification,
    BertMLMHead,
    BertPooler,
    bert_block,
)
from minitransformer.testing import assert_close, seed_weights  # noqa: E402

pytestmark = pytest.mark.parity

from_pretrained = getattr(minitransformer, "from_pretrained", _loading_from_pretrained)

TINY = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            max_position_embeddings=24)

#: name -> (HF class name, config overrides). Vary the head, token types, activation and eps.
VARIANTS = {
    "base_token_types": ("BertModel", dict(type_vocab_size=3)),
    "masked_lm": ("BertForMaskedLM", dict(hidden_act="gelu_new", layer_norm_eps=1e-5)),
    "seq_cls": ("BertForSequenceClassification", dict(num_labels=3, hidden_act="relu")),
}


def _hf_class(name: str):
    return getattr(transformers, name)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict:
    """Each variant saved by transformers' own save_pretrained, with seeded weights (not transformers' init):
    N(0, 0.02) (BERT's initializer_range) for matrices and biases, the MLM bias included (it starts at zero
    in transformers, where it would not count), and LayerNorm gains 1 + N(0, 0.1)."""
    dirs = {}
    for i, (name, (arch, overrides)) in enumerate(VARIANTS.items()):
        model = _hf_class(arch)(transformers.BertConfig(**TINY, **overrides))
        seed_weights(model, seed=i, std=0.02, norm_std=0.1)
        directory = tmp_path_factory.mktemp(name)
        model.save_pretrained(directory)
        dirs[name] = directory
    return dirs


def _load_pair(checkpoints, name):
    arch, _ = VARIANTS[name]
    directory = checkpoints[name]
    theirs = _hf_class(arch).from_pretrained(directory, attn_implementation="eager").eval()
    ours = from_pretrained(directory)
    return ours, theirs


def _inputs(type_vocab_size: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1, TINY["vocab_size"], (3, 12), generator=g)
    token_type_ids = torch.randint(0, type_vocab_size, (3, 12), generator=g)
    lengths = [12, 8, 3]
    attention_mask = (torch.arange(12)[None] < torch.tensor(lengths)[:, None]).long()  # right padding
    input_ids = input_ids.masked_fill(attention_mask == 0, 0)  # [PAD] = 0
    return input_ids, token_type_ids, attention_mask, lengths


def _main_output(out, arch):
    return {"BertModel": "last_hidden_state"}.get(arch, "logits")


@pytest.mark.parametrize("name", VARIANTS)
def test_loads_as_the_right_class(checkpoints, name):
    ours, _ = _load_pair(checkpoints, name)
    expected = {"BertModel": BERT, "BertForMaskedLM": BertForMaskedLM,
                "BertForSequenceClassification": BertForSequenceClassification}[VARIANTS[name][0]]
    assert type(ours) is expected
    assert not ours.training


@pytest.mark.parametrize("name", VARIANTS)
def test_every_output_matches_transformers(checkpoints, name):
    ours, theirs = _load_pair(checkpoints, name)
    arch = VARIANTS[name][0]
    input_ids, token_type_ids, attention_mask, _ = _inputs(ours.config.type_vocab_size)
    kwargs = dict(attention_mask=attention_mask, token_type_ids=token_type_ids,
                  output_hidden_states=True, output_attentions=True)
    with torch.no_grad():
        a = ours(input_ids, **kwargs)
        b = theirs(input_ids, **kwargs)
    if arch == "BertModel":
        assert_close(a.last_hidden_state, b.last_hidden_state, what="last_hidden_state")
        assert_close(a.pooler_output, b.pooler_output, what="pooler_output")
    else:
        assert_close(a.logits, b.logits, what="logits")
    assert len(a.hidden_states) == len(b.hidden_states) == TINY["num_hidden_layers"] + 1
    for i, (x, y) in enumerate(zip(a.hidden_states, b.hidden_states)):
        assert_close(x, y, what=f"hidden_states[{i}]")
    assert len(a.attentions) == len(b.attentions) == TINY["num_hidden_layers"]
    for i, (x, y) in enumerate(zip(a.attentions, b.attentions)):
        assert_close(x, y, what=f"attentions[{i}]")


@pytest.mark.parametrize("name", VARIANTS)
def test_padded_batch_equals_one_by_one(checkpoints, name):
    ours, _ = _load_pair(checkpoints, name)
    arch = VARIANTS[name][0]
    input_ids, token_type_ids, attention_mask, lengths = _inputs(ours.config.type_vocab_size, seed=1)
    with torch.no_grad():
        batch = ours(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        for b, n in enumerate(lengths):
            alone = ours(input_ids[b:b + 1, :n], token_type_ids=token_type_ids[b:b + 1, :n])
            assert_close(batch.last_hidden_state[b, :n], alone.last_hidden_state[0], what=f"row {b} hidden")
            if arch == "BertForMaskedLM":
                assert_close(batch.logits[b, :n], alone.logits[0], what=f"row {b} logits")
            elif arch == "BertForSequenceClassification":
                assert_close(batch.logits[b], alone.logits[0], what=f"row {b} logits")
            else:
                assert_close(batch.pooler_output[b], alone.pooler_output[0], what=f"row {b} pooler")


@pytest.mark.parametrize("name", VARIANTS)
def test_padded_tokens_never_leak(checkpoints, name):
    """Whatever sits under the padding (ids, token types) leaves every real position unchanged."""
    ours, _ = _load_pair(checkpoints, name)
    arch = VARIANTS[name][0]
    input_ids, token_type_ids, attention_mask, lengths = _inputs(ours.config.type_vocab_size, seed=2)
    pad = attention_mask == 0
    other_ids = input_ids.masked_scatter(pad, torch.randint(1, TINY["vocab_size"], (int(pad.sum()),)))
    other_types = token_type_ids.masked_fill(pad, ours.config.type_vocab_size - 1)
    with torch.no_grad():
        a = ours(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, output_attentions=True)
        b = ours(other_ids, attention_mask=attention_mask, token_type_ids=other_types)
    for row, n in enumerate(lengths):
        assert_close(b.last_hidden_state[row, :n], a.last_hidden_state[row, :n], what=f"row {row} real tokens")
    if arch == "BertForSequenceClassification":
        assert_close(b.logits, a.logits, what="classifier logits")
    for layer, probs in enumerate(a.attentions):  # no probability mass on a padded key
        assert float(probs.masked_select(pad[:, None, None, :].expand_as(probs)).abs().max()) == 0.0, layer


@pytest.mark.parametrize("name", VARIANTS)
def test_round_trip_through_transformers(checkpoints, name, tmp_path):
    ours, _ = _load_pair(checkpoints, name)
    arch = VARIANTS[name][0]
    ours.save_pretrained(tmp_path)
    theirs, info = _hf_class(arch).from_pretrained(tmp_path, attn_implementation="eager", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    auto = {"BertModel": transformers.AutoModel, "BertForMaskedLM": transformers.AutoModelForMaskedLM,
            "BertForSequenceClassification": transformers.AutoModelForSequenceClassification}[arch]
    assert type(auto.from_pretrained(tmp_path)).__name__ == arch
    input_ids, token_type_ids, attention_mask, _ = _inputs(ours.config.type_vocab_size, seed=3)
    with torch.no_grad():
        a = ours(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        b = theirs.eval()(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
    key = _main_output(a, arch)
    assert_close(getattr(a, key), getattr(b, key), what=f"{key} after our save_pretrained")
    again = from_pretrained(tmp_path)
    for (n1, p1), (n2, p2) in zip(ours.state_dict().items(), again.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2), n1


def test_sdpa_backend_equals_math(checkpoints):
    ours, _ = _load_pair(checkpoints, "base_token_types")
    fused = BERT(ours.config, attn_implementation="sdpa").eval()
    fused.load_state_dict(ours.state_dict())
    input_ids, token_type_ids, attention_mask, _ = _inputs(ours.config.type_vocab_size, seed=4)
    with torch.no_grad():
        a = ours(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        b = fused(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
    assert_close(b.last_hidden_state, a.last_hidden_state, what="sdpa vs math")


# ---- component by component ------------------------------------------------------------------------

def _configs(**overrides):
    theirs = transformers.BertConfig(**TINY, type_vocab_size=3, attn_implementation="eager", **overrides)
    ours = BertConfig.from_dict(theirs.to_dict())
    return ours, theirs


def _copy(dst: torch.nn.Module, src: torch.nn.Module) -> None:
    """Copy a Linear / LayerNorm / Embedding's tensors across (same layout in both libraries)."""
    with torch.no_grad():
        dst.weight.copy_(src.weight)
        if getattr(dst, "bias", None) is not None:
            dst.bias.copy_(src.bias)


def _hidden(seed=0, shape=(2, 7, 32)):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _masks():
    attention_mask = torch.tensor([[1] * 7, [1] * 5 + [0] * 2])
    allowed = padding_mask(attention_mask)  # (B, 1, 1, S)
    return allowed, to_additive(allowed)


def test_embeddings_match():
    config, hf_config = _configs()
    theirs = transformers.models.bert.modeling_bert.BertEmbeddings(hf_config).eval()
    ours = BertEmbeddings(config).eval()
    _copy(ours.word_embeddings, theirs.word_embeddings)
    _copy(ours.position_embeddings, theirs.position_embeddings)
    _copy(ours.token_type_embeddings, theirs.token_type_embeddings)
    _copy(ours.norm, theirs.LayerNorm)
    ids = torch.randint(0, TINY["vocab_size"], (2, 7))
    types = torch.randint(0, 3, (2, 7))
    with torch.no_grad():
        assert_close(ours(ids, types), theirs(input_ids=ids, token_type_ids=types), what="embeddings")
        assert_close(ours(ids), theirs(input_ids=ids), what="embeddings, default token types")


def test_attention_matches():
    config, hf_config = _configs()
    theirs = transformers.models.bert.modeling_bert.BertAttention(hf_config).eval()
    ours = bert_block(config).self_attn.eval()
    _copy(ours.q_proj, theirs.self.query)
    _copy(ours.k_proj, theirs.self.key)
    _copy(ours.v_proj, theirs.self.value)
    _copy(ours.o_proj, theirs.output.dense)
    x = _hidden()
    allowed, additive = _masks()
    with torch.no_grad():
        context, hf_probs = theirs.self(x, attention_mask=additive)
        out, probs = ours(x, attn_mask=allowed, output_attentions=True)
        assert_close(out, theirs.output.dense(context), what="attention output (before residual and norm)")
        assert_close(probs, hf_probs, what="attention probabilities")


def test_mlp_matches():
    config, hf_config = _configs(hidden_act="gelu")
    layer = transformers.models.bert.modeling_bert.BertLayer(hf_config).eval()
    ours = bert_block(config).mlp.eval()
    _copy(ours.up_proj, layer.intermediate.dense)
    _copy(ours.down_proj, layer.output.dense)
    x = _hidden(1)
    with torch.no_grad():
        assert_close(ours(x), layer.output.dense(layer.intermediate(x)), what="MLP (before residual and norm)")


def _copy_block(ours, theirs):
    _copy(ours.self_attn.q_proj, theirs.attention.self.query)
    _copy(ours.self_attn.k_proj, theirs.attention.self.key)
    _copy(ours.self_attn.v_proj, theirs.attention.self.value)
    _copy(ours.self_attn.o_proj, theirs.attention.output.dense)
    _copy(ours.attn_norm, theirs.attention.output.LayerNorm)
    _copy(ours.mlp.up_proj, theirs.intermediate.dense)
    _copy(ours.mlp.down_proj, theirs.output.dense)
    _copy(ours.mlp_norm, theirs.output.LayerNorm)


def test_block_matches():
    config, hf_config = _configs()
    theirs = transformers.models.bert.modeling_bert.BertLayer(hf_config).eval()
    ours = bert_block(config).eval()
    with torch.no_grad():  # LayerNorms start at identity; make them do something
        for p in theirs.parameters():
            p.add_(0.1 * torch.randn_like(p))
    _copy_block(ours, theirs)
    x = _hidden(2)
    allowed, additive = _masks()
    with torch.no_grad():
        out, _ = ours(x, attn_mask=allowed)
        assert_close(out, theirs(x, attention_mask=additive), what="post-norm block")


def test_pooler_and_mlm_head_match():
    config, hf_config = _configs()
    mb = transformers.models.bert.modeling_bert
    hf_pooler, pooler = mb.BertPooler(hf_config).eval(), BertPooler(config.hidden_size)
    _copy(pooler.dense, hf_pooler.dense)
    hf_head, head = mb.BertLMPredictionHead(hf_config).eval(), BertMLMHead(config)
    with torch.no_grad():
        hf_head.bias.normal_()
        hf_head.decoder.bias = hf_head.bias  # tied, as in BertForMaskedLM
    _copy(head.dense, hf_head.transform.dense)
    _copy(head.norm, hf_head.transform.LayerNorm)
    with torch.no_grad():
        head.bias.copy_(hf_head.bias)
    x = _hidden(3)
    with torch.no_grad():
        assert_close(pooler(x), hf_pooler(x), what="pooler")
        assert_close(head(x, hf_head.decoder.weight), hf_head(x), what="MLM head")


# ---- bad input -------------------------------------------------------------------------------------

def _tiny_model():
    config, _ = _configs()
    return BERT(config).eval()


def test_too_long_input_names_max_position_embeddings():
    with pytest.raises(ValueError, match="max_position_embeddings=24"):
        _tiny_model()(torch.zeros(1, 25, dtype=torch.long))


def test_out_of_vocab_ids_raise_before_indexing():
    model = _tiny_model()
    with pytest.raises(IndexError, match="vocab_size=99"):
        model(torch.tensor([[1, 99]]))
    with pytest.raises(IndexError, match="token_type_ids"):
        model(torch.tensor([[1, 2]]), token_type_ids=torch.tensor([[0, 3]]))


def test_config_round_trip_keeps_labels_and_unknown_keys():
    config = BertConfig.from_dict({"model_type": "bert", "num_labels": 4, "hidden_size": 32,
                                   "num_attention_heads": 4, "problem_type": "single_label_classification"})
    assert config.num_labels == 4 and config.id2label[3] == "LABEL_3"
    again = BertConfig.from_dict(config.to_dict())
    assert again.num_labels == 4 and again.to_dict()["problem_type"] == "single_label_classification"
    with pytest.raises(ValueError, match="position_embedding_type"):
        BertConfig(position_embedding_type="relative_key")


def test_trains_from_random_init():
    torch.manual_seed(0)
    config = BertConfig.from_dict(dict(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=32, max_position_embeddings=16, num_labels=2))
    model = BertForSequenceClassification(config)
    ids, labels = torch.randint(1, 50, (8, 6)), torch.randint(0, 2, (8,))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        loss = torch.nn.functional.cross_entropy(model(ids).logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("kind", ["class ids", "multi-label floats"])
def test_classifier_loss_matches_transformers(checkpoints, kind):
    """labels -> loss as transformers picks it: cross-entropy for class ids, per-label binary cross-entropy
    for floats (its problem_type, guessed from the labels' dtype)."""
    ours, theirs = _load_pair(checkpoints, "seq_cls")
    input_ids, token_type_ids, attention_mask, _ = _inputs(ours.config.type_vocab_size, seed=5)
    g = torch.Generator().manual_seed(6)
    labels = (torch.randint(0, 3, (3,), generator=g) if kind == "class ids"
              else torch.randint(0, 2, (3, 3), generator=g).float())
    kwargs = dict(attention_mask=attention_mask, token_type_ids=token_type_ids, labels=labels)
    with torch.no_grad():  # a freshly loaded model each time: transformers writes its guess into its config
        a, b = ours(input_ids, **kwargs), theirs(input_ids, **kwargs)
    assert_close(a.loss, b.loss, what=f"classifier loss, {kind}")
