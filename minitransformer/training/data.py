"""Text -> one token file on disk -> random blocks of it: the data the Trainer reads.

    tok = char_tokenizer(text)                              # or bpe_tokenizer(text, 1024), or any Tokenizer
    tokens = tokenize_to_file(text, tok, "run/tokens.bin")  # tokenized once, memory-mapped
    data = TokenBlocks(tokens, block_size=64, seed=0)       # first 90% train, last 10% validation
    batch = data.get_batch("train", index=0, batch_size=8)  # {"input_ids": (8, 64), "shift_labels": (8, 64)}

The batches follow from ``(seed, split, index)`` alone: block starts are drawn from a generator
seeded with those three numbers, so a resumed run needs to know only how far it got, not any
random state. Each row is a window of T + 1 tokens cut in two, as nanoGPT's ``get_batch`` does:
``input_ids`` the first T, ``shift_labels`` the last T, so every one of the T positions has a
target (position t predicts token t + 1). ``shift_labels`` is transformers' name for labels
already shifted; plain ``labels`` (the inputs themselves, shifted inside the loss) would leave the
last position without a target, 1/T of the signal lost.

``MaskedTokenBlocks`` serves the same blocks for BERT's masked-language-model objective.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from minitransformer.tokenizers import BPETokenizer, Tokenizer
from minitransformer.tokenizers.base import AddedToken
from minitransformer.tokenizers.io import tokenizer_from_dict

SPLITS = ("train", "val")
MASK_TOKEN = "[MASK]"


# ---------------------------------------------------------------------------------- tokenizers


def char_tokenizer(text: str) -> Tokenizer:
    """A character-level tokenizer: one id per distinct character of ``text``, in code-point order.

    Written as a BPE with that vocabulary and no merges, no normalizer and no pre-tokenizer, so that
    each character is its own token; the ``Fuse`` decoder joins them back. Its ``tokenizer.json``
    loads in ``tokenizers.Tokenizer.from_file`` and gives the same ids. A character that is not in
    ``text`` has no id and is dropped when encoding (as nanoGPT's shakespeare_char has no unknown).

    Example:
        >>> tok = char_tokenizer("hello")
        >>> tok.get_vocab(), tok.encode("hole")
        ({'e': 0, 'h': 1, 'l': 2, 'o': 3}, [1, 3, 2, 0])
    """
    chars = sorted(set(text))
    if not chars:
        raise ValueError("cannot build a character tokenizer from an empty text")
    model = {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
             "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
             "vocab": {c: i for i, c in enumerate(chars)}, "merges": []}
    return tokenizer_from_dict({"version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
                                "normalizer": None, "pre_tokenizer": None, "post_processor": None,
                                "decoder": {"type": "Fuse"}, "model": model})


def bpe_tokenizer(text: str, vocab_size: int) -> Tokenizer:
    """Our byte-level BPE (GPT-2's pre-tokenizer) learned on ``text``; ``vocab_size`` counts the 256 bytes."""
    lines = text.splitlines(keepends=True)
    return BPETokenizer.train(lines, vocab_size=vocab_size, show_progress=False)


def add_mask_token(tokenizer: Tokenizer) -> int:
    """The id of ``[MASK]`` (BERT's masked LM), added after the vocabulary as a special token if absent.

    Example:
        >>> tok = char_tokenizer("hello")
        >>> add_mask_token(tok), tok.encode("he[MASK]")
        (4, [1, 0, 4])
    """
    mask_id = tokenizer.token_to_id(MASK_TOKEN)
    if mask_id is None:
        mask_id = tokenizer.vocab_size
        tokenizer.add_tokens([AddedToken(MASK_TOKEN, mask_id)])
    tokenizer.mask_token = MASK_TOKEN
    return mask_id


def tokenizer_fingerprint(tokenizer: Tokenizer) -> str:
    """sha256 of the tokenizer's ``tokenizer.json`` content (canonical JSON): equal iff same ids for same text."""
    doc = json.dumps(tokenizer.to_dict(), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(doc.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------- the token file


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (vocab <= 65536, GPT-2's 50257 included), else uint32: half the disk."""
    return np.dtype(np.uint16 if vocab_size <= 2**16 else np.uint32)


def tokenize_to_file(text: str, tokenizer: Tokenizer, path: str | Path) -> np.memmap:
    """Tokenize ``text`` once into ``path`` (raw ids) and return it memory-mapped, read-only.

    ``path``.json records the dtype, the count and the tokenizer's fingerprint; when both files
    already hold this text tokenized by this tokenizer, nothing is redone. Written atomically: a
    reader never sees half a file, and the old record is deleted before the ids are replaced, so a
    run killed in between leaves ids without a record (redone next time), never ids of another text
    under a record that vouches for them.
    """
    path = Path(path)
    meta = {"dtype": token_dtype(len(tokenizer)).name, "tokenizer": tokenizer_fingerprint(tokenizer),
            "text_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}
    meta_path = path.with_name(path.name + ".json")
    if path.is_file() and meta_path.is_file():
        old = json.loads(meta_path.read_text(encoding="utf-8"))
        if {k: old.get(k) for k in meta} == meta:
            return load_token_file(path)
    ids = np.fromiter(tokenizer.encode_iterable(text.splitlines(keepends=True)), dtype=np.int64)
    if ids.size == 0:
        raise ValueError("the corpus gives no tokens at all with this tokenizer")
    meta["tokens"] = int(ids.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        ids.astype(meta["dtype"]).tofile(f)
        f.flush()
        os.fsync(f.fileno())
    meta_path.unlink(missing_ok=True)
    os.replace(tmp, path)
    tmp_meta = meta_path.with_name(f".{meta_path.name}.tmp-{os.getpid()}")
    tmp_meta.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp_meta, meta_path)
    return load_token_file(path)


def load_token_file(path: str | Path) -> np.memmap:
    """The ids in ``path`` memory-mapped (the dtype read from ``path``.json)."""
    path = Path(path)
    meta = json.loads(path.with_name(path.name + ".json").read_text(encoding="utf-8"))
    return np.memmap(path, dtype=np.dtype(meta["dtype"]), mode="r")


# ---------------------------------------------------------------------------------- blocks


class TokenBlocks:
    """Random blocks of a token sequence, the first 90% for training and the last 10% held out (nanoGPT).

    Args:
        tokens: 1-D ids (a memory-mapped token file, a numpy array or a tensor).
        block_size: T, tokens per row.
        seed: with ``split`` and ``index``, seeds the generator of each batch's block starts.
        val_fraction: the share at the end held out for validation.
        max_positions: the model's longest sequence (``model.max_positions``), checked against T.

    Attributes:
        window: tokens cut from the corpus per row: T + 1 here (the inputs and, one further, the
            targets), T for :class:`MaskedTokenBlocks`, whose targets are the inputs themselves.

    Raises:
        ValueError: a block longer than the model takes, or a split shorter than one block.
    """

    extra_tokens = 1  # the window reaches one token past the block: the last position's target

    def __init__(self, tokens: Any, block_size: int, *, seed: int = 0, val_fraction: float = 0.1,
                 max_positions: int | None = None) -> None:
        if block_size < 2:
            raise ValueError(f"block_size must be at least 2 (one token predicts the next), got {block_size}")
        if max_positions is not None and block_size > max_positions:
            raise ValueError(f"block size {block_size} is longer than the model's {max_positions} positions: "
                             f"pass --block-size {max_positions} or less")
        if isinstance(tokens, torch.Tensor):
            tokens = tokens.numpy()
        n_val = int(len(tokens) * val_fraction)
        self.splits = {"train": tokens[: len(tokens) - n_val], "val": tokens[len(tokens) - n_val:]}
        self.window = block_size + self.extra_tokens
        for split, part in self.splits.items():
            if len(part) < self.window:
                what = f"one block of {block_size}" + (" and its next token" if self.extra_tokens else "")
                raise ValueError(
                    f"the corpus is too small: its {split} split has {len(part)} tokens ({len(tokens)} in all, "
                    f"the last {val_fraction:.0%} held out), fewer than {what}; "
                    f"use a longer corpus or a smaller --block-size")
        self.block_size = block_size
        self.seed = seed

    def generator(self, split: str, index: int) -> np.random.Generator:
        """The generator of batch ``index`` of ``split``: seeded by (seed, split, index) and nothing else."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return np.random.default_rng([self.seed, SPLITS.index(split), index])

    def blocks(self, split: str, index: int, batch_size: int) -> tuple[torch.Tensor, np.random.Generator]:
        """(B, window) int64 ids of ``batch_size`` windows at random starts, and the generator that drew them."""
        rng = self.generator(split, index)  # first: it refuses an unknown split
        data, W = self.splits[split], self.window
        starts = rng.integers(0, len(data) - W + 1, size=batch_size)
        rows = np.stack([np.asarray(data[s:s + W], dtype=np.int64) for s in starts])  # (B, W)
        return torch.from_numpy(rows), rng

    def get_batch(self, split: str, index: int, batch_size: int) -> dict[str, torch.Tensor]:
        """``{"input_ids": (B, T), "shift_labels": (B, T)}``: the window's first T tokens, and its last T."""
        rows, _ = self.blocks(split, index, batch_size)  # (B, T + 1)
        return {"input_ids": rows[:, :-1], "shift_labels": rows[:, 1:]}  # each (B, T): token t predicts t + 1

    def tokens_in(self, batch: dict[str, torch.Tensor]) -> int:
        return batch["input_ids"].numel()


class MaskedTokenBlocks(TokenBlocks):
    """The same blocks for a masked LM (BERT): 15% of tokens chosen, of those 80% masked, 10% random, 10% kept.

    Labels hold the original id at the chosen positions and -100 elsewhere, so the loss counts only
    those. The choice comes from the batch's own generator, after the block starts: deterministic in
    (seed, split, index). ``special_ids`` (say [CLS], [SEP], [PAD]) are never chosen.

    Args:
        tokens, block_size, seed, val_fraction, max_positions: as :class:`TokenBlocks`.
        mask_token_id: the id of ``[MASK]``.
        vocab_size: random replacements are drawn from ``0 .. vocab_size - 1`` (special ids excluded).
        special_ids: ids never masked nor drawn as replacements.
        mask_prob: the share of tokens chosen (BERT: 0.15).
    """

    extra_tokens = 0  # the targets are the block's own tokens

    def __init__(self, tokens: Any, block_size: int, *, mask_token_id: int, vocab_size: int,
                 special_ids: tuple[int, ...] = (), mask_prob: float = 0.15, seed: int = 0,
                 val_fraction: float = 0.1, max_positions: int | None = None) -> None:
        super().__init__(tokens, block_size, seed=seed, val_fraction=val_fraction, max_positions=max_positions)
        self.mask_token_id = mask_token_id
        self.special = np.array(sorted(set(special_ids) | {mask_token_id}), dtype=np.int64)
        self.replacements = np.setdiff1d(np.arange(vocab_size), self.special)
        self.mask_prob = mask_prob

    def get_batch(self, split: str, index: int, batch_size: int) -> dict[str, torch.Tensor]:
        """``{"input_ids", "attention_mask", "labels"}``, each (B, T); labels -100 where nothing was chosen."""
        ids, rng = self.blocks(split, index, batch_size)
        original = ids.numpy()
        chosen = (rng.random(original.shape) < self.mask_prob) & ~np.isin(original, self.special)  # (B, T)
        roll = rng.random(original.shape)  # < 0.8: [MASK]; 0.8..0.9: a random token; >= 0.9: kept
        random_ids = self.replacements[rng.integers(0, len(self.replacements), size=original.shape)]
        inputs = original.copy()
        inputs[chosen & (roll < 0.8)] = self.mask_token_id
        swap = chosen & (roll >= 0.8) & (roll < 0.9)
        inputs[swap] = random_ids[swap]
        labels = np.where(chosen, original, -100)
        return {"input_ids": torch.from_numpy(inputs), "attention_mask": torch.ones_like(ids),
                "labels": torch.from_numpy(labels)}
