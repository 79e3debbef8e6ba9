"""Scaled dot-product attention and multi-head attention.

    Attention(Q, K, V) = softmax(Q K^T * scale + mask) V

Shapes: query (B, H, T, D), key/value (B, Hkv, S, D); output (B, H, T, D).
Two interchangeable paths compute it:

- ``"math"``: :func:`scaled_dot_product_attention`, written out with matmul and softmax, readable,
  and the only one that can return the attention probabilities;
- ``"sdpa"``: ``torch.nn.functional.scaled_dot_product_attention``, torch's fused kernels.

Tests prove both agree; models pick one by name (``attn_implementation``), with the same meaning
and the same default in every family (see :func:`fused_kernels`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from minitransformer.layers.flash_attention import flash_attention
from minitransformer.layers.linear import Linear
from minitransformer.layers.masks import check_mask

#: "math": every operation written out; "sdpa": torch's fused kernels; "flash": the tiled attention of
#: ``flash_attention.py`` in plain PyTorch (memory O(T), not O(T^2); slower than sdpa on a CPU).
BACKENDS = ("math", "sdpa", "flash")
#: transformers' name for the written-out path; accepted as a synonym of "math".
BACKEND_ALIASES = {"eager": "math"}
#: Every model's default: the written-out path, so that what a student reads is what runs. It is also
#: the only one that returns attention maps, and the one transformers' eager reference matches.
DEFAULT_BACKEND = "math"


def check_backend(attn_implementation: str, name: str = "attn_implementation") -> str:
    """The backend's canonical name ("math", "sdpa" or "flash"), or a ValueError naming the choices."""
    backend = BACKEND_ALIASES.get(attn_implementation, attn_implementation)
    if backend not in BACKENDS:
        raise ValueError(f"{name} must be one of {BACKENDS} (or 'eager', the same as 'math'), "
                         f"got {attn_implementation!r}")
    return backend


def fused_kernels(attn_implementation: str) -> bool:
    """The one switch of every model: "sdpa" takes torch's fused kernels for attention *and* for the
    norms and activations (``LayerNorm/RMSNorm(fused=True)``, ``MLP(fused=True)``); "math" writes all
    of them out. Both compute the same function; tests bound their difference."""
    return check_backend(attn_implementation) == "sdpa"


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """Grouped-query attention: (B, Hkv, S, D) -> (B, Hkv * n_rep, S, D), each kv head shared by n_rep queries."""
    if n_rep == 1:
        return x
    return x.repeat_interleave(n_rep, dim=1)  # (B, H, S, D)


