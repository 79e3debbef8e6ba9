"""Declarative weight-name maps between HuggingFace checkpoints and our modules.

A :class:`WeightMap` is a list of :class:`Rule` s. A rule names some checkpoint keys (HF names), some
of our state-dict names, and the :class:`LayoutTransform` between them (none for a plain rename).
Names may hold placeholders such as ``{i}`` (a layer number): ``"transformer.h.{i}.ln_1.weight"``
matches ``transformer.h.0.ln_1.weight``, ``transformer.h.1.ln_1.weight``, ... and the number found
fills the rule's other names.

The same rules run in both directions: :meth:`WeightMap.to_ours` when loading, :meth:`WeightMap.to_hf`
when saving. Nothing is raised halfway: problems are collected and reported together in a
:class:`LoadingError` (defined in ``errors.py``; importable from here too).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import torch

from minitransformer.loading.errors import LoadingError

Tensors = tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class LayoutTransform:
    """A named, invertible change of tensor layout between a checkpoint and our modules.

    Args:
        name: short name used in error messages.
        why: one or two sentences on why the layouts differ (shown by ``help`` and in the docs).
        to_ours: HF tensors (in the rule's ``hf`` order) -> our tensors (in the rule's ``ours`` order).
        to_hf: the inverse.
    """

    name: str
    why: str
    to_ours: Callable[..., Tensors]
    to_hf: Callable[..., Tensors]

    def __repr__(self) -> str:
        return f"LayoutTransform({self.name!r})"


@dataclass(frozen=True)
class Rule:
    """HF names <-> our names, through ``transform`` (``None``: one tensor, renamed, unchanged)."""

    hf: tuple[str, ...]
    ours: tuple[str, ...]
    transform: LayoutTransform | None = None

    def __post_init__(self):
        if self.transform is None and (len(self.hf) != 1 or len(self.ours) != 1):
            raise ValueError(f"a rule without a transform maps one name to one name, got {self.hf} -> {self.ours}")


def rename(hf: str, ours: str) -> Rule:
    """A weight stored exactly as we store it, under another name (or the same)."""
    return Rule((hf,), (ours,))


def convert(hf: str | tuple[str, ...], ours: str | tuple[str, ...], transform: LayoutTransform) -> Rule:
    """A weight whose layout differs: ``transform`` turns the HF tensors into ours and back."""
    as_tuple = lambda names: (names,) if isinstance(names, str) else tuple(names)  # noqa: E731
    return Rule(as_tuple(hf), as_tuple(ours), transform)


_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@functools.lru_cache(maxsize=4096)
def _compile(pattern: str) -> re.Pattern:
    """``"h.{i}.ln_1.weight"`` -> regex with a named group of digits for each placeholder."""
    parts, last = [], 0
    for m in _PLACEHOLDER.finditer(pattern):
        parts.append(re.escape(pattern[last:m.start()]))
        parts.append(f"(?P<{m.group(1)}>\\d+)")
        last = m.end()
    parts.append(re.escape(pattern[last:]))
    return re.compile("".join(parts) + r"\Z")


def _matches(patterns: tuple[str, ...], names: Iterable[str]) -> list[dict[str, str]]:
    """Placeholder values for which ``patterns[0]`` matches one of ``names``, in a stable order."""
    regex = _compile(patterns[0])
    found = [m.groupdict() for m in map(regex.match, names) if m]
    return sorted(found, key=lambda g: tuple(int(v) for v in g.values()))


@dataclass
class Mapped:
    """What :meth:`WeightMap.map_checkpoint` made of a checkpoint."""

    ours: dict[str, torch.Tensor] = field(default_factory=dict)  # our name -> tensor
    sources: dict[str, tuple[str, ...]] = field(default_factory=dict)  # our name -> its checkpoint keys
    unexpected: list[str] = field(default_factory=list)  # checkpoint keys no rule used
    missing_hf: list[str] = field(default_factory=list)  # keys a rule needed, not in the checkpoint
    mismatched: list[str] = field(default_factory=list)  # checkpoint tensors their transform cannot take, why
    unconverted: set[str] = field(default_factory=set)  # our names left out because of those
    unused_heads: list[str] = field(default_factory=list)  # checkpoint keys of a head we lack (other_heads)
    added_prefix: str = ""  # hf_prefix, when the checkpoint lacked it (a base-model save)
    removed_prefix: str = ""  # strip_prefix, when the checkpoint had it (a head-model save)

    def checkpoint_key(self, name: str) -> str:
        """A name the rules speak as this checkpoint spells it (for error messages)."""
        if self.added_prefix:
            return name.removeprefix(self.added_prefix)
        return self.removed_prefix + name


def _apply(transform: LayoutTransform, keys: tuple[str, ...], tensors: Tensors, our_names: list[str],
           expected: Mapping[str, torch.Tensor] | None) -> tuple[Tensors, str | None]:
    """(our tensors, None), or ((), why) when ``tensors`` cannot go through ``transform``.

    With ``expected``, the shapes the checkpoint should hold are the inverse transform applied to the
    model's own shapes: for GPT-2's ``c_attn``, q, k, v of (C, C) fuse and transpose to (C, 3C).
    """
    if expected is not None and all(name in expected for name in our_names):
        want = transform.to_hf(*(torch.empty(expected[name].shape, device="meta") for name in our_names))
        wrong = [f"{key}: checkpoint gives {tuple(t.shape)}, model expects {tuple(w.shape)}"
                 for key, t, w in zip(keys, tensors, want, strict=True) if t.shape != w.shape]
        if wrong:
            return (), f"{'; '.join(wrong)} ({transform.name}, into {', '.join(our_names)})"
    try:
        return transform.to_ours(*tensors), None
    except ValueError as err:  # nothing to compare with: the transform says why
        return (), f"{', '.join(keys)}: {transform.name} cannot convert it: {err}"


@dataclass(frozen=True)
class WeightMap:
    """A family's checkpoint layout, declared as rules.

    Args:
        rules: the :class:`Rule` s; each of our names must come from exactly one.
        hf_prefix: the prefix a head model puts before the base model's names (``"transformer."`` for
            GPT2LMHeadModel, ``"model."`` for LlamaForCausalLM). A checkpoint saved from the base
            model (GPT2Model) has no key with it; then it is added to every key before matching.
        ignore: regexes (``re.search``) of checkpoint keys to drop silently, e.g. buffers old
            versions of transformers saved (GPT-2's ``attn.bias`` causal mask, RoPE's ``inv_freq``).
        load_aliases: ``(regex, replacement)`` pairs that rewrite old checkpoint names into the
            current ones (``re.sub``) before the rules see them, e.g. old BERT's
            ``LayerNorm.gamma``/``beta`` for ``weight``/``bias``. Loading only: saving writes the
            current names. A legacy key whose current name is also in the checkpoint is not
            rewritten (and is reported as unexpected).
        strip_prefix: the reverse of ``hf_prefix``, for a base model's map: the prefix a head model
            puts before these names (``"bert."``). When a checkpoint (saved from a head model) has
            keys with it, it is removed from them before matching.
        task_heads: our module names (``"classifier"``, ``"lm_head"``) that a checkpoint saved from
            the base model lacks. Their missing weights are not an error: the loader creates them with
            the model's own ``_init_weights`` and reports them. Any other missing weight is an error.
        other_heads: regexes (``re.search``) of checkpoint keys that belong to a head this architecture
            does not have (``^cls\\.`` of BertForMaskedLM, read into BertModel): dropped and reported,
            not an error. Any other unused key is an error.
    """

    rules: tuple[Rule, ...]
    hf_prefix: str = ""
    ignore: tuple[str, ...] = field(default=())
    load_aliases: tuple[tuple[str, str], ...] = field(default=())
    strip_prefix: str = ""
    task_heads: tuple[str, ...] = field(default=())
    other_heads: tuple[str, ...] = field(default=())

    def map_checkpoint(self, hf_keys: Iterable[str], get: Callable[[str], torch.Tensor],
                       expected: Mapping[str, torch.Tensor] | None = None) -> Mapped:
        """Map a checkpoint to our names, collecting every problem instead of raising.

        Args:
            hf_keys: the checkpoint's keys.
            get: reads one checkpoint tensor by its key (lazily, so only what is used is read).
            expected: our state dict (meta tensors will do): the shapes the model wants. With it, the
                input of each layout transform is checked first, so that a fused ``c_attn`` of the
                wrong size is reported under its own key with the shape the model needs (that shape is
                the transform's inverse run on the model's shapes, on the meta device).

        Returns:
            A :class:`Mapped`.
        """
        hf_keys = list(hf_keys)
        # Our rules speak the head model's names; a base-model checkpoint needs the prefix added.
        add_prefix = bool(self.hf_prefix) and not any(k.startswith(self.hf_prefix) for k in hf_keys)
        # A base model's rules speak unprefixed names; a head model's checkpoint needs the prefix removed.
        strip = bool(self.strip_prefix) and any(k.startswith(self.strip_prefix) for k in hf_keys)

        def rules_name(key: str) -> str:
            if add_prefix and not self._speaks(key):  # a head's own key ("classifier.weight") stays as it is
                return self.hf_prefix + key
            return key.removeprefix(self.strip_prefix) if strip else key

        prefixed = {rules_name(k): k for k in hf_keys}
        original: dict[str, str] = {}  # the name the rules see -> the checkpoint's own key
        for name, key in prefixed.items():
            current = self._current_name(name)
            original[name if current in prefixed else current] = key
        ignored = {k for k in original if any(re.search(p, k) for p in self.ignore)}
        available = [k for k in original if k not in ignored]

        mapped = Mapped(added_prefix=self.hf_prefix if add_prefix else "",
                        removed_prefix=self.strip_prefix if strip else "")
        used: set[str] = set()
        for rule in self.rules:
            for groups in _matches(rule.hf, available):
                hf_names = [name.format(**groups) for name in rule.hf]
                our_names = [name.format(**groups) for name in rule.ours]
                absent = [n for n in hf_names if n not in original]
                if absent:
                    mapped.missing_hf.extend(absent)
                    continue
                keys = tuple(original[n] for n in hf_names)
                tensors = tuple(get(k) for k in keys)
                used.update(hf_names)
                converted, problem = tensors, None
                if rule.transform is not None:
                    converted, problem = _apply(rule.transform, keys, tensors, our_names, expected)
                if problem is not None:
                    mapped.mismatched.append(problem)
                    mapped.unconverted.update(our_names)
                    continue
                for name, tensor in zip(our_names, converted, strict=True):
                    mapped.ours[name] = tensor
                    mapped.sources[name] = keys
        for key in (original[k] for k in available if k not in used):
            is_other_head = any(re.search(p, key) for p in self.other_heads)
            (mapped.unused_heads if is_other_head else mapped.unexpected).append(key)
        return mapped

    def _speaks(self, hf_name: str) -> bool:
        """Whether a rule, ``ignore`` or ``other_heads`` names ``hf_name`` as it is (without ``hf_prefix``)."""
        if any(re.search(p, hf_name) for p in self.ignore + self.other_heads):
            return True
        return any(_compile(pattern).match(hf_name) for rule in self.rules for pattern in rule.hf)

    def task_head_of(self, our_name: str) -> str | None:
        """The entry of ``task_heads`` that ``our_name`` belongs to (``"classifier"`` for
        ``"classifier.weight"``), or None: a weight of the body, which a checkpoint must hold."""
        return next((h for h in self.task_heads if our_name == h or our_name.startswith(h + ".")), None)

    def to_ours(self, hf_keys: Iterable[str], get: Callable[[str], torch.Tensor]
                ) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
        """Map a checkpoint to our names (:meth:`map_checkpoint`, in short).

        Returns:
            (our name -> tensor, checkpoint keys no rule used, checkpoint keys a rule needed but missing)

        Raises:
            LoadingError: a tensor its layout transform cannot convert (a fused q/k/v that won't split in 3).
        """
        mapped = self.map_checkpoint(hf_keys, get)
        if mapped.mismatched:
            raise LoadingError(mismatched=mapped.mismatched)
        return mapped.ours, mapped.unexpected + mapped.unused_heads, mapped.missing_hf

    def _current_name(self, hf_name: str) -> str:
        """``hf_name`` with every ``load_aliases`` rewrite applied (old name -> current name)."""
        for pattern, replacement in self.load_aliases:
            hf_name = re.sub(pattern, replacement, hf_name)
        return hf_name

    def to_hf(self, ours: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Map our state dict to HF names and layouts (the inverse of :meth:`to_ours`).

        Raises:
            LoadingError: a name of ours that no rule covers (a gap in the map, not in your model).
        """
        hf: dict[str, torch.Tensor] = {}
        used: set[str] = set()
        missing: list[str] = []
        for rule in self.rules:
            for groups in _matches(rule.ours, ours):
                our_names = [name.format(**groups) for name in rule.ours]
                absent = [n for n in our_names if n not in ours]
                if absent:
                    missing.extend(absent)
                    continue
                tensors = tuple(ours[n] for n in our_names)
                used.update(our_names)
                converted = tensors if rule.transform is None else rule.transform.to_hf(*tensors)
                for name, tensor in zip(rule.hf, converted, strict=True):
                    hf[name.format(**groups)] = tensor
        unmapped = [n for n in ours if n not in used]
        if missing or unmapped:
            raise LoadingError(missing, unmapped, [], where="(export: our names the map does not cover)")
        return hf

    def hf_names_for(self, our_name: str) -> list[str]:
        """The checkpoint keys a name of ours is made from (for error messages)."""
        for rule in self.rules:
            for pattern in rule.ours:
                m = _compile(pattern).match(our_name)
                if m:
                    return [name.format(**m.groupdict()) for name in rule.hf]
        return []
