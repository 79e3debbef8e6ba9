"""The KV cache moved to :mod:`minitransformer.layers.kv_cache`: it lives with attention, which uses it.

This module keeps the old import path working (``from minitransformer.generation.cache import ...``).
"""

from minitransformer.layers.kv_cache import (  # noqa: F401
    CacheStep,
    DynamicCache,
    EncoderDecoderCache,
    LayerCache,
    StaticCache,
    StaticLayerCache,
    cache_nbytes,
    expected_cache_nbytes,
)
