"""GPT-2: our model, loaded from tiny transformers checkpoints with seeded weights, equals GPT2LMHeadModel (fp32).

transformers runs with ``attn_implementation="eager"`` so its attention maps exist to compare.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # for the shared helpers in decoder_parity.py (importlib mode)

transformers = pytest.importorskip("transformers")

from decoder_parity import Recorder, check_no_leakage, check_padded_batch_equals_single, compare_full  # noqa: E402

from minitransformer.layers import causal_mask  # noqa: E402
from minitransformer.loading import from_pretrained  # noqa: E402
from minitransformer.models import GPT2, GPT2Config  # noqa: E402
from minitransformer.models.base import positions_from_attention_mask  # noqa: E402
from minitransformer.testing import assert_close, max_abs_diff, seed_weights  # noqa: E402

pytestmark = pytest.mark.parity

VOCAB = 97
CONFIGS = {
    "base": dict(),
    "untied": dict(tie_word_embeddings=False),
    "unscaled_attn": dict(scale_attn_weights=False, activation_function="relu"),
    "inverse_layer_idx": dict(scale_attn_by_inverse_layer_idx=True, n_inner=48, activation_function="gelu"),
}


def tiny_hf_gpt2(seed: int = 0, **overrides):
    kwargs = dict(vocab_size=VOCAB, n_positions=32, n_embd=32, n_layer=2, n_head=4, bos_token_id=0,
                  eos_token_id=0, attn_implementation="eager")
    kwargs.update(overrides)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**kwargs)).eval()
    # Seeded weights, not transformers' init: N(0, 0.02) (GPT-2's initializer_range) for matrices and
    # biases, norm gains 1 + N(0, 0.1), so that a mix-up between biases and norm weights shows.
    return seed_weights(model, seed=seed, std=0.02, norm_std=0.1)


@pytest.fixture(scope="module", params=list(CONFIGS))
def pair(request, tmp_path_factory):
    hf = tiny_hf_gpt2(**CONFIGS[request.param])
    directory = tmp_path_factory.mktemp(f"gpt2-{request.param}")
    hf.save_pretrained(directory)
    return from_pretrained(directory), hf


def test_loads_our_class(pair):
    ours, hf = pair
    assert isinstance(ours, GPT2) and not ours.training
    assert (ours.lm_head.weight is ours.transformer.wte.weight) == hf.config.tie_word_embeddings


def test_logits_hidden_states_attentions(pair):
    ours, hf = pair
    ids = torch.randint(0, VOCAB, (3, 11), generator=torch.Generator().manual_seed(1))
    compare_full(ours, hf, ids, what="gpt2")


@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_batch_equals_one_by_one(pair, side):
    ours, hf = pair
    sequences = [[5, 6, 7, 8, 9, 10, 11], [12, 13, 14], [15, 16, 17, 18, 19]]
    check_padded_batch_equals_single(ours, hf, sequences, pad_id=0, side=side)


def test_padded_batch_against_transformers_with_mask(pair):
    """A left-padded batch, with the same arguments: without position_ids both count 0 .. T-1 whatever
    the mask says; with positions that count real tokens only (what generate passes), both agree too,
    and only then does the padded row equal the row alone."""
    ours, hf = pair
    ids = torch.tensor([[0, 0, 3, 4, 5], [6, 7, 8, 9, 10]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    real = mask.bool()  # the padding queries see no key at all: their outputs are not defined
    positions = positions_from_attention_mask(mask, 5, ids.device)  # [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]
    with torch.no_grad():
        by_default = ours(ids, attention_mask=mask).logits
        hf_by_default = hf(ids, attention_mask=mask).logits
        assert_close(by_default[real], hf_by_default[real], what="left-padded, default positions")
        counted = ours(ids, attention_mask=mask, position_ids=positions).logits
        hf_counted = hf(ids, attention_mask=mask, position_ids=positions).logits
        assert_close(counted[real], hf_counted[real], what="left-padded, mask-based positions")
        alone = ours(ids[:1, 2:]).logits[0]
    assert_close(counted[0, 2:], alone, what="padded row with mask-based positions vs the row alone")
    assert max_abs_diff(by_default[0, 2:], alone) > 1e-3, "default positions should move the padded row's tokens"


def test_no_leakage(pair):
    ours, _ = pair
    check_no_leakage(ours, VOCAB)


def test_components(pair):
    """Each of our modules, fed what the matching HF module was fed, outputs what it output."""
    ours, hf = pair
    ids = torch.randint(0, VOCAB, (2, 9), generator=torch.Generator().manual_seed(2))
    hf_blocks, our_blocks = hf.transformer.h, ours.transformer.h
    modules = {"wte": hf.transformer.wte, "wpe": hf.transformer.wpe, "ln_f": hf.transformer.ln_f}
    for i, block in enumerate(hf_blocks):
        modules |= {f"h{i}": block, f"h{i}.ln_1": block.ln_1, f"h{i}.attn": block.attn,
                    f"h{i}.ln_2": block.ln_2, f"h{i}.mlp": block.mlp}
    rec = Recorder(modules)
    with torch.no_grad():
        hf(ids)
        rec.remove()
        T = ids.shape[1]
        causal = causal_mask(T)[None, None]  # (1, 1, T, T)
        assert_close(ours.transformer.wte(ids), rec.output("wte"), what="token embedding")
        assert_close(ours.transformer.wpe(torch.arange(T)[None]), rec.output("wpe"), what="position embedding")
        for i, block in enumerate(our_blocks):
            assert_close(block.attn_norm(rec.input(f"h{i}.ln_1")), rec.output(f"h{i}.ln_1"), what=f"block {i} ln_1")
            out, _ = block.self_attn(rec.input(f"h{i}.attn"), attn_mask=causal)
            assert_close(out, rec.output(f"h{i}.attn"), what=f"block {i} attention")
            assert_close(block.mlp_norm(rec.input(f"h{i}.ln_2")), rec.output(f"h{i}.ln_2"), what=f"block {i} ln_2")
            assert_close(block.mlp(rec.input(f"h{i}.mlp")), rec.output(f"h{i}.mlp"), what=f"block {i} MLP")
            out, _, _ = block(rec.input(f"h{i}"), attn_mask=causal)
            assert_close(out, rec.output(f"h{i}"), what=f"block {i}")
        assert_close(ours.transformer.ln_f(rec.input("ln_f")), rec.output("ln_f"), what="ln_f")


def test_attention_backends_agree(pair):
    """The fused ("sdpa") path our models use by default equals the math path."""
    ours, _ = pair
    ids = torch.randint(0, VOCAB, (2, 10), generator=torch.Generator().manual_seed(3))
    mask = torch.tensor([[1] * 10, [0, 0, 0] + [1] * 7])
    with torch.no_grad():
        fused = ours(ids, attention_mask=mask).logits
        math = ours(ids, attention_mask=mask, output_attentions=True).logits  # probabilities force "math"
    assert_close(fused[mask.bool()], math[mask.bool()], what="sdpa vs math logits")


def test_too_long_sequence_names_max_position_embeddings(pair):
    ours, _ = pair
    with pytest.raises(ValueError, match="max_position_embeddings"):
        ours(torch.zeros(1, 33, dtype=torch.long))


def test_out_of_vocabulary_id_errors_before_indexing(pair):
    ours, _ = pair
    with pytest.raises(IndexError, match="vocab"):
        ours(torch.tensor([[1, VOCAB]]))


def test_trains_from_random_init():
    """Built from a config, the model is randomly initialised and learns (loss drops on one batch)."""
    torch.manual_seed(0)
    model = GPT2(GPT2Config(vocab_size=VOCAB, n_positions=16, n_embd=32, n_layer=2, n_head=4,
                            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0))
    assert model.lm_head.weight is model.transformer.wte.weight
    ids = torch.randint(0, VOCAB, (4, 16))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = None
    for _ in range(20):
        loss = model(ids, labels=ids).loss
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < first / 2


@pytest.mark.filterwarnings("ignore:a row of the prompt ends in padding")  # as transformers warns; meant here
@pytest.mark.parametrize("prompt", ["right-padded", "padding without a mask"])
def test_generate_positions_match_transformers(pair, prompt):
    """generate passes the positions transformers' generate passes, beyond left padding too: the prompt's
    count real tokens (padding 0), each new token the last prompt position plus one; and with no mask,
    transformers reads the prompt's pad_token_id tokens as padding (pad_token_id not an EOS id)."""
    ours, hf = pair
    ids = torch.tensor([[5, 6, 7, 8, 9], [10, 11, 12, 1, 1], [13, 1, 14, 15, 1]])  # 1: the padding
    mask = None if prompt == "padding without a mask" else (ids != 1).long()
    kw = dict(max_new_tokens=6, do_sample=False, pad_token_id=1, eos_token_id=VOCAB - 1)
    with torch.no_grad():
        expected = hf.generate(ids, attention_mask=mask, **kw)
    got = ours.generate(ids, attention_mask=mask, **{k: v for k, v in kw.items() if k != "do_sample"})
    assert torch.equal(got, expected), f"ours\n{got}\ntransformers\n{expected}"
