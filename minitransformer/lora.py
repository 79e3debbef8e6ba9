"""LoRA (Hu et al. 2021): fine-tune a frozen model through a low-rank update of some of its linears.

A linear layer computes ``y = x W^T + b`` with W (out, in). LoRA freezes W and learns two small
matrices instead, A (r, in) and B (out, r), with r much smaller than in and out:

    y = x W^T + b + scaling * dropout(x) A^T B^T          scaling = alpha / r
      = x (W + scaling * B A)^T + b                       (at inference, without dropout)

B starts at zero, so the adapted model starts exactly where the base model was; A starts random
(Kaiming-uniform, as ``nn.Linear`` and PEFT initialise it) so that B's gradient is not zero.
``merge_lora`` folds ``scaling * B A`` into W (no extra cost at inference), ``unmerge_lora`` takes it
out again.

The adapters read and write PEFT's format (``adapter_config.json`` + ``adapter_model.safetensors``), so
an adapter trained here loads into ``peft.PeftModel`` on the HF model, and one trained with PEFT loads
here. PEFT names modules as transformers does (``transformer.h.0.attn.c_attn``); our modules have the
shared layers' names (``transformer.h.0.self_attn.q_proj``). Each family's weight-name map
(``loading/maps/*.py``) already says which HF linear became which of ours, so :func:`lora_sites` reads
the names from it: nothing here knows about one family.

One HF layer is three of ours: GPT-2's fused ``c_attn``, which our GPT-2 splits into q, k, v (see
:func:`lora_sites` and :class:`LoRALinear` for how its single A and B are shared).

Shapes: r the rank, ``in``/``out`` a linear's input and output sizes, C the model width.

Example:
    >>> from minitransformer.models import GPT2, GPT2Config
    >>> model = apply_lora(GPT2(GPT2Config.from_name("gpt2-tiny")), r=4, alpha=8, target_modules=["c_attn"])
    >>> trainable_parameters(model)          # A (4, 32) + B (96, 4) in each of 2 layers
    (1024, 36736)
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from minitransformer.loading.io import checkpoint_file, read_json_object
from minitransformer.loading.registry import family_for_model
from minitransformer.loading.transforms import CONV1D_TRANSPOSE, FUSED_QKV_CONV1D
from minitransformer.loading.weight_map import WeightMap
from minitransformer.quantization import QuantizedLinear

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
#: PEFT saves a PeftModel's state dict, whose keys all start with the wrapper's two levels.
PEFT_PREFIX = "base_model.model."
#: The ``task_type`` PEFT would be given for each architecture (what ``PeftModel.from_pretrained``
#: builds: ``PeftModelForCausalLM``...). An architecture not listed is saved with ``null``: PEFT then
#: builds a plain ``PeftModel``, whose outputs are the same.
TASK_TYPES = {
    "GPT2LMHeadModel": "CAUSAL_LM",
    "LlamaForCausalLM": "CAUSAL_LM",
    "MistralForCausalLM": "CAUSAL_LM",
    "Qwen2ForCausalLM": "CAUSAL_LM",
    "BertModel": "FEATURE_EXTRACTION",
    "T5ForConditionalGeneration": "SEQ_2_SEQ_LM",
}


# ---- where LoRA can go: HF's linear layers, found in our model -------------------------------------------


@dataclass(frozen=True)
class LoRASite:
    """One linear layer of the HF model that PEFT can adapt, and the linears of ours it became.

    Attributes:
        hf_name: PEFT's (and transformers') module name, ``"transformer.h.0.attn.c_attn"``.
        ours: our ``nn.Linear`` module names, in the order of the HF layer's output rows: one name, or
            three for GPT-2's fused ``c_attn`` (q, k, v).
        conv1d: the HF layer is a GPT-2 ``Conv1D`` (weight stored (in, out)), for which PEFT writes
            ``fan_in_fan_out: true``. Its lora_A and lora_B are ``nn.Linear`` weights all the same.
    """

    hf_name: str
    ours: tuple[str, ...]
    conv1d: bool


def _name_regex(pattern: str) -> re.Pattern:
    """A weight-map name with placeholders (``"h.{i}.attn.c_attn.weight"``) -> a regex with digit groups."""
    return re.compile(re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>\\d+)", re.escape(pattern)) + r"\Z")


def _weight_map(model: nn.Module) -> tuple[WeightMap, str]:
    family, architecture = family_for_model(model)
    return family.weight_map_for(model.config, architecture), architecture


def lora_sites(model: nn.Module) -> list[LoRASite]:
    """Every HF linear layer of ``model`` by PEFT's name, from the family's weight map.

    A rule of the map whose HF side is one ``.weight`` and whose our side is the weights of linears
    is a site: ``rename("model.layers.{i}.self_attn.q_proj.weight", ...)`` gives LLaMA's q_proj,
    ``convert("transformer.h.{i}.attn.c_attn.weight", (q, k, v), FUSED_QKV_CONV1D)`` gives GPT-2's
    c_attn with three of ours. A linear already adapted (a :class:`LoRALinear`) is a site too.
    """
    weight_map, _ = _weight_map(model)
    linears = {f"{name}.weight": name for name, module in model.named_modules()
               if isinstance(module, nn.Linear | QuantizedLinear | LoRAQuantizedLinear)}
    sites = []
    for rule in weight_map.rules:
        if len(rule.hf) != 1 or not rule.hf[0].endswith(".weight"):
            continue
        first = _name_regex(rule.ours[0])
        for weight_name in linears:
            found = first.match(weight_name)
            if found is None:
                continue
            ours = tuple(linears.get(pattern.format(**found.groupdict())) for pattern in rule.ours)
            if None in ours:
                continue
            hf_name = rule.hf[0].format(**found.groupdict()).removesuffix(".weight")
            sites.append(LoRASite(hf_name, ours, conv1d=rule.transform in (CONV1D_TRANSPOSE, FUSED_QKV_CONV1D)))
    return sites


def _matches(hf_name: str, target: str | list[str]) -> bool:
    """PEFT's rule: a string is a regex the whole name must match; a list entry matches the name
    itself or its last components (``"c_proj"`` matches ``attn.c_proj`` and ``mlp.c_proj``)."""
    if isinstance(target, str):
        return re.fullmatch(target, hf_name) is not None
    return any(hf_name == t or hf_name.endswith(f".{t}") for t in target)


def _select(model: nn.Module, target_modules: str | list[str], strict: bool, what: str) -> list[LoRASite]:
    """The sites ``target_modules`` names. ``strict``: every entry must match one (a user's typo
    fails); else one match in all is enough, PEFT's own rule (an adapter config made for several
    families may list names one of them lacks)."""
    sites = lora_sites(model)
    if not sites:
        raise ValueError(f"{type(model).__name__} has no linear layer that its weight map names, so none "
                         "LoRA can adapt in PEFT's format")
    chosen = [site for site in sites if _matches(site.hf_name, target_modules)]
    if isinstance(target_modules, str):
        unmatched = [] if chosen else [target_modules]
    else:
        unmatched = [t for t in target_modules if not any(_matches(site.hf_name, [t]) for site in sites)]
    if not chosen or (strict and unmatched):
        names = sorted({site.hf_name.rsplit(".", 1)[-1] for site in sites})
        raise ValueError(
            f"{what} {unmatched} match no linear layer of "
            f"{type(model).__name__}; its linear layers are called (PEFT's names): {', '.join(names)}. "
            "Pick target_modules from those (a full name such as "
            f"{sites[0].hf_name!r} works too); an adapter made for another architecture cannot be loaded"
        )
    return chosen


# ---- the layer ------------------------------------------------------------------------------------------


class LoRALinear(nn.Linear):
    """A frozen ``nn.Linear`` plus a trainable low-rank update: ``x W^T + b + scaling * B A dropout(x)``.

    It *is* the linear it adapts (a subclass holding the very same ``weight`` and ``bias``
    parameters), so the model's names, shapes and tied weights are unchanged, and the adapter adds
    only ``lora_A.weight`` (r, in) and ``lora_B.weight`` (out, r), the layout of PEFT's files.

    Args:
        base: the linear to adapt.
        lora_A: ``nn.Linear(in, r)``; lora_B: ``nn.Linear(r, out_total)``.
        dropout: applied to the input of A (``nn.Identity`` for none).
        scaling: alpha / r.
        rows: which of B's output rows are this layer's. All of them, except for a layer split out
            of a fused HF one (GPT-2's c_attn, see :func:`apply_lora`).
    """

    def __init__(self, base: nn.Linear, lora_A: nn.Linear, lora_B: nn.Linear, dropout: nn.Module,
                 scaling: float, rows: slice):
        nn.Module.__init__(self)  # not nn.Linear's: that would create new weights
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight, self.bias = base.weight, base.bias  # the same Parameters: not copied
        self.lora_A, self.lora_B, self.lora_dropout = lora_A, lora_B, dropout
        self.r = lora_A.out_features
        self.scaling = scaling
        self.rows = rows
        self.merged = False

    def delta_weight(self) -> torch.Tensor:
        """scaling * B A for this layer's rows: (out, r) @ (r, in) -> (out, in), W's layout."""
        return (self.lora_B.weight[self.rows] @ self.lora_A.weight) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight, self.bias)  # (..., out)
        if self.merged:  # W already holds W + scaling * B A
            return out
        low_rank = self.lora_A(self.lora_dropout(x))  # (..., r)
        return out + F.linear(low_rank, self.lora_B.weight[self.rows]) * self.scaling  # (..., out)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, r={self.r}, scaling={self.scaling:g}, merged={self.merged}"


class LoRAQuantizedLinear(nn.Module):
    """QLoRA (Dettmers et al. 2023): a frozen *quantized* linear plus the same trainable low-rank update.

    ``base(x) + scaling * B A dropout(x)``: the base (an ``Int8Linear``, ``Int4Linear`` or ``NF4Linear``
    of ``minitransformer.quantization``) keeps its 8 or 4 bits a weight; A and B are full precision,
    and the gradient flows through the base's dequantized weight to the input, never into it. The
    base is a submodule (``q_proj.base.weight_nf4`` ...): a quantized layer has no ``weight`` to share.
    It cannot be merged (the update is full precision, the base is not); the adapter saves as any other.

    Args: as :class:`LoRALinear`, with ``base`` a ``QuantizedLinear``.
    """

    merged = False  # never: see merge_lora

    def __init__(self, base: QuantizedLinear, lora_A: nn.Linear, lora_B: nn.Linear, dropout: nn.Module,
                 scaling: float, rows: slice):
        super().__init__()
        self.in_features, self.out_features = base.in_features, base.out_features
        self.base = base
        self.lora_A, self.lora_B, self.lora_dropout = lora_A, lora_B, dropout
        self.r = lora_A.out_features
        self.scaling = scaling
        self.rows = rows

    delta_weight = LoRALinear.delta_weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low_rank = self.lora_A(self.lora_dropout(x))  # (..., r)
        return self.base(x) + F.linear(low_rank, self.lora_B.weight[self.rows]) * self.scaling  # (..., out)

    def extra_repr(self) -> str:
        return f"r={self.r}, scaling={self.scaling:g}"


def lora_layers(model: nn.Module) -> dict[str, LoRALinear | LoRAQuantizedLinear]:
    """Our module name -> LoRA layer, for every adapted linear of ``model`` (quantized or not)."""
    return {name: module for name, module in model.named_modules()
            if isinstance(module, LoRALinear | LoRAQuantizedLinear)}


@dataclass
class LoRAConfig:
    """The adapter's settings, as ``apply_lora`` was called (kept on the model as ``model.lora_config``)."""

    r: int
    lora_alpha: float
    lora_dropout: float
    target_modules: list[str] | str


def _check_settings(r: Any, alpha: Any, dropout: Any) -> None:
    if isinstance(r, bool) or not isinstance(r, int) or r <= 0:
        raise ValueError(f"r (the LoRA rank) must be a positive int, got {r!r}; typical values are 4 to 64")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha):
        raise ValueError(f"alpha must be a finite number (the update is scaled by alpha / r), got {alpha!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be a probability in [0, 1), got {dropout!r}")


