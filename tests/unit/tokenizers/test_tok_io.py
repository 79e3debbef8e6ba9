"""Loading and saving: every file kind, clear errors, and a Hub id resolved offline from the cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from minitransformer.tokenizers import (
    BPETokenizer,
    TokenizerFileError,
    UnigramTokenizer,
    WordPieceTokenizer,
    load_tokenizer,
)

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def bpe() -> BPETokenizer:
    return BPETokenizer.train(["hello world, hello there"] * 5, 270, special_tokens=["<|endoftext|>"], show_progress=False)


def test_save_then_load_round_trips_every_model(tmp_path, bpe):
    wordpiece = WordPieceTokenizer.bert({w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hi", "##s"])})
    unigram = UnigramTokenizer([("<unk>", 0.0), ("▁hi", -1.0), ("s", -2.0)])
    for name, tok in [("bpe", bpe), ("wordpiece", wordpiece), ("unigram", unigram)]:
        tok.padding_side = "left"
        written = tok.save(tmp_path / name)
        assert written == tmp_path / name / "tokenizer.json"
        loaded = load_tokenizer(tmp_path / name)
        assert type(loaded) is type(tok) and loaded.padding_side == "left"
        for text in ["hello there", "his hi", "hi<|endoftext|>"]:
            assert loaded.encode(text) == tok.encode(text)
        assert loaded.to_dict() == tok.to_dict()


def test_gpt2_style_vocab_and_merges(tmp_path, bpe):
    (tmp_path / "vocab.json").write_text(json.dumps(bpe.vocab), encoding="utf-8")
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in bpe.merges) + "\n")
    loaded = load_tokenizer(tmp_path)
    assert isinstance(loaded, BPETokenizer) and loaded.encode("hello world") == bpe.encode("hello world")
    assert load_tokenizer(tmp_path / "vocab.json").merges == bpe.merges


def test_bert_vocab_txt(tmp_path):
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\n##s\n", encoding="utf-8")
    tok = load_tokenizer(tmp_path / "vocab.txt")
    assert isinstance(tok, WordPieceTokenizer) and tok.encode("Hellos") == [2, 5, 6, 3] and tok.pad_token == "[PAD]"


def test_corrupt_json_names_file_and_fault(tmp_path):
    path = tmp_path / "tokenizer.json"
    path.write_text('{"model": {"type": "BPE", ', encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=r"tokenizer\.json: not a valid tokenizer\.json, the JSON does not parse"):
        load_tokenizer(path)


def test_unknown_model_and_component_types(tmp_path, bpe):
    doc = bpe.to_dict()
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps({**doc, "model": {**doc["model"], "type": "WordLevel"}}), encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=rf"{path.name}: unknown model type 'WordLevel'"):
        load_tokenizer(path)
    path.write_text(json.dumps({**doc, "normalizer": {"type": "Precompiled"}}), encoding="utf-8")
    with pytest.raises(TokenizerFileError, match="unsupported normalizer type 'Precompiled'"):
        load_tokenizer(path)
    path.write_text(json.dumps({"hello": 1}), encoding="utf-8")
    with pytest.raises(TokenizerFileError, match="no 'model' object"):
        load_tokenizer(path)


def test_merges_naming_missing_tokens(tmp_path, bpe):
    doc = bpe.to_dict()
    doc["model"]["merges"].append(["hello", "zzz"])
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=r"tokenizer\.json: merge \d+ \('hello', 'zzz'\) needs 'zzz'"):
        load_tokenizer(path)
    (tmp_path / "vocab.json").write_text(json.dumps({"a": 0, "b": 1}), encoding="utf-8")
    (tmp_path / "merges.txt").write_text("#version: 0.2\na b\n", encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=r"merges\.txt: line 2 \('a b'\) names 'ab', which is not in vocab\.json"):
        load_tokenizer(tmp_path / "vocab.json")


def test_empty_directory(tmp_path):
    with pytest.raises(TokenizerFileError, match="no tokenizer found"):
        load_tokenizer(tmp_path)


def test_hub_id_resolves_offline_from_the_cache(tmp_path, bpe):
    """A Hub cache laid out by hand (refs/main -> snapshot) in a fresh HF_HOME, with HF_HUB_OFFLINE=1."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--someone--tiny-bpe"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    bpe.save(repo / "snapshots" / commit / "tokenizer.json")
    code = (
        "from minitransformer.tokenizers import load_tokenizer\n"
        "tok = load_tokenizer('someone/tiny-bpe')\n"
        "print(tok.encode('hello world'))\n"
        "try:\n    load_tokenizer('someone/absent')\nexcept FileNotFoundError as e:\n    print('missing:', e)\n"
    )
    env = {**os.environ, "HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT)}
    env.pop("HF_HUB_CACHE", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.splitlines()[:2]
    assert first == str(bpe.encode("hello world"))
    assert second.startswith("missing: 'someone/absent' is not a local path") and "HF_HUB_OFFLINE" in second
