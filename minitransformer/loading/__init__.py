"""Loading HuggingFace checkpoints into minitransformer models, and saving them back.

    from minitransformer.loading import AutoModelForSequenceClassification, from_pretrained, save_pretrained
    model = from_pretrained("openai-community/gpt2")      # hub id, or a local directory
    save_pretrained(model, "out/")                        # transformers' Auto classes can load "out/"
    clf = AutoModelForSequenceClassification.from_pretrained("google-bert/bert-base-uncased")  # new head

What happens in :func:`from_pretrained` (``loading/core.py``), step by step:

1. **Resolve** (``hub.py``): a local directory is used as is; anything else is a hub id handed to
   ``huggingface_hub.snapshot_download`` (honours ``HF_HOME``/``HF_HUB_CACHE``, ``HF_HUB_OFFLINE`` and
   ``revision``, read when you call, not when Python started).
2. **Config** (``registry.py``): ``config.json``'s ``model_type`` picks a :class:`Family`;
   ``architectures[0]`` picks the model class inside it, unless ``model_class=`` (or an Auto class,
   ``auto.py``) names one. The config dataclass is built with
   ``ConfigClass.from_dict(config_json)``, and its values checked (``models/config_checks.py``: sizes are
   positive ints, heads divide the width); a bad one is a :class:`ConfigError` naming the field.
3. **Empty model** (``core.py``): the model is built inside :func:`empty_weights`, so every
   parameter lives on the ``meta`` device (shapes only, no memory, no random init). Buffers that are
   computed rather than loaded (RoPE frequencies) are built for real.
4. **Read** (``io.py``): :class:`Checkpoint` opens ``model.safetensors``, a sharded
   ``model.safetensors.index.json``, or (only if no safetensors) ``pytorch_model.bin`` through
   ``torch.load(weights_only=True, mmap=True)``. Tensors are memory-mapped and read lazily. No file
   outside the checkpoint directory is ever read (an index entry ``"../x"`` or a link pointing out
   is refused), and a file that cannot be read is a :class:`LoadingError` naming it.
5. **Map** (``weight_map.py`` + ``maps/<family>.py``): the family's declarative :class:`WeightMap`
   turns HF names and layouts into ours. Problems are collected, not raised one at a time: a single
   :class:`LoadingError` lists every missing key, unexpected key and shape mismatch by name.
   Two exceptions, declared in each map, as transformers has them: a *task head* the checkpoint lacks
   (``WeightMap.task_heads``: a ``BertModel`` checkpoint read into the classifier has no ``classifier``)
   is initialised with the model's own ``_init_weights``, and the keys of a head the class does not
   have (``WeightMap.other_heads``) are dropped; each is named in one warning line.
6. **Assign** (``core.py``): each mapped tensor is copied, cast to one dtype (``dtype`` if asked, else as
   transformers: config.json's ``dtype``, else the first floating-point weight's), into fresh
   contiguous memory that *becomes* the parameter (no random init to overwrite), and the file's
   pages are handed back right away (``Checkpoint.release``), so peak memory is about one copy of
   the weights.
   Tied parameters (an LM head sharing the embedding) are found on the model itself and re-tied.
7. **Generation defaults**: an optional ``generation_config.json`` becomes ``model.generation_config``
   (``generation/config.py``'s ``GenerationConfig``; absent file, nothing set).
8. ``model.to(device).eval()``.

:func:`save_pretrained` runs the same map backwards (each rule's inverse transforms) and writes
``config.json`` (``config.to_dict()``, with ``model_type`` and ``architectures``) plus
``model.safetensors`` (and ``generation_config.json`` if the model has a ``generation_config``), or with
``max_shard_size="2GB"`` transformers' shards
(``model-00001-of-00003.safetensors``...) and ``model.safetensors.index.json``. Tied aliases are
left out, as transformers does.

The contract for adding a model family (what the BERT and T5 files do)
----------------------------------------------------------------------

A family is **one map file and one registry line**.

The model side (``minitransformer/models/<family>.py``):

- a dataclass config with HF ``config.json`` field names, ``from_dict(d)`` (unknown keys kept) and
  ``to_dict()`` (including ``model_type`` and ``architectures``); subclass
  :class:`minitransformer.models.base.Config` to get both for free;
- a model class ``Model(config)`` (subclass :class:`minitransformer.models.base.PreTrainedModel` for
  ``.save_pretrained`` / ``.from_pretrained``) whose ``__init__`` only *creates* parameters and may
  initialise them (init is a no-op on ``meta``); it must not read parameter values in ``__init__``;
- tie weights by assigning the same ``nn.Parameter`` (``self.lm_head.weight = self.wte.weight``); the
  loader detects ties itself, so the map names only the source.

The map side (``minitransformer/loading/maps/<family>.py``) exports a :class:`WeightMap`, or a
function ``(config, architecture) -> WeightMap`` when the names depend on them::

    WEIGHT_MAP = WeightMap(
        rules=(
            rename("model.embed_tokens.weight", "model.embed_tokens.weight"),
            rename("model.layers.{i}.input_layernorm.weight", "model.layers.{i}.attn_norm.weight"),
            convert("transformer.h.{i}.attn.c_attn.weight",                       # HF name(s)
                    ("transformer.h.{i}.self_attn.q_proj.weight", "...k_proj...", "...v_proj..."),  # ours
                    FUSED_QKV_CONV1D),                                            # a named LayoutTransform
        ),
        hf_prefix="model.",        # added to every checkpoint key when none has it (a base-model save)
        task_heads=("lm_head",),   # our modules a base-model checkpoint lacks: initialised anew, reported
        ignore=(r"\\.attn\\.bias$",),  # regexes of checkpoint keys to drop silently (old buffers)
        load_aliases=((r"LayerNorm\\.gamma$", "LayerNorm.weight"),),  # old names -> current, loading only
    )

- ``{i}`` (and any ``{name}``) is a placeholder for a run of digits; the same value fills the
  other names of the rule.
- every tensor transform is a :class:`LayoutTransform`: a name, a docstring saying *why*, a
  ``to_ours`` and its inverse ``to_hf``. Transforms should return views when they can (a transpose, a
  split): loading then copies each tensor once, from the file into the parameter's own memory
  (step 6 above), and a transform that has to copy (a ``torch.cat``) adds a second, temporary one.
- each of our state-dict names must be produced by exactly one rule, and each checkpoint key consumed by
  one rule or ignored; anything else is reported in the :class:`LoadingError`.

The registry line (``minitransformer/loading/registry.py``)::

    register(Family(
        model_type="bert",
        config="minitransformer.models.bert:BertConfig",
        architectures={"BertModel": "minitransformer.models.bert:BERT",
                       "BertForMaskedLM": "minitransformer.models.bert:BertForMaskedLM"},
        weight_map="minitransformer.loading.maps.bert:weight_map",
        auto={"AutoModel": "BertModel", "AutoModelForMaskedLM": "BertForMaskedLM"},  # for loading/auto.py
    ))

Paths are ``"module:attribute"`` strings imported on first use, so the loading package never imports a
model file that is not used (and models may import ``loading`` without a cycle). The first
architecture listed is the default, used when ``config.json`` has none or an unknown one.
"""

from minitransformer.loading.auto import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
)
from minitransformer.loading.core import empty_weights, from_pretrained, load_weights, save_pretrained
from minitransformer.loading.errors import ConfigError, LoadingError
from minitransformer.loading.hub import resolve_checkpoint_dir
from minitransformer.loading.io import Checkpoint
from minitransformer.loading.registry import REGISTRY, Family, family_for_model, get_family, register
from minitransformer.loading.weight_map import (
    LayoutTransform,
    Rule,
    WeightMap,
    convert,
    rename,
)
from minitransformer.models.config_checks import check_config

__all__ = [
    "AutoConfig",
    "AutoModel",
    "AutoModelForCausalLM",
    "AutoModelForMaskedLM",
    "AutoModelForSeq2SeqLM",
    "AutoModelForSequenceClassification",
    "Checkpoint",
    "ConfigError",
    "Family",
    "LayoutTransform",
    "LoadingError",
    "REGISTRY",
    "Rule",
    "WeightMap",
    "check_config",
    "convert",
    "empty_weights",
    "family_for_model",
    "from_pretrained",
    "get_family",
    "load_weights",
    "register",
    "rename",
    "resolve_checkpoint_dir",
    "save_pretrained",
]
