"""LoRA against PEFT: adapters move both ways between our models and peft on transformers' models.

For each case a tiny transformers model with seeded weights is saved and loaded into ours. Then
(a) peft adapts the HF model, its A and B are set to random values (B is zero at init, which would
prove nothing), ``save_pretrained`` writes the adapter, our ``load_adapter`` reads it; and (b) our
``apply_lora`` + random A, B + ``save_adapter``, read by ``PeftModel.from_pretrained``. Each time the
outputs agree within the fp32 policy (1e-5), unmerged and merged.
"""

from __future__ import annotations

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from minitransformer.loading import from_pretrained  # noqa: E402
from minitransformer.lora import (  # noqa: E402
    apply_lora,
    load_adapter,
    lora_layers,
    merge_lora,
    save_adapter,
    trainable_parameters,
)
from minitransformer.testing import assert_close, max_abs_diff, seed_weights  # noqa: E402

pytestmark = pytest.mark.parity

VOCAB = 97
GPT2 = dict(vocab_size=VOCAB, n_positions=32, n_embd=32, n_layer=2, n_head=4, bos_token_id=0, eos_token_id=0)
LLAMA = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=64, bos_token_id=0, eos_token_id=0)
BERT = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
            max_position_embeddings=32)
LLAMA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

#: case -> (transformers config, model class, target_modules, the outputs to compare, task_type)
CASES = {
    "gpt2_c_attn": ("GPT2Config", GPT2, "GPT2LMHeadModel", ["c_attn"], ("logits",), "CAUSAL_LM"),
    "gpt2_c_proj_c_fc": ("GPT2Config", GPT2, "GPT2LMHeadModel", ["c_proj", "c_fc"], ("logits",), "CAUSAL_LM"),
    "llama_all": ("LlamaConfig", LLAMA, "LlamaForCausalLM", LLAMA_TARGETS, ("logits",), "CAUSAL_LM"),
    "bert": ("BertConfig", BERT, "BertModel", ["query", "key", "value", "dense"],
             ("last_hidden_state", "pooler_output"), "FEATURE_EXTRACTION"),
    "bert_mlm": ("BertConfig", BERT, "BertForMaskedLM", ["query", "value", "dense"], ("logits",), None),
}


@pytest.fixture(scope="module", params=list(CASES))
def case(request, tmp_path_factory):
    """(name, base checkpoint directory) of a tiny transformers model with seeded weights."""
    config_class, kwargs, model_class, *_ = CASES[request.param]
    config = getattr(transformers, config_class)(**kwargs)
    hf = seed_weights(getattr(transformers, model_class)(config), seed=1, std=0.1, norm_std=0.1)
    directory = tmp_path_factory.mktemp(request.param)
    hf.save_pretrained(directory)
    return request.param, directory


def hf_model(name, directory):
    model_class = CASES[name][2]
    return getattr(transformers, model_class).from_pretrained(directory, attn_implementation="eager").eval()


def randomise_lora(model, seed: int) -> None:
    """A and B from a seeded N(0, 0.1), in the order of their (PEFT or our) names."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                param.copy_(0.1 * torch.randn(param.shape, generator=generator))


def compare(name, ours, theirs, what) -> float:
    ids = torch.randint(1, VOCAB, (2, 9), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        a, b = ours(ids), theirs(input_ids=ids)
    worst = 0.0
    for field in CASES[name][4]:
        assert_close(getattr(a, field), getattr(b, field), what=f"{name} {what} {field}")
        worst = max(worst, max_abs_diff(getattr(a, field), getattr(b, field)))
    print(f"{name} {what}: max abs diff {worst:.2e}")
    return worst


def test_peft_adapter_loads_into_ours(case, tmp_path):
    """(a) peft -> ours."""
    name, directory = case
    targets = CASES[name][3]
    config = peft.LoraConfig(r=4, lora_alpha=12, lora_dropout=0.05, target_modules=targets,
                             task_type=CASES[name][5], fan_in_fan_out=name.startswith("gpt2"))
    peft_model = peft.get_peft_model(hf_model(name, directory), config)
    randomise_lora(peft_model, seed=7)
    peft_model.save_pretrained(tmp_path)
    ours = load_adapter(from_pretrained(directory), tmp_path).eval()
    base = from_pretrained(directory).eval()

    # The adapter changes the outputs (else the comparisons below would prove nothing) ...
    ids = torch.randint(1, VOCAB, (1, 5), generator=torch.Generator().manual_seed(0))
    field = CASES[name][4][0]
    assert max_abs_diff(getattr(ours(ids), field), getattr(base(ids), field)) > 1e-2
    # ... and ours with it equals peft's, with the same trainable count.
    assert trainable_parameters(ours) == peft_model.get_nb_trainable_parameters()
    peft_model.eval()
    compare(name, ours, peft_model, "peft->ours")
    compare(name, merge_lora(ours), peft_model.merge_and_unload(), "peft->ours merged")


def test_our_adapter_loads_into_peft(case, tmp_path):
    """(b) ours -> peft."""
    name, directory = case
    targets = CASES[name][3]
    ours = apply_lora(from_pretrained(directory), r=6, alpha=3, target_modules=targets, dropout=0.1).eval()
    randomise_lora(ours, seed=11)
    save_adapter(ours, tmp_path, base_model_name_or_path=str(directory))
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], config["task_type"]) == (6, 3, CASES[name][5])
    assert config["fan_in_fan_out"] == name.startswith("gpt2")

    theirs = peft.PeftModel.from_pretrained(hf_model(name, directory), tmp_path).eval()
    peft_layers = [n for n, m in theirs.named_modules() if isinstance(m, peft.tuners.lora.LoraLayer)]
    # GPT-2's c_attn: one PEFT layer for our three (q, k, v) LoRA layers.
    assert len(peft_layers) == len({id(layer.lora_B) for layer in lora_layers(ours).values()})
    compare(name, ours, theirs, "ours->peft")
    compare(name, merge_lora(ours), theirs.merge_and_unload(), "ours->peft merged")


def test_peft_reads_our_fused_c_attn_layout(tmp_path):
    """The fused layout itself: our q's update is rows 0..C of PEFT's c_attn update, k's C..2C, v's 2C..3C."""
    hf = seed_weights(transformers.GPT2LMHeadModel(transformers.GPT2Config(**GPT2)), seed=2, std=0.1)
    hf.save_pretrained(tmp_path / "base")
    ours = apply_lora(from_pretrained(tmp_path / "base"), r=2, alpha=2, target_modules=["c_attn"])
    randomise_lora(ours, seed=5)
    save_adapter(ours, tmp_path / "adapter")
    theirs = peft.PeftModel.from_pretrained(hf, tmp_path / "adapter")
    c_attn = theirs.base_model.model.transformer.h[0].attn.c_attn
    delta = c_attn.get_delta_weight("default")  # Conv1D layout (C, 3C): fan_in_fan_out transposes it
    attn = ours.transformer.h[0].self_attn
    C = GPT2["n_embd"]
    for i, proj in enumerate((attn.q_proj, attn.k_proj, attn.v_proj)):
        assert_close(proj.delta_weight(), delta[:, i * C:(i + 1) * C].T, what=f"c_attn block {i}")
