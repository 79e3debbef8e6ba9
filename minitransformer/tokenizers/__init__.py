"""Tokenizers from scratch, equal to Hugging Face's: byte-level BPE, WordPiece, Unigram.

Read the files in this order, each adds one idea:

1. ``byte_level.py``   bytes as printable characters (GPT-2's byte-to-unicode map)
2. ``normalize.py``    cleaning the text (BERT's lower-casing, accents, CJK)
3. ``pretokenize.py``  cutting it into pieces (GPT-2's regex, BERT's punctuation, SentencePiece's ``▁``)
4. ``base.py``         the pipeline every tokenizer shares, batching, padding, streaming, saving
5. ``bpe.py``          encoding with BPE merges;  ``bpe_train.py``  learning them
6. ``wordpiece.py``    BERT's greedy longest match
7. ``unigram.py``      SentencePiece's Viterbi;   ``unigram_train.py``  EM and pruning
8. ``processors.py``   special tokens around the ids, and decoders back to text
9. ``io.py``           ``tokenizer.json``, ``vocab.json`` + ``merges.txt``, ``vocab.txt``, the Hub
"""

from .base import AddedToken, BatchEncoding, Tokenizer, TokenizerFileError
from .bpe import BPETokenizer
from .io import from_tokenizer_json, from_vocab_and_merges, from_vocab_txt, load_tokenizer
from .pretokenize import CL100K_PATTERN, GPT2_PATTERN
from .unigram import UnigramTokenizer
from .wordpiece import WordPieceTokenizer

__all__ = [
    "CL100K_PATTERN",
    "GPT2_PATTERN",
    "AddedToken",
    "BPETokenizer",
    "BatchEncoding",
    "Tokenizer",
    "TokenizerFileError",
    "UnigramTokenizer",
    "WordPieceTokenizer",
    "from_tokenizer_json",
    "from_vocab_and_merges",
    "from_vocab_txt",
    "load_tokenizer",
]
