"""data.py and corpus.py: the token file, the blocks the Trainer reads, BERT's masking, the tokenizers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import minitransformer.training.data as data_module
from minitransformer.models import GPT2, GPT2Config
from minitransformer.training.corpus import BUILTIN_NAME, builtin_corpus, read_corpus
from minitransformer.training.data import (
    MaskedTokenBlocks,
    TokenBlocks,
    bpe_tokenizer,
    char_tokenizer,
    load_token_file,
    token_dtype,
    tokenize_to_file,
    tokenizer_fingerprint,
)

TEXT = "the cat sat on the mat.\nthe dog sat on the log.\n" * 20


# ---------------------------------------------------------------------------------- tokenizers


def test_char_tokenizer_round_trips_and_has_one_id_per_character():
    tok = char_tokenizer(TEXT)
    assert len(tok) == len(set(TEXT))
    ids = tok.encode(TEXT)
    assert len(ids) == len(TEXT)  # one id per character, newlines included
    assert tok.decode(ids) == TEXT
    assert tok.get_vocab()["\n"] == 0  # code-point order: "\n" (10) before " " (32)


def test_bpe_tokenizer_round_trips_with_the_asked_vocabulary():
    text = builtin_corpus()[:20_000]
    tok = bpe_tokenizer(text, 300)
    assert len(tok) == 300  # 256 bytes + 44 merges
    ids = tok.encode(text)
    assert len(ids) < 0.8 * len(text.encode("utf-8"))  # merges learned on this text compress it
    assert tok.decode(ids) == text
    assert tok.decode(tok.encode("a word never seen: zebra!")) == "a word never seen: zebra!"  # byte level


def test_tokenizer_fingerprint_tells_tokenizers_apart():
    assert tokenizer_fingerprint(char_tokenizer(TEXT)) == tokenizer_fingerprint(char_tokenizer(TEXT))
    assert tokenizer_fingerprint(char_tokenizer(TEXT)) != tokenizer_fingerprint(char_tokenizer(TEXT + "z"))
    text = builtin_corpus()[:20_000]
    assert tokenizer_fingerprint(bpe_tokenizer(text, 300)) != tokenizer_fingerprint(bpe_tokenizer(text, 290))


# ---------------------------------------------------------------------------------- the token file


@pytest.mark.parametrize("vocab, dtype", [(256, np.uint16), (50257, np.uint16), (65536, np.uint16),
                                          (65537, np.uint32), (151_936, np.uint32)])
def test_token_dtype_is_uint16_up_to_65536_ids(vocab, dtype):
    assert token_dtype(vocab) == np.dtype(dtype)


def test_a_vocabulary_above_65536_is_stored_in_uint32_without_wrapping(tmp_path):
    text = "".join(chr(c) for c in range(0x4E00, 0x4E00 + 70_000) if not 0xD800 <= c < 0xE000)
    tok = char_tokenizer(text)
    assert len(tok) > 65536
    tokens = tokenize_to_file(text, tok, tmp_path / "tokens.bin")
    assert tokens.dtype == np.uint32
    assert int(tokens.max()) == len(tok) - 1  # the highest id survives: uint16 would wrap it
    assert (tmp_path / "tokens.bin").stat().st_size == 4 * len(text)


def test_tokenize_to_file_round_trips_and_records_what_it_holds(tmp_path):
    tok = char_tokenizer(TEXT)
    path = tmp_path / "run" / "tokens.bin"
    tokens = tokenize_to_file(TEXT, tok, path)
    assert tokens.dtype == np.uint16 and isinstance(tokens, np.memmap)
    assert tokens.tolist() == tok.encode(TEXT)
    assert tok.decode(load_token_file(path).tolist()) == TEXT
    assert path.stat().st_size == 2 * len(TEXT)
    meta = json.loads((tmp_path / "run" / "tokens.bin.json").read_text())
    assert meta["tokens"] == len(TEXT) and meta["dtype"] == "uint16"
    assert meta["tokenizer"] == tokenizer_fingerprint(tok)
    assert not [p for p in path.parent.iterdir() if ".tmp" in p.name]  # no temporary file left


class CountingTokenizer:
    """A tokenizer that counts how often the text is encoded (all else delegated)."""

    def __init__(self, tokenizer):
        self.inner, self.encodes = tokenizer, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __len__(self):
        return len(self.inner)

    def encode_iterable(self, chunks):
        self.encodes += 1
        return self.inner.encode_iterable(chunks)


def test_tokenize_to_file_is_reused_when_unchanged_and_redone_when_text_or_tokenizer_changes(tmp_path):
    path = tmp_path / "tokens.bin"
    tok = CountingTokenizer(char_tokenizer(TEXT))
    tokenize_to_file(TEXT, tok, path)
    tokenize_to_file(TEXT, tok, path)
    assert tok.encodes == 1  # the second call read the file back

    changed = TEXT.replace("cat", "act")  # same characters, same tokenizer, other text
    assert tokenize_to_file(changed, tok, path).tolist() == tok.encode(changed)
    assert tok.encodes == 2

    other = CountingTokenizer(char_tokenizer(TEXT + "xyz"))  # the same text, another tokenizer
    assert tokenize_to_file(changed, other, path).tolist() == other.encode(changed)
    assert other.encodes == 1


def test_a_write_killed_between_the_token_file_and_its_record_is_not_reused(tmp_path, monkeypatch):
    """The ids of text B on disk with the record of text A still there would pass as A's: never reuse it."""
    path, tok = tmp_path / "tokens.bin", char_tokenizer(TEXT)
    text_a, text_b = TEXT, TEXT.replace("cat", "act")
    tokenize_to_file(text_a, tok, path)
    real_replace = data_module.os.replace

    def killed_before_the_record(src, dst):
        if str(dst).endswith(".json"):
            raise KeyboardInterrupt  # the process dies after the ids were moved into place
        real_replace(src, dst)

    monkeypatch.setattr(data_module.os, "replace", killed_before_the_record)
    with pytest.raises(KeyboardInterrupt):
        tokenize_to_file(text_b, tok, path)
    monkeypatch.setattr(data_module.os, "replace", real_replace)
    assert tokenize_to_file(text_a, tok, path).tolist() == tok.encode(text_a)


