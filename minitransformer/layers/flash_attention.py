"""Flash attention in plain PyTorch: attention computed tile by tile, never the (T, S) score matrix.

    Attention(Q, K, V) = softmax(Q K^T * scale + mask) V

The math path (``layers.attention.scaled_dot_product_attention``) builds the whole (B, H, T, S)
score matrix, then its softmax: memory O(T * S) per head. FlashAttention (Dao et al. 2022) never
does. It walks the keys in tiles of ``block_k`` for each tile of ``block_q`` queries and keeps, per
query row, three running quantities:

    m    the largest score seen so far,
    l    the sum of exp(score - m) seen so far,
    acc  the sum of exp(score - m) * value seen so far (the output, not yet divided by l).

When a new tile raises the maximum from m to m', the old sums were taken against the wrong
reference; multiplying them by exp(m - m') fixes them (the *online softmax*). After the last tile,
acc / l is the exact softmax-weighted sum. The backward keeps only the output O and, per row, the
log-sum-exp L = m + log(l), and recomputes each tile's probabilities P = exp(S - L) from them.
Memory: O(T * D) plus one tile, instead of O(T * S). ``docs/flash-attention.md`` derives it all.

This is a teaching version: the same algorithm as the CUDA kernels, in Python loops over tiles.
It is much slower than torch's fused kernels (the loops run in Python), but its memory is
the flash one, and tests prove its values and gradients equal to the math path.

Shapes: query (B, H, T, D); key and value (B, Hkv, S, D) with H a multiple of Hkv (grouped-query
attention). Inside, the H query heads are viewed as (Hkv, G) with G = H // Hkv, so each group of
G query heads meets its one key/value head by broadcasting: k and v are never repeated.

Masks (the library's convention, see ``masks.py``):

- ``causal=True``: query i is at position S - T + i and sees keys 0 .. S - T + i (aligned
  bottom-right, as with a KV cache holding S - T earlier tokens). Tiles entirely above the diagonal
  are skipped, never computed.
- ``attention_mask``: the HF-style padding mask (B, S) of 1 (token) / 0 (padding) over the keys.
- ``attn_mask``: any mask the math path takes, bool (True = attend) or additive float,
  broadcastable to (B, H, T, S); it is read one tile at a time. An additive mask that requires grad
  (T5's learned relative bias) gets its gradient.

A query row with no allowed key gets output 0 and sends gradient 0 to q, k and v, the library's
rule for fully masked rows (the math path does the same).
"""

from __future__ import annotations

import math

import torch
from einops import rearrange

from minitransformer.layers.masks import causal_mask, check_mask, padding_mask

__all__ = ["flash_attention"]


def flash_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    *,
    causal: bool = False,
    attention_mask: torch.Tensor | None = None,
    attn_mask: torch.Tensor | None = None,
    scale: float | None = None,
    block_q: int = 64,
    block_k: int = 64,
) -> torch.Tensor:
    """Attention by tiles with an online softmax; differentiable, with a tiled backward.

    Args:
        query: (B, H, T, D).
        key, value: (B, Hkv, S, D); H must be a multiple of Hkv (grouped-query attention).
        causal: query i sees keys 0 .. S - T + i (the queries are the last T positions; needs S >= T).
        attention_mask: (B, S) of 1/0 or bool, True/1 for a real key, 0 for padding.
        attn_mask: bool (True = attend) or additive float, broadcastable to (B, H, T, S).
        scale: multiplies the scores; default ``1 / sqrt(D)``.
        block_q, block_k: tile sizes along the queries and the keys (any positive integers; the
            last tile is shorter when they do not divide T or S).

    Returns:
        output (B, H, T, D), in the dtype of ``query``. Rows with no allowed key are 0.

    Raises:
        ValueError: on shapes that do not fit together, H not a multiple of Hkv, a causal mask with
            S < T, or a block size that is not a positive integer.

    Example:
        >>> q, k, v = torch.randn(1, 2, 5, 4), torch.randn(1, 1, 5, 4), torch.randn(1, 1, 5, 4)
        >>> out = flash_attention(q, k, v, causal=True, block_q=2, block_k=3)
        >>> out.shape
        torch.Size([1, 2, 5, 4])
        >>> from minitransformer.layers.attention import scaled_dot_product_attention
        >>> bool((out - scaled_dot_product_attention(q, k, v, is_causal=True)).abs().max() < 1e-5)
        True
    """
    B, H, T, S, kv_heads = _check_inputs(query, key, value, causal, block_q, block_k)
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else float(scale)

    pad = None
    if attention_mask is not None:
        if tuple(attention_mask.shape) != (B, S):
            raise ValueError(
                f"attention_mask must have shape (B, S)=({B}, {S}), one 1/0 per key, got "
                f"{tuple(attention_mask.shape)}; for a (B, H, T, S) mask pass attn_mask instead"
            )
        pad = _split_heads(padding_mask(attention_mask).to(query.device), kv_heads)  # (B, 1, 1, 1, S)
    keep, bias = None, None
    if attn_mask is not None:
        check_mask(attn_mask, B, H, T, S)
        if attn_mask.dtype == torch.bool:
            keep = _split_heads(attn_mask, kv_heads)  # (B|1, Hkv|1, G|1, T|1, S|1)
        else:
            bias = _split_heads(attn_mask, kv_heads)  # (B|1, Hkv|1, G|1, T|1, S|1)

    q5 = rearrange(query, "b (hkv g) t d -> b hkv g t d", hkv=kv_heads)  # (B, Hkv, G, T, D)
    out5 = _FlashAttention.apply(q5, key, value, pad, keep, bias, causal, scale, block_q, block_k)
    return rearrange(out5, "b hkv g t d -> b (hkv g) t d")  # (B, H, T, D)


