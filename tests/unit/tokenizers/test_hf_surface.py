"""The transformers surface of every tokenizer: tokenize, the id <-> token maps, save_pretrained, "np" tensors.

Tiny tokenizers built here (the vocabularies of the WordPiece and Unigram unit tests, a BPE trained
on one line); ``tests/parity/test_tokenizer_hf_surface_parity.py`` checks the same against transformers.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from minitransformer.tokenizers import (
    AddedToken,
    BPETokenizer,
    UnigramTokenizer,
    WordPieceTokenizer,
    load_tokenizer,
)
from minitransformer.tokenizers.base import NO_LIMIT

sys.path.insert(0, str(Path(__file__).parent))  # the shared vocabularies of the sibling tests (importlib mode)
from test_tok_unigram import PIECES  # noqa: E402
from test_tok_wordpiece import WORDS  # noqa: E402

# WORDS: [PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3, [MASK] 4, un 5, ##aff 6, ##able 7, hello 8, world 9, ! 10, ...
# PIECES: <unk> 0, ▁a 1, b 2, ▁ab 3, ▁ 4, c 5


@pytest.fixture
def bert() -> WordPieceTokenizer:
    return WordPieceTokenizer.bert({w: i for i, w in enumerate(WORDS)})


@pytest.fixture
def unigram() -> UnigramTokenizer:
    return UnigramTokenizer(PIECES, unk_id=0, added_tokens=[AddedToken("<unk>", 0)])


@pytest.fixture(scope="module")
def bpe() -> BPETokenizer:
    return BPETokenizer.train(["hello world, hello there"] * 5, 270, special_tokens=["<|endoftext|>"], show_progress=False)


# ------------------------------------------------------------------ tokenize


def test_tokenize_wordpiece_without_and_with_special_tokens(bert):
    assert bert.tokenize("Unaffable, world!") == ["un", "##aff", "##able", ",", "world", "!"]
    assert bert.tokenize("hello") == ["hello"]  # no [CLS]/[SEP] by default, as in transformers
    assert bert.tokenize("hello", add_special_tokens=True) == ["[CLS]", "hello", "[SEP]"]
    assert bert.tokenize("hello", "world !", add_special_tokens=True) == ["[CLS]", "hello", "[SEP]", "world", "!", "[SEP]"]
    assert bert.tokenize("hello", "world") == ["hello", "world"]
    assert bert.tokenize("hello xyz [MASK]") == ["hello", "[UNK]", "[MASK]"]
    assert bert.tokenize("") == [] and bert.tokenize("", add_special_tokens=True) == ["[CLS]", "[SEP]"]


def test_tokenize_bpe_gives_the_byte_level_strings_of_the_ids(bpe):
    assert bpe.tokenize("hello world") == ["hello", "Ġwor", "ld"]
    for text in ["hello there<|endoftext|>", "héllo 你好 👋", " \n\t", ""]:
        tokens = bpe.tokenize(text)
        assert tokens == [bpe.id_to_token(i) for i in bpe.encode(text)]
        assert bpe.convert_tokens_to_ids(tokens) == bpe.encode(text)
    assert bpe.tokenize("x<|endoftext|>") == ["x", "<|endoftext|>"]


def test_tokenize_unigram_keeps_the_text_of_an_unknown_run(unigram):
    assert unigram.tokenize("ab abc") == ["▁ab", "▁ab", "c"]
    assert unigram.tokenize("axyzb") == ["▁a", "xyz", "b"]  # the ids are [1, 0, 2]: "xyz" is unknown
    assert unigram.encode("axyzb") == [1, 0, 2]
    assert unigram.tokenize("a<unk>") == ["▁a", "<unk>"]


def test_tokenize_keeps_the_space_an_lstrip_token_took():
    tok = BPETokenizer.train(["a b c"] * 3, 258, show_progress=False)
    tok.add_tokens([AddedToken("<mask>", tok.vocab_size, lstrip=True)])
    assert tok.tokenize("a <mask>") == ["a", " <mask>"]
    assert tok.convert_ids_to_tokens(tok.encode("a <mask>")) == ["a", "<mask>"]


def test_tokenize_refuses_what_is_not_a_text(bert):
    with pytest.raises(TypeError, match=r"^text must be a str, got list: for a batch of texts, call the tokenizer"):
        bert.tokenize(["hello"])
    with pytest.raises(TypeError, match=r"^pair must be a str, got int"):
        bert.tokenize("hello", 3)
    with pytest.raises(ValueError, match=r"^pair has a lone surrogate U\+D800 at index 1"):
        bert.tokenize("hello", "a\ud800")


# ------------------------------------------------------------------ convert_ids_to_tokens / convert_tokens_to_ids


def test_convert_ids_to_tokens_one_id_and_sequences(bert):
    assert bert.convert_ids_to_tokens(8) == "hello"
    assert bert.convert_ids_to_tokens([2, 8, 3]) == ["[CLS]", "hello", "[SEP]"]
    assert bert.convert_ids_to_tokens((5, 6)) == ["un", "##aff"]
    assert bert.convert_ids_to_tokens(torch.tensor([5, 7])) == ["un", "##able"]
    assert bert.convert_ids_to_tokens(np.array([9, 10])) == ["world", "!"]
    assert bert.convert_ids_to_tokens(np.int64(9)) == "world" and bert.convert_ids_to_tokens(torch.tensor(10)) == "!"
    assert bert.convert_ids_to_tokens([]) == []


def test_convert_ids_to_tokens_past_the_vocabulary_is_none_as_in_transformers(bert):
    assert bert.convert_ids_to_tokens(len(WORDS)) is None
    assert bert.convert_ids_to_tokens([8, 10**6, 2**40]) == ["hello", None, None]


def test_convert_ids_to_tokens_skips_special_ids_of_a_list_only(bert):
    ids = bert.encode("hello world")
    assert ids == [2, 8, 9, 3]
    assert bert.convert_ids_to_tokens(ids, skip_special_tokens=True) == ["hello", "world"]
    assert bert.convert_ids_to_tokens(2, skip_special_tokens=True) == "[CLS]"  # transformers does the same
    assert bert.all_special_ids == [1, 3, 0, 2, 4]  # unk, sep, pad, cls, mask: transformers' order


def test_convert_ids_to_tokens_refuses_bad_ids(bert):
    with pytest.raises(ValueError, match=r"^ids\[1\] is -1: token ids are rows of the embedding table, 0\.\.15, never"):
        bert.convert_ids_to_tokens([8, -1])
    with pytest.raises(ValueError, match=r"^ids is -3: token ids are rows"):
        bert.convert_ids_to_tokens(-3)
    with pytest.raises(TypeError, match=r"^ids is 1\.5, a float: a token id is an integer"):
        bert.convert_ids_to_tokens(1.5)
    with pytest.raises(TypeError, match=r"^ids is True, a bool"):
        bert.convert_ids_to_tokens(True)
    with pytest.raises(TypeError, match=r"^ids\[0\] is 1\.7, a float: token ids must be integers"):
        bert.convert_ids_to_tokens([1.7])
    with pytest.raises(TypeError, match=r"^ids must be a sequence of int token ids, got str"):
        bert.convert_ids_to_tokens("5")
    with pytest.raises(TypeError, match=r"^ids must be 1-D, got 2-D"):
        bert.convert_ids_to_tokens(torch.tensor([[1, 2]]))
    with pytest.raises(TypeError, match=r"^ids must be a sequence of int token ids, got NoneType"):
        bert.convert_ids_to_tokens(None)


def test_convert_tokens_to_ids_with_and_without_an_unk_token(bert, unigram):
    assert bert.convert_tokens_to_ids("hello") == 8
    assert bert.convert_tokens_to_ids(["[CLS]", "##aff", "nope"]) == [2, 6, 1]  # unknown -> the id of [UNK]
    bert.unk_token = None
    assert bert.convert_tokens_to_ids(["hello", "nope"]) == [8, None] and bert.convert_tokens_to_ids("nope") is None
    # A Unigram built from pieces names no unk_token, as a PreTrainedTokenizerFast over a bare tokenizer.json.
    assert unigram.convert_tokens_to_ids(unigram.tokenize("axyzb")) == [1, None, 2]
    unigram.unk_token = "<unk>"
    assert unigram.convert_tokens_to_ids(unigram.tokenize("axyzb")) == [1, 0, 2] == unigram.encode("axyzb")


def test_convert_tokens_to_ids_refuses_what_is_not_a_token(bert):
    with pytest.raises(TypeError, match=r"^tokens\[1\] is 8, a int: tokens are strings \(for ids, use convert_ids"):
        bert.convert_tokens_to_ids(["hello", 8])
    with pytest.raises(TypeError, match=r"^tokens must be a str or a list of str, got int: for ids, use convert_ids"):
        bert.convert_tokens_to_ids(8)


def test_ids_and_tokens_round_trip(bert, bpe):
    for tok, text in [(bert, "Unaffable hello, world!"), (bpe, "hello there, world")]:
        ids = tok.encode(text)
        assert tok.convert_tokens_to_ids(tok.convert_ids_to_tokens(ids)) == ids


def test_the_id_map_sees_tokens_added_later(bpe):
    tok = BPETokenizer(bpe.vocab, bpe.merges)
    assert tok.convert_ids_to_tokens(tok.vocab_size) is None  # builds the id -> token map
    tok.add_tokens([AddedToken("<new>", tok.vocab_size)])
    assert tok.convert_ids_to_tokens(tok.vocab_size - 1) == "<new>" and tok.convert_tokens_to_ids("<new>") == 270


# ------------------------------------------------------------------ save_pretrained


def test_save_pretrained_writes_transformers_files(bert, tmp_path):
    bert.model_max_length, bert.padding_side = 32, "left"
    written = bert.save_pretrained(tmp_path / "bert")
    assert written == (str(tmp_path / "bert" / "tokenizer_config.json"), str(tmp_path / "bert" / "tokenizer.json"))
    config = json.loads(Path(written[0]).read_text(encoding="utf-8"))
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert config["model_max_length"] == 32 and config["padding_side"] == "left"
    assert config["model_input_names"] == ["input_ids", "token_type_ids", "attention_mask"]
    assert {k: config[k] for k in ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token")} == {
        "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]"
    }  # fmt: skip
    assert config["bos_token"] is None and config["eos_token"] is None and config["additional_special_tokens"] == []
    assert json.loads(Path(written[1]).read_text(encoding="utf-8")) == json.loads(json.dumps(bert.to_dict()))


@pytest.mark.parametrize("kind", ["bpe", "wordpiece", "unigram"])
def test_save_pretrained_then_load_tokenizer_gives_the_same_tokenizer(kind, bpe, bert, unigram, tmp_path):
    tok = {"bpe": BPETokenizer(bpe.vocab, bpe.merges, added_tokens=bpe.added_tokens), "wordpiece": bert, "unigram": unigram}[kind]
    if kind == "bpe":
        tok.bos_token = tok.eos_token = tok.pad_token = "<|endoftext|>"
    if kind == "unigram":
        tok.unk_token = tok.pad_token = "<unk>"
    tok.model_max_length, tok.padding_side, tok.truncation_side = 8, "left", "left"
    tok.save_pretrained(tmp_path)
    back = load_tokenizer(tmp_path)
    assert type(back) is type(tok) and back.to_dict() == tok.to_dict()
    assert back.special_tokens_map == tok.special_tokens_map and back.special_tokens_map
    assert (back.model_max_length, back.padding_side, back.truncation_side) == (8, "left", "left")
    texts = ["hello world", "ab abc", "x"]
    assert back(texts, padding=True, truncation=True) == tok(texts, padding=True, truncation=True)


def test_save_pretrained_keeps_an_unset_token_unset_and_no_limit(bert, tmp_path):
    bert.mask_token = None
    bert.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["model_max_length"] == NO_LIMIT
    back = load_tokenizer(tmp_path)
    assert back.mask_token is None and back.model_max_length is None and back.cls_token == "[CLS]"


def test_save_pretrained_lists_other_special_tokens_as_additional(bpe, tmp_path):
    bpe.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["additional_special_tokens"] == ["<|endoftext|>"] and config["eos_token"] is None


def test_save_pretrained_refuses_a_named_token_transformers_would_change(bert, tmp_path):
    bert.eos_token = "hello"  # in the vocabulary, but not an added token
    with pytest.raises(ValueError, match=r"^eos_token='hello' is not an added token marked special: transformers would "
                                         r"add it, .*tok\.add_tokens\(\[AddedToken\('hello', 8\)\]\), or set tok\.eos_token = None"):  # fmt: skip
        bert.save_pretrained(tmp_path)
    bert.eos_token = "</s>"  # not in the vocabulary at all
    with pytest.raises(ValueError, match=r"it would get the new id 16; add it first, tok\.add_tokens\(\[AddedToken\('</s>', 16\)\]\)"):
        bert.save_pretrained(tmp_path)
    bert.eos_token = None
    bert.add_tokens([AddedToken("<plain>", 16, special=False)])
    bert.sep_token = "<plain>"
    with pytest.raises(ValueError, match=r"^sep_token='<plain>' .* so skip_special_tokens would drop it there; set \.special"):
        bert.save_pretrained(tmp_path)
    assert not (tmp_path / "tokenizer.json").exists()  # nothing half-written
    (tmp_path / "file").write_text("x")
    bert.sep_token = "[SEP]"
    with pytest.raises(NotADirectoryError, match=r"is a file: save_pretrained writes a directory; use save\(path\)"):
        bert.save_pretrained(tmp_path / "file")


def test_gpt2_files_name_their_special_tokens_as_gpt2tokenizer(bpe, tmp_path):
    (tmp_path / "vocab.json").write_text(json.dumps(bpe.vocab), encoding="utf-8")
    (tmp_path / "merges.txt").write_text("\n".join(f"{a} {b}" for a, b in bpe.merges) + "\n", encoding="utf-8")
    tok = load_tokenizer(tmp_path)
    assert tok.special_tokens_map == {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}
    assert tok.eos_token_id == 0 and tok.convert_tokens_to_ids("not-a-token") == 0


# ------------------------------------------------------------------ return_tensors="np"


def test_return_tensors_np_gives_int64_arrays(bert):
    got = bert(["hello world", "un"], padding=True, return_tensors="np")
    assert set(got) == {"input_ids", "token_type_ids", "attention_mask"}
    assert all(isinstance(v, np.ndarray) and v.dtype == np.int64 and v.shape == (2, 4) for v in got.values())
    assert got["input_ids"].tolist() == [[2, 8, 9, 3], [2, 5, 3, 0]]
    assert got["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    pt = bert(["hello world", "un"], padding=True, return_tensors="pt")
    assert all(pt[k].tolist() == got[k].tolist() for k in got)
    one = bert("hello", return_tensors="np")
    assert one["input_ids"].shape == (1, 3) and one.input_ids.tolist() == [[2, 8, 3]]


def test_return_tensors_refuses_ragged_rows_and_unknown_kinds(bert):
    with pytest.raises(ValueError, match=r"^sequences have different lengths: pass padding=True to make a 'np' tensor"):
        bert(["hello world", "un"], return_tensors="np")
    with pytest.raises(ValueError, match=r"^return_tensors='tf' is not supported; use 'pt' \(torch\), 'np' \(numpy\) or None"):
        bert("hello", return_tensors="tf")
