"""Weight-only quantization, from scratch: int8 absmax, int4 group-wise, and QLoRA's NF4.

    from minitransformer.quantization import quantize, model_memory, load_quantized
    model = quantize(GPT2(GPT2Config.from_name("gpt2")), bits=4, scheme="nf4")   # in place, returned
    model_memory(model)            # {"float32": ..., "uint8": ..., "float8_e4m3fn": ...} bytes by dtype
    model.save_pretrained("out/")  # our own state-dict names + a quantization_config in config.json
    model = load_quantized("out/") # the same logits

*Weight-only*: the weights are stored in 8 or 4 bits, the activations stay in floating point. Each
quantized Linear rebuilds its fp32 weight (``dequantize()``) and multiplies as ``nn.Linear`` does:
memory shrinks, the arithmetic does not change. That is the reference path, and the one a prefill
takes. A compiled decode step (``generate(..., compile=True)``) of an int8 model reads the int8 codes
directly instead: ``Int8Linear`` hands them to ``layers/linear.py``'s dequantize-and-reduce, which
never builds the fp32 matrix (``docs/quantization.md`` has its speed). int4 and NF4 have no such
kernel yet: they decode through the fp32 matrix.

Notation: ``w`` is a Linear weight (out, in), ``O`` = out_features, ``I`` = in_features.

========  ====  ==========================================  ==========================================
scheme    bits  what is stored per weight matrix            the fp weight back
========  ====  ==========================================  ==========================================
absmax    8     int8 q (O, I), fp32 scale (O,)              q * scale[:, None]
int4      4     uint8 packed (O, I/2), fp32 scale and       q * scale + minimum, per group of
                minimum (O, I/group_size)                   ``group_size`` inputs (asymmetric)
nf4       4     uint8 packed (N/2,), absmax per block of    NF4_CODE[q] * absmax, per block of 64
                64 (fp8 + its own fp32 scales with          values of the flattened weight
                ``double_quant``)
========  ====  ==========================================  ==========================================

What is quantized: every ``nn.Linear`` of the model, except

- the embeddings (not Linears: a lookup table loses nothing by being read in fp32 and is not a matmul);
- a Linear whose weight is *shared* with another module: a head tied to the token embedding (GPT-2,
  BERT's decoder, LLaMA with ``tie_word_embeddings``) stays in fp32 and stays tied. Quantizing it would
  either untie it (two copies, the opposite of saving memory) or quantize the embedding too;
- the modules named in ``skip`` (an untied LM head is quantized unless you list it there).

Saving: ``model.save_pretrained(dir)`` (``loading/core.py``) writes a quantized model's tensors under our
own state-dict names (``transformer.h.0.self_attn.q_proj.weight_packed``...), since they have no
transformers layout, and the ``quantization_config`` that :func:`quantize` put on the model into
``config.json``. :func:`load_quantized` rebuilds the model from ``config.json``, swaps in empty quantized
Linears where the config says, and loads the tensors. safetensors only, never pickle.
"""

from __future__ import annotations

import itertools
import math
import os
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from minitransformer.layers.linear import matvec, use_matvec
from minitransformer.loading.core import (
    build_config,
    empty_weights,
    read_family,
    read_generation_config,
    tied_aliases,
)
from minitransformer.loading.errors import LoadingError
from minitransformer.loading.hub import resolve_checkpoint_dir
from minitransformer.loading.io import Checkpoint

__all__ = [
    "NF4_CODE",
    "Int4Linear",
    "Int8Linear",
    "NF4Linear",
    "NF4Weight",
    "QuantizedLinear",
    "dequantize_absmax_fp8",
    "dequantize_absmax_int8",
    "dequantize_int4_groupwise",
    "dequantize_nf4",
    "load_quantized",
    "model_memory",
    "pack_int4",
    "quantize",
    "quantize_absmax_fp8",
    "quantize_absmax_int8",
    "quantize_int4_groupwise",
    "quantize_nf4",
    "unpack_int4",
]

