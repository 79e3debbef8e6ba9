"""QLoRA: LoRA adapters on a quantized (NF4, int4, int8) base train, and the base does not change."""

from __future__ import annotations

import pytest
import torch

from minitransformer.lora import (
    LoRAQuantizedLinear,
    apply_lora,
    load_adapter,
    lora_layers,
    merge_lora,
    save_adapter,
    trainable_parameters,
)
from minitransformer.models import GPT2, GPT2Config, Llama, LlamaConfig
from minitransformer.quantization import quantize

SCHEMES = [(4, "nf4"), (4, "int4"), (8, "absmax")]


def base(family: str, bits: int, scheme: str):
    torch.manual_seed(0)
    if family == "gpt2":
        model = GPT2(GPT2Config.from_name("gpt2-tiny", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0))
    else:
        model = Llama(LlamaConfig.from_name("llama-tiny"))
    return quantize(model, bits=bits, scheme=scheme, group_size=32 if bits == 4 else None)


@pytest.mark.parametrize("bits, scheme", SCHEMES)
@pytest.mark.parametrize("family, targets", [("gpt2", ["c_attn", "c_proj", "c_fc"]),
                                             ("llama", ["q_proj", "v_proj", "down_proj"])])
def test_qlora_trains_the_adapters_and_leaves_the_quantized_base_alone(family, targets, bits, scheme):
    model = base(family, bits, scheme)
    ids = torch.randint(0, 256, (4, 24), generator=torch.Generator().manual_seed(1))  # (B, T)
    with torch.no_grad():
        before = model(ids).logits
    frozen = {k: v.clone() for k, v in model.state_dict().items()}
    apply_lora(model, r=4, alpha=8, target_modules=targets)
    layers = lora_layers(model)
    assert layers and all(isinstance(layer, LoRAQuantizedLinear) for layer in layers.values())
    with torch.no_grad():
        assert torch.equal(model(ids).logits, before)  # B = 0: exactly the quantized model
    trainable, total = trainable_parameters(model)
    assert trainable == sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(30):  # overfit one batch: the adapters alone must be able to lower the loss
        loss = model(ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.2, losses[::10]  # random tokens: a tiny rank-4 update learns slowly
    after = model.state_dict()
    for key, value in frozen.items():  # every quantized buffer, bias, norm and embedding is unchanged
        name = key if key in after else key.rsplit(".", 1)[0] + ".base." + key.rsplit(".", 1)[1]
        assert torch.equal(after[name], value), key


def test_a_qlora_adapter_saves_and_loads_onto_the_same_quantized_base(tmp_path):
    model = apply_lora(base("gpt2", 4, "nf4"), r=2, alpha=4, target_modules=["c_attn"])
    for layer in lora_layers(model).values():
        torch.nn.init.normal_(layer.lora_B.weight, std=0.1)  # a nonzero update, as after training
    save_adapter(model, tmp_path)
    other = load_adapter(base("gpt2", 4, "nf4"), tmp_path)
    ids = torch.randint(0, 256, (2, 10), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(model(ids).logits, other(ids).logits)
        assert not torch.equal(model(ids).logits, base("gpt2", 4, "nf4")(ids).logits)


def test_merging_into_a_quantized_weight_is_refused():
    model = apply_lora(base("llama", 4, "nf4"), r=2, alpha=4, target_modules=["q_proj"])
    with pytest.raises(ValueError, match="cannot merge into quantized weights.*Keep the adapter unmerged"):
        merge_lora(model)


def test_quantizing_a_model_with_adapters_is_refused():
    model = apply_lora(GPT2(GPT2Config.from_name("gpt2-tiny")), r=2, alpha=4, target_modules=["c_attn"])
    with pytest.raises(ValueError, match="carries LoRA adapters.*Quantize first, then apply_lora"):
        quantize(model, bits=8)
    assert lora_layers(model)  # untouched
