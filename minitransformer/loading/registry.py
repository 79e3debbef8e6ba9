"""Which of our classes loads which checkpoint: ``config.json``'s ``model_type`` -> a :class:`Family`.

This is our small version of transformers' Auto registry (``CONFIG_MAPPING``,
``MODEL_FOR_CAUSAL_LM_MAPPING``): a dictionary keyed by ``model_type``, and in each family a
dictionary from ``architectures`` names to model classes.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any


def _import(path: str) -> Any:
    """``"package.module:attribute"`` -> the attribute, imported on first use."""
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


@dataclass(frozen=True)
class Family:
    """One ``model_type``: its config class, its model classes by architecture, its weight map.

    Args:
        model_type: as in ``config.json`` (``"gpt2"``, ``"llama"``...).
        config: ``"module:Class"`` of the dataclass config (with ``from_dict``/``to_dict``).
        architectures: HF architecture name -> ``"module:Class"`` of ours; the first is the default.
        weight_map: ``"module:attribute"`` of a :class:`WeightMap`, or of a function
            ``(config, architecture) -> WeightMap``.
        auto: Auto class kind (``"AutoModelForCausalLM"``...) -> the architecture it builds, as
            transformers' ``MODEL_FOR_CAUSAL_LM_MAPPING`` does by ``model_type``. A kind not listed is
            one the family does not have here (GPT-2 has no masked-LM head; we have no headless GPT2Model).
    """

    model_type: str
    config: str
    architectures: dict[str, str]
    weight_map: str
    auto: dict[str, str] = field(default_factory=dict)

    def config_class(self) -> type:
        return _import(self.config)

    def model_class(self, architectures: list[str] | None) -> tuple[str, type]:
        """(architecture, our class) for ``config.json``'s ``architectures`` (first known one wins)."""
        for name in architectures or []:
            if name in self.architectures:
                return name, _import(self.architectures[name])
        default = next(iter(self.architectures))
        return default, _import(self.architectures[default])

    def auto_class(self, kind: str) -> type:
        """Our class for the Auto class ``kind`` (``"AutoModelForCausalLM"``...).

        Raises:
            ValueError: the family has no class of that kind here; the message lists the kinds it has.
        """
        if kind not in self.auto:
            has = ", ".join(sorted(self.auto)) or "none"
            raise ValueError(f"model_type {self.model_type!r} has no {kind} class in minitransformer; "
                             f"the Auto classes it has: {has}")
        return _import(self.architectures[self.auto[kind]])

    def architecture_of(self, cls: type) -> str | None:
        """The architecture our class ``cls`` is registered under (for a subclass: its nearest registered
        base), or None."""
        classes = {name: _import(path) for name, path in self.architectures.items()}
        for base in cls.__mro__:
            for name, registered in classes.items():
                if registered is base:
                    return name
        return None

    def weight_map_for(self, config: Any, architecture: str):
        from minitransformer.loading.weight_map import WeightMap

        found = _import(self.weight_map)
        return found if isinstance(found, WeightMap) else found(config, architecture)


REGISTRY: dict[str, Family] = {}


def register(family: Family) -> Family:
    """Add (or replace) a family; returns it."""
    REGISTRY[family.model_type] = family
    return family


def get_family(model_type: str | None) -> Family:
    """The family of a ``model_type``.

    Raises:
        ValueError: unknown or absent ``model_type``, listing the supported ones.
    """
    if model_type not in REGISTRY:
        what = "config.json has no model_type" if model_type is None else f"model_type {model_type!r} is not supported"
        raise ValueError(f"{what}; supported model types: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[model_type]


def family_for_model(model: Any) -> tuple[Family, str]:
    """(family, architecture name) of one of our model instances, for saving."""
    family = get_family(getattr(model.config, "model_type", None))
    cls = type(model)
    for architecture, path in family.architectures.items():
        if _import(path) is cls:
            return family, architecture
    raise ValueError(f"{cls.__name__} is not registered under model_type {family.model_type!r}; "
                     f"add it to that Family's architectures in minitransformer/loading/registry.py")


# ---- the families: one line each --------------------------------------------------------------------

_GPT2 = "minitransformer.models.gpt2"
_LLAMA = "minitransformer.models.llama"
_BERT = "minitransformer.models.bert"
_T5 = "minitransformer.models.t5"

register(Family("gpt2", f"{_GPT2}:GPT2Config", {"GPT2LMHeadModel": f"{_GPT2}:GPT2"},
                "minitransformer.loading.maps.gpt2:WEIGHT_MAP",
                auto={"AutoModelForCausalLM": "GPT2LMHeadModel"}))
register(Family("llama", f"{_LLAMA}:LlamaConfig", {"LlamaForCausalLM": f"{_LLAMA}:Llama"},
                "minitransformer.loading.maps.llama:WEIGHT_MAP",
                auto={"AutoModelForCausalLM": "LlamaForCausalLM"}))
register(Family("mistral", f"{_LLAMA}:MistralConfig", {"MistralForCausalLM": f"{_LLAMA}:Llama"},
                "minitransformer.loading.maps.llama:WEIGHT_MAP",
                auto={"AutoModelForCausalLM": "MistralForCausalLM"}))
register(Family("qwen2", f"{_LLAMA}:Qwen2Config", {"Qwen2ForCausalLM": f"{_LLAMA}:Llama"},
                "minitransformer.loading.maps.llama:WEIGHT_MAP",
                auto={"AutoModelForCausalLM": "Qwen2ForCausalLM"}))
register(Family("bert", f"{_BERT}:BertConfig", {"BertModel": f"{_BERT}:BERT", "BertForMaskedLM": f"{_BERT}:BertForMaskedLM",
                                               "BertForSequenceClassification": f"{_BERT}:BertForSequenceClassification"},
                "minitransformer.loading.maps.bert:weight_map",
                auto={"AutoModel": "BertModel", "AutoModelForMaskedLM": "BertForMaskedLM",
                      "AutoModelForSequenceClassification": "BertForSequenceClassification"}))
register(Family("t5", f"{_T5}:T5Config", {"T5ForConditionalGeneration": f"{_T5}:T5"},
                "minitransformer.loading.maps.t5:weight_map",
                auto={"AutoModelForSeq2SeqLM": "T5ForConditionalGeneration"}))