#: scheme -> the bits it stores a weight in.
SCHEMES = {"absmax": 8, "int4": 4, "nf4": 4}
#: bits -> the scheme used when none is named.
DEFAULT_SCHEME = {8: "absmax", 4: "int4"}
#: The group (int4) or block (nf4) size used when none is given: QLoRA's block size.
DEFAULT_GROUP_SIZE = 64
#: QLoRA's second quantization: the absmax constants in 8-bit floats, in blocks of 256.
DOUBLE_QUANT_BLOCK_SIZE = 256
#: Largest finite float8_e4m3fn (1.75 * 2**8): the absmax constants are scaled to fill [-448, 448].
FP8_MAX = 448.0
#: Written into config.json, so that a checkpoint says who can read it (transformers cannot).
QUANT_METHOD = "minitransformer"

#: The 16 values of the NF4 data type (QLoRA, Dettmers et al. 2023, appendix E), sorted. They are the
#: quantiles of a standard normal, scaled into [-1, 1], with an exact 0 (the test shows the construction:
#: tests/unit/test_quantization.py, test_nf4_code_book_is_built_from_normal_quantiles).
NF4_CODE = torch.tensor([
    -1.0,
    -0.6961928009986877,
    -0.5250730514526367,
    -0.39491748809814453,
    -0.28444138169288635,
    -0.18477343022823334,
    -0.09105003625154495,
    0.0,
    0.07958029955625534,
    0.16093020141124725,
    0.24611230194568634,
    0.33791524171829224,
    0.44070982933044434,
    0.5626170039176941,
    0.7229568362236023,
    1.0,
])


def _safe(scale: torch.Tensor) -> torch.Tensor:
    """``scale`` with zeros replaced by 1: an all-zero row or block quantizes to q = 0, whatever its scale."""
    return torch.where(scale == 0, torch.ones_like(scale), scale)


# ---- int8 absmax, per output channel ---------------------------------------------------------------


