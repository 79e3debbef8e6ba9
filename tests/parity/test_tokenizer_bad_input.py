"""Bad input to the tokenizers ends in an error that says what to do, or in ``tokenizers``' own answer.

Issue #10: never a silent wrong answer, never a traceback from deep inside. Each test checks the
error's type and that its message names the argument (or file) and the way out; where the right
answer is a result, it is the one ``tokenizers`` gives.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

import minitransformer
from minitransformer.tokenizers import BPETokenizer, TokenizerFileError, UnigramTokenizer, load_tokenizer
from minitransformer.tokenizers.pretokenize import ByteLevel, Metaspace

tokenizers = pytest.importorskip("tokenizers")
pytestmark = pytest.mark.parity

TEXT = ["the cat sat on the mat, the cat ate the rat.", "a dog, a log; a frog!", "héllo wörld 你好"] * 10


def _reference(kind: str):
    """A small ``tokenizers`` tokenizer of each kind: byte-level BPE, BERT WordPiece, T5-like Unigram."""
    from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, processors, trainers

    if kind == "bpe":
        bpe = tokenizers.ByteLevelBPETokenizer()
        bpe.train_from_iterator(
            TEXT, vocab_size=300, min_frequency=2, special_tokens=["<|endoftext|>"], show_progress=False
        )
        return bpe._tokenizer
    if kind == "wordpiece":
        bert = tokenizers.Tokenizer(models.WordPiece(unk_token="[UNK]"))
        bert.normalizer = normalizers.BertNormalizer()
        bert.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        bert.decoder = decoders.WordPiece()
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
        bert.train_from_iterator(
            TEXT, trainers.WordPieceTrainer(vocab_size=120, special_tokens=specials, show_progress=False)
        )
        bert.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
        )
        return bert
    unigram = tokenizers.Tokenizer(models.Unigram())
    unigram.normalizer = normalizers.Sequence(
        [normalizers.Nmt(), normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    unigram.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="always")
    unigram.decoder = decoders.Metaspace(prepend_scheme="always")
    trainer = trainers.UnigramTrainer(
        vocab_size=60, special_tokens=["<unk>", "<pad>", "</s>"], unk_token="<unk>", show_progress=False
    )
    unigram.train_from_iterator(TEXT, trainer=trainer)
    return unigram


@pytest.fixture(scope="module", params=["bpe", "wordpiece", "unigram"])
def pair(request, tmp_path_factory):
    """(ours, tokenizers') read from the same tokenizer.json."""
    path = tmp_path_factory.mktemp(request.param) / "tokenizer.json"
    _reference(request.param).save(str(path))
    return load_tokenizer(path), tokenizers.Tokenizer.from_file(str(path))


@pytest.fixture(scope="module")
def unigram_pair(tmp_path_factory):
    path = tmp_path_factory.mktemp("unigram") / "tokenizer.json"
    _reference("unigram").save(str(path))
    return load_tokenizer(path), tokenizers.Tokenizer.from_file(str(path))


# ------------------------------------------------------------------ 1. lone surrogates


# The last is a surrogate pair split into two code points, as UTF-16 mishandled gives it.
@pytest.mark.parametrize("text", ["ab\ud800cd", "\udfff", "ab\ud83d\ude00cd"])
def test_lone_surrogate_is_refused_as_tokenizers_refuses_it(pair, text):
    """tokenizers raises TypeError ("must be str"); we raise ValueError saying where and how to clean."""
    ours, ref = pair
    with pytest.raises(TypeError):
        ref.encode(text)
    index = next(i for i, c in enumerate(text) if "\ud800" <= c <= "\udfff")
    with pytest.raises(
        ValueError, match=rf"^text has a lone surrogate U\+{ord(text[index]):04X} at index {index}: "
    ) as info:
        ours.encode(text)
    assert "text.encode('utf-16', 'surrogatepass').decode('utf-16', 'replace')" in str(info.value)
    cleaned = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")  # the cure the message gives
    assert ours.encode(cleaned) == ref.encode(cleaned).ids
    assert "\ud83d\ude00" not in cleaned and ("😀" in cleaned or "\ufffd" in cleaned)


def test_lone_surrogate_is_named_in_batches_pairs_and_streams(pair):
    ours, _ = pair
    with pytest.raises(ValueError, match=r"^text\[1\] has a lone surrogate U\+D800 at index 2"):
        ours(["fine", "ab\ud800"])
    with pytest.raises(ValueError, match=r"^text_pair has a lone surrogate U\+DFFF at index 0"):
        ours("fine", "\udfff")
    with pytest.raises(ValueError, match=r"^chunk 1 has a lone surrogate U\+DC80 at index 0"):
        list(ours.encode_iterable(["fine ", "\udc80 x"]))


@pytest.mark.parametrize("train", [BPETokenizer.train, UnigramTokenizer.train], ids=["bpe", "unigram"])
def test_training_refuses_a_lone_surrogate_naming_the_text(train):
    with pytest.raises(ValueError, match=r"^texts\[1\] has a lone surrogate U\+D800 at index 1"):
        train(["fine", "a\ud800"], vocab_size=300, show_progress=False)
    with pytest.raises(TypeError, match=r"^texts\[0\] must be a str, got NoneType"):
        train([None], vocab_size=300, show_progress=False)


# ------------------------------------------------------------------ 2. text that normalizes to nothing


@pytest.mark.parametrize("text", ["\x15", "\x01\x02\x7f", "", " ", "\x15a", "a\x15 \x15"])
def test_text_that_normalizes_to_nothing_has_no_ids_as_in_tokenizers(unigram_pair, text):
    """Nmt drops the control characters; Metaspace("always") then has nothing to prepend "▁" to."""
    ours, ref = unigram_pair
    assert ours.encode(text) == ref.encode(text).ids


def test_a_control_character_alone_has_no_ids(unigram_pair):
    ours, ref = unigram_pair
    assert ours.encode("\x15") == ref.encode("\x15").ids == []  # it was [3], the id of "▁"


def test_pre_tokenizers_on_the_empty_string_give_no_pieces():
    from tokenizers import pre_tokenizers

    for ours, ref in [
        (Metaspace(prepend_scheme="always"), pre_tokenizers.Metaspace(prepend_scheme="always")),
        (
            Metaspace(prepend_scheme="first", split=False),
            pre_tokenizers.Metaspace(prepend_scheme="first", split=False),
        ),
        (ByteLevel(add_prefix_space=True), pre_tokenizers.ByteLevel(add_prefix_space=True)),
    ]:
        assert ours.split("") == [p for p, _ in ref.pre_tokenize_str("")] == []


# ------------------------------------------------------------------ 3. ids that are not integers


def test_decode_refuses_ids_that_are_not_integers(pair):
    ours, _ = pair
    with pytest.raises(
        TypeError, match=r"^ids\[0\] is 1\.7, a float: token ids must be integers\. .*ids\.long\(\)"
    ):
        ours.decode([1.7, 2.2])
    with pytest.raises(TypeError, match=r"^ids\[0\] is 1\.0, a float \(ids has dtype torch\.float32\)"):
        ours.decode(torch.tensor([1.0, 2.0]))
    with pytest.raises(TypeError, match=r"^ids\[0\] is 1\.5, a float \(ids has dtype float64\)"):
        ours.decode(np.array([1.5, 2]))
    with pytest.raises(TypeError, match=r"^ids\[0\] is True, a bool \(ids has dtype torch\.bool\)"):
        ours.decode(torch.tensor([True, False]))  # an attention mask passed by mistake
    with pytest.raises(TypeError, match=r"^ids\[1\] is '2', a str"):
        ours.decode([1, "2"])
    with pytest.raises(TypeError, match=r"^ids must be a sequence of int token ids, got str"):
        ours.decode("12")
    with pytest.raises(
        TypeError, match=r"^ids must be a sequence of int token ids, got int: wrap a single id in a list"
    ):
        ours.decode(5)
    with pytest.raises(
        TypeError, match=r"^ids must be 1-D, got 0-D \(shape \(\)\): wrap a single id in a list"
    ):
        ours.decode(torch.tensor(5))
    with pytest.raises(
        TypeError, match=r"^ids must be 1-D, got 2-D \(shape \(1, 2\)\): use batch_decode for a batch"
    ):
        ours.decode(torch.tensor([[1, 2]]))
    with pytest.raises(
        TypeError, match=r"^sequences\[0\] is a single id, 1: batch_decode takes a list of sequences"
    ):
        ours.batch_decode([1, 2])
    with pytest.raises(TypeError, match=r"^sequences must be 2-D \(B, T\), got 1-D: use decode for one"):
        ours.batch_decode(torch.tensor([1, 2]))
    with pytest.raises(TypeError, match=r"^sequences\[1\]\[0\] is 0\.5, a float"):
        ours.batch_decode([[1], [0.5]])


def test_decode_accepts_python_numpy_and_torch_integers_as_before(pair):
    ours, ref = pair
    ids = ours.encode("the cat sat")
    expected = ref.decode(ids, skip_special_tokens=False)
    for same in [
        ids,
        tuple(ids),
        [np.int64(i) for i in ids],
        np.array(ids, dtype=np.int32),
        torch.tensor(ids),
        torch.tensor(ids, dtype=torch.int32),
        list(torch.tensor(ids)),
        (i for i in ids),
    ]:
        assert ours.decode(same) == expected
    batch = torch.tensor([ids, ids])
    assert ours.batch_decode(batch) == ours.batch_decode(batch.numpy()) == [expected, expected]


# ------------------------------------------------------------------ 4. ids out of range in the file


def _write(path: Path, doc: dict) -> Path:
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def _wordpiece_doc(vocab: dict, added: list | None = None) -> dict:
    return {
        "version": "1.0",
        "added_tokens": added or [],
        "normalizer": None,
        "pre_tokenizer": {"type": "WhitespaceSplit"},
        "post_processor": None,
        "decoder": None,
        "model": {
            "type": "WordPiece",
            "unk_token": "[UNK]",
            "continuing_subword_prefix": "##",
            "max_input_chars_per_word": 100,
            "vocab": vocab,
        },
    }


def _added(id_: object, content: str) -> dict:
    return {
        "id": id_,
        "content": content,
        "single_word": False,
        "lstrip": False,
        "rstrip": False,
        "normalized": False,
        "special": True,
    }


BAD_IDS = [
    pytest.param(
        {"[UNK]": 0, "a": -1},
        None,
        r"token 'a' has id -1: ids are rows of the embedding table and cannot be negative; fix it",
        id="negative",
    ),
    pytest.param(
        {"[UNK]": 0, "a": 10**9},
        None,
        r"token 'a' has id 1000000000, far past the 2 tokens of the vocabulary: .* would "
        r"make 1000000001 rows long; fix it in the file \(ids run 0\.\.1\)",
        id="huge",
    ),
    pytest.param(
        {"[UNK]": 0, "a": 1.5}, None, r"token 'a' has id 1\.5: ids are integers; fix it", id="float"
    ),
    pytest.param(
        {"[UNK]": 0, "a": 1, "b": 1},
        None,
        r"tokens 'a' and 'b' both have id 1: an id names one token; fix one",
        id="shared",
    ),
    pytest.param(
        {"[UNK]": 0, "a": 1},
        [_added(10**9, "<x>")],
        r"added token '<x>' has id 1000000000, but tokenizers gives it 2 "
        r"\(the next free id .*\); fix the id in the file",
        id="added-huge",
    ),
    pytest.param(
        {"[UNK]": 0, "a": 1},
        [_added(-3, "<x>")],
        r"added token '<x>' has id -3, but tokenizers gives it 2",
        id="added-negative",
    ),
    pytest.param(
        {"[UNK]": 0, "a": 1},
        [_added(0, "a")],
        r"added token 'a' has id 0, but tokenizers gives it 1 \(its id in the model's vocabulary\)",
        id="added-not-its-vocab-id",
    ),
    pytest.param(
        {"[UNK]": 0, "a": 1},
        [_added(2, "")],
        r"the added token with id 2 has content '': it must be a non-empty string",
        id="added-empty",
    ),
]


@pytest.mark.parametrize("vocab, added, message", BAD_IDS)
def test_tokenizer_json_with_bad_ids_is_refused_naming_file_and_token(tmp_path, vocab, added, message):
    path = _write(tmp_path / "tokenizer.json", _wordpiece_doc(vocab, added))
    with pytest.raises(TokenizerFileError, match=rf"^{path}: {message}"):
        minitransformer.load_tokenizer(path)


def test_what_tokenizers_itself_does_with_those_ids():
    """It refuses negative ids (they must fit a u32) but takes 10**9, and moves an added token's id."""
    with pytest.raises(Exception, match="expected u32"):
        tokenizers.Tokenizer.from_str(json.dumps(_wordpiece_doc({"[UNK]": 0, "a": -1})))
    huge = tokenizers.Tokenizer.from_str(json.dumps(_wordpiece_doc({"[UNK]": 0, "a": 10**9})))
    assert huge.encode("a").ids == [10**9]
    moved = tokenizers.Tokenizer.from_str(
        json.dumps(_wordpiece_doc({"[UNK]": 0, "a": 1}, [_added(10**9, "<x>")]))
    )
    assert moved.token_to_id("<x>") == 2  # the file said 10**9: ours would have encoded differently


def test_vocab_json_and_unigram_with_bad_ids_are_refused(tmp_path):
    (tmp_path / "vocab.json").write_text(json.dumps({"a": 0, "b": -1, "ab": 2}), encoding="utf-8")
    (tmp_path / "merges.txt").write_text("#version: 0.2\na b\n", encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=rf"^{tmp_path / 'vocab.json'}: token 'b' has id -1"):
        load_tokenizer(tmp_path)
    doc = {"model": {"type": "Unigram", "unk_id": 1.5, "vocab": [["<unk>", 0.0], ["a", -1.0]]}}
    path = _write(tmp_path / "unigram.json", doc)
    with pytest.raises(
        TokenizerFileError,
        match=rf"^{path}: unk_id 1\.5 is outside the vocabulary of 2 pieces "
        r"\(an int in 0\.\.1\)",
    ):
        load_tokenizer(path)


def test_files_that_tokenizers_wrote_still_load(pair):
    ours, ref = pair
    assert ours.get_vocab() == ref.get_vocab(with_added_tokens=True)


def test_vocab_txt_with_a_line_twice_gives_the_ids_of_tokenizers(tmp_path):
    """The later line wins, as in tokenizers' WordPiece.from_file (and transformers): id 5 stays unused."""
    path = tmp_path / "vocab.txt"
    path.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\nworld\nhello\n##s\n", encoding="utf-8")
    ref = tokenizers.BertWordPieceTokenizer(str(path))
    assert load_tokenizer(path).encode("hello worlds") == ref.encode("hello worlds").ids == [2, 7, 6, 8, 3]


# ------------------------------------------------------------------ 5. texts that are not str


def test_encode_and_call_refuse_what_is_not_text(pair):
    ours, ref = pair
    with pytest.raises(TypeError):
        ref.encode(None)  # tokenizers: "TextInputSequence must be str"
    with pytest.raises(TypeError, match=r"^text must be a str, got NoneType$"):
        ours.encode(None)
    with pytest.raises(
        TypeError, match=r"^text must be a str, got bytes: decode the bytes first, text\.decode\('utf-8'\)"
    ):
        ours.encode(b"the cat")
    with pytest.raises(
        TypeError, match=r"^text must be a str, got list: for a batch of texts, call the tokenizer itself"
    ):
        ours.encode(["the cat"])
    with pytest.raises(TypeError, match=r"^text must be a str or a list of str, got NoneType$"):
        ours(None)
    with pytest.raises(TypeError, match=r"^text\[1\] must be a str, got int$"):
        ours(["the cat", 3])
    with pytest.raises(
        TypeError, match=r"^text\[0\] is a list: each text of a batch is one str .*join them with spaces"
    ):
        ours([["the", "cat"]])
    with pytest.raises(TypeError, match=r"^text_pair must be a str or a list of str, got int$"):
        ours("the cat", 5)
    with pytest.raises(TypeError, match=r"^chunk 1 must be a str, got NoneType$"):
        list(ours.encode_iterable(["the cat ", None]))


# ------------------------------------------------------------------ 6. the Hub, offline


def lay_out_hub_snapshot(cache: Path, repo_id: str, commit: str, source: Path) -> None:
    """Copy a saved tokenizer into ``cache`` as huggingface_hub lays it out (see test_loading_checkpoints)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for file in source.iterdir():
        data = file.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / file.name).symlink_to(os.path.relpath(blob, snapshot))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)


def test_hub_id_offline_set_after_import_makes_no_network_call(unigram_pair, tmp_path, monkeypatch):
    """HF_HUB_OFFLINE=1 set after huggingface_hub was imported still holds, as for from_pretrained."""
    from huggingface_hub import constants

    ours, _ = unigram_pair
    ours.save(tmp_path / "saved")
    lay_out_hub_snapshot(
        tmp_path / "hf_home" / "hub", "some-org/tiny-tokenizer", "c" * 40, tmp_path / "saved"
    )
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # What huggingface_hub read when it was imported, before the line above:
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    attempts = []

    def no_network(*args, **kwargs):
        attempts.append(args)
        raise OSError("this test is offline: no network call may be made")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)

    loaded = minitransformer.load_tokenizer("some-org/tiny-tokenizer")
    assert loaded.encode("the cat sat") == ours.encode("the cat sat")
    with pytest.raises(FileNotFoundError) as info:
        minitransformer.load_tokenizer("some-org/not-cached")
    assert attempts == []
    message = str(info.value)
    assert message.startswith("'some-org/not-cached' is not a local path, so it was looked up on the Hub: ")
    assert f"'some-org/not-cached' is not in the hub cache at {tmp_path / 'hf_home' / 'hub'}" in message
    assert "HF_HUB_OFFLINE is set, so nothing is downloaded" in message
