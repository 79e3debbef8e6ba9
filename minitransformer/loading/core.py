"""``from_pretrained`` and ``save_pretrained``: the whole path from a hub id to a model and back."""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import split_torch_state_dict_into_shards
from safetensors.torch import save_file
from torch import nn

from minitransformer.layers.attention import check_backend
from minitransformer.loading.errors import ConfigError, LoadingError
from minitransformer.loading.hub import resolve_checkpoint_dir
from minitransformer.loading.io import (
    SAFETENSORS,
    SAFETENSORS_INDEX,
    Checkpoint,
    checkpoint_file,
    read_json_object,
)
from minitransformer.loading.registry import REGISTRY, Family, family_for_model, get_family
from minitransformer.loading.weight_map import WeightMap
from minitransformer.models.config_checks import check_config

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
GENERATION_CONFIG = "generation_config.json"


@contextmanager
def empty_weights() -> Iterator[None]:
    """Build modules whose parameters live on the ``meta`` device: shapes without memory.

    Inside this block every ``nn.Parameter`` a module registers is moved to ``meta`` as it is
    registered, so initialisers that follow (``nn.init.normal_``...) do nothing and cost nothing.
    (The ``torch.empty`` a layer creates its parameter with is reserved for an instant but never
    written, so it never becomes resident memory.) Buffers are left alone: the ones our models have,
    such as RoPE frequencies, are computed rather than loaded, and a meta buffer could not be refilled.

    Example:
        >>> with empty_weights():
        ...     layer = nn.Linear(20_000, 20_000)       # 1.6 GB in fp32; resident: none
        >>> layer.weight.device
        device(type='meta')
    """
    original = nn.Module.register_parameter

    def register_on_meta(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        if param is not None and param.device.type != "meta":
            param = type(param)(param.to("meta"), requires_grad=param.requires_grad)
        original(module, name, param)

    nn.Module.register_parameter = register_on_meta
    try:
        yield
    finally:
        nn.Module.register_parameter = original


def tied_aliases(model: nn.Module) -> dict[str, str]:
    """alias name -> canonical name for parameters shared between modules (a tied LM head)."""
    canonical: dict[int, str] = {}
    aliases: dict[str, str] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in canonical:
            aliases[name] = canonical[id(param)]
        else:
            canonical[id(param)] = name
    return aliases


def _set_tensor(model: nn.Module, name: str, value: torch.Tensor | nn.Parameter) -> None:
    """Make ``value`` the parameter (or buffer) called ``name``: no copy into an existing tensor."""
    module_name, _, attr = name.rpartition(".")
    module = model.get_submodule(module_name)
    if attr in module._parameters:
        old = module._parameters[attr]
        if not isinstance(value, nn.Parameter):
            value = nn.Parameter(value, requires_grad=old.requires_grad if old is not None else True)
        module._parameters[attr] = value
    elif attr in module._buffers:
        module._buffers[attr] = value
    else:
        raise KeyError(f"{name} is neither a parameter nor a buffer of {type(model).__name__}")


def _parse_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    if dtype is None or dtype == "auto":
        return None
    if isinstance(dtype, str):
        if dtype.removeprefix("torch.") not in DTYPES:
            raise ValueError(f"dtype {dtype!r} is not supported; use one of {sorted(DTYPES)} or 'auto'")
        return DTYPES[dtype.removeprefix("torch.")]
    if dtype not in DTYPES.values():
        raise ValueError(f"dtype {dtype} is not supported; use torch.float32, torch.bfloat16 or torch.float16")
    return dtype


def load_weights(model: nn.Module, checkpoint: Checkpoint, weight_map: WeightMap,
                 dtype: torch.dtype | None = None) -> nn.Module:
    """Fill ``model`` (typically built under :func:`empty_weights`) from ``checkpoint`` via ``weight_map``.

    The model's own state dict says which names and shapes are needed; every disagreement is
    collected and raised at once. Every floating-point weight is cast to one dtype, as transformers
    does: ``dtype``, or with None the checkpoint's own (:func:`weights_dtype`), so that a file holding
    one fp16 LayerNorm among fp32 weights still gives a model of one dtype.

    Weights of the map's ``task_heads`` that the checkpoint lacks are created with the model's own
    ``_init_weights``, and checkpoint keys of its ``other_heads`` are dropped; each is named in one
    ``UserWarning`` line.

    Raises:
        LoadingError: missing weights (outside the task heads), unexpected weights, shape mismatches,
            and integer, boolean or complex tensors where the model has a floating-point parameter,
            each by name.
    """
    aliases = tied_aliases(model)
    expected = {name: t for name, t in model.state_dict(keep_vars=True).items() if name not in aliases}
    mapped = weight_map.map_checkpoint(checkpoint.keys(), checkpoint.get, expected)
    ours = mapped.ours
    for alias in aliases:
        ours.pop(alias, None)  # some checkpoints also store the tied copy; the tie decides

    def source(name: str) -> str:
        rule_names = map(mapped.checkpoint_key, weight_map.hf_names_for(name))
        return ", ".join(mapped.sources.get(name, ())) or ", ".join(rule_names) or "?"

    absent = [name for name in expected if name not in ours and name not in mapped.unconverted]
    # A task head the checkpoint lacks (saved from the base model) is created anew; the body must be there.
    new_heads = [name for name in absent if weight_map.task_head_of(name) is not None]
    missing = [f"{name}  (checkpoint key: {source(name)})" for name in absent if name not in new_heads]
    mismatched = mapped.mismatched + [
        f"{name}: checkpoint gives {tuple(ours[name].shape)}, model expects {tuple(t.shape)} "
        f"(checkpoint key: {source(name)})"
        for name, t in expected.items() if name in ours and ours[name].shape != t.shape]
    unexpected = mapped.unexpected + [f"{name} (mapped from the checkpoint, unknown to the model)"
                                      for name in ours if name not in expected]
    missing += [f"{mapped.checkpoint_key(name)} (needed by a rule of the weight map)" for name in mapped.missing_hf]
    file_of = getattr(checkpoint, "file_of", None)  # a real Checkpoint knows each tensor's file
    wrong_dtype = []
    for name, t in expected.items():
        if name in ours and t.is_floating_point() and not ours[name].is_floating_point():
            where = f" in {file_of(mapped.sources[name][0]).name}" if file_of else ""
            found = str(ours[name].dtype).removeprefix("torch.")
            wrong_dtype.append(f"{source(name)}{where} is {found}, but {name} is a floating-point parameter")
    if missing or unexpected or mismatched or wrong_dtype:
        raise LoadingError(missing, unexpected, mismatched, where=f"at {checkpoint.directory}",
                           wrong_dtype=wrong_dtype)

    dtype = dtype or weights_dtype(checkpoint)
    if new_heads:
        _init_task_heads(model, {name: expected[name] for name in new_heads}, weight_map, dtype)
    release = getattr(checkpoint, "release", None)
    for name, tensor in ours.items():
        # One dtype for every float weight (as transformers: a stray fp16 norm would fail the forward with
        # "mixed dtype"); anything else (an integer buffer) keeps the model's own dtype.
        target = (dtype or tensor.dtype) if expected[name].is_floating_point() else expected[name].dtype
        if tensor.device.type == "meta":
            tensor = tensor.to(target)
        else:
            # Copy into fresh, contiguous memory one tensor at a time, then give the file's pages back:
            # peak memory stays near one copy, and matmuls run on ordinary (not file-mapped,
            # not transposed) memory, which measured ~2x faster on CPU.
            tensor = torch.empty(tensor.shape, dtype=target).copy_(tensor)
            if release is not None:
                release(ours[name])
        _set_tensor(model, name, tensor)
    for alias, source_name in aliases.items():
        _set_tensor(model, alias, model.get_parameter(source_name))
    at = getattr(checkpoint, "directory", "?")
    if new_heads:
        warnings.warn(f"Some weights of {type(model).__name__} were not initialized from the model checkpoint at "
                      f"{at} and are newly initialized: {new_heads}. You should probably TRAIN this model on a "
                      "down-stream task to be able to use it for predictions and inference.", stacklevel=3)
    if mapped.unused_heads:
        warnings.warn(f"Some weights of the model checkpoint at {at} were not used when initializing "
                      f"{type(model).__name__}: {mapped.unused_heads}. This IS expected if the checkpoint is "
                      "of another task head (a classifier read into the base model).", stacklevel=3)
    return model


def _init_task_heads(model: nn.Module, new: dict[str, torch.Tensor], weight_map: WeightMap,
                     dtype: torch.dtype | None) -> None:
    """Create the weights ``new`` (our name -> the model's meta tensor) of task heads the checkpoint lacks,
    initialised as the model's ``__init__`` does: zeros (a bare bias, like the MLM head's, stays so), then
    the model's own ``_init_weights`` on every module of each head. Runs before the loaded weights are
    assigned, so a head's weights that the checkpoint does have are still on ``meta`` and untouched."""
    for name, t in new.items():
        _set_tensor(model, name, torch.zeros(t.shape, dtype=(dtype or t.dtype) if t.is_floating_point() else t.dtype))
    init = getattr(model, "_init_weights", None)
    for head in dict.fromkeys(weight_map.task_head_of(name) for name in new):
        module = model.get_submodule(head)
        if init is not None:
            module.apply(init)
        else:
            for m in module.modules():
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()


def weights_dtype(checkpoint: Checkpoint) -> torch.dtype | None:
    """The dtype transformers' ``dtype="auto"`` reads from the weights themselves (when config.json has none).

    That is the shard index's ``metadata.dtype`` if it has one, else the dtype of the first
    floating-point tensor in the order :meth:`Checkpoint.keys` gives (float8 and float4 skipped: no
    model computes in them). None if the checkpoint holds no floating-point tensor.
    """
    named = getattr(checkpoint, "index_metadata", {}).get("dtype")
    if isinstance(named, str) and _is_compute_dtype(getattr(torch, named, None)):
        return getattr(torch, named)
    for name in checkpoint.keys():
        dtype = checkpoint.get(name).dtype
        if _is_compute_dtype(dtype):
            return dtype
    return None


def _is_compute_dtype(dtype: Any) -> bool:
    """A floating-point torch dtype a model can compute in (float8 and float4 are storage formats only)."""
    return (isinstance(dtype, torch.dtype) and dtype.is_floating_point
            and "float8" not in str(dtype) and "float4" not in str(dtype))


def read_config(directory: str | Path) -> dict[str, Any]:
    """``config.json`` of a checkpoint directory, as a dict.

    Raises:
        FileNotFoundError: there is none.
        LoadingError: not valid JSON (line and column given), not an object, or a link out of the directory.
        ConfigError: ``model_type`` or ``architectures`` of the wrong type.
    """
    path = checkpoint_file(directory, "config.json")
    if not path.is_file():
        raise FileNotFoundError(f"{directory} has no config.json; is it a transformers checkpoint directory?")
    config = read_json_object(path)
    model_type, architectures = config.get("model_type"), config.get("architectures")
    if model_type is not None and not isinstance(model_type, str):
        raise ConfigError.in_file(path, f"has model_type={model_type!r}, where a string is expected",
                                  f'Write it as one name, e.g. "model_type": "gpt2" '
                                  f"(supported: {', '.join(sorted(REGISTRY))})")
    if architectures is not None and not (isinstance(architectures, list)
                                          and all(isinstance(a, str) for a in architectures)):
        raise ConfigError.in_file(path, f"has architectures={architectures!r}, where a list of class names "
                                        "is expected",
                                  'Write it as a list, e.g. "architectures": ["GPT2LMHeadModel"]')
    return config


def config_dtype(config: dict[str, Any], path: Path) -> torch.dtype | None:
    """The dtype ``config.json`` names, as transformers reads it: ``"dtype"``, else older ``"torch_dtype"``.

    Raises:
        ConfigError: a value that is not the name of a floating-point torch dtype.
    """
    key = "dtype" if config.get("dtype") is not None else "torch_dtype"
    name = config.get(key)
    if name is None:
        return None
    dtype = getattr(torch, name.removeprefix("torch."), None) if isinstance(name, str) else None
    if not _is_compute_dtype(dtype):
        raise ConfigError.in_file(path, f"has {key}={name!r}, which is not a floating-point torch dtype",
                                  'Write one of "float32", "bfloat16", "float16", or remove the key to use '
                                  "the weights' own dtype")
    return dtype


def read_generation_config(directory: str | Path) -> Any:
    """The checkpoint's ``generation_config.json`` as a :class:`~minitransformer.generation.config.GenerationConfig`,
    or None when it has none (most base models). Keys that are no option of ours are kept in ``extra``.

    Raises:
        LoadingError: the file is not a JSON object, or is a link out of the directory.
    """
    path = checkpoint_file(directory, GENERATION_CONFIG)
    if not path.is_file():
        return None
    from minitransformer.generation.config import GenerationConfig  # on use: loading does not need generation

    return GenerationConfig.from_dict(read_json_object(path))


def read_family(directory: Path) -> tuple[Family, dict[str, Any], Path]:
    """(family, ``config.json`` as a dict, its path) of a checkpoint directory.

    Raises:
        ConfigError: ``model_type`` absent or not one we support (the supported ones listed).
    """
    config_dict = read_config(directory)
    config_path = directory / "config.json"
    try:
        family = get_family(config_dict.get("model_type"))
    except ValueError as err:
        raise ConfigError.in_file(config_path, f"does not say which model to build: {err}",
                                  "Set model_type to one of those") from err
    return family, config_dict, config_path


def build_config(family: Family, config_dict: dict[str, Any], path: Path) -> tuple[str, type, Any]:
    """(architecture, our model class, the family's config) from ``config.json``'s dict, values checked.

    Raises:
        ConfigError: a value a model cannot be built with (``n_head: 0``, ``"n_embd": 768.0``...),
            by field, naming ``config.json``.
    """
    architecture, cls = family.model_class(config_dict.get("architectures"))
    try:
        config = family.config_class().from_dict(config_dict)
        check_config(config)
    except (ValueError, TypeError) as err:
        raise ConfigError.in_file(path, f"holds a value the model cannot be built with: {err}",
                                  "Fix that value in config.json") from err
    return architecture, cls, config


def from_pretrained(path_or_repo_id: str | os.PathLike, *, dtype: torch.dtype | str | None = None,
                    device: torch.device | str | None = None, revision: str | None = None,
                    model_class: type | None = None, attn_implementation: str | None = None) -> nn.Module:
    """Load one of our models from a transformers checkpoint (a local directory or a hub id).

    Args:
        path_or_repo_id: a directory with ``config.json`` and weights, or a hub id like ``"gpt2"``.
        dtype: float32, bfloat16 or float16 (torch dtype or name). ``None``/``"auto"``: as transformers'
            default, ``dtype`` (or ``torch_dtype``) from config.json, else the dtype of the checkpoint's
            first floating-point weight. Every floating-point weight is cast to that one dtype.
        device: where the model goes after loading (default: CPU, memory-mapped).
        revision: a branch, tag or commit of a hub repo.
        model_class: force our class instead of choosing it from ``architectures``. It may have a task
            head the checkpoint lacks (a ``BertModel`` checkpoint into ``BertForSequenceClassification``,
            a ``LlamaModel`` one into ``Llama``): that head is initialised with the model's own
            ``_init_weights`` and named in one warning, as transformers does. The heads that may be
            missing are declared in the family's weight map (``WeightMap.task_heads``); a missing
            weight of the body is still a :class:`LoadingError`.
        attn_implementation: "math" (the default of every family: everything written out) or "sdpa"
            (torch's fused kernels), as the model classes take it (``layers.attention.fused_kernels``).

    Returns:
        The model in eval mode; with the checkpoint's ``generation_config.json``, if it has one, as
        ``model.generation_config`` (the defaults ``generate`` uses).

    Raises:
        ValueError: a bad ``dtype`` argument.
        ConfigError: (a LoadingError and a ValueError) config.json holds an unknown ``model_type`` (the
            supported ones are listed) or a value no model can be built with, by field.
        LoadingError: a file that cannot be read (invalid JSON, truncated safetensors, a path out of the
            checkpoint), or checkpoint and model disagree (every problem listed by name).
        FileNotFoundError: no such directory, or a hub id not in the cache (when offline).

    Example:
        >>> model = from_pretrained("openai-community/gpt2", dtype="bfloat16")   # doctest: +SKIP
        >>> model(torch.tensor([[15496, 11, 995]])).logits.shape                # doctest: +SKIP
        torch.Size([1, 3, 50257])
    """
    dtype = _parse_dtype(dtype)
    if attn_implementation is not None:
        check_backend(attn_implementation)  # a bad name is the caller's error, not the checkpoint's
    directory = resolve_checkpoint_dir(path_or_repo_id, revision)
    family, config_dict, config_path = read_family(directory)
    if isinstance(config_dict.get("quantization_config"), dict) and \
            config_dict["quantization_config"].get("quant_method") == "minitransformer":
        raise LoadingError.in_file(config_path, "describes a model quantized by minitransformer, whose tensors "
                                                "are not in transformers' layout",
                                   "Load it with minitransformer.quantization.load_quantized(directory)")
    architecture, cls, config = build_config(family, config_dict, config_path)
    if model_class is not None:
        # The class decides the weight map, not config.json: a BertModel checkpoint read into the
        # classifier needs the classifier's map, whose prefix and task head fit that class.
        cls, architecture = model_class, family.architecture_of(model_class) or architecture
    dtype = dtype or config_dtype(config_dict, config_path)  # transformers' dtype="auto": config.json's
    try:
        with empty_weights():
            model = cls(config) if attn_implementation is None else cls(config, attn_implementation=attn_implementation)
    except ValueError as err:  # a check of the layers themselves (RoPE needs an even head size...)
        raise ConfigError.in_file(config_path, f"describes a model that cannot be built: {err}",
                                  "Fix that value in config.json") from err
    with Checkpoint(directory) as checkpoint:
        load_weights(model, checkpoint, family.weight_map_for(config, architecture), dtype)
    generation_config = read_generation_config(directory)
    if generation_config is not None:
        model.generation_config = generation_config  # generate's defaults for this checkpoint
    if device is not None:
        model.to(device)
    return model.eval()


def save_pretrained(model: nn.Module, directory: str | os.PathLike,
                    max_shard_size: int | str | None = None) -> Path:
    """Write ``config.json`` and ``model.safetensors`` in transformers' layout (and
    ``generation_config.json`` when the model has a ``generation_config``).

    ``transformers.AutoModelForCausalLM.from_pretrained(directory)`` (or the Auto class of the
    family) loads the result with no missing or unexpected weights.

    Args:
        model: one of our models (its class must be registered in ``loading/registry.py``).
        directory: created if needed; weight files of an earlier save there are replaced.
        max_shard_size: ``None`` writes one file. Otherwise bytes (an int) or a string such as
            ``"5MB"`` / ``"2GB"`` (powers of ten, as in transformers): weights bigger than that are
            split into ``model-00001-of-0000N.safetensors``... plus ``model.safetensors.index.json``
            naming each tensor's file. A single tensor larger than the limit gets a shard of its own.

    Returns:
        The directory.

    Raises:
        ValueError: a ``max_shard_size`` that is not a size.
    """
    family, architecture = family_for_model(model)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)

    aliases = tied_aliases(model)
    ours = {name: t.detach() for name, t in model.state_dict().items() if name not in aliases}

    config = model.config.to_dict()
    config["model_type"] = family.model_type
    config["architectures"] = [architecture]
    quantization = getattr(model, "quantization_config", None)  # set by minitransformer.quantization.quantize
    if quantization is not None:
        config["quantization_config"] = quantization
    # What loading with dtype="auto" reads back first, so it must say what the weights are (transformers
    # writes the model's dtype there too); an older "torch_dtype" would only contradict it.
    config.pop("torch_dtype", None)
    float_dtypes = [t.dtype for t in ours.values() if t.is_floating_point()]
    if float_dtypes:
        config["dtype"] = str(float_dtypes[0]).removeprefix("torch.")
    (directory / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    generation_config = getattr(model, "generation_config", None)
    if generation_config is not None:
        # Only what is set: None means "not set" (generate's default), and transformers reads the same file.
        options = {k: v for k, v in generation_config.to_dict().items() if v is not None}
        (directory / GENERATION_CONFIG).write_text(json.dumps(options, indent=2, sort_keys=True) + "\n")
    # Quantized Linears have no transformers layout: their tensors keep our state-dict names
    # (minitransformer.quantization.load_quantized reads them back).
    hf = ours if quantization is not None else family.weight_map_for(model.config, architecture).to_hf(ours)
    # safetensors refuses tensors that share memory (views into one memory-mapped file), so each
    # tensor gets its own contiguous CPU copy: saving costs one extra copy of the weights.
    hf = {name: t.to("cpu").contiguous().clone() for name, t in hf.items()}

    # The splitter transformers' own save_pretrained uses: tensors in order, a new shard whenever the
    # next tensor would overflow the current one.
    shards = {SAFETENSORS: list(hf)}
    if max_shard_size is not None:
        try:
            shards = split_torch_state_dict_into_shards(hf, max_shard_size=max_shard_size).filename_to_tensors
        except ValueError as e:
            raise ValueError(f"max_shard_size={max_shard_size!r} is not a size: pass bytes (an int) or a "
                             f"string like '500MB' or '2GB' (units KB, MB, GB, TB)") from e
    for stale in _weight_files(directory) - set(shards):
        (directory / stale).unlink()  # an earlier save's files would be read instead of (or mixed with) these
    for filename, names in shards.items():
        save_file({name: hf[name] for name in names}, str(directory / filename), metadata={"format": "pt"})
    if len(shards) > 1:
        index = {"metadata": {"total_parameters": sum(t.numel() for t in hf.values()),
                              "total_size": sum(t.numel() * t.element_size() for t in hf.values())},
                 "weight_map": {name: filename for filename, names in shards.items() for name in names}}
        (directory / SAFETENSORS_INDEX).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return directory


def _weight_files(directory: Path) -> set[str]:
    """The safetensors files a save may have left in ``directory``: single file, shards, index."""
    shard = re.compile(r"model-\d{5}-of-\d{5}\.safetensors")
    names = {p.name for p in directory.iterdir() if shard.fullmatch(p.name)}
    return names | {n for n in (SAFETENSORS, SAFETENSORS_INDEX) if (directory / n).is_file()}
