# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 1: tokenization
#
# A model never sees text. It sees integers, one per *token*, and the tokenizer decides what a
# token is: text → UTF-8 bytes → pieces → tokens → ids. Get one merge wrong and a pretrained
# model reads gibberish without any error, so this chapter builds the two tokenizers most models
# use, byte-level BPE (GPT-2, RoBERTa, Llama 3) and WordPiece (BERT), and checks them id for id
# against Hugging Face `tokenizers`.
#
# This file is a notebook in jupytext's percent format, and `lesson.ipynb` beside it is the same
# notebook, generated from it: open that in Jupyter, or run this file top to bottom with
# `python lesson.py` (a few seconds, CPU, no network). Your exercises are in `exercises_01.py`;
# grade them with `minitransformer check 1`.

# %%
import json
import unicodedata
from collections import Counter

import regex
from tokenizers import ByteLevelBPETokenizer, Tokenizer, models, pre_tokenizers

from minitransformer.tokenizers import GPT2_PATTERN, BPETokenizer, WordPieceTokenizer
from minitransformer.tokenizers.byte_level import bytes_to_unicode, from_byte_chars, to_byte_chars

# The lesson's corpus: short, built in, and repetitive enough that BPE finds something to merge.
TEXT = """\
A tokenizer turns text into numbers, and a model only ever sees the numbers.
The model learns what each number means; the tokenizer decides what the numbers are.
Byte pair encoding starts from bytes and merges the pair it sees most often, again and again.
Frequent words become single tokens, rare words stay in pieces, and no word is ever unknown.
Low, lower, lowest. New, newer, newest. Wide, wider, widest. The endings are shared.
The lowest number is zero; the newest model is the one you train next; the widest layer is the MLP.
Café, naïve, über and fiancée carry accents, and an emoji such as 🙂 needs four bytes.
A character may need one byte, two, three or four; a token may hold many bytes, or just one.
The tokenizer learns its merges once, on a corpus, and then applies them to every text it meets.
Encoding applies the merges in the order they were learned; decoding joins the bytes back up.
Words that the corpus never showed are spelled with smaller pieces, down to single bytes.
It's 2024, and it's still true: the model sees the numbers, and only the numbers.
A space usually belongs to the word after it, so " the" and "the" are different tokens.
Numbers such as 1, 10, 100 and 2024 are cut into digits and runs of digits by the same rules.
The more merges a tokenizer learns, the fewer tokens it needs for the same text.
The fewer tokens a text needs, the more text fits into the model's context window.
Every token also costs a row in the embedding table and a column in the output layer.
So the size of the vocabulary is a trade between shorter sequences and bigger tables.
GPT-2 learned about fifty thousand merges; newer models learn more than a hundred thousand.
BERT uses WordPiece instead: the longest piece first, and two hashes mark a piece inside a word.
T5 uses Unigram: every piece has a probability, and the best split wins.
All three start from the same question: which pieces of text deserve a number of their own?
The answer is learned from the corpus, so a tokenizer trained on code splits prose badly.
And a tokenizer trained on English spends more tokens on every other language.
"""

# %% [markdown]
# ## 1. Text is code points; files hold bytes
# A Python `str` is a sequence of Unicode code points. UTF-8 stores each code point in one to four
# bytes: ASCII in one, accented Latin in two, most CJK in three, emoji in four. Some things that
# look like one character are several code points: an `e` followed by a combining accent, a thumb
# with a skin tone, a family of people glued with ZERO WIDTH JOINERs.

# %%
for s in ["a", "é", "e\u0301", "€", "日", "🙂", "👍🏽", "👨‍👩‍👧"]:
    points = " ".join(f"U+{ord(c):04X}" for c in s)
    data = s.encode("utf-8")
    print(f"{s!s:4} {len(s)} code point(s) {points:32} {len(data):2} bytes  {list(data)}")

# "é" two ways: the same on screen, different bytes. Normalization (NFC) picks one.
print("precomposed == decomposed?", "é" == "e\u0301", "| after NFC:", unicodedata.normalize("NFC", "e\u0301") == "é")