def test_a_text_without_tokens_is_refused(tmp_path):
    tok = char_tokenizer("abc")
    with pytest.raises(ValueError, match="no tokens"):
        tokenize_to_file("xyz", tok, tmp_path / "t.bin")  # no character of it is in the vocabulary


# ---------------------------------------------------------------------------------- TokenBlocks

N = 1000  # tokens 0 .. N-1: each id is its own position, so a block shows where it was cut from


def positions(n: int = N) -> np.ndarray:
    return np.arange(n, dtype=np.uint16)


def test_batches_follow_from_seed_split_and_index_alone():
    a, b = TokenBlocks(positions(), 16, seed=3), TokenBlocks(positions(), 16, seed=3)
    first = a.get_batch("train", 5, 8)["input_ids"]
    a.get_batch("train", 0, 8), a.get_batch("val", 5, 8)  # draws in between change nothing
    assert torch.equal(a.get_batch("train", 5, 8)["input_ids"], first)
    assert torch.equal(b.get_batch("train", 5, 8)["input_ids"], first)  # another instance, same batch
    assert not torch.equal(a.get_batch("train", 6, 8)["input_ids"], first)
    assert not torch.equal(TokenBlocks(positions(), 16, seed=4).get_batch("train", 5, 8)["input_ids"], first)
    assert first.shape == (8, 16) and first.dtype == torch.int64


