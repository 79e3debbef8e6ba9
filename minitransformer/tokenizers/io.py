"""Reading tokenizers: ``tokenizer.json``, GPT-2's ``vocab.json`` + ``merges.txt``, BERT's ``vocab.txt``.

``load_tokenizer`` takes a file, a directory or a Hugging Face Hub id; ids are resolved with
``huggingface_hub``, so ``HF_HOME`` and ``HF_HUB_OFFLINE`` apply as usual.

>>> tok = load_tokenizer("path/to/dir-with-tokenizer.json")   # doctest: +SKIP
>>> tok.decode(tok.encode("Hello"))                            # doctest: +SKIP
'Hello'
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .base import SPECIAL_TOKEN_NAMES, AddedToken, Tokenizer, TokenizerFileError
from .bpe import BPETokenizer
from .normalize import BertNormalizer, normalizer_from_dict
from .pretokenize import PreTokenizer, pre_tokenizer_from_dict
from .processors import Decoder, PostProcessor, decoder_from_dict, post_processor_from_dict
from .unigram import UnigramTokenizer
from .wordpiece import WordPieceTokenizer

# The files a tokenizer may consist of, in order of preference.
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt", "vocab.txt", "tokenizer_config.json")


def load_tokenizer(path_or_repo_id: str | Path) -> Tokenizer:
    """Load the tokenizer in a file, a directory, or a Hub repository.

    A directory is searched for ``tokenizer.json``, then ``vocab.json`` + ``merges.txt``
    (GPT-2 BPE), then ``vocab.txt`` (BERT WordPiece). A ``tokenizer_config.json`` beside it
    supplies the pad token, ``model_max_length`` and the padding side.

    Raises:
        TokenizerFileError: the file is corrupt, of an unknown kind, or inconsistent (an id that is
            negative, shared, far past the vocabulary, or not the one ``tokenizers`` would give).
        FileNotFoundError: neither a local path nor a Hub repository (in the cache, when offline).
    """
    path = Path(path_or_repo_id)
    if not path.exists():
        path = _from_hub(str(path_or_repo_id))
    if path.is_file():
        directory, names = path.parent, {path.name}
        if path.name == "vocab.json":
            names.add("merges.txt")
    else:
        directory, names = path, {p.name for p in path.iterdir()}

    if path.is_file() and path.suffix == ".json" and path.name not in ("vocab.json", "tokenizer_config.json"):
        tok = from_tokenizer_json(path)
    elif "tokenizer.json" in names:
        tok = from_tokenizer_json(directory / "tokenizer.json")
    elif "vocab.json" in names:
        tok = from_vocab_and_merges(directory / "vocab.json", directory / "merges.txt")
    elif "vocab.txt" in names or path.suffix == ".txt":
        tok = from_vocab_txt(path if path.is_file() else directory / "vocab.txt", _read_config(directory))
    else:
        raise TokenizerFileError(
            f"{path}: no tokenizer found; expected tokenizer.json, vocab.json + merges.txt, or vocab.txt"
        )
    _apply_config(tok, _read_config(directory))
    return tok


def _from_hub(repo_id: str) -> Path:
    """Find in the cache (or download) a Hub repository's tokenizer files; returns their folder.

    The same resolution as ``from_pretrained``'s (``loading/hub.py``): ``HF_HOME`` and
    ``HF_HUB_OFFLINE`` are read at each call, so setting them in a running program takes effect.
    """
    from minitransformer.loading.hub import hub_snapshot

    try:
        return hub_snapshot(repo_id, None, list(TOKENIZER_FILES))
    except FileNotFoundError as e:
        message = f"{repo_id!r} is not a local path, so it was looked up on the Hub: {e}"
        raise FileNotFoundError(message) from e


def _read_config(directory: Path) -> dict[str, Any]:
    config_path = directory / "tokenizer_config.json"
    if not config_path.is_file():
        return {}
    try:
        return json.loads(config_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise TokenizerFileError(f"{config_path}: not valid JSON ({e})") from e


def _token_name(value: Any) -> str | None:
    return value.get("content") if isinstance(value, dict) else value


def _apply_config(tok: Tokenizer, config: dict[str, Any]) -> None:
    """Take what transformers' ``tokenizer_config.json`` says about special tokens, padding and length.

    A named special token that is not in the vocabulary is ignored (transformers would add it).
    """
    for name in SPECIAL_TOKEN_NAMES:
        if name in config:
            token = _token_name(config[name])
            if token is None or tok.token_to_id(token) is not None:
                setattr(tok, name, token)
    max_length = config.get("model_max_length")
    if isinstance(max_length, int) and max_length < 10**12:  # transformers writes 1e30 for "no limit"
        tok.model_max_length = max_length
    tok.padding_side = config.get("padding_side", tok.padding_side)
    tok.truncation_side = config.get("truncation_side", tok.truncation_side)


def from_tokenizer_json(path: str | Path) -> Tokenizer:
    """Build our tokenizer from a Hugging Face ``tokenizer.json``."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TokenizerFileError(f"{path}: not a valid tokenizer.json, the JSON does not parse ({e})") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("model"), dict):
        raise TokenizerFileError(f"{path}: not a tokenizer.json: there is no 'model' object at the top level")
    try:
        return tokenizer_from_dict(doc)
    except (KeyError, TypeError, ValueError) as e:
        fault = f"missing field {e}" if isinstance(e, KeyError) else str(e)
        raise TokenizerFileError(f"{path}: {fault}") from e