# %% [markdown]
# ## 2. Why byte-level
# A vocabulary of characters would need an entry for each of Unicode's ~150,000 code points, or an
# `[UNK]` for the ones it left out. A vocabulary that starts from the 256 byte values can spell
# *any* string: nothing is ever unknown. The cost is length (an emoji is four symbols), and BPE
# exists to win that back by merging frequent byte sequences into single tokens.

# %%
chars = sorted(set(TEXT))
print(f"the corpus: {len(TEXT)} characters, {len(TEXT.encode())} bytes, {len(chars)} distinct characters")
print("a character vocabulary built on it cannot spell:", [c for c in "Smörgåsbord 🚀" if c not in chars])
print("a byte vocabulary can spell everything: all bytes are in range(256):",
      all(b < 256 for b in "Smörgåsbord 🚀".encode()))

# %% [markdown]
# ## 3. GPT-2's byte-to-unicode map
# `tokenizer.json` and GPT-2's `vocab.json` store tokens as *text*, so each byte needs a printable
# stand-in. GPT-2 keeps the 188 bytes that already print as themselves and moves the other 68
# (space, newline, control bytes, some of Latin-1) to code points from U+0100 upward. That is why
# GPT-2 vocabularies are full of `Ġ` (a space) and `Ċ` (a newline), and why UTF-8 text looks
# like mojibake there: `é` is the bytes C3 A9, spelled `Ã©`.

# %%
byte_to_char = bytes_to_unicode()
print("space ->", byte_to_char[ord(" ")], " newline ->", byte_to_char[ord("\n")], " 'a' ->", byte_to_char[ord("a")])
print("unchanged:", sum(byte_to_char[b] == chr(b) for b in range(256)), "bytes; moved:",
      sum(byte_to_char[b] != chr(b) for b in range(256)))
print(repr(to_byte_chars("héllo world\n")), "->", repr(from_byte_chars(to_byte_chars("héllo world\n"))))
# Hugging Face's ByteLevel pre-tokenizer uses the same 256 characters.
assert set(byte_to_char.values()) == set(pre_tokenizers.ByteLevel.alphabet())

# %% [markdown]
# ## 4. Pre-tokenization: cut the text before merging
# Merges never cross a piece boundary. GPT-2 cuts with one regex: contractions, runs of letters
# with at most one leading space, runs of digits, runs of other symbols, and whitespace. The space
# belongs to the word after it, so `" world"` is one piece and, after training, often one token.
# `\s+(?!\S)` leaves the last space of a run of spaces to the next word.

# %%
print(GPT2_PATTERN)
sample = "Hello  world, it's 2024!! café 🙂\n"
ours = regex.findall(GPT2_PATTERN, sample)
print(ours)
# tokenizers' ByteLevel pre-tokenizer does the same split, and shows the pieces in byte characters.
theirs = [piece for piece, _ in pre_tokenizers.ByteLevel(add_prefix_space=False).pre_tokenize_str(sample)]
print(theirs)
assert [to_byte_chars(p) for p in ours] == theirs

# %% [markdown]
# ## 5. Training BPE, one merge at a time
# Count the pieces (identical pieces train identically, so keep each once with its count). Start
# every piece as its bytes. Then, again and again: count the adjacent pairs over all pieces
# (weighted by the piece's count), merge the most frequent pair everywhere, and record it.
# The recorded list of merges, in order, *is* the model. Here on a tiny corpus; tokens are shown
# in GPT-2's byte characters, as `tokenizer.json` writes them.

# %%
tiny = " ".join(["hug"] * 10 + ["pug"] * 5 + ["pun"] * 12 + ["bun"] * 4 + ["hugs"] * 5)
piece_counts = Counter(regex.findall(GPT2_PATTERN, tiny))
pieces = {p: list(to_byte_chars(p)) for p in piece_counts}  # piece -> its current tokens
print("pieces:", dict(piece_counts))


def pair_counts(pieces, piece_counts):
    counts = Counter()
    for p, tokens in pieces.items():
        for pair in zip(tokens, tokens[1:]):
            counts[pair] += piece_counts[p]
    return counts