def _adapt(model: nn.Module, sites: list[LoRASite], r: int, alpha: float, dropout: float) -> None:
    """Replace each site's linears by LoRA layers (checked first: nothing changes if one is adapted)."""
    layers = lora_layers(model)
    twice = [name for site in sites for name in site.ours if name in layers]
    if twice:
        raise ValueError(f"LoRA is already applied to {', '.join(twice)}; a linear takes one adapter. "
                         "Call merge_lora(model) first to fold that adapter in, or start from a fresh model")
    for site in sites:
        bases = [model.get_submodule(name) for name in site.ours]
        base = bases[0]
        out_total = sum(b.out_features for b in bases)  # 3C for GPT-2's c_attn
        # A and B live where the base does, in its float dtype (a quantized base: its bias's, or fp32)
        if isinstance(base, nn.Linear):
            factory = dict(device=base.weight.device, dtype=base.weight.dtype)
        else:
            any_tensor = next(iter((*base.parameters(), *base.buffers())))
            factory = dict(device=any_tensor.device, dtype=torch.float32 if base.bias is None else base.bias.dtype)
        lora_A = nn.Linear(base.in_features, r, bias=False, **factory)  # weight (r, in)
        lora_B = nn.Linear(r, out_total, bias=False, **factory)  # weight (out_total, r)
        nn.init.kaiming_uniform_(lora_A.weight, a=math.sqrt(5))  # PEFT's init of A (nn.Linear's own)
        nn.init.zeros_(lora_B.weight)  # B A = 0: the adapted model starts as the base model
        drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        # The fused c_attn layout: PEFT adapts HF's one (C, 3C) Conv1D with one A (r, C) and one B
        # (3C, r), whose update B A (3C, C) has q's rows first, then k's, then v's, the order of
        # c_attn's outputs (FUSED_QKV_CONV1D). Our q, k, v projections share that A and that B, and
        # each reads its own block of C rows of B: q rows 0..C, k rows C..2C, v rows 2C..3C. The
        # adapter's tensors thus keep PEFT's shapes, with no transform on save or load. (One
        # difference, in training only: each of q, k, v draws its own dropout mask over x, where
        # PEFT's fused layer draws one.)
        start = 0
        for name, linear in zip(site.ours, bases, strict=True):
            rows = slice(start, start + linear.out_features)
            start += linear.out_features
            kind = LoRAQuantizedLinear if isinstance(linear, QuantizedLinear) else LoRALinear  # QLoRA
            layer = kind(linear, lora_A, lora_B, drop, alpha / r, rows)
            layer.train(linear.training)  # new modules start in training mode: take the model's (eval: no dropout)
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, layer)
    # Only the LoRA matrices train: every other parameter (embeddings, norms, biases) is frozen.
    for param in model.parameters():
        param.requires_grad_(False)
    for layer in lora_layers(model).values():
        layer.lora_A.weight.requires_grad_(True)
        layer.lora_B.weight.requires_grad_(True)