def quantize_absmax_int8(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8, one scale per output channel (row): ``scale = max|w_row| / 127``.

    Each row is divided by its scale, which maps its largest magnitude to +-127, and rounded. The
    rounding moves a weight by at most half a step, so ``|w - q * scale| <= scale / 2`` in each row.
    -128 is never used, to keep the range symmetric (0 maps to 0, and -w quantizes to -q).

    Args:
        w: (O, I) floating-point weight.

    Returns:
        q: (O, I) int8 in [-127, 127]; scale: (O,) float32.

    Example:
        >>> q, scale = quantize_absmax_int8(torch.tensor([[0.5, -1.0, 0.25]]))
        >>> q.tolist(), scale.tolist()
        ([[64, -127, 32]], [0.007874015718698502])
    """
    w = w.detach().float()
    scale = w.abs().amax(dim=1) / 127  # (O,)
    q = torch.round(w / _safe(scale)[:, None]).clamp(-127, 127).to(torch.int8)  # (O, I)
    return q, scale


def dequantize_absmax_int8(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The fp32 weight back from :func:`quantize_absmax_int8`: (O, I) int8, (O,) -> (O, I) float32."""
    return q.float() * scale[:, None]  # (O, I)


# ---- packing two 4-bit values into a byte ----------------------------------------------------------


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """Pack 4-bit values (uint8 in 0..15) two per byte along the last dimension: (..., 2k) -> (..., k).

    Layout: element ``2j`` goes into the low nibble of byte ``j``, element ``2j + 1`` into the high one,
    ``byte = q[2j] | q[2j + 1] << 4``.

    Example:
        >>> pack_int4(torch.tensor([1, 2, 15, 0], dtype=torch.uint8)).tolist()   # 1 + 2*16, 15 + 0*16
        [33, 15]

    Raises:
        ValueError: not uint8, an odd last dimension (pad it to an even length first), or a value over 15.
    """
    if q.dtype != torch.uint8:
        raise ValueError(f"pack_int4 takes uint8 values 0..15, got {q.dtype}; convert with q.to(torch.uint8)")
    if q.shape[-1] % 2:
        raise ValueError(f"pack_int4 packs pairs along the last dimension, which is odd ({tuple(q.shape)}); "
                         "pad it to an even length first")
    if q.numel() and int(q.max()) > 15:
        raise ValueError(f"pack_int4 takes 4-bit values 0..15, got a maximum of {int(q.max())}")
    low, high = q[..., 0::2], q[..., 1::2]  # (..., k) each: the even and the odd elements
    return low | (high << 4)  # (..., k)


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`pack_int4`: (..., k) uint8 -> (..., 2k) uint8 values 0..15."""
    low, high = packed & 0x0F, packed >> 4  # (..., k) each
    return torch.stack([low, high], dim=-1).flatten(-2)  # (..., k, 2) -> (..., 2k): low, high, low, high...


# ---- int4 group-wise, asymmetric --------------------------------------------------------------------


def quantize_int4_groupwise(w: torch.Tensor, group_size: int = DEFAULT_GROUP_SIZE
                            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric 4-bit, one (scale, minimum) pair per group of ``group_size`` consecutive inputs of a row.

    Asymmetric (min-max): the group's range [min, max] is cut into 15 equal steps,
    ``scale = (max - min) / 15``, and ``q = round((w - min) / scale)`` in 0..15. All 16 levels are used
    whatever the sign of the weights, and the minimum is kept in fp32 (not rounded to a whole "zero
    point"), so the only error is the rounding: ``|w - (q * scale + min)| <= scale / 2``. Groups instead
    of whole rows keep one outlier from coarsening a whole row's step.

    Args:
        w: (O, I) floating-point weight; ``group_size`` must divide I and be even.

    Returns:
        packed: (O, I/2) uint8, two values a byte (:func:`pack_int4`); scale, minimum: (O, I/group_size) float32.
    """
    O, I = w.shape
    if group_size <= 0 or I % group_size or group_size % 2:
        raise ValueError(f"group_size={group_size} must be even and divide the input width {I}")
    groups = rearrange(w.detach().float(), "o (n g) -> o n g", g=group_size)  # (O, I/g, g)
    minimum = groups.amin(dim=-1)  # (O, I/g)
    scale = (groups.amax(dim=-1) - minimum) / 15  # (O, I/g)
    q = torch.round((groups - minimum[..., None]) / _safe(scale)[..., None]).clamp(0, 15)  # (O, I/g, g)
    q = rearrange(q.to(torch.uint8), "o n g -> o (n g)")  # (O, I)
    return pack_int4(q), scale, minimum  # (O, I/2), (O, I/g), (O, I/g)


def dequantize_int4_groupwise(packed: torch.Tensor, scale: torch.Tensor, minimum: torch.Tensor) -> torch.Tensor:
    """The fp32 weight back from :func:`quantize_int4_groupwise`: (O, I/2), (O, I/g) x2 -> (O, I).

    The group size is read from the shapes: ``g = I / scale.shape[1]``.
    """
    q = unpack_int4(packed).float()  # (O, I)
    groups = rearrange(q, "o (n g) -> o n g", n=scale.shape[1])  # (O, I/g, g)
    w = groups * scale[..., None] + minimum[..., None]  # (O, I/g, g)
    return rearrange(w, "o n g -> o (n g)")  # (O, I)


# ---- NF4 and the double quantization of its absmax constants ---------------------------------------


def _blocks(x: torch.Tensor, block_size: int) -> torch.Tensor:
    """A flat tensor (N,) as rows of ``block_size``, the last one padded with zeros: (ceil(N / block_size), block_size)."""
    padding = -x.numel() % block_size
    return F.pad(x, (0, padding)).view(-1, block_size)  # (N + padding,) -> (blocks, block_size)


def quantize_absmax_fp8(absmax: torch.Tensor, block_size: int = DOUBLE_QUANT_BLOCK_SIZE
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """QLoRA's double quantization: the fp32 absmax constants themselves stored in 8-bit floats.

    One fp32 absmax per 64 weights costs 32/64 = 0.5 bit per weight. The paper quantizes these constants
    again, in 8-bit floats with blocks of 256: they are all positive, so their mean is subtracted first
    (the values are centred on zero and the symmetric float8 range is used in full), then each block of
    256 is scaled so that its largest magnitude is float8_e4m3fn's largest, 448. Cost:
    8/64 + 32/(64 * 256) = 0.127 bit per weight.

    float8_e4m3fn has 3 mantissa bits: rounding moves a normal value x by at most |x| / 16, and a
    subnormal one (below 2**-6) by at most 2**-10; that, times the block's scale, bounds the error.

    Args:
        absmax: (B,) positive float32 constants (one per NF4 block).

    Returns:
        absmax_fp8: (B,) float8_e4m3fn; scale: (ceil(B / block_size),) float32; offset: () float32, the mean.
    """
    offset = absmax.mean()  # ()
    centered = _blocks(absmax - offset, block_size)  # (B2, block_size), B2 = ceil(B / block_size)
    scale = centered.abs().amax(dim=1) / FP8_MAX  # (B2,)
    fp8 = (centered / _safe(scale)[:, None]).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)  # (B2, block_size)
    return fp8.flatten()[: absmax.numel()], scale, offset  # (B,), (B2,), ()


def dequantize_absmax_fp8(absmax_fp8: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor,
                          block_size: int = DOUBLE_QUANT_BLOCK_SIZE) -> torch.Tensor:
    """The fp32 absmax constants back from :func:`quantize_absmax_fp8`: (B,), (B2,), () -> (B,)."""
    blocks = _blocks(absmax_fp8.float(), block_size)  # (B2, block_size)
    return (blocks * scale[:, None]).flatten()[: absmax_fp8.numel()] + offset  # (B,)


class NF4Weight(NamedTuple):
    """A weight in NF4, as :func:`quantize_nf4` returns it and :func:`dequantize_nf4` reads it.

    N = the weight's numel padded to a multiple of ``block_size``; B = N / block_size blocks.
    """

    packed: torch.Tensor  # (N/2,) uint8: two 4-bit indices into NF4_CODE a byte
    absmax: torch.Tensor  # (B,) float32, or float8_e4m3fn when double quantized
    absmax_scale: torch.Tensor | None  # (ceil(B/256),) float32 with double quantization, else None
    absmax_offset: torch.Tensor | None  # () float32, the mean subtracted before double quantization, else None
    shape: torch.Size  # the weight's own shape, (O, I)
    block_size: int


def quantize_nf4(w: torch.Tensor, block_size: int = DEFAULT_GROUP_SIZE, double_quant: bool = True) -> NF4Weight:
    """NF4 (QLoRA): each block of ``block_size`` weights of the flattened matrix is divided by its
    absmax, which puts it in [-1, 1], and each value is replaced by the index of the nearest of the 16
    code values :data:`NF4_CODE`.

    The code values are quantiles of a normal distribution: trained weights are roughly normal, so each
    of the 16 levels is used about equally often (an "information-theoretically optimal" code for normal
    data, the paper's words), where int4's evenly spaced levels waste the rarely used tails.

    Rounding to the nearest code value moves a normalised weight by at most half the gap around it, so
    ``|w - NF4_CODE[q] * absmax| <= max_gap / 2 * absmax``, max_gap = 0.3038 (between -1 and -0.6962).
    With ``double_quant`` the absmax itself comes back with the error bounded in
    :func:`quantize_absmax_fp8`, which adds at most ``|NF4_CODE[q]| * |absmax - absmax'| <= |absmax - absmax'|``.

    Args:
        w: a floating-point weight, any shape (a Linear's is (O, I)); flattened row by row, so a block may
            run over two rows. The last block is padded with zeros.
        block_size: weights per absmax constant (the paper: 64); must be even.
        double_quant: store the absmax constants in float8 (:func:`quantize_absmax_fp8`), not float32.
    """
    if block_size <= 0 or block_size % 2:
        raise ValueError(f"block_size={block_size} must be a positive even number (the paper uses 64)")
    blocks = _blocks(w.detach().float().flatten(), block_size)  # (B, block_size)
    absmax = blocks.abs().amax(dim=1)  # (B,)
    normalised = blocks / _safe(absmax)[:, None]  # (B, block_size), in [-1, 1]
    code = NF4_CODE.to(w.device)
    q = (normalised[..., None] - code).abs().argmin(dim=-1)  # (B, block_size, 16) -> (B, block_size): nearest code
    packed = pack_int4(q.to(torch.uint8).flatten())  # (N,) -> (N/2,)
    if not double_quant:
        return NF4Weight(packed, absmax, None, None, w.shape, block_size)
    absmax_fp8, scale, offset = quantize_absmax_fp8(absmax)
    return NF4Weight(packed, absmax_fp8, scale, offset, w.shape, block_size)


def dequantize_nf4(weight: NF4Weight) -> torch.Tensor:
    """The fp32 weight back from :func:`quantize_nf4`: ``NF4_CODE[q] * absmax`` per block, in its own shape."""
    absmax = weight.absmax.float()  # (B,)
    if weight.absmax_scale is not None:
        absmax = dequantize_absmax_fp8(weight.absmax, weight.absmax_scale, weight.absmax_offset)  # (B,)
    q = unpack_int4(weight.packed).long()  # (N,)
    values = NF4_CODE.to(q.device)[q].view(-1, weight.block_size) * absmax[:, None]  # (B, block_size)
    return values.flatten()[: math.prod(weight.shape)].view(weight.shape)  # (N,) -> (O, I), padding dropped


# ---- the quantized Linear modules --------------------------------------------------------------------


class QuantizedLinear(nn.Module):
    """What the quantized Linears share: ``in_features``, ``out_features``, a float ``bias``, and a
    forward that rebuilds the fp weight and multiplies as ``nn.Linear`` does.

    A subclass stores its weight in buffers (integer tensors cannot be trainable parameters; they are
    weights, so they are persistent and saved) and says how to get the fp32 weight back: ``dequantize``.
    """

    scheme: ClassVar[str]

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_parameter("bias", nn.Parameter(torch.zeros(out_features)) if bias else None)

    def dequantize(self) -> torch.Tensor:
        """The weight in fp32, (out_features, in_features), as the ``nn.Linear`` would hold it."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The reference path: the whole fp weight is rebuilt at every call, then an ordinary matmul.
        weight = self.dequantize().to(x.dtype)  # (O, I)
        return F.linear(x, weight, self.bias)  # (..., I) -> (..., O)

    def _settings(self) -> str:
        return ""

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, scheme={self.scheme!r}{self._settings()}")

    def _keep_bias(self, linear: nn.Linear) -> None:
        """Use the Linear's own bias Parameter: it stays fp, and is neither copied nor re-initialised."""
        self.bias = linear.bias


class Int8Linear(QuantizedLinear):
    """int8 absmax per output channel (:func:`quantize_absmax_int8`): 1 byte a weight + 4 bytes a row.

    Buffers: ``weight_int8`` (O, I) int8, ``weight_scale`` (O,) float32.
    """

    scheme = "absmax"

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__(in_features, out_features, bias)
        self.register_buffer("weight_int8", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.zeros(out_features))

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8Linear:
        module = cls(linear.in_features, linear.out_features, bias=False)
        module.weight_int8, module.weight_scale = quantize_absmax_int8(linear.weight)
        module._keep_bias(linear)
        return module.to(linear.weight.device)

    def dequantize(self) -> torch.Tensor:
        return dequantize_absmax_int8(self.weight_int8, self.weight_scale)  # (O, I)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if use_matvec(x, self.weight_int8):  # a compiled decode step: read the int8 codes, never an fp32 copy
            return matvec(x, self.weight_int8, self.bias, scale=self.weight_scale)  # (..., I) -> (..., O)
        return super().forward(x)


class Int4Linear(QuantizedLinear):
    """int4 group-wise, asymmetric (:func:`quantize_int4_groupwise`): half a byte a weight + 8 bytes a group.

    Buffers: ``weight_packed`` (O, I/2) uint8, ``weight_scale`` and ``weight_min`` (O, I/group_size) float32.
    """

    scheme = "int4"

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 group_size: int = DEFAULT_GROUP_SIZE):
        super().__init__(in_features, out_features, bias)
        self.group_size = group_size
        groups = in_features // group_size
        self.register_buffer("weight_packed", torch.zeros(out_features, in_features // 2, dtype=torch.uint8))
        self.register_buffer("weight_scale", torch.zeros(out_features, groups))
        self.register_buffer("weight_min", torch.zeros(out_features, groups))

    @classmethod
    def from_linear(cls, linear: nn.Linear, group_size: int = DEFAULT_GROUP_SIZE) -> Int4Linear:
        module = cls(linear.in_features, linear.out_features, bias=False, group_size=group_size)
        module.weight_packed, module.weight_scale, module.weight_min = quantize_int4_groupwise(
            linear.weight, group_size)
        module._keep_bias(linear)
        return module.to(linear.weight.device)

    def dequantize(self) -> torch.Tensor:
        return dequantize_int4_groupwise(self.weight_packed, self.weight_scale, self.weight_min)  # (O, I)

    def _settings(self) -> str:
        return f", group_size={self.group_size}"


class NF4Linear(QuantizedLinear):
    """NF4 with blocks of ``block_size`` (:func:`quantize_nf4`), the absmax constants in float8 when
    ``double_quant`` (QLoRA's storage: about 4.127 bits a weight).

    Buffers (N = O * I padded to a multiple of block_size, B = N / block_size): ``weight_packed`` (N/2,)
    uint8, ``weight_absmax`` (B,) float8_e4m3fn (float32 without double quantization), and with it
    ``absmax_scale`` (ceil(B/256),) and ``absmax_offset`` () float32.
    """

    scheme = "nf4"

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 block_size: int = DEFAULT_GROUP_SIZE, double_quant: bool = True):
        super().__init__(in_features, out_features, bias)
        self.block_size, self.double_quant = block_size, double_quant
        blocks = -(-in_features * out_features // block_size)  # ceil
        self.register_buffer("weight_packed", torch.zeros(blocks * block_size // 2, dtype=torch.uint8))
        if double_quant:
            self.register_buffer("weight_absmax", torch.zeros(blocks, dtype=torch.float8_e4m3fn))
            self.register_buffer("absmax_scale", torch.zeros(-(-blocks // DOUBLE_QUANT_BLOCK_SIZE)))
            self.register_buffer("absmax_offset", torch.zeros(()))
        else:
            self.register_buffer("weight_absmax", torch.zeros(blocks))
            self.register_buffer("absmax_scale", None)
            self.register_buffer("absmax_offset", None)

    @classmethod
    def from_linear(cls, linear: nn.Linear, block_size: int = DEFAULT_GROUP_SIZE,
                    double_quant: bool = True) -> NF4Linear:
        module = cls(linear.in_features, linear.out_features, bias=False, block_size=block_size,
                     double_quant=double_quant)
        nf4 = quantize_nf4(linear.weight, block_size, double_quant)
        module.weight_packed, module.weight_absmax = nf4.packed, nf4.absmax
        module.absmax_scale, module.absmax_offset = nf4.absmax_scale, nf4.absmax_offset
        module._keep_bias(linear)
        return module.to(linear.weight.device)

    def nf4_weight(self) -> NF4Weight:
        """The buffers as the :class:`NF4Weight` that :func:`dequantize_nf4` reads."""
        return NF4Weight(self.weight_packed, self.weight_absmax, self.absmax_scale, self.absmax_offset,
                         torch.Size((self.out_features, self.in_features)), self.block_size)

    def dequantize(self) -> torch.Tensor:
        return dequantize_nf4(self.nf4_weight())  # (O, I)

    def _settings(self) -> str:
        return f", block_size={self.block_size}, double_quant={self.double_quant}"


# ---- quantizing a model --------------------------------------------------------------------------


def _check_settings(bits: Any, scheme: str | None, group_size: int | None) -> tuple[str, int | None]:
    """(scheme, group size) after the checks; each bad value is a ValueError that says what to pass."""
    if bits not in (4, 8) or isinstance(bits, bool):
        raise ValueError(f"bits must be 8 or 4, got {bits!r}: bits=8 for int8 absmax, bits=4 for "
                         "scheme='int4' (group-wise) or scheme='nf4' (QLoRA)")
    scheme = DEFAULT_SCHEME[bits] if scheme is None else scheme
    if scheme not in SCHEMES:
        known = ", ".join(f"{name!r} ({b} bits)" for name, b in SCHEMES.items())
        raise ValueError(f"unknown quantization scheme {scheme!r}; the known ones are {known}")
    if SCHEMES[scheme] != bits:
        raise ValueError(f"scheme {scheme!r} stores {SCHEMES[scheme]} bits, not bits={bits}: "
                         f"pass bits={SCHEMES[scheme]}, or drop scheme= to get {DEFAULT_SCHEME[bits]!r}")
    if scheme == "absmax":
        if group_size is not None:
            raise ValueError(f"int8 absmax has one scale per output channel, not groups: drop group_size={group_size}")
        return scheme, None
    group_size = DEFAULT_GROUP_SIZE if group_size is None else group_size
    if not isinstance(group_size, int) or isinstance(group_size, bool) or group_size <= 0 or group_size % 2:
        raise ValueError(f"group_size must be a positive even int (32, 64 or 128 are usual), got {group_size!r}")
    return scheme, group_size


def _linears_to_quantize(model: nn.Module, skip: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(names of the Linears to quantize, names of the Linears kept in fp and why), in module order."""
    uses: dict[int, int] = {}
    for _, param in model.named_parameters(remove_duplicate=False):
        uses[id(param)] = uses.get(id(param), 0) + 1
    targets, kept = [], []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        if name in skip:
            kept.append(f"{name} (skip)")
        elif uses[id(module.weight)] > 1:
            kept.append(f"{name} (weight shared with another module: a tied head stays fp32 and tied)")
        else:
            targets.append(name)
    return targets, kept


def _empty_module(scheme: str, in_features: int, out_features: int, bias: bool,
                  group_size: int | None, double_quant: bool) -> QuantizedLinear:
    if scheme == "absmax":
        return Int8Linear(in_features, out_features, bias)
    if scheme == "int4":
        return Int4Linear(in_features, out_features, bias, group_size=group_size)
    return NF4Linear(in_features, out_features, bias, block_size=group_size, double_quant=double_quant)


def _from_linear(scheme: str, linear: nn.Linear, group_size: int | None, double_quant: bool) -> QuantizedLinear:
    if scheme == "absmax":
        return Int8Linear.from_linear(linear)
    if scheme == "int4":
        return Int4Linear.from_linear(linear, group_size=group_size)
    return NF4Linear.from_linear(linear, block_size=group_size, double_quant=double_quant)


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name), child, module)


def quantize(model: nn.Module, bits: int = 8, group_size: int | None = None, scheme: str | None = None, *,
             double_quant: bool = True, skip: tuple[str, ...] | list[str] = ()) -> nn.Module:
    """Replace the model's ``nn.Linear`` layers by quantized ones, in place, and return the model.

    Args:
        model: any module (one of ours, to save it afterwards); its Linears are swapped where they are.
        bits: 8 or 4.
        group_size: inputs per (scale, minimum) pair for ``"int4"``, weights per absmax block for ``"nf4"``;
            default 64. Not for ``"absmax"`` (one scale per output channel).
        scheme: ``"absmax"`` (8 bits, the default for bits=8), ``"int4"`` (the default for bits=4) or ``"nf4"``.
        double_quant: ``"nf4"`` only: the absmax constants in float8, blocks of 256 (QLoRA's default).
        skip: names of Linears to keep in fp (``("lm_head",)``: an untied head is quantized otherwise).

    Which Linears are quantized: all but the skipped ones and those whose weight is shared (a head tied
    to the embedding: it stays fp32 and tied); see the module docstring. The choice is recorded in
    ``model.quantization_config``, which ``save_pretrained`` writes into config.json.

    Raises:
        ValueError: bits not 4 or 8; an unknown scheme, or one of other bits; a group size that is not a
            positive even int or does not divide a layer's input width (the layer named); a model already
            quantized, or one with LoRA adapters (quantize first, then apply LoRA). Every check runs before any layer is replaced: on an error the model is untouched.

    Example:
        >>> from minitransformer.models.gpt2 import GPT2, GPT2Config
        >>> model = quantize(GPT2(GPT2Config.from_name("gpt2-tiny")), bits=4, group_size=32)
        >>> model.transformer.h[0].self_attn.q_proj
        Int4Linear(in_features=32, out_features=32, bias=True, scheme='int4', group_size=32)
    """
    scheme, group_size = _check_settings(bits, scheme, group_size)
    already = [name for name, m in model.named_modules() if isinstance(m, QuantizedLinear)]
    if getattr(model, "quantization_config", None) is not None or already:
        found = f" ({already[0]} is a {type(model.get_submodule(already[0])).__name__})" if already else ""
        raise ValueError(f"this model is already quantized{found}; quantizing twice would compound the "
                         "errors: quantize the floating-point model (load it again) instead")
    adapted = [name for name, m in model.named_modules() if hasattr(m, "lora_A")]  # minitransformer.lora's layers
    if adapted:
        raise ValueError(f"this model carries LoRA adapters ({adapted[0]}...); quantizing would drop them. "
                         "Quantize first, then apply_lora (QLoRA), or merge_lora before quantizing")
    targets, kept = _linears_to_quantize(model, tuple(skip))
    if scheme == "int4":
        widths = {name: model.get_submodule(name).in_features for name in targets}
        bad = {name: width for name, width in widths.items() if width % group_size}
        if bad:
            name, width = next(iter(bad.items()))
            fits = [g for g in (128, 64, 32, 16, 8) if all(w % g == 0 for w in widths.values())]
            hint = f"group_size={fits[0]} divides every layer's width" if fits else "no usual group size fits"
            raise ValueError(f"group_size={group_size} does not divide the input width of {name} "
                             f"(in_features={width}){f' and {len(bad) - 1} more layers' if len(bad) > 1 else ''}: "
                             f"{hint}, or keep the layer in fp with skip=[{name!r}]")
    for name in targets:
        _replace(model, name, _from_linear(scheme, model.get_submodule(name), group_size, double_quant))
    model.quantization_config = {
        "quant_method": QUANT_METHOD,
        "bits": bits,
        "scheme": scheme,
        "group_size": group_size,
        "double_quant": double_quant if scheme == "nf4" else None,
        "modules": targets,
        "not_quantized": kept,
    }
    return model


def model_memory(model: nn.Module) -> dict[str, int]:
    """Bytes the model's tensors take, by dtype name: ``{"float32": 412160, "uint8": 50176, ...}``.

    Parameters and buffers (the non-persistent ones too, such as RoPE tables: they take memory as
    well), each tensor counted once: a tied head is the embedding's own tensor, not a second one.
    """
    seen: set[int] = set()
    out: dict[str, int] = {}
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        name = str(tensor.dtype).removeprefix("torch.")
        out[name] = out.get(name, 0) + tensor.numel() * tensor.element_size()
    return dict(sorted(out.items()))


# ---- loading a saved quantized model -----------------------------------------------------------------


def load_quantized(path_or_repo_id: str | os.PathLike, *, device: torch.device | str | None = None,
                   revision: str | None = None) -> nn.Module:
    """Load a model saved by ``save_pretrained`` after :func:`quantize`, in eval mode.

    The model is built from ``config.json`` with empty (meta) weights, the Linears that
    ``quantization_config["modules"]`` names are replaced by empty quantized ones of the same scheme,
    and every tensor of the safetensors file(s) is assigned by its state-dict name; the tie of a head
    to its embedding is restored.

    (``from_pretrained`` refuses such a directory and points here: the stored tensors are not in
    transformers' layout, which its weight maps read.)

    Raises:
        ValueError: the checkpoint has no minitransformer ``quantization_config``.
        LoadingError: tensors missing from the files or unknown to the model, by name.
    """
    directory = Path(resolve_checkpoint_dir(path_or_repo_id, revision))
    family, config_dict, config_path = read_family(directory)
    qconfig = config_dict.pop("quantization_config", None)
    if not isinstance(qconfig, dict) or qconfig.get("quant_method") != QUANT_METHOD:
        raise ValueError(f"{config_path} has no quantization_config written by minitransformer.quantization: "
                         "this is not a quantized checkpoint of ours; load it with minitransformer.from_pretrained "
                         "(and quantize it afterwards if you like)")
    config_dict.pop("dtype", None)
    _, cls, config = build_config(family, config_dict, config_path)
    scheme, group_size = _check_settings(qconfig["bits"], qconfig["scheme"], qconfig["group_size"])
    double_quant = bool(qconfig.get("double_quant"))
    with empty_weights():
        model = cls(config)
        for name in qconfig["modules"]:
            linear = model.get_submodule(name)
            _replace(model, name, _empty_module(scheme, linear.in_features, linear.out_features,
                                                linear.bias is not None, group_size, double_quant))
    aliases = tied_aliases(model)
    with Checkpoint(directory) as checkpoint:
        # A copy in ordinary memory (not the file's mapped pages), as from_pretrained makes.
        state = {name: checkpoint.get(name).clone() for name in checkpoint.keys()}
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    missing = [name for name in missing if name not in aliases]
    if missing or unexpected:
        raise LoadingError(missing, unexpected, where=f"at {directory} (a quantized checkpoint)")
    for alias, source in aliases.items():  # assign=True replaced the source Parameter: tie the alias again
        module_name, _, attr = alias.rpartition(".")
        setattr(model.get_submodule(module_name), attr, model.get_parameter(source))
    model.quantization_config = qconfig
    generation_config = read_generation_config(directory)
    if generation_config is not None:
        model.generation_config = generation_config
    if device is not None:
        model.to(device)
    return model.eval()
