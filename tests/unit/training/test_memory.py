"""The memory formula of training/memory.py against a measurement of the same model, byte for byte."""

from __future__ import annotations

import doctest

import pytest
import torch

import minitransformer.training.memory as memory
from minitransformer.models import GPT2, GPT2Config, Llama, LlamaConfig
from minitransformer.training.memory import TrainingMemory, measure_training_memory, training_memory
from minitransformer.training.trainer import enable_activation_checkpointing

NO_DROPOUT = dict(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
CONFIGS = {
    "gpt2": GPT2Config.from_name("gpt2-tiny", n_embd=64, n_head=4, n_layer=3, vocab_size=300, **NO_DROPOUT),
    "gpt2 n_inner": GPT2Config.from_name("gpt2-tiny", n_embd=48, n_head=2, n_layer=2, n_inner=80, vocab_size=200,
                                         **NO_DROPOUT),
    "llama gqa": LlamaConfig.from_name("llama-tiny", hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                                       intermediate_size=96, num_hidden_layers=3, vocab_size=300),
    "llama mqa head_dim tied": LlamaConfig.from_name(
        "llama-tiny", hidden_size=64, num_attention_heads=4, num_key_value_heads=1, head_dim=24,
        intermediate_size=96, num_hidden_layers=2, vocab_size=300, tie_word_embeddings=True),
}


def build(config, attn_implementation, checkpointing):
    torch.manual_seed(0)
    model = (GPT2 if isinstance(config, GPT2Config) else Llama)(config, attn_implementation=attn_implementation)
    if checkpointing:
        enable_activation_checkpointing(model)
    return model


@pytest.mark.parametrize("checkpointing", [False, True], ids=["kept", "checkpointed"])
@pytest.mark.parametrize("attn_implementation", ["sdpa", "math"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_the_prediction_equals_the_measurement_to_the_byte(name, attn_implementation, checkpointing):
    config = CONFIGS[name]
    model = build(config, attn_implementation, checkpointing)
    measured = measure_training_memory(model, 3, 20)
    predicted = training_memory(config, 3, 20, attn_implementation=attn_implementation,
                                activation_checkpointing=checkpointing)
    for field in ("weights", "gradients", "optimizer_state", "activations"):
        assert getattr(predicted, field) == getattr(measured, field), field
    assert (predicted.recompute > 0) == checkpointing


def test_the_formula_holds_at_other_shapes_and_scales_as_it_should():
    config = CONFIGS["gpt2"]
    for B, T in ((1, 7), (5, 33)):
        assert training_memory(config, B, T).activations == measure_training_memory(build(config, "sdpa", False),
                                                                                    B, T).activations
    # Twice the batch: the state is unchanged, the activations double but for the (T, T) masks per layer.
    one, two = training_memory(config, 4, 32), training_memory(config, 8, 32)
    assert (one.weights, one.gradients, one.optimizer_state) == (two.weights, two.gradients, two.optimizer_state)
    fixed = config.n_layer * (32 * 32 * 4 + 32) + 32 * 8 + 4  # masks per layer; the (1, T) positions; the loss
    assert two.activations - fixed == 2 * (one.activations - fixed)
    # 16 bytes per parameter before the first token: weights 4, gradients 4, AdamW 8 (+ a step per tensor).
    n, tensors = memory.count_parameters(config)
    assert one.weights + one.gradients + one.optimizer_state == 16 * n + 4 * tensors


def test_checkpointing_keeps_one_input_per_block_and_recomputes_one_block():
    config = GPT2Config.from_name("gpt2", **NO_DROPOUT)  # 124M, never built: the parameter count uses meta tensors
    kept = training_memory(config, 4, 64)
    checkpointed = training_memory(config, 4, 64, activation_checkpointing=True)
    assert round(kept.weights / 1e6) == 498 and kept.optimizer_state == pytest.approx(2 * kept.weights, rel=1e-4)
    assert checkpointed.activations < kept.activations / 3
    assert checkpointed.recompute == (kept.activations - (checkpointed.activations - 12 * 4 * 64 * 768 * 4)) / 12
    assert checkpointed.total < kept.total
    assert "activations" in kept.format() and "one block recomputed" in checkpointed.format()


def test_bad_input_says_what_to_do():
    with pytest.raises(ValueError, match=r"without dropout.*resid_pdrop.*measure_training_memory"):
        training_memory(GPT2Config.from_name("gpt2-tiny"), 2, 8)  # GPT-2's dropout defaults to 0.1
    with pytest.raises(ValueError, match="GPT2Config and LlamaConfig, got dict"):
        training_memory({"n_embd": 8}, 2, 8)
    with pytest.raises(ValueError, match="'sdpa' or 'math'"):
        training_memory(CONFIGS["gpt2"], 2, 8, attn_implementation="flash")
    with pytest.raises(ValueError, match="at least 1"):
        training_memory(CONFIGS["gpt2"], 0, 8)


def test_the_docstring_example_runs():
    assert doctest.testmod(memory, raise_on_error=False).failed == 0
    assert TrainingMemory(1, 2, 3, 4, 5).total == 15
