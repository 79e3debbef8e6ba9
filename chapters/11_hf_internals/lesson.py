# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 11: HuggingFace internals
#
# `from_pretrained("openai-community/gpt2")` hides four things, each a plain file format or a plain
# folder layout:
#
# 1. **safetensors**: how the weights are stored. We read a file with `open`, `struct` and numpy.
# 2. **config.json**: the hyperparameters, and the `model_type` that says which code to run.
# 3. **sharding**: big checkpoints split over several files, with an index saying which holds what.
# 4. **the Auto registry** and **the hub cache**: how a name becomes a class, and how a repo id
#    becomes a folder on disk.
#
# Everything runs offline: the checkpoints are tiny random models that transformers builds and
# saves in a temporary folder, and the hub cache is laid out by hand. Run it with
# `python lesson.py`; grade the exercises with `minitransformer check 11`.

# %%
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before huggingface_hub is imported: this lesson never reaches the network

import hashlib
import json
import struct
import tempfile
from pathlib import Path

import numpy as np
import torch
import transformers
from huggingface_hub import snapshot_download, try_to_load_from_cache
from safetensors import safe_open
from safetensors.torch import save_file

import minitransformer
from minitransformer.loading import REGISTRY, Checkpoint, get_family
from minitransformer.testing import max_abs_diff

transformers.logging.set_verbosity_error()
transformers.logging.disable_progress_bar()
torch.manual_seed(0)
workdir = tempfile.TemporaryDirectory()  # removed at the end
tmp = Path(workdir.name)

# %% [markdown]
# ## 1. A safetensors file, byte by byte
#
# ```text
# [ 8 bytes: N, u64 little-endian ][ N bytes: JSON header ][ the tensors' bytes, end to end ]
# ```
#
# The header maps each name to its `dtype`, `shape` and `data_offsets` [begin, end), counted from
# the first byte after the header; an optional `"__metadata__"` holds string pairs. That is the
# whole format. Two consequences:
#
# - **Safe.** Loading is reading numbers: nothing is executed. A `.bin` checkpoint is a pickle, and
#   unpickling can run any code the file's author chose (hence `torch.load(weights_only=True)`).
# - **Fast.** A tensor's bytes sit at a known offset in their final layout, so the file can be
#   memory-mapped and a tensor used in place, without reading the rest (lazy, zero-copy loading).

# %%
tensors = {
    "embed.weight": torch.randn(4, 3),
    "norm.weight": torch.ones(3, dtype=torch.bfloat16),
    "position_ids": torch.arange(5),
}
path = tmp / "small.safetensors"
save_file(tensors, str(path), metadata={"format": "pt"})
raw = path.read_bytes()
(n,) = struct.unpack("<Q", raw[:8])  # '<' little-endian, 'Q' unsigned 64-bit
header = json.loads(raw[8 : 8 + n])
print(f"file: {len(raw)} bytes, header: {n} bytes (a multiple of 8: {n % 8 == 0}, padded with spaces)")
for name, entry in header.items():
    print(f"  {name:14} {entry}")

# %% [markdown]
# The bytes of `embed.weight`: 12 float32 values, 48 bytes, little-endian. numpy reads them, torch
# takes them over. numpy has no bfloat16, but a bfloat16 is just 16 bits: read them as int16 and
# let torch reinterpret the same bits (`.view(torch.bfloat16)`).

# %%
data_start = 8 + n
begin, end = header["embed.weight"]["data_offsets"]
embed = torch.from_numpy(np.frombuffer(raw[data_start + begin : data_start + end], dtype="<f4").copy())
embed = embed.reshape(header["embed.weight"]["shape"])  # (48 bytes,) -> (12,) -> (4, 3)
begin, end = header["norm.weight"]["data_offsets"]
norm = torch.from_numpy(np.frombuffer(raw[data_start + begin : data_start + end], dtype="<i2").copy())
norm = norm.view(torch.bfloat16)  # the same 16 bits, read as bfloat16
with safe_open(str(path), framework="pt") as f:
    print("embed.weight equal to safe_open's:", torch.equal(embed, f.get_tensor("embed.weight")))
    print("norm.weight  equal to safe_open's:", torch.equal(norm, f.get_tensor("norm.weight")), norm.dtype)
    print("safe_open's metadata:", f.metadata())

# %% [markdown]
# ## 2. config.json
#
# transformers' `save_pretrained` writes the hyperparameters next to the weights. The fields that
# matter for loading are `model_type` (which family of code) and `architectures` (which class in
# it, with which head). The rest are the family's own names: GPT-2 says `n_embd`, LLaMA says
# `hidden_size`. Our dataclass configs use the same names, so `GPT2Config.from_dict` needs no
# translation table; fields it does not know (token ids, task parameters...) are kept in `extra` so
# that saving writes them back.

