"""LoRA on our own models: the maths of the layer, freezing, merging, the file format, and every refusal."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from minitransformer.lora import (
    LoRALinear,
    apply_lora,
    load_adapter,
    lora_layers,
    lora_sites,
    merge_lora,
    save_adapter,
    trainable_parameters,
    unmerge_lora,
)
from minitransformer.models import BERT, GPT2, BertConfig, GPT2Config, Llama, LlamaConfig
from minitransformer.testing import assert_close, max_abs_diff, seed_weights

C = 32  # the width of every tiny preset used here
NO_DROPOUT = dict(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)


def gpt2(**overrides) -> GPT2:
    config = GPT2Config.from_name("gpt2-tiny", **{**NO_DROPOUT, **overrides})
    return seed_weights(GPT2(config), seed=0, std=0.1).eval()


def llama(**overrides) -> Llama:
    return seed_weights(Llama(LlamaConfig.from_name("llama-tiny", **overrides)), seed=0, std=0.1).eval()


def randomise_lora(model, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.copy_(0.1 * torch.randn(param.shape, generator=generator))


IDS = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6], [2, 7, 1, 8, 2, 8, 1, 8]])


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(IDS).logits


# ---- the layer ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("make, targets", [(gpt2, ["c_attn", "c_proj", "c_fc"]),
                                           (llama, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                    "up_proj", "down_proj"])])
def test_zero_B_leaves_the_output_unchanged(make, targets):
    base = logits(make())
    model = apply_lora(make(), r=4, alpha=8, target_modules=targets)
    assert all(torch.count_nonzero(layer.lora_B.weight) == 0 for layer in lora_layers(model).values())
    assert torch.count_nonzero(model.transformer.h[0].self_attn.q_proj.lora_A.weight if make is gpt2
                               else model.model.layers[0].self_attn.q_proj.lora_A.weight) > 0
    assert torch.equal(logits(model), base)


def test_update_is_scaled_by_alpha_over_r():
    model = apply_lora(llama(), r=3, alpha=6, target_modules=["q_proj"])
    randomise_lora(model)
    q = model.model.layers[0].self_attn.q_proj
    assert isinstance(q, LoRALinear) and q.scaling == 2.0
    x = torch.randn(2, 5, C, generator=torch.Generator().manual_seed(1))
    expected = F.linear(x, q.weight, q.bias) + 2.0 * (x @ q.lora_A.weight.T @ q.lora_B.weight.T)
    assert_close(q(x), expected, what="W x + (alpha / r) B A x")


def test_fused_c_attn_shares_one_A_and_one_B_split_in_row_blocks():
    model = apply_lora(gpt2(), r=4, alpha=4, target_modules=["c_attn"])
    attn = model.transformer.h[0].self_attn
    q, k, v = attn.q_proj, attn.k_proj, attn.v_proj
    assert q.lora_A is k.lora_A is v.lora_A and q.lora_B is k.lora_B is v.lora_B
    assert q.lora_A.weight.shape == (4, C) and q.lora_B.weight.shape == (3 * C, 4)  # PEFT's c_attn shapes
    assert (q.rows, k.rows, v.rows) == (slice(0, C), slice(C, 2 * C), slice(2 * C, 3 * C))
    randomise_lora(model)
    assert_close(k.delta_weight(), k.lora_B.weight[C:2 * C] @ k.lora_A.weight, what="k's block of B A")


def test_sites_use_peft_names():
    sites = {site.hf_name: site.ours for site in lora_sites(llama())}
    assert sites["model.layers.1.mlp.gate_proj"] == ("model.layers.1.mlp.gate_proj",)
    bert = {site.hf_name: site.ours for site in lora_sites(BERT(BertConfig.from_name("bert-tiny")))}
    assert bert["encoder.layer.0.attention.self.query"] == ("layers.0.self_attn.q_proj",)
    assert bert["encoder.layer.0.output.dense"] == ("layers.0.mlp.down_proj",)


# ---- freezing and counting ----------------------------------------------------------------------------


def test_only_lora_trains_and_the_count():
    model = gpt2()
    _, total = trainable_parameters(model)
    apply_lora(model, r=4, alpha=8, target_modules=["c_attn", "c_fc"])
    trainable_names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable_names and all(".lora_A." in n or ".lora_B." in n for n in trainable_names)
    # per layer: c_attn A (4, C) + B (3C, 4), shared by q, k, v; c_fc A (4, C) + B (4C, 4)
    per_layer = 4 * C + 3 * C * 4 + 4 * C + 4 * C * 4
    assert trainable_parameters(model) == (2 * per_layer, total + 2 * per_layer)


def test_optimizer_steps_change_only_lora_parameters():
    model = apply_lora(gpt2(), r=2, alpha=4, target_modules=["c_attn", "c_proj"]).train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.1)
    for _ in range(3):
        optimizer.zero_grad()
        model(IDS, labels=IDS).loss.backward()
        optimizer.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {n for n, p in model.named_parameters() if "lora_" in n}  # every A and B moved, nothing else


def test_dropout_acts_in_training_mode_only():
    model = apply_lora(gpt2(), r=4, alpha=8, target_modules=["c_fc"], dropout=0.5)
    randomise_lora(model)
    assert torch.equal(logits(model), logits(model))  # eval: deterministic
    model.train()
    torch.manual_seed(0)
    assert max_abs_diff(logits(model), logits(model)) > 1e-3  # train: the LoRA input is dropped
    model.eval()
    without = apply_lora(gpt2(), r=4, alpha=8, target_modules=["c_fc"])
    without.load_state_dict(model.state_dict())
    assert torch.equal(logits(model), logits(without))


# ---- merging ------------------------------------------------------------------------------------------


def test_merge_then_unmerge_restores_weights_and_merged_output_equals_unmerged():
    model = apply_lora(gpt2(), r=4, alpha=8, target_modules=["c_attn", "c_proj", "c_fc"])
    randomise_lora(model)
    weights = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}
    unmerged = logits(model)
    merge_lora(model)
    assert max_abs_diff(model.transformer.h[0].self_attn.v_proj.weight, weights["transformer.h.0.self_attn.v_proj.weight"]) > 1e-3
    assert_close(logits(model), unmerged, what="merged vs unmerged logits")
    unmerge_lora(model)
    for name, param in model.named_parameters():
        if name in weights:
            assert max_abs_diff(param, weights[name]) <= 1e-6, name
    assert_close(logits(model), unmerged, what="unmerged again")


def test_merge_twice_and_unmerge_unmerged_are_refused():
    model = apply_lora(llama(), r=2, alpha=2, target_modules=["q_proj"])
    with pytest.raises(ValueError, match="not merged.*merge_lora"):
        unmerge_lora(model)
    merge_lora(model)
    with pytest.raises(ValueError, match="already merged.*unmerge_lora"):
        merge_lora(model)
    with pytest.raises(ValueError, match="no LoRA layers.*apply_lora"):
        merge_lora(llama())


def test_merge_into_a_tied_head_is_refused():
    model = apply_lora(gpt2(), r=2, alpha=2, target_modules=["lm_head"])  # lm_head is wte (tied)
    with pytest.raises(ValueError, match="tied weights.*lm_head.weight"):
        merge_lora(model)


# ---- bad input ----------------------------------------------------------------------------------------


def test_unknown_target_lists_the_names_that_exist():
    with pytest.raises(ValueError, match=r"\['q_proj'\] match no linear layer of GPT2.*c_attn, c_fc, c_proj, lm_head"):
        apply_lora(gpt2(), r=4, alpha=8, target_modules=["c_attn", "q_proj"])
    with pytest.raises(ValueError, match="query, value"):
        apply_lora(BERT(BertConfig.from_name("bert-tiny")), r=4, alpha=8, target_modules=["c_attn"])


@pytest.mark.parametrize("r", [0, -2, 2.5, True])
def test_bad_rank(r):
    with pytest.raises(ValueError, match="r .*positive int"):
        apply_lora(gpt2(), r=r, alpha=8, target_modules=["c_attn"])


def test_bad_dropout():
    with pytest.raises(ValueError, match=r"dropout.*\[0, 1\)"):
        apply_lora(gpt2(), r=2, alpha=8, target_modules=["c_attn"], dropout=1.0)


def test_applying_twice_on_a_module_is_refused_and_changes_nothing():
    model = apply_lora(gpt2(), r=2, alpha=4, target_modules=["c_attn"])
    with pytest.raises(ValueError, match="already applied to transformer.h.0.self_attn.q_proj"):
        apply_lora(model, r=2, alpha=4, target_modules=["c_fc", "c_attn"])
    assert not any(isinstance(m, LoRALinear) for m in model.transformer.h[0].mlp.modules())
    apply_lora(model, r=2, alpha=4, target_modules=["c_fc"])  # another module, same settings: fine
    assert model.lora_config.target_modules == ["c_attn", "c_fc"]
    with pytest.raises(ValueError, match="already has a LoRA adapter with r=2"):
        apply_lora(model, r=8, alpha=4, target_modules=["c_proj"])


# ---- the file format ----------------------------------------------------------------------------------


def test_save_writes_peft_names_and_config(tmp_path):
    model = apply_lora(gpt2(), r=4, alpha=8, target_modules=["c_attn", "c_fc"], dropout=0.1)
    save_adapter(model, tmp_path, base_model_name_or_path="openai-community/gpt2")
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert {k: config[k] for k in ("peft_type", "r", "lora_alpha", "lora_dropout", "target_modules", "bias",
                                   "fan_in_fan_out", "task_type", "base_model_name_or_path")} == dict(
        peft_type="LORA", r=4, lora_alpha=8, lora_dropout=0.1, target_modules=["c_attn", "c_fc"], bias="none",
        fan_in_fan_out=True, task_type="CAUSAL_LM", base_model_name_or_path="openai-community/gpt2")
    tensors = load_file(str(tmp_path / "adapter_model.safetensors"))
    assert {k: tuple(v.shape) for k, v in tensors.items() if ".h.0." in k} == {
        "base_model.model.transformer.h.0.attn.c_attn.lora_A.weight": (4, C),
        "base_model.model.transformer.h.0.attn.c_attn.lora_B.weight": (3 * C, 4),
        "base_model.model.transformer.h.0.mlp.c_fc.lora_A.weight": (4, C),
        "base_model.model.transformer.h.0.mlp.c_fc.lora_B.weight": (4 * C, 4),
    }


@pytest.mark.parametrize("make, targets", [(gpt2, ["c_attn", "c_proj"]), (llama, ["q_proj", "down_proj"])])
def test_save_load_round_trip(tmp_path, make, targets):
    model = apply_lora(make(), r=3, alpha=5, target_modules=targets)
    randomise_lora(model)
    save_adapter(model, tmp_path)
    loaded = load_adapter(make(), tmp_path)
    assert torch.equal(logits(loaded), logits(model))
    assert trainable_parameters(loaded) == trainable_parameters(model)


def test_adapter_of_a_base_model_without_the_head_prefix_loads(tmp_path):
    """PEFT on GPT2Model (no LM head) names ``h.0.attn.c_attn``, without ``transformer.``."""
    model = apply_lora(gpt2(), r=2, alpha=2, target_modules=["c_attn"])
    randomise_lora(model)
    save_adapter(model, tmp_path)
    path = tmp_path / "adapter_model.safetensors"
    tensors = {k.replace("model.transformer.", "model."): v for k, v in load_file(str(path)).items()}
    save_file(tensors, str(path))
    assert torch.equal(logits(load_adapter(gpt2(), tmp_path)), logits(model))


def test_gpt2_adapter_onto_llama_is_refused(tmp_path):
    save_adapter(apply_lora(gpt2(), r=2, alpha=2, target_modules=["c_attn", "c_fc"]), tmp_path)
    with pytest.raises(ValueError, match=r"match no linear layer of Llama.*q_proj.*another architecture"):
        load_adapter(llama(), tmp_path)


def test_adapter_of_another_width_is_refused_and_changes_nothing(tmp_path):
    save_adapter(apply_lora(gpt2(n_embd=64), r=2, alpha=2, target_modules=["c_attn"]), tmp_path)
    model = gpt2()
    with pytest.raises(ValueError, match=r"c_attn.lora_A.weight: adapter has \(2, 64\), GPT2 needs \(2, 32\)"):
        load_adapter(model, tmp_path)
    assert not lora_layers(model)


def test_missing_and_unexpected_keys_are_named(tmp_path):
    save_adapter(apply_lora(gpt2(), r=2, alpha=2, target_modules=["c_attn"]), tmp_path)
    path = tmp_path / "adapter_model.safetensors"
    tensors = load_file(str(path))
    tensors.pop("base_model.model.transformer.h.1.attn.c_attn.lora_B.weight")
    tensors["base_model.model.transformer.h.7.attn.c_attn.lora_A.weight"] = torch.zeros(2, C)
    save_file(tensors, str(path))
    with pytest.raises(ValueError, match=r"missing: .*h\.1\.attn\.c_attn\.lora_B\.weight\n  unexpected: .*h\.7\."):
        load_adapter(gpt2(), tmp_path)


def test_loading_onto_an_adapted_model_is_refused(tmp_path):
    model = apply_lora(gpt2(), r=2, alpha=2, target_modules=["c_attn"])
    save_adapter(model, tmp_path)
    with pytest.raises(ValueError, match="already has LoRA layers"):
        load_adapter(model, tmp_path)


def test_bad_adapter_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no adapter_config.json"):
        load_adapter(gpt2(), tmp_path)
    save_adapter(apply_lora(gpt2(), r=2, alpha=2, target_modules=["c_attn"]), tmp_path)
    (tmp_path / "adapter_model.safetensors").rename(tmp_path / "adapter_model.bin")
    with pytest.raises(FileNotFoundError, match="adapter_model.bin.*safe_serialization=True"):
        load_adapter(gpt2(), tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    for change, message in [(dict(use_dora=True), "use_dora=True.*merge_and_unload"),
                            (dict(peft_type="IA3"), "'IA3' adapter"), (dict(r=0), "positive int")]:
        (tmp_path / "adapter_config.json").write_text(json.dumps({**config, **change}))
        with pytest.raises(ValueError, match=message):
            load_adapter(gpt2(), tmp_path)


def test_a_link_out_of_the_adapter_directory_is_refused(tmp_path):
    save_adapter(apply_lora(gpt2(), r=2, alpha=2, target_modules=["c_attn"]), tmp_path / "elsewhere")
    (tmp_path / "adapter").mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (tmp_path / "adapter" / name).symlink_to(tmp_path / "elsewhere" / name)
    with pytest.raises(Exception, match="outside the checkpoint directory"):
        load_adapter(gpt2(), tmp_path / "adapter")