class _FlashAttention(torch.autograd.Function):
    """The tiled forward (saves only O and L) and the tiled backward (recomputes P per tile).

    Works on the grouped layout: q (B, Hkv, G, T, D), k and v (B, Hkv, S, D).
    """

    @staticmethod
    def forward(ctx, q, k, v, pad, keep, bias, causal, scale, block_q, block_k):
        sizes = (q.shape[-2], k.shape[-2], block_q, block_k, causal, scale)
        tiles = _Tiles(*sizes, pad, keep, bias)
        acc_dtype = _accumulation_dtype(q.dtype)
        qf, kf, vf = q.to(acc_dtype), k.to(acc_dtype), v.to(acc_dtype)
        out = torch.empty(q.shape[:-1] + v.shape[-1:], dtype=acc_dtype, device=q.device)  # (B, Hkv, G, T, Dv)
        lse = torch.empty(q.shape[:-1] + (1,), dtype=acc_dtype, device=q.device)  # (B, Hkv, G, T, 1)

        for i0, i1 in tiles.query_tiles():
            q_i = qf[..., i0:i1, :]  # (B, Hkv, G, bq, D)
            m = torch.full(q_i.shape[:-1] + (1,), -math.inf, dtype=acc_dtype, device=q.device)  # (.., bq, 1)
            l = torch.zeros_like(m)  # (B, Hkv, G, bq, 1)
            acc = torch.zeros(q_i.shape[:-1] + vf.shape[-1:], dtype=acc_dtype, device=q.device)  # (.., bq, Dv)
            for j0, j1 in tiles.key_tiles_for(i0, i1):
                s = tiles.scores(q_i, kf[..., j0:j1, :], i0, i1, j0, j1)  # (B, Hkv, G, bq, bk)
                m_new = torch.maximum(m, s.amax(dim=-1, keepdim=True))  # (B, Hkv, G, bq, 1)
                # A row with no allowed key yet has m_new = -inf; exp(s - 0) keeps its p at 0, not NaN.
                m_ref = m_new.masked_fill(m_new == -math.inf, 0.0)
                alpha = torch.exp(m - m_ref)  # the rescaling of the old sums: exp(m - m')
                p = torch.exp(s - m_ref)  # (B, Hkv, G, bq, bk), unnormalised probabilities
                l = alpha * l + p.sum(dim=-1, keepdim=True)
                acc = alpha * acc + torch.einsum("bhgqk,bhkd->bhgqd", p, vf[..., j0:j1, :])
                m = m_new
            empty = l == 0  # rows that saw no allowed key at all
            out[..., i0:i1, :] = acc / l.masked_fill(empty, 1.0)  # empty rows: 0 / 1 = 0
            # L = +inf for an empty row makes the backward's P = exp(S - L) zero there.
            lse[..., i0:i1, :] = torch.where(empty, math.inf, m + torch.log(l.masked_fill(empty, 1.0)))

        ctx.save_for_backward(q, k, v, out, lse, pad, keep, bias)
        ctx.sizes = sizes
        return out.to(q.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, out, lse, pad, keep, bias = ctx.saved_tensors
        tiles, scale = _Tiles(*ctx.sizes, pad, keep, bias), ctx.sizes[-1]
        acc_dtype = out.dtype
        qf, kf, vf, do = q.to(acc_dtype), k.to(acc_dtype), v.to(acc_dtype), grad_out.to(acc_dtype)
        dq, dk, dv = torch.zeros_like(qf), torch.zeros_like(kf), torch.zeros_like(vf)
        want_bias = bias is not None and ctx.needs_input_grad[5]
        dbias = torch.zeros(bias.shape, dtype=acc_dtype, device=q.device) if want_bias else None
        # D_i = rowsum(dO * O) = sum_j P_ij dP_ij: the softmax backward's correction term, one per row.
        delta = (do * out).sum(dim=-1, keepdim=True)  # (B, Hkv, G, T, 1)

        # Outer loop over key tiles, as FlashAttention-2 does: dK_j and dV_j are summed in place over
        # the query tiles that see tile j; dQ_i collects a piece from every key tile.
        for j0, j1 in tiles.key_tiles():
            k_j, v_j = kf[..., j0:j1, :], vf[..., j0:j1, :]  # (B, Hkv, bk, D)
            dk_j, dv_j = torch.zeros_like(k_j), torch.zeros_like(v_j)
            for i0, i1 in tiles.query_tiles_for(j0, j1):
                q_i, do_i = qf[..., i0:i1, :], do[..., i0:i1, :]  # (B, Hkv, G, bq, D)
                s = tiles.scores(q_i, k_j, i0, i1, j0, j1)  # (B, Hkv, G, bq, bk)
                p = torch.exp(s - lse[..., i0:i1, :])  # (B, Hkv, G, bq, bk), the softmax, recomputed
                dv_j += torch.einsum("bhgqk,bhgqd->bhkd", p, do_i)  # dV = P^T dO, summed over the group
                dp = torch.einsum("bhgqd,bhkd->bhgqk", do_i, v_j)  # dP = dO V^T
                ds = p * (dp - delta[..., i0:i1, :])  # dS = P * (dP - D): gradient of the scores
                dq[..., i0:i1, :] += torch.einsum("bhgqk,bhkd->bhgqd", ds, k_j) * scale  # dQ = dS K * scale
                dk_j += torch.einsum("bhgqk,bhgqd->bhkd", ds, q_i) * scale  # dK = dS^T Q * scale
                if want_bias:
                    rows, cols = _tile_index(bias, i0, i1, j0, j1)
                    dbias[..., rows, cols] += _sum_to(ds, dbias[..., rows, cols].shape)
            dk[..., j0:j1, :] = dk_j
            dv[..., j0:j1, :] = dv_j

        dbias = dbias.to(bias.dtype) if want_bias else None
        return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), None, None, dbias, None, None, None, None


