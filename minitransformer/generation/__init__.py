"""Generation: the KV cache, logits processing, prefill and decode steps, ``generate``.

    cache.py         DynamicCache, StaticCache, EncoderDecoderCache, cache_nbytes (from layers/kv_cache.py)
    logits.py        repetition penalty, temperature, top-k, top-p, choosing the next token
    sessions.py      prefill and decode_step, and the per-generation state they share
    config.py        GenerationConfig: every option of generate, checked in one place
    generate.py      generate(model, ids, **options): greedy and sampling loop, GenerateOutput
    beam_search.py   beam search with length penalty and early stopping
    speculative.py   speculative decoding with a draft model
    streaming.py     TextStreamer, TextIteratorStreamer, stream_text, StopStrings
"""

from minitransformer.generation.cache import (
    DynamicCache,
    EncoderDecoderCache,
    StaticCache,
    cache_nbytes,
    expected_cache_nbytes,
)
from minitransformer.generation.config import GenerationConfig, UnknownGenerationOption
from minitransformer.generation.generate import GenerateOutput, generate
from minitransformer.generation.speculative import SpeculativeOutput, speculative_generate
from minitransformer.generation.streaming import StopStrings, TextIteratorStreamer, TextStreamer, stream_text