def _check_qkv(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> int:
    if query.dim() != 4 or key.dim() != 4 or value.dim() != 4:
        raise ValueError(
            "query, key and value must be 4-D (B, H, T, D) / (B, Hkv, S, D); got shapes "
            f"{tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}"
        )
    if key.shape != value.shape[:-1] + key.shape[-1:] or key.shape[:3] != value.shape[:3]:
        raise ValueError(f"key {tuple(key.shape)} and value {tuple(value.shape)} must agree on (B, Hkv, S)")
    if query.shape[0] != key.shape[0] or query.shape[-1] != key.shape[-1]:
        raise ValueError(
            f"query {tuple(query.shape)} and key {tuple(key.shape)} must agree on batch B and head size D"
        )
    heads, kv_heads = query.shape[1], key.shape[1]
    if heads % kv_heads:
        raise ValueError(f"query has H={heads} heads, not a multiple of the key's Hkv={kv_heads} heads")
    return heads // kv_heads


def scaled_dot_product_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    return_weights: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Attention written out: the "math" path, same arguments as torch's fused function.

    Args:
        query: (B, H, T, D). key, value: (B, Hkv, S, D); Hkv may divide H (grouped-query attention).
        attn_mask: bool (True = attend) or additive float, broadcastable to (B, H, T, S).
        dropout_p: dropout on the attention probabilities (training only; keep 0.0 at inference).
        is_causal: add a causal mask aligned top-left as torch does (query i sees keys 0..i). With a
            KV cache (S > T) pass ``masks.causal_mask(T, S)`` instead, which aligns bottom-right.
        scale: multiplies the scores; default ``1 / sqrt(D)``. T5 uses 1.0.
        return_weights: also return the probabilities (B, H, T, S).

    Returns:
        output (B, H, T, D), and the probabilities if ``return_weights``.

    A query row with no allowed key gets all-zero probabilities and a zero output (see masks.py).
    """
    n_rep = _check_qkv(query, key, value)
    B, H, T, D = query.shape
    S = key.shape[2]
    key, value = repeat_kv(key, n_rep), repeat_kv(value, n_rep)  # (B, H, S, D)
    scale = 1.0 / math.sqrt(D) if scale is None else scale

    scores = torch.matmul(query, key.transpose(-2, -1)) * scale  # (B, H, T, S)

    allowed = None  # bool (.., T, S) or None: which scores survive
    if is_causal:
        allowed = torch.ones(T, S, dtype=torch.bool, device=query.device).tril()  # (T, S)
    if attn_mask is not None:
        check_mask(attn_mask, B, H, T, S)
        if attn_mask.dtype == torch.bool:
            allowed = attn_mask if allowed is None else allowed & attn_mask
        else:
            scores = scores + attn_mask
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))

    # Softmax in fp32 for stability, then back to the input dtype.
    weights = torch.softmax(scores.float(), dim=-1)
    if allowed is not None:
        # Fully masked rows: softmax(-inf, ..., -inf) is NaN; the library's rule makes them zero.
        weights = weights.masked_fill(~allowed, 0.0)
    weights = weights.to(query.dtype)
    if dropout_p > 0.0:
        keep = torch.rand(weights.shape, generator=generator, device=weights.device) >= dropout_p
        weights = weights * keep / (1.0 - dropout_p)
    output = torch.matmul(weights, value)  # (B, H, T, D)
    return (output, weights) if return_weights else output


def fused_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
) -> torch.Tensor:
    """torch's fused SDPA with the library's rules: GQA heads expanded, fully masked rows zeroed."""
    n_rep = _check_qkv(query, key, value)
    B, H, T, _ = query.shape
    S = key.shape[2]
    key, value = repeat_kv(key, n_rep), repeat_kv(value, n_rep)  # (B, H, S, D)
    if attn_mask is not None:
        check_mask(attn_mask, B, H, T, S)
    output = F.scaled_dot_product_attention(
        query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale
    )
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        has_key = attn_mask.any(dim=-1, keepdim=True)  # (.., T, 1)
        output = output.masked_fill(~has_key, 0.0)
    return output


def dispatch_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    *,
    backend: str = "math",
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    return_weights: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Dispatch to the "math", "sdpa" or "flash" path. Returns (output, probabilities or None).

    Asking for the probabilities always takes the math path: fused and tiled kernels never build them.
    """
    backend = check_backend(backend, "backend")
    if backend == "flash" and not return_weights:
        if dropout_p > 0:
            raise ValueError(f"the flash backend has no attention dropout (dropout_p={dropout_p}): train with "
                             f"attention dropout 0, or use attn_implementation 'math' or 'sdpa'")
        if is_causal and query.shape[-2] != key.shape[-2]:
            # is_causal is torch's top-left alignment; flash_attention's causal is bottom-right (a cache)
            raise ValueError("is_causal with queries and keys of different lengths: pass the causal mask instead")
        return flash_attention(query, key, value, attn_mask=attn_mask, scale=scale, causal=is_causal), None
    if backend == "sdpa" and compiled_decode_step(query):
        # A compiled decode step (one query per row) on the CPU: the written-out attention, which inductor
        # fuses into a few loops over the cache, beat torch's fused CPU kernel (about 75 microseconds a
        # call, one call a layer): a LLaMA of SmolLM-135M's shape, 30 layers, decoded at 47 tokens/s
        # instead of 42; GPT-2 124M, 12 layers, the same either way (docs/generation.md).
        backend = "math"
    if backend == "math" or return_weights:
        out = scaled_dot_product_attention(
            query, key, value, attn_mask, dropout_p, is_causal, scale, return_weights=return_weights
        )
        return out if return_weights else (out, None)
    return fused_attention(query, key, value, attn_mask, dropout_p, is_causal, scale), None


def compiled_decode_step(query: torch.Tensor) -> bool:
    """Whether this attention is inside a ``torch.compile``d decode step on the CPU: one query per row."""
    return torch.compiler.is_compiling() and query.shape[-2] == 1 and query.device.type == "cpu"


class MultiHeadAttention(nn.Module):
    """Multi-head attention for self and cross attention, with grouped-query attention.

    Args:
        hidden_size: C, the model width (input and output size).
        num_attention_heads: H, query heads.
        num_key_value_heads: Hkv key/value heads (default H). Hkv == 1 is multi-query attention.
        head_dim: D (default C // H).
        bias: whether q/k/v projections have a bias; ``out_bias`` likewise for the output one.
        kv_input_size: width of the key/value input in cross attention (default C).
        scale: score scale, default 1/sqrt(D); T5 passes 1.0.
        rotary: a :class:`RotaryEmbedding` applied to q and k, or None.
        attn_implementation: "math" (default) or "sdpa" ("eager" is accepted for "math").

    The weights are named like HF's LLaMA: ``q_proj``, ``k_proj``, ``v_proj``, ``o_proj``.
    """

    def __init__(
        self,
        hidden_size: int,
        num_attention_heads: int,
        num_key_value_heads: int | None = None,
        head_dim: int | None = None,
        bias: bool = True,
        out_bias: bool | None = None,
        kv_input_size: int | None = None,
        scale: float | None = None,
        dropout: float = 0.0,
        rotary: nn.Module | None = None,
        attn_implementation: str = DEFAULT_BACKEND,
    ):
        super().__init__()
        num_key_value_heads = num_attention_heads if num_key_value_heads is None else num_key_value_heads
        if num_attention_heads <= 0 or num_key_value_heads <= 0:
            raise ValueError(f"head counts must be positive, got num_attention_heads={num_attention_heads}, "
                             f"num_key_value_heads={num_key_value_heads}")
        if head_dim is None:
            if hidden_size % num_attention_heads:
                raise ValueError(
                    f"hidden_size={hidden_size} is not divisible by num_attention_heads={num_attention_heads}; "
                    f"choose a head count that divides it (e.g. {_divisors_hint(hidden_size)}) or pass head_dim"
                )
            head_dim = hidden_size // num_attention_heads
        if num_attention_heads % num_key_value_heads:
            raise ValueError(
                f"num_key_value_heads={num_key_value_heads} must divide num_attention_heads={num_attention_heads} "
                "(each key/value head serves an equal group of query heads)"
            )
        attn_implementation = check_backend(attn_implementation)
        self.hidden_size = hidden_size
        self.num_heads = num_attention_heads
        self.num_kv_heads = num_key_value_heads
        self.head_dim = head_dim
        self.scale = scale
        self.dropout = dropout
        self.rotary = rotary
        self.attn_implementation = attn_implementation
        kv_input_size = hidden_size if kv_input_size is None else kv_input_size
        out_bias = bias if out_bias is None else out_bias
        self.q_proj = Linear(hidden_size, num_attention_heads * head_dim, bias=bias)
        self.k_proj = Linear(kv_input_size, num_key_value_heads * head_dim, bias=bias)
        self.v_proj = Linear(kv_input_size, num_key_value_heads * head_dim, bias=bias)
        self.o_proj = Linear(num_attention_heads * head_dim, hidden_size, bias=out_bias)

    def forward(
        self,
        hidden_states: torch.Tensor,
        key_value_states: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        output_attentions: bool = False,
        cache=None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Args:
            hidden_states: (B, T, C), the queries' input.
            key_value_states: (B, S, C_kv) for cross attention; None for self attention.
            attn_mask: bool or additive, broadcastable to (B, H, T, S).
            position_ids: (B, T) positions for RoPE.
            output_attentions: also return the probabilities (B, H, T, S).
            cache: an object with ``update(key, value) -> (key, value)`` that appends this step's keys
                and values to the earlier ones (a KV cache); None for no cache. In cross attention the
                cache keeps the projected encoder keys and values: once ``cache.key`` is set, it is reused.

        Returns:
            (output (B, T, C), probabilities or None)
        """
        if hidden_states.dim() != 3 or hidden_states.shape[-1] != self.hidden_size:
            raise ValueError(
                f"hidden_states must have shape (B, T, hidden_size={self.hidden_size}), got {tuple(hidden_states.shape)}"
            )
        kv_source = hidden_states if key_value_states is None else key_value_states
        if kv_source.dim() != 3 or kv_source.shape[-1] != self.k_proj.in_features:
            raise ValueError(
                f"key_value_states must have shape (B, S, {self.k_proj.in_features}), got {tuple(kv_source.shape)}"
            )
        q = rearrange(self.q_proj(hidden_states), "b t (h d) -> b h t d", h=self.num_heads)  # (B, H, T, D)
        if key_value_states is not None and cache is not None and cache.key is not None:
            # Cross attention while generating: the encoder's keys and values were projected at the first step.
            k, v = cache.key, cache.value  # (B, Hkv, S, D)
        else:
            k = rearrange(self.k_proj(kv_source), "b s (h d) -> b h s d", h=self.num_kv_heads)  # (B, Hkv, S, D)
            v = rearrange(self.v_proj(kv_source), "b s (h d) -> b h s d", h=self.num_kv_heads)  # (B, Hkv, S, D)
            if self.rotary is not None:
                if position_ids is None:
                    position_ids = torch.arange(q.shape[2], device=q.device)[None]  # (1, T)
                q, k = self.rotary(q, k, position_ids)
            if cache is not None:
                k, v = cache.update(k, v)  # (B, Hkv, S_past + S, D)
        out, weights = dispatch_attention(
            q, k, v, attn_mask,
            backend=self.attn_implementation,
            dropout_p=self.dropout if self.training else 0.0,
            scale=self.scale,
            return_weights=output_attentions,
        )
        out = rearrange(out, "b h t d -> b t (h d)")  # (B, T, H*D)
        return self.o_proj(out), weights


def _divisors_hint(n: int) -> str:
    return ", ".join(str(d) for d in range(1, min(n, 64) + 1) if n % d == 0)
