"""One check of a family config's values, for every family: :func:`check_config`.

A ``config.json`` with ``"n_head": 0`` or ``"n_embd": 768.0`` would otherwise build a model that fails
deep inside a layer (``ZeroDivisionError``, ``empty(): argument 'size' must be tuple of ints``), or,
worse, ``"tie_word_embeddings": "false"`` (a string, so true) one that runs and computes the wrong thing.

The check reads the config dataclass itself, so a new family needs nothing here:

- a field typed ``int`` (or ``int | None``) is a size (``vocab_size``, ``n_embd``, ``num_hidden_layers``,
  ``head_dim``...) and must be a positive int (not a float, not a bool); token ids (``*_token_id``) are
  left alone, as they may be anything transformers accepts;
- a field typed ``float``, ``bool`` or ``str`` must hold one (an int will do for a float);
- the head counts must divide: width by heads (unless the head size is given, as T5's ``d_kv`` and
  LLaMA's ``head_dim``), heads by key/value heads.

Fields of any other type (``list[str]``, ``dict | None``, ``int | list[int]``) are not checked here.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from typing import Any

WIDTHS = ("n_embd", "hidden_size", "d_model")  # C
HEADS = ("n_head", "num_attention_heads", "num_heads")  # H
KV_HEADS = ("num_key_value_heads",)  # Hkv
HEAD_SIZES = ("head_dim", "d_kv")  # D, where a config can give it instead of C // H
MAY_BE_ZERO = ("max_window_layers",)  # Qwen2: layers below it use full attention; 0 is meaningful


def check_config(config: Any) -> None:
    """Check the sizes (and plain-typed values) of a family config, one field at a time.

    Call it once a config is built: the loader does after reading ``config.json``; a config's
    ``__post_init__`` may too (it only reads the fields, changes nothing, and is cheap).

    Args:
        config: an instance of a family's dataclass config (``GPT2Config``, ``LlamaConfig``...).

    Raises:
        ValueError: the first bad field, by name, with its value and what it should be.

    Example:
        >>> from minitransformer.models.gpt2 import GPT2Config
        >>> check_config(GPT2Config(n_embd=32, n_head=4))   # fine: returns None
        >>> check_config(GPT2Config(n_embd=32, n_head=0))   # doctest: +SKIP
        ValueError: n_head=0 must be a positive int (a size of the model)
    """
    for name, (kind, optional) in _plain_fields(type(config)).items():
        _check_value(name, getattr(config, name), kind, optional)
    _check_heads(config)


def _check_value(name: str, value: Any, kind: type, optional: bool) -> None:
    if name.endswith("_token_id"):  # not a size; configs on the hub hold null, -1, lists...
        return
    if value is None:
        if not optional:
            raise ValueError(f"{name}=None: expected {_a(kind)} here; set it, or remove it for the default")
        return
    if kind is int:
        if isinstance(value, float) and value.is_integer():
            raise ValueError(f"{name}={value!r} must be an int (a size of the model): "
                             f"write {int(value)}, not {value}")
        least, what = (0, "a non-negative int") if name in MAY_BE_ZERO else (1, "a positive int")
        if not _is_int(value) or value < least:
            raise ValueError(f"{name}={value!r} must be {what} (a size of the model)")
    elif kind is float:
        if not (_is_int(value) or isinstance(value, float)) or not math.isfinite(value):
            raise ValueError(f"{name}={value!r} must be a finite number, such as 1e-05")
    elif not isinstance(value, kind):  # bool, str
        example = "true or false" if kind is bool else "a string in quotes"
        raise ValueError(f"{name}={value!r} must be {_a(kind)} ({example} in config.json), "
                         f"not {_a(type(value))}")


def _check_heads(config: Any) -> None:
    width_name, width = _first(config, WIDTHS)
    heads_name, heads = _first(config, HEADS)
    if width is None or heads is None:
        return
    _, head_size = _first(config, HEAD_SIZES)
    if head_size is None and width % heads:
        divisors = ", ".join(str(d) for d in range(1, width + 1) if width % d == 0)
        has_head_dim = any(f.name == "head_dim" for f in dataclasses.fields(config))
        or_head_dim = " or set head_dim" if has_head_dim else ""
        raise ValueError(f"{width_name}={width} is not divisible by {heads_name}={heads}: each head gets "
                         f"{width_name} / {heads_name} channels; choose a head count that divides {width} "
                         f"({divisors}){or_head_dim}")
    kv_name, kv_heads = _first(config, KV_HEADS)
    if kv_heads is not None and heads % kv_heads:
        raise ValueError(f"{kv_name}={kv_heads} must divide {heads_name}={heads} (each key/value head serves "
                         f"an equal group of query heads)")


def _first(config: Any, names: tuple[str, ...]) -> tuple[str | None, Any]:
    """(name, value) of the first of ``names`` the config has and sets (not None), else (None, None)."""
    for name in names:
        if getattr(config, name, None) is not None:
            return name, getattr(config, name)
    return None, None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # True is an int to Python, not a size


def _a(kind: type) -> str:
    return {int: "an int", float: "a float", bool: "a bool", str: "a str"}.get(kind, f"a {kind.__name__}")


@functools.cache
def _plain_fields(cls: type) -> dict[str, tuple[type, bool]]:
    """name -> (int, float, bool or str; whether None is allowed) for the plainly typed fields of ``cls``.

    The annotations are strings (``from __future__ import annotations``); ``get_type_hints`` turns them
    back into types. ``int | None`` is a union of ``int`` and ``NoneType``.
    """
    try:
        hints = typing.get_type_hints(cls)
    except (NameError, TypeError):  # an annotation naming something out of reach: check what is plain
        hints = {f.name: f.type for f in dataclasses.fields(cls)}
    plain = {}
    for f in dataclasses.fields(cls):
        hint = hints.get(f.name)
        is_union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        options = typing.get_args(hint) if is_union else (hint,)
        kinds = [t for t in options if t is not type(None)]
        if len(kinds) == 1 and kinds[0] in (int, float, bool, str):
            plain[f.name] = (kinds[0], type(None) in options)
    return plain