class _Tiles:
    """Which tiles exist, which the causal mask lets us skip, and one tile's masked scores."""

    def __init__(self, T, S, block_q, block_k, causal, scale, pad, keep, bias):
        self.T, self.S, self.block_q, self.block_k = T, S, block_q, block_k
        self.causal, self.pad, self.keep, self.bias, self.scale = causal, pad, keep, bias, scale
        self.offset = S - T  # query i is at position offset + i

    def query_tiles(self):
        return [(i0, min(i0 + self.block_q, self.T)) for i0 in range(0, self.T, self.block_q)]

    def key_tiles(self):
        return [(j0, min(j0 + self.block_k, self.S)) for j0 in range(0, self.S, self.block_k)]

    def key_tiles_for(self, i0, i1):
        """Key tiles with at least one key visible to queries i0 .. i1-1 (all of them unless causal)."""
        last_key = self.offset + i1 - 1 if self.causal else self.S - 1
        return [(j0, j1) for j0, j1 in self.key_tiles() if j0 <= last_key]

    def query_tiles_for(self, j0, j1):
        """Query tiles that see at least one of the keys j0 .. j1-1."""
        return [(i0, i1) for i0, i1 in self.query_tiles() if not self.causal or j0 <= self.offset + i1 - 1]

    def scores(self, q_i, k_j, i0, i1, j0, j1):
        """Q_i K_j^T * scale + masks, -inf where masked: (B, Hkv, G, i1 - i0, j1 - j0)."""
        s = torch.einsum("bhgqd,bhkd->bhgqk", q_i, k_j) * self.scale  # (B, Hkv, G, bq, bk)
        if self.bias is not None:
            rows, cols = _tile_index(self.bias, i0, i1, j0, j1)
            s = s + self.bias[..., rows, cols].to(s.dtype)
        allowed = None
        # A tile wholly below the diagonal (its last key before its first query) needs no causal mask.
        if self.causal and j1 - 1 > self.offset + i0:
            allowed = causal_mask(i1 - i0, j1 - j0, device=s.device, past_length=self.offset + i0 - j0)  # (bq, bk)
        for mask in (self.pad, self.keep):
            if mask is not None:
                rows, cols = _tile_index(mask, i0, i1, j0, j1)
                allowed = mask[..., rows, cols] if allowed is None else allowed & mask[..., rows, cols]
        if allowed is not None:
            s = s.masked_fill(~allowed, -math.inf)
        return s