# %%
hf_model = transformers.GPT2LMHeadModel(transformers.GPT2Config(
    vocab_size=100, n_positions=32, n_embd=32, n_layer=2, n_head=4, bos_token_id=0, eos_token_id=0)).eval()
hf_model.save_pretrained(tmp / "tiny-gpt2")
print(sorted(p.name for p in (tmp / "tiny-gpt2").iterdir()))
config_json = json.loads((tmp / "tiny-gpt2" / "config.json").read_text())
for key in ("model_type", "architectures", "vocab_size", "n_positions", "n_embd", "n_layer", "n_head",
            "activation_function", "layer_norm_epsilon", "dtype"):
    print(f"  {key:20} {config_json.get(key)!r}")

family = get_family(config_json["model_type"])
ours_config = family.config_class().from_dict(config_json)
print("ours:", type(ours_config).__name__, "n_embd =", ours_config.n_embd, " kept in extra:", sorted(ours_config.extra)[:6])

# %% [markdown]
# `generation_config.json` holds the defaults of `generate` (token ids, sampling settings); the
# model itself does not need it.
#
# ## 3. Sharding
#
# Hub files are easier to upload, download and resume in pieces, and a loader can start on the
# first shard before the last one arrives. `save_pretrained(max_shard_size=...)` cuts the weights
# into files of at most that size and writes `model.safetensors.index.json`: the total size and,
# for every tensor, its file. Here 20 KB is absurdly small so that a tiny model is cut in pieces;
# real checkpoints use a few GB.

# %%
hf_model.save_pretrained(tmp / "tiny-gpt2-sharded", max_shard_size="20KB")
index = json.loads((tmp / "tiny-gpt2-sharded" / "model.safetensors.index.json").read_text())
print("metadata:", index["metadata"])
for name in ("transformer.wte.weight", "transformer.h.0.attn.c_attn.weight", "transformer.ln_f.weight"):
    print(f"  {name:36} -> {index['weight_map'][name]}")
print("shards:", sorted(p.name for p in (tmp / "tiny-gpt2-sharded").glob("*.safetensors")))

# %% [markdown]
# Our `Checkpoint` (`loading/io.py`) reads the index and opens every shard, so the rest of the
# loader sees one name -> tensor mapping; the sharded and the single-file checkpoints load into the
# same model.

# %%
with Checkpoint(tmp / "tiny-gpt2-sharded") as ckpt:
    print(len(ckpt.files), "files,", len(ckpt.keys()), "tensors")
ids = torch.randint(0, 100, (1, 8))
single = minitransformer.from_pretrained(tmp / "tiny-gpt2")
sharded = minitransformer.from_pretrained(tmp / "tiny-gpt2-sharded")
with torch.no_grad():
    reference = hf_model(ids).logits
    print("single file vs transformers:", max_abs_diff(single(ids).logits, reference),
          "  sharded vs transformers:", max_abs_diff(sharded(ids).logits, reference))

# %% [markdown]
# ## 4. From a name to a class: the Auto registry, and ours
#
# `AutoModelForCausalLM.from_pretrained(folder)` reads `config.json`, looks `model_type` up in
# `CONFIG_MAPPING` to build the config class, then looks the config class up in a per-task mapping
# (`MODEL_FOR_CAUSAL_LM_MAPPING`, `MODEL_FOR_MASKED_LM_MAPPING`...) to find the model class. The
# mappings are lazy: a model file is imported only when its name is asked for.

# %%
from transformers.models.auto import configuration_auto, modeling_auto

print("CONFIG_MAPPING['gpt2']                ->", configuration_auto.CONFIG_MAPPING["gpt2"].__name__)
print("MODEL_FOR_CAUSAL_LM_MAPPING_NAMES['gpt2'] ->", modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES["gpt2"])
print("MODEL_FOR_MASKED_LM_MAPPING_NAMES['bert'] ->", modeling_auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES["bert"])
print("AutoModelForCausalLM picks:", type(transformers.AutoModelForCausalLM.from_pretrained(tmp / "tiny-gpt2")).__name__)

# %% [markdown]
# Ours (`loading/registry.py`) is one dictionary: `model_type` -> a `Family` with its config
# class, its model classes by architecture name (the first is the default), and its weight map.
# Classes are named by `"module:Class"` strings and imported on first use, as transformers does.
# Then `from_pretrained` (`loading/core.py`): resolve the folder, read `config.json`, build the
# model on the `meta` device (no memory, no random init), map the checkpoint's names through the
# family's weight map, and assign each tensor as a parameter.

