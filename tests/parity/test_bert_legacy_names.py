"""Old BERT checkpoints (the original ``bert-base-uncased``) name LayerNorm parameters gamma / beta.

A tiny transformers BertModel saved under those names loads through our map's ``load_aliases`` and
gives transformers' outputs.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

transformers = pytest.importorskip("transformers")

import minitransformer  # noqa: E402
from minitransformer.testing import assert_close, seed_weights  # noqa: E402

pytestmark = pytest.mark.parity


def test_gamma_beta_names_load(tmp_path):
    config = transformers.BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=37, max_position_embeddings=24)
    hf = seed_weights(transformers.BertModel(config), seed=0, std=0.1).eval()  # gamma != 1, beta != 0
    legacy = {name.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"):
              t.contiguous() for name, t in hf.state_dict().items()}
    assert sum(".gamma" in n for n in legacy) == 1 + 2 * config.num_hidden_layers  # embeddings + 2 per layer
    assert not any("LayerNorm.weight" in n for n in legacy)
    save_file(legacy, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    (tmp_path / "config.json").write_text(json.dumps(config.to_dict()))

    ours = minitransformer.from_pretrained(tmp_path)

    ids = torch.tensor([[2, 7, 19, 45, 3, 0], [2, 11, 98, 3, 0, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        expected = hf(ids, attention_mask=mask)
        got = ours(ids, attention_mask=mask)
    assert_close(got.last_hidden_state, expected.last_hidden_state, atol=1e-5, rtol=0)
    assert_close(got.pooler_output, expected.pooler_output, atol=1e-5, rtol=0)