def _check_inputs(query, key, value, causal, block_q, block_k):
    """(B, H, T, S, Hkv), or a ValueError that says which shape or argument to fix."""
    if query.dim() != 4 or key.dim() != 4 or value.dim() != 4:
        raise ValueError(
            "query must be (B, H, T, D) and key, value (B, Hkv, S, D), all 4-D; got shapes "
            f"{tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}"
        )
    B, H, T, D = query.shape
    if key.shape[:3] != value.shape[:3]:
        raise ValueError(f"key {tuple(key.shape)} and value {tuple(value.shape)} must agree on (B, Hkv, S)")
    if key.shape[0] != B or key.shape[-1] != D:
        raise ValueError(
            f"query {tuple(query.shape)} and key {tuple(key.shape)} must agree on batch B and head size D"
        )
    kv_heads, S = key.shape[1], key.shape[2]
    if kv_heads == 0 or H % kv_heads:
        raise ValueError(
            f"query has H={H} heads, not a multiple of the key's Hkv={kv_heads} heads; each key/value "
            "head must serve an equal group of query heads"
        )
    if not (query.dtype == key.dtype == value.dtype):
        raise ValueError(f"query, key and value must share a dtype, got {query.dtype}, {key.dtype}, {value.dtype}")
    for name, size in (("block_q", block_q), ("block_k", block_k)):
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise ValueError(f"{name} must be a positive int (a tile size such as 64), got {size!r}")
    if causal and S < T:
        raise ValueError(
            f"causal=True needs S >= T (the queries are the last T of S positions), got T={T}, S={S}"
        )
    return B, H, T, S, kv_heads


def _split_heads(mask: torch.Tensor, kv_heads: int) -> torch.Tensor:
    """A mask broadcastable to (B, H, T, S) -> 5-D, broadcastable to (B, Hkv, G, T, S)."""
    mask = mask.reshape((1,) * (4 - mask.dim()) + tuple(mask.shape))  # (B|1, H|1, T|1, S|1)
    if mask.shape[1] == 1:
        return mask[:, :, None]  # (B|1, 1, 1, T|1, S|1)
    return rearrange(mask, "b (hkv g) t s -> b hkv g t s", hkv=kv_heads)  # (B|1, Hkv, G, T|1, S|1)


def _tile_index(mask: torch.Tensor, i0: int, i1: int, j0: int, j1: int) -> tuple[slice, slice]:
    """The rows and columns of one tile in a mask whose last two axes may be broadcast (size 1)."""
    rows = slice(i0, i1) if mask.shape[-2] > 1 else slice(None)
    cols = slice(j0, j1) if mask.shape[-1] > 1 else slice(None)
    return rows, cols


def _sum_to(x: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Sum ``x`` over the axes where ``shape`` has size 1: the gradient of a broadcast."""
    axes = tuple(axis for axis, (have, want) in enumerate(zip(x.shape, shape)) if want == 1 and have != 1)
    return x.sum(dim=axes, keepdim=True) if axes else x


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp16/bf16 tiles are summed in fp32 (as the CUDA kernels do); fp32 and fp64 in their own dtype."""
    return torch.promote_types(dtype, torch.float32)