def apply_lora(model: nn.Module, r: int, alpha: float, target_modules: str | list[str],
               dropout: float = 0.0) -> nn.Module:
    """Adapt ``model``'s linears named by ``target_modules`` with LoRA, in place; returns ``model``.

    Args:
        model: one of our models (GPT2, Llama, BERT... as ``from_pretrained`` returns them).
        r: the rank of the update, > 0.
        alpha: the update is scaled by alpha / r (PEFT's ``lora_alpha``).
        target_modules: PEFT's names of the HF layers (GPT-2: ``c_attn``, ``c_proj``, ``c_fc``; LLaMA:
            ``q_proj`` ... ``down_proj``; BERT: ``query``, ``key``, ``value``, ``dense``). An entry matches a
            layer by its last components; a single string is a regex the full name must match.
        dropout: dropout probability on the input of A (training mode only).

    Returns:
        ``model``, with only the LoRA matrices trainable, and ``model.lora_config`` set.

    Raises:
        ValueError: r <= 0; a target that matches no linear (the message lists the names there are);
            a linear already adapted; settings that differ from an adapter already on the model.

    Example:
        >>> from minitransformer.models import Llama, LlamaConfig
        >>> model = Llama(LlamaConfig.from_name("llama-tiny"))
        >>> model = apply_lora(model, r=8, alpha=16, target_modules=["q_proj", "v_proj"])
    """
    _check_settings(r, alpha, dropout)
    targets = target_modules if isinstance(target_modules, str) else list(target_modules)
    sites = _select(model, targets, strict=True, what="target_modules")
    previous = getattr(model, "lora_config", None)
    if previous is not None and lora_layers(model):
        if (previous.r, previous.lora_alpha, previous.lora_dropout) != (r, alpha, dropout):
            raise ValueError(
                f"the model already has a LoRA adapter with r={previous.r}, alpha={previous.lora_alpha}, "
                f"dropout={previous.lora_dropout}; one adapter has one setting. Call apply_lora with those, "
                "or merge_lora(model) first")
        if isinstance(targets, str) or isinstance(previous.target_modules, str):
            raise ValueError("an adapter given target_modules as a regex cannot be extended; "
                             "apply all the targets in one call")
    _adapt(model, sites, r, alpha, dropout)
    if previous is not None and lora_layers(model) and not isinstance(targets, str):
        targets = sorted(set(previous.target_modules) | set(targets))
    model.lora_config = LoRAConfig(r, alpha, dropout, targets)
    return model