def tokenizer_from_dict(doc: dict[str, Any]) -> Tokenizer:
    """The inverse of ``Tokenizer.to_dict``; ``ValueError``/``KeyError`` on what it cannot use."""
    model = doc["model"]
    kind = model.get("type") or _guess_model_type(model)
    parts = {
        "normalizer": normalizer_from_dict(doc["normalizer"]) if doc.get("normalizer") else None,
        "pre_tokenizer": pre_tokenizer_from_dict(doc["pre_tokenizer"]) if doc.get("pre_tokenizer") else None,
        "post_processor": post_processor_from_dict(doc["post_processor"]) if doc.get("post_processor") else None,
        "decoder": decoder_from_dict(doc["decoder"]) if doc.get("decoder") else None,
        "added_tokens": [
            AddedToken(t["content"], t["id"], t.get("special", True), t.get("single_word", False),
                       t.get("lstrip", False), t.get("rstrip", False), t.get("normalized", False))
            for t in doc.get("added_tokens") or []
        ],
    }  # fmt: skip
    tok: Tokenizer
    if kind == "BPE":
        if model.get("dropout"):
            raise ValueError("BPE dropout is not supported (encoding would be random)")
        merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
        # A tokenizer.json may say nothing of the pre-tokenizer or decoder; then there is none.
        parts["pre_tokenizer"] = parts["pre_tokenizer"] or _NoSplit()
        parts["post_processor"] = parts["post_processor"] or _NoSpecialTokens()
        parts["decoder"] = parts["decoder"] or _JoinDecoder()
        tok = BPETokenizer(
            check_vocab_ids(model["vocab"]), merges, **parts,  # type: ignore[arg-type]
            unk_token=model.get("unk_token"), continuing_subword_prefix=model.get("continuing_subword_prefix"),
            end_of_word_suffix=model.get("end_of_word_suffix"), ignore_merges=model.get("ignore_merges", False),
            byte_fallback=model.get("byte_fallback", False), fuse_unk=model.get("fuse_unk", False),
        )  # fmt: skip
    elif kind == "WordPiece":
        tok = WordPieceTokenizer(
            check_vocab_ids(model["vocab"]), **parts,  # type: ignore[arg-type]
            unk_token=model.get("unk_token", "[UNK]"), continuing_subword_prefix=model.get("continuing_subword_prefix", "##"),
            max_input_chars_per_word=model.get("max_input_chars_per_word", 100),
        )  # fmt: skip
    elif kind == "Unigram":
        parts["pre_tokenizer"] = parts["pre_tokenizer"] or _NoSplit()
        parts["decoder"] = parts["decoder"] or _JoinDecoder()
        tok = UnigramTokenizer(
            [tuple(p) for p in model["vocab"]], model.get("unk_id"), byte_fallback=model.get("byte_fallback", False),
            **parts,  # type: ignore[arg-type]
        )
    else:
        raise ValueError(f"unknown model type {kind!r}; supported: BPE, WordPiece, Unigram")
    model_size = len(tok.pieces) if isinstance(tok, UnigramTokenizer) else len(tok._model_vocab())
    check_added_token_ids(tok.added_tokens, tok._model_vocab(), model_size)
    padding = doc.get("padding")
    if isinstance(padding, dict) and padding.get("pad_token"):
        tok.pad_token = padding["pad_token"]
    return tok