tiny_merges = []
for step in range(6):
    counts = pair_counts(pieces, piece_counts)
    best = min(counts, key=lambda pair: (-counts[pair], pair))  # most frequent; ties: see below
    tiny_merges.append(best)
    for p, tokens in pieces.items():  # replace the pair in every piece
        i, out = 0, []
        while i < len(tokens):
            if tuple(tokens[i : i + 2]) == best:
                out.append(tokens[i] + tokens[i + 1])
                i += 2
            else:
                out.append(tokens[i])
                i += 1
        pieces[p] = out
    top3 = ", ".join(f"{a}+{b}:{n}" for (a, b), n in counts.most_common(3))
    print(f"merge {step}: {best[0]!r} + {best[1]!r} (seen {counts[best]}x)   top pairs were {top3}")
print("pieces now:", {p: tokens for p, tokens in pieces.items()})

# %% [markdown]
# On a tie, `tokenizers` takes the pair whose tokens have the smallest *ids*. Its ids start with
# the 256 byte characters sorted by code point, so `Ġ` (U+0120, a space) sorts after every
# letter: a tie between `Ġ+p` and `u+n` goes to `u+n`. The library's trainer reproduces that rule
# exactly; the exercises number tokens by raw byte value instead (space = 32), minbpe style.
#
# ## 6. Encoding: merges by rank
# To encode a new piece, start from its bytes and repeatedly apply the merge with the lowest
# *rank* (learned earliest) among the adjacent pairs, until no pair has a merge. Not left to right:
# rank decides.

# %%
rank = {pair: r for r, pair in enumerate(tiny_merges)}
print("ranks:", {f"{a}+{b}": r for (a, b), r in rank.items()})
for word in [" hugs", " bugs", " puns"]:
    tokens = list(to_byte_chars(word))
    trace = [" ".join(tokens)]
    while len(tokens) > 1:
        pair = min(zip(tokens, tokens[1:]), key=lambda p: rank.get(p, len(rank)))
        if pair not in rank:
            break
        i = list(zip(tokens, tokens[1:])).index(pair)
        tokens[i : i + 2] = [pair[0] + pair[1]]
        trace.append(" ".join(tokens))
    print(f"{word!r:8}: " + "  ->  ".join(trace))

# %% [markdown]
# ## 7. Decoding: join the bytes, then decode, never raise
# Each token is a run of bytes; decoding joins them and decodes UTF-8 once, at the end. A model
# can stop in the middle of a character (the first two of an emoji's four bytes), so the last step
# must be `decode("utf-8", errors="replace")`: a broken sequence becomes U+FFFD `�`, not an
# exception.

# %%
emoji_bytes = "ok 🙂".encode()
for cut in range(3, len(emoji_bytes) + 1):
    print(cut, "bytes:", repr(emoji_bytes[:cut].decode("utf-8", errors="replace")))
try:
    emoji_bytes[:4].decode("utf-8")
except UnicodeDecodeError as err:
    print("strict decoding raises:", err.reason)

# %% [markdown]
# ## 8. The library's BPE equals Hugging Face's, merge for merge
# `BPETokenizer.train` is the same algorithm with two speedups (pair counts updated around each
# merge instead of recounted, and a heap to find the best pair), and the same tie rule as
# `tokenizers`. Trained on the same text with the same settings, the merges are identical in
# order, and so are the ids.

# %%
lines = TEXT.splitlines(keepends=True)
ours = BPETokenizer.train(lines, vocab_size=400, min_frequency=2, show_progress=False)
hf = ByteLevelBPETokenizer()
hf.train_from_iterator(lines, vocab_size=400, min_frequency=2, show_progress=False)
hf_merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" "))
             for m in json.loads(hf._tokenizer.to_str())["model"]["merges"]]
print(f"{len(ours.merges)} merges; the first ten: {ours.merges[:10]}")
assert ours.merges == hf_merges, "the library's merges differ from tokenizers'"

probe = "The newest tokenizer, naïvely lower-cased? No: 🙂 stays 🙂.\n"
ids = ours.encode(probe)
assert ids == hf.encode(probe).ids
assert ours.decode(ids) == probe
print(len(probe), "characters ->", len(ids), "ids, equal to tokenizers':", ids[:12], "...")
# The tokens in GPT-2's characters: 'ï' was never merged, so it stays two bytes, 'Ã' and '¯'.
print("tokens:", hf.encode(probe).tokens[:12], "...")
smile = ours.encode("🙂")
print(f"'🙂' is {len(smile)} ids; decoding all but the last:", repr(ours.decode(smile[:-1])))