# ---- merging --------------------------------------------------------------------------------------------


def _layers_or_fail(model: nn.Module, what: str) -> dict[str, LoRALinear]:
    layers = lora_layers(model)
    if not layers:
        raise ValueError(f"{what}: the model has no LoRA layers; call apply_lora or load_adapter first")
    return layers


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its weight, W <- W + scaling * B A, in place; returns ``model``.

    The outputs stay the same (up to rounding) and a forward costs what the base model's does.
    A and B are kept, so :func:`unmerge_lora` can take the update out again, and saving still works.

    Raises:
        ValueError: already merged; no LoRA layers; an adapted weight that is tied to another
            module (GPT-2's ``lm_head`` is the token embedding: merging would change both).
    """
    layers = _layers_or_fail(model, "merge_lora")
    merged = [name for name, layer in layers.items() if layer.merged]
    if merged:
        raise ValueError(f"the LoRA layers are already merged ({', '.join(merged)}); merging twice would add "
                         "the update twice. Call unmerge_lora(model) first if you want to merge again")
    quantized = [name for name, layer in layers.items() if isinstance(layer, LoRAQuantizedLinear)]
    if quantized:
        raise ValueError(f"cannot merge into quantized weights ({', '.join(quantized)}): the update is full "
                         "precision and the base keeps 4 or 8 bits. Keep the adapter unmerged (QLoRA), or "
                         "load it onto the full-precision model, merge there, then quantize")
    uses: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        uses.setdefault(id(param), []).append(name)
    tied = [" = ".join(uses[id(layer.weight)]) for layer in layers.values() if len(uses[id(layer.weight)]) > 1]
    if tied:
        raise ValueError(f"cannot merge into tied weights ({'; '.join(tied)}): the update would change every "
                         "module sharing them. Keep this adapter unmerged, or leave that layer out of target_modules")
    with torch.no_grad():
        for layer in layers.values():
            layer.weight += layer.delta_weight()  # (out, in)
            layer.merged = True
    return model


def unmerge_lora(model: nn.Module) -> nn.Module:
    """Take every merged adapter out of its weight, W <- W - scaling * B A, in place; returns ``model``.

    Raises:
        ValueError: the adapters are not merged (or the model has none).
    """
    layers = _layers_or_fail(model, "unmerge_lora")
    unmerged = [name for name, layer in layers.items() if not layer.merged]
    if unmerged:
        raise ValueError(f"the LoRA layers are not merged ({', '.join(unmerged)}); there is nothing to "
                         "subtract. Call merge_lora(model) first")
    with torch.no_grad():
        for layer in layers.values():
            layer.weight -= layer.delta_weight()
            layer.merged = False
    return model


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts, each shared tensor counted once, as PEFT's
    ``get_nb_trainable_parameters`` counts them; print them as its ``print_trainable_parameters`` does:

        >>> trainable, total = trainable_parameters(nn.Linear(4, 2))
        >>> print(f"trainable params: {trainable:,d} || all params: {total:,d} || "
        ...       f"trainable%: {100 * trainable / total:.4f}")
        trainable params: 10 || all params: 10 || trainable%: 100.0000
    """
    params = list(model.parameters())  # unique tensors: a tied head is not counted twice
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


# ---- PEFT's file format ---------------------------------------------------------------------------------


def _adapted_sites(model: nn.Module) -> list[tuple[LoRASite, LoRALinear]]:
    """(site, its first LoRA layer) for every adapted site. The layers of a fused site share A and B."""
    layers = lora_layers(model)
    found = []
    for site in lora_sites(model):
        adapted = [name in layers for name in site.ours]
        if all(adapted):
            found.append((site, layers[site.ours[0]]))
        elif any(adapted):
            raise ValueError(f"{site.hf_name} is one layer in PEFT's format, but only some of "
                             f"{', '.join(site.ours)} have LoRA; adapt all of them (apply_lora does)")
    return found


def _peft_keys(hf_name: str) -> tuple[str, str]:
    return f"{PEFT_PREFIX}{hf_name}.lora_A.weight", f"{PEFT_PREFIX}{hf_name}.lora_B.weight"


def save_adapter(model: nn.Module, directory: str | Path, base_model_name_or_path: str | None = None) -> Path:
    """Write the adapter in PEFT's format: ``adapter_config.json`` and ``adapter_model.safetensors``.

    ``peft.PeftModel.from_pretrained(hf_model, directory)`` loads it onto the transformers model the
    base weights came from. Keys are PEFT's (``base_model.model.transformer.h.0.attn.c_attn.lora_A.weight``);
    the weights are saved as they are, merged or not (A and B are the adapter either way).

    Args:
        model: a model with LoRA layers.
        directory: created if needed.
        base_model_name_or_path: recorded in the config (PEFT's field: the hub id of the base model).

    Returns:
        The directory.
    """
    _layers_or_fail(model, "save_adapter")
    _, architecture = _weight_map(model)
    settings: LoRAConfig = model.lora_config
    tensors, conv1d = {}, False
    for site, layer in _adapted_sites(model):
        key_A, key_B = _peft_keys(site.hf_name)
        tensors[key_A] = layer.lora_A.weight.detach().contiguous().cpu()  # (r, in)
        tensors[key_B] = layer.lora_B.weight.detach().contiguous().cpu()  # (out, r); fused: (3C, r)
        conv1d = conv1d or site.conv1d
    targets = settings.target_modules
    config = {
        # What PEFT 0.21 writes for a plain LoRA, in its order; the fields we do not use keep its defaults.
        "alora_invocation_tokens": None, "alpha_pattern": {}, "arrow_config": None, "auto_mapping": None,
        "base_model_name_or_path": base_model_name_or_path, "bias": "none", "corda_config": None,
        "ensure_weight_tying": False, "eva_config": None, "exclude_modules": None,
        "fan_in_fan_out": conv1d,  # GPT-2's Conv1D stores W as (in, out); lora_A/B are Linear weights still
        "inference_mode": True, "init_lora_weights": True, "kasa_config": None, "layer_replication": None,
        "layers_pattern": None, "layers_to_transform": None, "loftq_config": {},
        "lora_alpha": settings.lora_alpha, "lora_bias": False, "lora_dropout": settings.lora_dropout,
        "lora_ga_config": None, "megatron_config": None, "megatron_core": "megatron.core",
        "modules_to_save": None, "monteclora_config": None, "peft_type": "LORA", "qalora_group_size": 16,
        "r": settings.r, "rank_pattern": {}, "revision": None,
        "target_modules": targets if isinstance(targets, str) else sorted(targets),
        "target_parameters": None, "task_type": TASK_TYPES.get(architecture),
        "trainable_token_indices": None, "use_bdlora": None, "use_dora": False, "use_qalora": False,
        "use_rslora": False, "velora_config": None,
    }
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    save_file(tensors, str(directory / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    return directory


#: PEFT settings this module does not implement: config key -> the value that means "not used".
_UNSUPPORTED = {"use_dora": False, "use_rslora": False, "bias": "none", "lora_bias": False, "modules_to_save": None,
                "layers_to_transform": None, "exclude_modules": None, "target_parameters": None,
                "layer_replication": None, "rank_pattern": {}, "alpha_pattern": {},
                "trainable_token_indices": None, "use_qalora": False, "alora_invocation_tokens": None}


def _read_config(path: Path) -> LoRAConfig:
    config = read_json_object(path)
    if config.get("peft_type") != "LORA":
        raise ValueError(f"{path} is a {config.get('peft_type')!r} adapter; load_adapter reads LoRA adapters "
                         "(peft_type 'LORA') only")
    used = [f"{key}={config[key]!r}" for key, off in _UNSUPPORTED.items()
            if config.get(key, off) not in (off, None, [], {}, False)
            and not (key == "bias" and config[key] == "none")]
    if used:
        raise ValueError(f"{path} uses PEFT features minitransformer's LoRA does not implement ({', '.join(used)}). "
                         "Merge the adapter with peft (PeftModel.merge_and_unload) and load the merged model instead")
    target = config.get("target_modules")
    if not target:
        raise ValueError(f"{path} has no target_modules: an adapter must name the layers it adapts")
    r, alpha, dropout = config.get("r"), config.get("lora_alpha"), config.get("lora_dropout", 0.0)
    try:
        _check_settings(r, alpha, dropout)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    return LoRAConfig(r, alpha, dropout, target if isinstance(target, str) else list(target))


def _rules_names(names: list[str], weight_map: WeightMap) -> dict[str, str]:
    """HF module name the rules speak -> the adapter's own: an adapter trained on the base model
    (GPT2Model: ``h.0.attn.c_attn``) lacks the head model's prefix (``transformer.``), one trained on a
    head model (BertForSequenceClassification: ``bert.encoder...``) has one a base model's rules lack."""
    prefix, strip = weight_map.hf_prefix, weight_map.strip_prefix
    if prefix and not any(n.startswith(prefix) for n in names):
        return {prefix + n: n for n in names}
    if strip and any(n.startswith(strip) for n in names):
        return {n.removeprefix(strip): n for n in names}
    return {n: n for n in names}


def load_adapter(model: nn.Module, directory: str | Path) -> nn.Module:
    """Read a LoRA adapter in PEFT's format (saved by :func:`save_adapter` or by PEFT), apply it to
    ``model`` with its config and load its weights; returns ``model`` (adapted in place, unmerged).

    Only ``adapter_config.json`` and ``adapter_model.safetensors`` are read, both inside ``directory``
    (a symbolic link out of it is refused). Everything is checked before the model is changed.

    Raises:
        FileNotFoundError: a file is missing (a ``.bin`` adapter: convert it to safetensors).
        ValueError: not a LoRA adapter; a PEFT feature not implemented here; targets that match no
            layer of this model (an adapter for another architecture); keys missing, unexpected, or
            of another shape (an adapter for another width); a linear already adapted.
    """
    if lora_layers(model):
        raise ValueError("the model already has LoRA layers; load_adapter puts one adapter on a model without "
                         "any (merge_lora folds an adapter in, but keeps its layers: start from the base model)")
    directory = Path(directory)
    config_path = checkpoint_file(directory, ADAPTER_CONFIG)
    if not config_path.is_file():
        raise FileNotFoundError(f"{directory} has no {ADAPTER_CONFIG}: give the directory that save_adapter "
                                "(or peft's save_pretrained) wrote")
    settings = _read_config(config_path)
    weights_path = checkpoint_file(directory, ADAPTER_WEIGHTS)
    if not weights_path.is_file():
        bin_hint = (" It holds adapter_model.bin, a pickle, which is not read: re-save the adapter with peft's "
                    "save_pretrained(..., safe_serialization=True)") if (directory / "adapter_model.bin").exists() else ""
        raise FileNotFoundError(f"{directory} has no {ADAPTER_WEIGHTS}.{bin_hint}")
    tensors = load_file(str(weights_path))

    sites = _select(model, settings.target_modules, strict=False, what=f"{config_path}'s target_modules")
    weight_map, _ = _weight_map(model)
    stored = [k.removeprefix(PEFT_PREFIX).rsplit(".", 2)[0] for k in tensors]  # "...c_attn.lora_A.weight"
    own = _rules_names(stored, weight_map)
    expected: dict[str, tuple[int, ...]] = {}
    for site in sites:
        linears = [model.get_submodule(name) for name in site.ours]
        key_A, key_B = _peft_keys(own.get(site.hf_name, site.hf_name))
        expected[key_A] = (settings.r, linears[0].in_features)
        expected[key_B] = (sum(linear.out_features for linear in linears), settings.r)
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [f"{key}: adapter has {tuple(tensors[key].shape)}, {type(model).__name__} needs {shape}"
             for key, shape in expected.items() if key in tensors and tuple(tensors[key].shape) != shape]
    if missing or unexpected or wrong:
        lines = ([f"missing: {', '.join(missing)}"] if missing else []) + \
                ([f"unexpected: {', '.join(unexpected)}"] if unexpected else []) + \
                ([f"wrong shape: {'; '.join(wrong)}"] if wrong else [])
        raise ValueError(f"the adapter in {directory} does not fit this {type(model).__name__} "
                         f"(r={settings.r}, targets {settings.target_modules}):\n  " + "\n  ".join(lines) +
                         "\nLoad it onto the base model it was trained on (same architecture and sizes)")

    _adapt(model, sites, settings.r, settings.lora_alpha, settings.lora_dropout)
    layers = lora_layers(model)
    with torch.no_grad():
        for site in sites:
            layer = layers[site.ours[0]]  # the layers of a fused site share A and B
            key_A, key_B = _peft_keys(own.get(site.hf_name, site.hf_name))
            layer.lora_A.weight.copy_(tensors[key_A])
            layer.lora_B.weight.copy_(tensors[key_B])
    model.lora_config = settings
    return model