# %%
for model_type, fam in REGISTRY.items():
    print(f"  {model_type:8} {list(fam.architectures)}")
architecture, cls = family.model_class(config_json["architectures"])
print("gpt2 +", config_json["architectures"], "->", architecture, "->", cls.__name__)
try:
    get_family("mamba")
except ValueError as err:
    print("ValueError:", err)

# %% [markdown]
# ## 5. The hub cache
#
# `snapshot_download("org/name")` downloads into `$HF_HOME/hub` (default `~/.cache/huggingface/hub`):
#
# ```text
# models--org--name/
#     blobs/<sha256 of the content>      every file's bytes, once, named by hash
#     snapshots/<commit>/config.json     one folder per commit: links into blobs/
#     refs/main                          a text file: the commit the branch "main" points to
# ```
#
# Two commits that share a file share its blob; a branch moving to a new commit only rewrites its
# ref. We lay a cache out by hand: the tiny model as commit `aaaa...` on `main`, and a second model
# as commit `bbbb...` tagged `v2`.

# %%
hf_home = tmp / "hf_home"


def lay_out(repo_id: str, commit: str, source: Path, refs: list[str]) -> None:
    repo = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir(exist_ok=True)
    for file in sorted(source.iterdir()):
        data = file.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / file.name).symlink_to(os.path.relpath(blob, snapshot))  # ../../blobs/<sha>
    (repo / "refs").mkdir(exist_ok=True)
    for ref in refs:
        (repo / "refs" / ref).write_text(commit)


other = transformers.GPT2LMHeadModel(hf_model.config).eval()  # same config, other random weights
other.save_pretrained(tmp / "other")
lay_out("some-org/tiny-gpt2", "a" * 40, tmp / "tiny-gpt2", ["main"])
lay_out("some-org/tiny-gpt2", "b" * 40, tmp / "other", ["v2"])
repo_dir = hf_home / "hub" / "models--some-org--tiny-gpt2"
print(repo_dir.relative_to(hf_home) / "")
for p in sorted(repo_dir.rglob("*")):
    if p.is_symlink():
        what = "-> " + os.readlink(p)[:24] + "..."
    elif p.parent.name == "refs":
        what = "holds " + p.read_text()[:8] + "..."
    elif p.is_file():
        what = f"{p.stat().st_size} bytes"
    else:
        continue
    shown = str(p.relative_to(repo_dir)).replace("a" * 40, "aaaa...").replace("b" * 40, "bbbb...")
    print(f"  {shown[:40]:40} {what}")

# %% [markdown]
# huggingface_hub resolves ids through refs to snapshots, offline, and so does our `from_pretrained`
# (it reads `HF_HOME` and `HF_HUB_OFFLINE` at call time and hands the id to `snapshot_download`).

# %%
cache = hf_home / "hub"
print(snapshot_download("some-org/tiny-gpt2", cache_dir=cache, local_files_only=True))
print(try_to_load_from_cache("some-org/tiny-gpt2", "config.json", cache_dir=cache, revision="v2"))

saved = {k: os.environ.get(k) for k in ("HF_HOME", "HF_HUB_CACHE")}
os.environ["HF_HOME"] = str(hf_home)
os.environ.pop("HF_HUB_CACHE", None)
try:
    main = minitransformer.from_pretrained("some-org/tiny-gpt2")
    v2 = minitransformer.from_pretrained("some-org/tiny-gpt2", revision="v2")
    with torch.no_grad():
        print("main vs the first model:", max_abs_diff(main(ids).logits, hf_model(ids).logits),
              "  v2 vs the second:", max_abs_diff(v2(ids).logits, other(ids).logits))
    try:
        minitransformer.from_pretrained("some-org/not-cached")
    except FileNotFoundError as err:
        print("FileNotFoundError:", err)
finally:  # leave the environment as we found it (this matters in a notebook)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value

# %%
workdir.cleanup()

# %% [markdown]
# ## Your turn
# Open `exercises_11.py` and implement 11.1 to 11.6: the header, a tensor from raw bytes, the shard
# of a tensor, a snapshot folder from a ref, the class for a config, and a safetensors writer that
# transformers loads. `minitransformer check 11` compares each with safetensors, huggingface_hub
# and transformers.
#
# From this notebook, `minitransformer.check("11")` prints the same lines (it reads your file
# afresh each time), and `from exercises_11 import ...` brings your functions here to try
# them on the tensors above.