def test_rows_are_contiguous_windows_cut_into_inputs_and_next_tokens():
    data = TokenBlocks(positions(), 16, seed=0)
    batch = data.get_batch("train", 0, 4)
    ids, targets = batch["input_ids"], batch["shift_labels"]
    assert set(batch) == {"input_ids", "shift_labels"} and ids.shape == targets.shape == (4, 16)
    assert torch.equal(ids - ids[:, :1], torch.arange(16).expand(4, 16))  # consecutive tokens of the corpus
    assert torch.equal(targets, ids + 1)  # each position's target is the corpus's next token (nanoGPT's y)
    assert data.tokens_in(batch) == 64

    # Every one of the T positions is scored, the last one too: T targets per row, not T - 1.
    model = GPT2(GPT2Config.from_name("gpt2-tiny")).eval()
    text_ids = TokenBlocks(np.arange(200) % 256, 16, seed=0).get_batch("train", 0, 2)
    out = model(**text_ids)
    expected = F.cross_entropy(out.logits.reshape(-1, out.logits.shape[-1]), text_ids["shift_labels"].reshape(-1))
    torch.testing.assert_close(out.loss, expected)
    # labels (shifted inside) score T - 1 positions: the same loss without the last one.
    inside = model(text_ids["input_ids"], labels=text_ids["input_ids"]).loss
    last_dropped = F.cross_entropy(out.logits[:, :-1].reshape(-1, out.logits.shape[-1]),
                                   text_ids["shift_labels"][:, :-1].reshape(-1))
    torch.testing.assert_close(inside, last_dropped)
    assert not torch.allclose(inside, out.loss)


def test_validation_is_the_tail_and_never_overlaps_training():
    data = TokenBlocks(positions(), 16, seed=0, val_fraction=0.1)
    n_train = N - int(N * 0.1)  # 900: as nanoGPT, the first 90% trains, the last 10% validates
    assert data.splits["train"].tolist() == list(range(n_train))
    assert data.splits["val"].tolist() == list(range(n_train, N))
    for index in range(20):
        train = data.get_batch("train", index, 32)["input_ids"]
        val = data.get_batch("val", index, 32)["input_ids"]
        assert train.max() < n_train and val.min() >= n_train  # no block straddles the boundary
    train_starts = {int(r[0]) for i in range(50) for r in data.get_batch("train", i, 32)["input_ids"]}
    assert max(train_starts) <= n_train - 17 and min(train_starts) == 0  # every start reachable, none past


def test_a_torch_tensor_is_accepted():
    data = TokenBlocks(torch.arange(100), 8, seed=0)
    assert torch.equal(data.get_batch("val", 0, 2)["input_ids"],
                       TokenBlocks(np.arange(100), 8, seed=0).get_batch("val", 0, 2)["input_ids"])


def test_a_corpus_too_small_for_one_block_is_a_clear_error():
    with pytest.raises(ValueError, match=r"corpus is too small: its val split has 5 tokens \(50 in all") as err:
        TokenBlocks(positions(50), 16)
    assert "--block-size" in str(err.value) and "longer corpus" in str(err.value)
    assert "next token" in str(err.value)
    TokenBlocks(positions(170), 16)  # 153 + 17: just enough for 16 inputs and their 16 targets
    with pytest.raises(ValueError, match="val split has 16 tokens"):
        TokenBlocks(positions(160), 16)  # 16 tokens hold 16 inputs but not the last one's target


def test_a_block_longer_than_the_model_is_a_clear_error():
    with pytest.raises(ValueError, match=r"block size 65 is longer than the model's 64 positions: "
                                         r"pass --block-size 64 or less"):
        TokenBlocks(positions(), 65, max_positions=64)
    assert TokenBlocks(positions(), 64, max_positions=64).block_size == 64


def test_an_unknown_split_and_a_block_of_one_are_refused():
    with pytest.raises(ValueError, match="split must be one of"):
        TokenBlocks(positions(), 8).get_batch("test", 0, 1)
    with pytest.raises(ValueError, match="at least 2"):
        TokenBlocks(positions(), 1)


# ---------------------------------------------------------------------------------- MaskedTokenBlocks

V, MASK, SPECIAL = 50, 49, (0, 1)