def check_vocab_ids(vocab: Any) -> dict[str, int]:
    """A BPE or WordPiece vocabulary ``{token: id}``, checked: each id names one row of the embedding table.

    So an id is an integer, not negative, shared by no other token, and not far past the number
    of tokens: ``{"a": 0, "b": 10**9}`` would ask for a table of a billion rows. (``tokenizers``
    refuses negative ids but takes that one.) Unused ids are tolerated, as real files have a few,
    up to as many as there are tokens.
    """
    if not isinstance(vocab, dict):
        raise ValueError(f"the model's 'vocab' must map each token to its id, got a {type(vocab).__name__}")
    n = len(vocab)
    owner: dict[int, str] = {}
    for token, i in vocab.items():
        if isinstance(i, bool) or not isinstance(i, int):
            raise ValueError(f"token {token!r} has id {i!r}: ids are integers; fix it in the file")
        if i < 0:
            raise ValueError(f"token {token!r} has id {i}: ids are rows of the embedding table and cannot be "
                             "negative; fix it in the file")  # fmt: skip
        if i >= 2 * n:
            raise ValueError(
                f"token {token!r} has id {i}, far past the {n} tokens of the vocabulary: ids are rows of the "
                f"embedding table, which this id would make {i + 1} rows long; fix it in the file "
                f"(ids run 0..{n - 1})"
            )
        if i in owner:
            raise ValueError(f"tokens {owner[i]!r} and {token!r} both have id {i}: an id names one token; "
                             "fix one of them in the file")  # fmt: skip
        owner[i] = token
    return vocab


def check_added_token_ids(added: list[AddedToken], model_vocab: dict[str, int], model_size: int) -> None:
    """Each added token must have the id ``tokenizers`` gives it, or the two would encode differently.

    ``tokenizers`` does not take the id from the file: a token of the model's vocabulary keeps its
    id there, any other gets the next free id after the vocabulary and the added tokens before it.
    """
    given: dict[str, int] = {}
    for t in added:
        if not isinstance(t.content, str) or not t.content:
            raise ValueError(f"the added token with id {t.id!r} has content {t.content!r}: it must be a "
                             "non-empty string; fix or remove it in the file")  # fmt: skip
        if t.content in given:
            expected, why = given[t.content], "the id of the same token listed earlier"
        elif t.content in model_vocab:
            expected, why = model_vocab[t.content], "its id in the model's vocabulary"
        else:
            expected = max(model_size, max(given.values(), default=-1) + 1)
            why = "the next free id after the model's vocabulary and the added tokens before it"
        if isinstance(t.id, bool) or not isinstance(t.id, int) or t.id != expected:
            raise ValueError(f"added token {t.content!r} has id {t.id!r}, but tokenizers gives it {expected} "
                             f"({why}); fix the id in the file")  # fmt: skip
        given[t.content] = expected


