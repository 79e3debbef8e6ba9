"""Bad input to a forward or to generate: a clear error naming the argument, or the right result.

One shared check (``models.base.check_inputs``) serves every family's forward; the embedding checks the
ids' dtype and range (``layers.embeddings.check_token_ids``).
"""

from __future__ import annotations

import pytest
import torch

from minitransformer.layers import TokenEmbedding
from minitransformer.models import BERT, GPT2, BertConfig, GPT2Config, Llama, LlamaConfig
from minitransformer.models.t5 import T5, T5Config

V = 50


def tiny(family: str):
    torch.manual_seed(0)
    if family == "gpt2":
        return GPT2(GPT2Config(vocab_size=V, n_positions=16, n_embd=16, n_layer=1, n_head=2)).eval()
    if family == "llama":
        return Llama(LlamaConfig(vocab_size=V, hidden_size=16, intermediate_size=24, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=16)).eval()
    if family == "bert":
        return BERT(BertConfig(vocab_size=V, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                    intermediate_size=24, max_position_embeddings=16)).eval()
    return T5(T5Config(vocab_size=V, d_model=16, d_kv=8, d_ff=24, num_layers=1, num_heads=2)).eval()


def call(model, ids, mask):
    if isinstance(model, T5):
        return model(ids, attention_mask=mask, decoder_input_ids=torch.zeros(len(ids), 1, dtype=torch.long))
    return model(ids, attention_mask=mask)


def test_every_integer_dtype_is_an_id_never_a_boolean_mask():
    emb = TokenEmbedding(4, 3)
    ids = torch.tensor([[0, 1, 2], [3, 0, 1]])
    expected = emb(ids)  # (2, 3, 3)
    for dtype in (torch.uint8, torch.int8, torch.int16, torch.int32):
        assert torch.equal(emb(ids.to(dtype)), expected), dtype
    assert emb(torch.zeros(4, 3, dtype=torch.uint8)).shape == (4, 3, 3)  # not the (6,) of a boolean index
    for dtype in (torch.float32, torch.bool):
        with pytest.raises(TypeError, match=r"input_ids must be an integer tensor.*\.long\(\)"):
            emb(ids.to(dtype))


@pytest.mark.parametrize("family", ["gpt2", "llama", "bert", "t5"])
def test_forward_checks_ids_and_mask_shapes(family):
    model = tiny(family)
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        with pytest.raises(ValueError, match=r"attention_mask must be \(batch, keys\) = \(1, 4\).*got \(2, 4\)"):
            call(model, ids, torch.ones(2, 4, dtype=torch.long))  # another batch: used to broadcast silently
        with pytest.raises(ValueError, match=r"attention_mask must be .*\(1, 4\).*got \(1, 3\)"):
            call(model, ids, torch.ones(1, 3, dtype=torch.long))
        with pytest.raises(ValueError, match=r"input_ids must be \(batch, seq_len\), got shape \(4,\); add the "
                                             r"batch dimension: input_ids\[None\]"):
            call(model, ids[0], None)
        with pytest.raises(TypeError, match="input_ids must be a torch.Tensor"):
            call(model, [[1, 2, 3]], None)
        good = call(model, ids, torch.ones(1, 4, dtype=torch.long))
    out = good.last_hidden_state if family == "bert" else good.logits
    assert out.shape[0] == 1


def test_a_cached_forward_wants_a_mask_over_cached_and_new_keys():
    model = tiny("gpt2")
    with torch.no_grad():
        out = model(torch.tensor([[1, 2, 3]]), use_cache=True)
        with pytest.raises(ValueError, match=r"\(1, 4\) \(3 cached \+ 1 new\).*got \(1, 1\)"):
            model(torch.tensor([[4]]), attention_mask=torch.ones(1, 1, dtype=torch.long),
                  past_key_values=out.past_key_values)
        step = model(torch.tensor([[4]]), attention_mask=torch.ones(1, 4, dtype=torch.long),
                     past_key_values=out.past_key_values)
        full = model(torch.tensor([[1, 2, 3, 4]]))
    assert torch.allclose(step.logits[:, -1], full.logits[:, -1], atol=1e-5)


def test_t5_decoder_checks_its_own_mask_and_the_encoder_mask():
    model = tiny("t5")
    ids, dec = torch.tensor([[1, 2, 3, 4]]), torch.tensor([[0, 5]])
    with torch.no_grad():
        with pytest.raises(ValueError, match=r"decoder_attention_mask must be .*\(1, 2\).*got \(1, 3\)"):
            model(ids, decoder_input_ids=dec, decoder_attention_mask=torch.ones(1, 3, dtype=torch.long))
        enc = model.encode(ids).last_hidden_state
        with pytest.raises(ValueError, match=r"attention_mask must be .*\(1, 4\).*got \(1, 5\)"):
            model.decode(dec, enc, attention_mask=torch.ones(1, 5, dtype=torch.long))


def test_generate_on_an_empty_batch_says_so():
    model = tiny("gpt2")
    with pytest.raises(ValueError, match="batch size 0"):
        model.generate(torch.zeros(0, 3, dtype=torch.long), max_new_tokens=2, num_beams=2)


def test_generate_takes_eos_token_id_as_a_tensor_like_transformers():
    model = tiny("gpt2")
    ids = torch.tensor([[1, 2, 3]])
    kw = dict(max_new_tokens=6, pad_token_id=0)
    free = model.generate(ids, eos_token_id=[], **kw)
    eos = int(free[0, 4])  # the second new token: as EOS it stops the row there
    expected = model.generate(ids, eos_token_id=eos, **kw)
    assert torch.equal(model.generate(ids, eos_token_id=torch.tensor(eos), **kw), expected)
    assert torch.equal(model.generate(ids, eos_token_id=torch.tensor([eos]), **kw), expected)


def test_generate_warns_on_a_right_padded_prompt():
    model = tiny("gpt2")
    ids, mask = torch.tensor([[1, 2, 0], [3, 4, 5]]), torch.tensor([[1, 1, 0], [1, 1, 1]])
    with pytest.warns(UserWarning, match=r"pad on the left for generation \(tokenizer.padding_side = 'left'\)"):
        model.generate(ids, attention_mask=mask, max_new_tokens=2, pad_token_id=0)
    left = torch.tensor([[0, 1, 2], [3, 4, 5]]), torch.tensor([[0, 1, 1], [1, 1, 1]])
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.generate(left[0], attention_mask=left[1], max_new_tokens=2, pad_token_id=0)