def masked(**kwargs) -> MaskedTokenBlocks:
    tokens = np.random.default_rng(0).integers(0, 49, size=20_000)  # every id but [MASK], specials included
    return MaskedTokenBlocks(tokens, 64, mask_token_id=MASK, vocab_size=V, special_ids=SPECIAL, **kwargs)


def test_mlm_masking_is_15_percent_then_80_10_10():
    data, tokens = masked(), masked().splits["train"]
    chosen = masked_n = random_n = kept = total = 0
    for index in range(60):
        batch = data.get_batch("train", index, 32)
        original = data.blocks("train", index, 32)[0]  # the same rows, unmasked
        inputs, labels = batch["input_ids"], batch["labels"]
        sel = labels != -100
        assert torch.equal(labels[sel], original[sel])  # the label is the original token
        assert torch.equal(inputs[~sel], original[~sel])  # unchosen positions untouched
        assert torch.equal(batch["attention_mask"], torch.ones_like(inputs))
        eligible = ~torch.isin(original, torch.tensor(SPECIAL))
        total += int(eligible.sum())
        chosen += int(sel.sum())
        masked_n += int((inputs[sel] == MASK).sum())
        kept += int((inputs[sel] == original[sel]).sum())
        random_n += int(((inputs[sel] != MASK) & (inputs[sel] != original[sel])).sum())
    assert tokens.size > 0 and total > 90_000
    # Binomial standard errors here are ~0.1% of the positions and ~0.3% of the chosen: 5 sigma bounds.
    assert chosen / total == pytest.approx(0.15, abs=0.006)
    assert masked_n / chosen == pytest.approx(0.80, abs=0.015)
    # "random" counts a replacement drawn equal to the original as kept: 10% * (1/47) moves over.
    assert random_n / chosen == pytest.approx(0.10 * 46 / 47, abs=0.012)
    assert kept / chosen == pytest.approx(0.10 + 0.10 / 47, abs=0.012)


def test_special_tokens_are_never_masked_nor_drawn_as_replacements():
    data = masked()
    for index in range(30):
        batch, original = data.get_batch("train", index, 32), data.blocks("train", index, 32)[0]
        special = torch.isin(original, torch.tensor(SPECIAL))
        assert special.any()
        assert (batch["labels"][special] == -100).all()
        assert torch.equal(batch["input_ids"][special], original[special])
        swapped = (batch["labels"] != -100) & (batch["input_ids"] != MASK) & (batch["input_ids"] != original)
        assert not torch.isin(batch["input_ids"][swapped], torch.tensor([*SPECIAL, MASK])).any()
    assert set(data.replacements.tolist()) == set(range(2, 49))


def test_mlm_batches_are_reproducible_and_the_rate_is_a_parameter():
    a, b = masked(seed=5), masked(seed=5)
    for key in ("input_ids", "labels"):
        assert torch.equal(a.get_batch("val", 2, 8)[key], b.get_batch("val", 2, 8)[key])
    none = masked(mask_prob=0.0).get_batch("train", 0, 8)
    assert (none["labels"] == -100).all()


# ---------------------------------------------------------------------------------- corpus


def test_builtin_corpus_is_python_docs_stable_and_its_licence_is_documented():
    import minitransformer.training.corpus as corpus_module

    text = builtin_corpus()
    assert len(text) > 100_000 and text == builtin_corpus()
    assert "The \"if\" statement" in text or "if_stmt" in text or "The if statement" in text
    assert read_corpus(None) == text
    assert BUILTIN_NAME == "pydoc_data.topics"
    doc = corpus_module.__doc__
    assert "Python Software Foundation License" in doc and "https://docs.python.org/3/license.html" in doc


def test_read_corpus_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.txt is not a file"):
        read_corpus(tmp_path / "missing.txt")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.txt is not UTF-8 text \(byte 3\)"):
        read_corpus(tmp_path / "latin1.txt")
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="empty.txt is empty"):
        read_corpus(tmp_path / "empty.txt")
    (tmp_path / "ok.txt").write_text("héllo\n", encoding="utf-8")
    assert read_corpus(tmp_path / "ok.txt") == "héllo\n"
