"""Checks for chapter 6. References: transformers' BertEmbeddings and BertPooler with the same weights
(skipped if transformers is not installed), torch formulas, and for the masking recipe its structure and
statistics (any correct use of the generator passes, not one particular sequence of draws)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from minitransformer.exercises import expect_close, expect_equal, expect_shape
from minitransformer.models.bert import BertConfig, BertForSequenceClassification

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see the fixture


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _hf_bert():
    return pytest.importorskip("transformers.models.bert.modeling_bert",
                               reason="transformers is not installed: pip install 'minitransformer[hf]'")


# ---------------------------------------------------------------- 6.1 embeddings

def _embedding_tables(V=50, P=16, types=2, C=12, seed=0):
    g = _gen(seed)
    return dict(word_embeddings=torch.randn(V, C, generator=g), position_embeddings=torch.randn(P, C, generator=g),
                token_type_embeddings=torch.randn(types, C, generator=g),
                norm_weight=torch.rand(C, generator=g) + 0.5, norm_bias=torch.randn(C, generator=g) * 0.5)


@pytest.mark.parametrize("case", ["two segments", "token_type_ids=None (all segment 0)"])
def test_6_1_bert_embeddings_match_transformers(ex, case):
    bert = _hf_bert()
    from transformers import BertConfig as HFBertConfig

    w = _embedding_tables(types=2)
    ref = bert.BertEmbeddings(HFBertConfig(vocab_size=50, hidden_size=12, max_position_embeddings=16,
                                           type_vocab_size=2, layer_norm_eps=1e-12, hidden_dropout_prob=0.0)).eval()
    with torch.no_grad():
        ref.word_embeddings.weight.copy_(w["word_embeddings"])
        ref.position_embeddings.weight.copy_(w["position_embeddings"])
        ref.token_type_embeddings.weight.copy_(w["token_type_embeddings"])
        ref.LayerNorm.weight.copy_(w["norm_weight"])
        ref.LayerNorm.bias.copy_(w["norm_bias"])
    input_ids = torch.randint(0, 50, (2, 9), generator=_gen(1))
    token_type_ids = None if "None" in case else (torch.arange(9) >= 5).long().expand(2, 9)
    with torch.no_grad():
        expected = ref(input_ids=input_ids, token_type_ids=token_type_ids)
    got = ex.bert_embeddings(input_ids, token_type_ids, **w, eps=1e-12)
    expect_close(got, expected, exercise="6.1", case=f"{case}, vs transformers' BertEmbeddings")


def test_6_1_bert_embeddings_formula(ex):
    w = _embedding_tables(types=3, seed=2)
    input_ids = torch.randint(0, 50, (3, 7), generator=_gen(3))
    token_type_ids = torch.randint(0, 3, (3, 7), generator=_gen(4))
    x = w["word_embeddings"][input_ids] + w["position_embeddings"][:7] + w["token_type_embeddings"][token_type_ids]
    expected = F.layer_norm(x, (12,), w["norm_weight"], w["norm_bias"], eps=1e-5)
    got = ex.bert_embeddings(input_ids, token_type_ids, **w, eps=1e-5)
    expect_close(got, expected, exercise="6.1", case="3 token types, eps=1e-5: word + position + type, then LayerNorm")


def test_6_1_position_matters(ex):
    w = _embedding_tables(seed=5)
    same_token = torch.full((1, 4), 7)
    got = ex.bert_embeddings(same_token, None, **w)
    expect_shape(got, (1, 4, 12), exercise="6.1", case="one sequence of 4 tokens")
    if torch.allclose(got[0, 0], got[0, 1]):
        raise AssertionError("Exercise 6.1, case 'the same token at positions 0 and 1': the two vectors are "
                             "equal. Add position_embeddings[position] for position 0..T-1.")


# ---------------------------------------------------------------- 6.2 extended attention mask

@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_6_2_extended_attention_mask(ex, dtype):
    attention_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]])
    got = ex.extended_attention_mask(attention_mask, dtype)
    expected = torch.zeros(3, 1, 1, 5, dtype=dtype).masked_fill(attention_mask[:, None, None, :] == 0,
                                                                 torch.finfo(dtype).min)
    expect_shape(got, (3, 1, 1, 5), exercise="6.2", case=f"{dtype}: (B, T) -> (B, 1, 1, T)")
    if got.dtype != dtype:
        raise AssertionError(f"Exercise 6.2, case '{dtype}': expected dtype {dtype}, got {got.dtype}")
    expect_close(got.float(), expected.float(), exercise="6.2", atol=0.0,
                 case=f"{dtype}: 0 at tokens, torch.finfo({dtype}).min at padding")


def test_6_2_padded_keys_get_zero_probability(ex):
    attention_mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    scores = torch.randn(2, 3, 5, 5, generator=_gen(6)) * 4  # (B, H, T, S)
    probs = (scores + ex.extended_attention_mask(attention_mask, torch.float32)).softmax(-1)
    expected = scores.masked_fill(attention_mask[:, None, None, :] == 0, float("-inf")).softmax(-1)
    expect_close(probs, expected, exercise="6.2",
                 case="softmax(scores + mask): padded keys get probability 0, the rest renormalise")


# ---------------------------------------------------------------- 6.3 MLM masking

MASK_ID, VOCAB = 4, 1000


def _mlm_batch(B=64, T=512, seed=7):
    """Ids in [5, V) (never [MASK]); [CLS] = 1 first, [SEP] = 2 last, [PAD] = 0 after it in some rows."""
    input_ids = torch.randint(5, VOCAB, (B, T), generator=_gen(seed))
    lengths = torch.randint(T // 2, T + 1, (B,), generator=_gen(seed + 1))
    pos = torch.arange(T)[None]
    input_ids[:, 0] = 1
    input_ids[pos == (lengths[:, None] - 1)] = 2
    input_ids[pos >= lengths[:, None]] = 0
    special = (input_ids == 0) | (input_ids == 1) | (input_ids == 2)
    return input_ids, special


def test_6_3_structure(ex):
    input_ids, special = _mlm_batch(B=8, T=64)
    original = input_ids.clone()
    inputs, labels = ex.mask_tokens(input_ids, MASK_ID, VOCAB, _gen(0), 0.15, special)
    E, where = "6.3", "8 x 64 tokens, p=0.15"
    expect_shape(inputs, tuple(input_ids.shape), exercise=E, case=f"{where}: inputs")
    expect_shape(labels, tuple(input_ids.shape), exercise=E, case=f"{where}: labels")
    expect_equal(input_ids, original, exercise=E, case="input_ids must not be modified in place (clone first)")
    chosen = labels != -100
    expect_equal(labels[chosen], original[chosen], exercise=E,
                 case="labels hold the ORIGINAL id at every chosen position")
    expect_equal(inputs[~chosen], original[~chosen], exercise=E,
                 case="positions that were not chosen (label -100) keep their input id")
    expect_equal(chosen[special], torch.zeros(int(special.sum()), dtype=torch.bool), exercise=E,
                 case="special tokens ([CLS], [SEP], [PAD]) are never chosen")
    if not ((inputs >= 0) & (inputs < VOCAB)).all():
        raise AssertionError(f"Exercise 6.3, case '{where}': some inputs fall outside [0, vocab_size)")
    if not chosen.any():
        raise AssertionError(f"Exercise 6.3, case '{where}': no position was chosen; expect about 15%")


def test_6_3_generator_makes_it_reproducible(ex):
    input_ids, special = _mlm_batch(B=4, T=64)
    a = ex.mask_tokens(input_ids, MASK_ID, VOCAB, _gen(11), 0.15, special)
    b = ex.mask_tokens(input_ids, MASK_ID, VOCAB, _gen(11), 0.15, special)
    c = ex.mask_tokens(input_ids, MASK_ID, VOCAB, _gen(12), 0.15, special)
    expect_equal(a[0], b[0], exercise="6.3", case="the same seed gives the same inputs (draw from `generator`)")
    expect_equal(a[1], b[1], exercise="6.3", case="the same seed gives the same labels (draw from `generator`)")
    if torch.equal(a[1], c[1]):
        raise AssertionError("Exercise 6.3, case 'another seed': seeds 11 and 12 chose the same positions. "
                             "Draw the randomness from `generator`, not a fixed pattern.")


@pytest.mark.parametrize("p", [0.15, 0.3])
def test_6_3_statistics_80_10_10(ex, p):
    input_ids, special = _mlm_batch()
    inputs, labels = ex.mask_tokens(input_ids, MASK_ID, VOCAB, _gen(13), p, special)
    chosen = labels != -100
    n_eligible, n_chosen = int((~special).sum()), int(chosen.sum())
    # Binomial standard deviations here are < 0.006; the bounds are 5 of them or more.
    rate = n_chosen / n_eligible
    if abs(rate - p) > 0.01:
        raise AssertionError(f"Exercise 6.3, case 'p={p}': {rate:.3f} of the eligible tokens were chosen, "
                             f"expected about {p} (special tokens do not count)")
    masked = (inputs == MASK_ID) & chosen
    changed = (inputs != input_ids) & chosen & ~masked
    kept = (inputs == input_ids) & chosen
    for name, part, target, tol in (("[MASK]", masked, 0.8, 0.03), ("a random id", changed, 0.1, 0.025),
                                    ("unchanged", kept, 0.1, 0.025)):
        share = int(part.sum()) / n_chosen
        if abs(share - target) > tol:
            raise AssertionError(f"Exercise 6.3, case 'p={p}, the 80/10/10 split': {share:.3f} of the chosen "
                                 f"tokens became {name}, expected about {target}")


# ---------------------------------------------------------------- 6.4 mean pooling

def test_6_4_mean_pooling_matches_one_by_one(ex):
    g = _gen(14)
    lengths = [6, 4, 1]
    x = torch.randn(3, 6, 8, generator=g)
    attention_mask = (torch.arange(6)[None] < torch.tensor(lengths)[:, None]).long()
    got = ex.mean_pooling(x, attention_mask)
    expected = torch.stack([x[i, :n].mean(0) for i, n in enumerate(lengths)])
    expect_close(got, expected, exercise="6.4", case="lengths 6, 4, 1: each row the mean of its real tokens")


def test_6_4_padding_values_do_not_matter(ex):
    g = _gen(15)
    x = torch.randn(2, 5, 8, generator=g)
    attention_mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 0]])
    garbage = x.masked_fill(attention_mask[..., None] == 0, 1e4)
    expect_close(ex.mean_pooling(garbage, attention_mask), ex.mean_pooling(x, attention_mask) * 1.0,
                 exercise="6.4", case="padded positions filled with 1e4 must not change the result")
    expected = (x * attention_mask[..., None]).sum(1) / attention_mask.sum(1, keepdim=True)
    expect_close(ex.mean_pooling(x, attention_mask), expected, exercise="6.4", case="sum over tokens / count")


# ---------------------------------------------------------------- 6.5 pooler

def _pooler_weights(C=16, seed=16):
    g = _gen(seed)
    return torch.randn(2, 5, C, generator=g), torch.randn(C, C, generator=g) / C**0.5, torch.randn(C, generator=g)


def test_6_5_pooler_matches_transformers(ex):
    bert = _hf_bert()
    from transformers import BertConfig as HFBertConfig

    h, weight, bias = _pooler_weights()
    ref = bert.BertPooler(HFBertConfig(hidden_size=16))
    with torch.no_grad():
        ref.dense.weight.copy_(weight)
        ref.dense.bias.copy_(bias)
        expected = ref(h)
    expect_close(ex.bert_pooler(h, weight, bias), expected, exercise="6.5", case="vs transformers' BertPooler")


def test_6_5_pooler_formula_uses_cls_only(ex):
    h, weight, bias = _pooler_weights(seed=17)
    got = ex.bert_pooler(h, weight, bias)
    expect_close(got, torch.tanh(F.linear(h[:, 0], weight, bias)), exercise="6.5",
                 case="tanh(dense(h[:, 0])): the first token ([CLS]) only")
    h2 = h.clone()
    h2[:, 1:] = torch.randn(2, 4, 16)
    expect_close(ex.bert_pooler(h2, weight, bias), got, exercise="6.5",
                 case="changing tokens 1.. must not change the pooled vector")


# ---------------------------------------------------------------- 6.6 one fine-tuning step

def _classifier():
    torch.manual_seed(18)
    config = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=12, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0, id2label={0: "neg", 1: "pos", 2: "neutral"})
    model = BertForSequenceClassification(config).train()
    g = _gen(19)
    input_ids = torch.randint(1, 40, (4, 8), generator=g)
    attention_mask = torch.ones(4, 8, dtype=torch.long)
    attention_mask[2:, 6:] = 0
    labels = torch.tensor([0, 2, 1, 2])
    return model, input_ids, attention_mask, labels


def test_6_6_classifier_step(ex):
    model, input_ids, attention_mask, labels = _classifier()
    ref_model = copy.deepcopy(model)
    ref_opt = torch.optim.SGD(ref_model.parameters(), lr=0.5)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for step in (1, 2):  # two steps: forgetting zero_grad() shows on the second
        ref_loss = F.cross_entropy(ref_model(input_ids, attention_mask=attention_mask).logits, labels)
        ref_opt.zero_grad()
        ref_loss.backward()
        ref_opt.step()
        got = ex.classifier_step(model, opt, input_ids, attention_mask, labels)
        expect_close(torch.as_tensor(got).reshape(()), ref_loss.detach(), exercise="6.6",
                     case=f"step {step}: the returned loss is the mean cross-entropy before the update")
        for (name, p), q in zip(model.named_parameters(), ref_model.parameters()):
            expect_close(p.detach(), q.detach(), exercise="6.6", atol=1e-5,
                         case=f"step {step}: parameter {name} after optimizer.step() (did you zero the grads?)")


def test_6_6_loss_goes_down(ex):
    model, input_ids, attention_mask, labels = _classifier()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-2)
    losses = [float(ex.classifier_step(model, opt, input_ids, attention_mask, labels)) for _ in range(8)]
    if not losses[-1] < 0.5 * losses[0]:
        raise AssertionError(f"Exercise 6.6, case '8 AdamW steps on one batch': the loss went {losses[0]:.3f} -> "
                             f"{losses[-1]:.3f}; expected it to at least halve")