# %% [markdown]
# ## 9. A bigger vocabulary, shorter sequences
# Every merge saves symbols wherever its pair occurs. Tokens per character falls quickly with the
# first merges and then more slowly, on text the tokenizer has not seen as well, while each token
# costs a row of the embedding table and of the output layer. GPT-2 stops at 50,257 tokens; Llama 3
# at 128,256. Here, trained on the first 18 lines and measured on the last 6:

# %%
train_lines, held_out = lines[:18], "".join(lines[18:])
sizes, ratios = [], []
for vocab_size in (256, 270, 290, 320, 360, 400, 450, 500, 600):
    tok = BPETokenizer.train(train_lines, vocab_size=vocab_size, min_frequency=2, show_progress=False)
    if sizes and tok.vocab_size == sizes[-1]:
        print(f"vocab {vocab_size}: no pair is left that occurs twice; training stops at {sizes[-1]}")
        break
    sizes.append(tok.vocab_size)
    ratios.append(len(tok.encode(held_out)) / len(held_out))
    print(f"vocab {tok.vocab_size:4d}: {ratios[-1]:.3f} tokens per character on held-out lines")

try:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot(sizes, ratios, marker="o")
    ax.set_xlabel("vocabulary size")
    ax.set_ylabel("tokens per character")
    ax.set_title("held-out lines")
    plt.show()  # fig.savefig("tokens_per_char.png") keeps a copy
except ImportError:
    print("install the viz extra (pip install 'minitransformer[viz]') to draw the plot")

# %% [markdown]
# ## 10. WordPiece (BERT): greedy longest match, with `##`
# BERT lower-cases, strips accents and splits on whitespace and punctuation first; then each word
# is cut from the left by the *longest* vocabulary entry that fits. Pieces after the first must be
# in the vocabulary with `##` in front, which marks "continues a word". There is no backtracking:
# if some rest of the word matches nothing, the whole word becomes `[UNK]`.

# %%
vocab = ["[UNK]", "un", "##aff", "##able", "a", "ab", "##bcd", "##l", "##e", "play", "##ing", "##s"]


def wordpiece_trace(word):
    start, pieces = 0, []
    while start < len(word):
        for end in range(len(word), start, -1):  # longest candidate first
            candidate = word[start:end] if start == 0 else "##" + word[start:end]
            if candidate in vocab:
                break
        else:
            return ["[UNK]"]
        pieces.append(candidate)
        start = end
    return pieces


wp = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
for word in ["unaffable", "playing", "able", "abcd"]:
    mine = wordpiece_trace(word)
    assert mine == wp.encode(word).tokens
    print(f"{word:10} -> {mine}")
print("'abcd' is [UNK] although 'a' + '##bcd' would spell it: greedy takes 'ab' first")

# The library's WordPieceTokenizer.bert adds BERT's normalizer, punctuation split and [CLS]/[SEP].
bert = WordPieceTokenizer.bert({"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "un": 4, "##aff": 5,
                                "##able": 6, "!": 7})
ids = bert.encode("Unaffable!")
print("BERT pipeline: 'Unaffable!' ->", ids, "->", [bert.id_to_token(i) for i in ids])

# %% [markdown]
# ## 11. And Unigram
# T5 and most SentencePiece models use a third model, Unigram: every token has a probability, and
# a word is cut into the pieces whose product of probabilities is highest (Viterbi search over the
# cut points), with `▁` marking spaces. The library implements it in
# `minitransformer/tokenizers/unigram.py` (encoding) and `unigram_train.py` (EM with pruning).
#
# ## Your turn
# Open `exercises_01.py` and implement 1.1 to 1.7: the bytes of a string, pair counts, a merge, BPE
# training, encoding by rank, safe decoding, and WordPiece. `minitransformer check 1` compares
# each with Hugging Face `tokenizers` and tells you which case fails.
#
# From this notebook, `minitransformer.check("1")` prints the same lines (it reads your file
# afresh each time), and `from exercises_01 import ...` brings your functions here to try
# them on the tensors above.