def _guess_model_type(model: dict[str, Any]) -> str:
    # Old files omit "type"; the fields tell the model apart, as tokenizers does.
    if "merges" in model:
        return "BPE"
    if "unk_id" in model:
        return "Unigram"
    if "max_input_chars_per_word" in model:
        return "WordPiece"
    raise ValueError("the model has no 'type' and its fields fit no known model")


class _NoSplit(PreTokenizer):
    """No pre-tokenizer in the file: the whole text is one piece, as ``tokenizers`` does it."""

    def split(self, text: str) -> list[str]:
        return [text] if text else []

    def to_dict(self) -> Any:
        return None


class _NoSpecialTokens(PostProcessor):
    def to_dict(self) -> Any:
        return None


class _JoinDecoder(Decoder):
    """No decoder in the file: tokens are joined with spaces, as ``tokenizers`` does it."""

    def decode_chain(self, tokens: list[str]) -> list[str]:
        return [" ".join(tokens)]

    def to_dict(self) -> Any:
        return None


def from_vocab_and_merges(vocab_path: str | Path, merges_path: str | Path) -> BPETokenizer:
    """GPT-2's original files: ``vocab.json`` (token -> id) and ``merges.txt`` (one ``a b`` per line)."""
    vocab_path, merges_path = Path(vocab_path), Path(merges_path)
    if not merges_path.is_file():
        raise TokenizerFileError(f"{vocab_path}: found vocab.json but no merges.txt beside it ({merges_path})")
    try:
        vocab = check_vocab_ids(json.loads(vocab_path.read_text(encoding="utf-8")))
    except json.JSONDecodeError as e:
        raise TokenizerFileError(f"{vocab_path}: not valid JSON ({e})") from e
    except ValueError as e:
        raise TokenizerFileError(f"{vocab_path}: {e}") from e
    merges: list[tuple[str, str]] = []
    for number, line in enumerate(merges_path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.startswith("#version") or not line.strip():
            continue
        parts = line.split(" ")
        if len(parts) != 2:
            raise TokenizerFileError(f"{merges_path}: line {number} is not two tokens separated by a space: {line!r}")
        for part in (*parts, "".join(parts)):
            if part not in vocab:
                raise TokenizerFileError(
                    f"{merges_path}: line {number} ({line!r}) names {part!r}, which is not in {vocab_path.name}"
                )
        merges.append((parts[0], parts[1]))
    added = [AddedToken(t, vocab[t]) for t in ("<|endoftext|>",) if t in vocab]
    tok = BPETokenizer(vocab, merges, added_tokens=added)
    if added:  # GPT2Tokenizer's defaults: one token begins, ends and stands for the unknown
        tok.bos_token = tok.eos_token = tok.unk_token = "<|endoftext|>"
    return tok


def from_vocab_txt(path: str | Path, config: dict[str, Any] | None = None) -> WordPieceTokenizer:
    """BERT's ``vocab.txt``: one token per line, the line number is the id."""
    path = Path(path)
    tokens = path.read_text(encoding="utf-8").split("\n")
    if tokens and tokens[-1] == "":
        tokens.pop()
    vocab: dict[str, int] = {}
    for i, token in enumerate(tokens):
        vocab[token.rstrip("\r")] = i  # a line seen twice keeps its last id, as in tokenizers
    missing = [t for t in ("[UNK]", "[CLS]", "[SEP]") if t not in vocab]
    if missing:
        raise TokenizerFileError(f"{path}: not a BERT vocabulary, it lacks {', '.join(missing)}")
    config = config or {}
    lowercase = config.get("do_lower_case", True)
    tok = WordPieceTokenizer.bert(vocab, lowercase=lowercase, strip_accents=config.get("strip_accents"))
    if config.get("tokenize_chinese_chars") is False:
        assert isinstance(tok.normalizer, BertNormalizer)
        tok.normalizer = BertNormalizer(True, False, config.get("strip_accents"), lowercase)
    return tok
