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
# # Chapter 7: GPT-2
#
# GPT-2 (Radford et al., 2019) is the decoder-only transformer most later models copy: token and
# learned position embeddings, a stack of pre-norm blocks with causal self-attention, a final
# LayerNorm, and an output head that reuses the token embedding. Every piece is already in the
# library (chapters 2 to 5); `minitransformer/models/gpt2.py` only assembles them.
#
# This chapter:
#
# 1. builds GPT-2 from the shared layers and counts the 124M model's parameters without allocating them;
# 2. has transformers build a tiny random `GPT2LMHeadModel`, saves it, loads it with our
#    `from_pretrained`, and shows the two give the same logits;
# 3. explains the two layout changes the loader makes: the Conv1D transpose and the `c_attn` split;
# 4. writes greedy generation as a ten-line loop and compares it, token for token, with
#    transformers' `generate(do_sample=False)`;
# 5. shows the pitfall of a left-padded batch: the forward does not count positions from the mask,
#    `generate` does;
# 6. puts text in and gets text out, with a BPE tokenizer trained here on a built-in text.
#
# Shapes (see the notation page): B batch, T sequence length, C model width (`n_embd`), H heads,
# V vocabulary, P positions (`n_positions`).
#
# Nothing is downloaded: every checkpoint is built on the spot in a temporary folder. Run it with
# `python lesson.py`; grade the exercises with `minitransformer check 7`.

# %%
import tempfile
import time
from pathlib import Path

import torch
import transformers
from safetensors import safe_open

import minitransformer
from minitransformer.loading import empty_weights
from minitransformer.models import GPT2, GPT2Config
from minitransformer.models.base import positions_from_attention_mask
from minitransformer.testing import max_abs_diff
from minitransformer.tokenizers import BPETokenizer

transformers.logging.set_verbosity_error()  # tiny random configs make transformers chatty
transformers.logging.disable_progress_bar()
torch.manual_seed(0)
torch.set_num_threads(1)  # the matrices here are tiny: handing them between threads costs more than the work
workdir = tempfile.TemporaryDirectory()  # every checkpoint of this lesson lives here, removed at the end
tmp = Path(workdir.name)

# %% [markdown]
# ## 1. The architecture, from the shared layers
#
# ```text
# ids (B, T) -> wte(ids) + wpe(positions)                       (B, T, C)
#            -> n_layer x [ x + attn(ln_1(x));  x + mlp(ln_2(x)) ]   pre-norm decoder blocks
#            -> ln_f -> x @ wte.T                                (B, T, V)
# ```
#
# Printed, a tiny model shows the pieces: `TokenEmbedding` and `LearnedPositionEmbedding` from
# chapter 2, `MultiHeadAttention` from chapter 3 under a causal mask from chapter 4, `LayerNorm`,
# `MLP` (GELU, tanh approximation: GPT-2's `gelu_new`) and `DecoderBlock` from chapter 5.

# %%
tiny = GPT2Config(vocab_size=100, n_positions=32, n_embd=32, n_layer=2, n_head=4)
print(GPT2(tiny))

# %% [markdown]
# The 124M model is the preset `GPT2Config.from_name("gpt2")` (also `GPT2Config()`'s defaults).
# Built inside `empty_weights()` its parameters live on PyTorch's `meta` device: shapes, no memory, no random init. That is how `from_pretrained` builds
# the model before filling it from the checkpoint, and how we can count a big model for free.
#
# The output head is *tied*: `lm_head.weight` is the very same tensor as `transformer.wte.weight`,
# so reading a token in and writing a token out share 38.6M parameters. `parameters()` lists a
# shared tensor once.

# %%
with empty_weights():
    gpt2_small = GPT2(GPT2Config.from_name("gpt2"))  # the presets: "gpt2", "gpt2-medium", ... "gpt2-tiny"
print("device:", gpt2_small.transformer.wte.weight.device)
print(f"parameters: {gpt2_small.num_parameters() / 1e6:.1f}M")
print("head tied to the embedding:", gpt2_small.lm_head.weight is gpt2_small.transformer.wte.weight)
del gpt2_small

# %% [markdown]
# ## 2. A checkpoint built by transformers, loaded by us
#
# transformers' own `GPT2LMHeadModel`, random and tiny, saved with `save_pretrained`: the folder
# holds exactly what the hub's `openai-community/gpt2` holds, at a smaller size.

# %%
hf_config = transformers.GPT2Config(vocab_size=100, n_positions=32, n_embd=32, n_layer=2, n_head=4,
                                    initializer_range=0.3, bos_token_id=None, eos_token_id=None)
hf_model = transformers.GPT2LMHeadModel(hf_config).eval()
hf_model.save_pretrained(tmp / "tiny-gpt2")
print(sorted(p.name for p in (tmp / "tiny-gpt2").iterdir()))

ours = minitransformer.from_pretrained(tmp / "tiny-gpt2")  # config.json -> model_type "gpt2" -> our GPT2
print(type(ours).__name__, "in eval mode:", not ours.training)

ids = torch.randint(0, 100, (2, 10))
with torch.no_grad():
    ours_logits, hf_logits = ours(ids).logits, hf_model(ids).logits
print("logits", tuple(ours_logits.shape), " max abs diff vs transformers:", f"{max_abs_diff(ours_logits, hf_logits):.1e}")

# %% [markdown]
# ## 3. Two layout changes: the Conv1D transpose and the `c_attn` split
#
# The names in the file are HF's; inside a block ours are the shared layers' names (the same as
# LLaMA's in transformers). The map `loading/maps/gpt2.py` lists every pair. Two entries do more
# than rename:
#
# - **Conv1D.** OpenAI's code (TensorFlow) stored every projection as a matrix of shape
#   (in, out) and computed `x @ W + b`. transformers kept that as a module called `Conv1D` (it is
#   not a convolution) so that the original checkpoints load as they are. `nn.Linear` stores
#   (out, in) and computes `x @ W.T + b`. Same numbers, transposed: the transform
#   `conv1d_transpose` in `loading/transforms.py`.
# - **The fused `c_attn`.** GPT-2 computes q, k and v with one (C, 3C) matmul, the three results side
#   by side in the 3C columns. Our attention, shared with every family, has three projections, so
#   the loader transposes to (3C, C) and cuts it in three along the output dimension; the (3C,) bias
#   is cut the same way.

# %%
with safe_open(str(tmp / "tiny-gpt2" / "model.safetensors"), framework="pt") as f:
    for name in ("transformer.h.0.attn.c_attn.weight", "transformer.h.0.attn.c_attn.bias",
                 "transformer.h.0.mlp.c_fc.weight"):
        print(f"in the file  {name:36} {tuple(f.get_slice(name).get_shape())}")
for name in ("transformer.h.0.self_attn.q_proj.weight", "transformer.h.0.self_attn.q_proj.bias",
             "transformer.h.0.mlp.up_proj.weight"):
    print(f"in our model {name:40} {tuple(ours.get_parameter(name).shape)}")

# %% [markdown]
# Done by hand, the two transforms give exactly our parameters, and q, k, v computed by our three
# `nn.Linear`s equal the three slices of transformers' fused output.

# %%
C = hf_config.n_embd
c_attn = hf_model.transformer.h[0].attn.c_attn
W = c_attn.weight.detach().t()  # (C, 3C) -> (3C, C): nn.Linear's layout
q_w, k_w, v_w = W.chunk(3, dim=0)  # 3 x (C, C): rows 0..C-1 make q, then k, then v
q_b, k_b, v_b = c_attn.bias.detach().chunk(3)  # 3 x (C,)
attn = ours.transformer.h[0].self_attn
print("q weight equal:", torch.equal(q_w, attn.q_proj.weight), "  v bias equal:", torch.equal(v_b, attn.v_proj.bias))

x = torch.randn(1, 4, C)
with torch.no_grad():
    q, k, v = c_attn(x).split(C, dim=2)  # transformers: one matmul, then split the last dim
    print("q from our q_proj vs the fused output:", max_abs_diff(attn.q_proj(x), q),
          "  k:", max_abs_diff(attn.k_proj(x), k), "  v:", max_abs_diff(attn.v_proj(x), v))

# %% [markdown]
# Getting either wrong does not always crash. Forget the transpose of `c_attn` and shapes already
# disagree ((C, 3C) against (3C, C)), but forget it for `c_proj`, which is square, and everything
# loads and produces garbage. That is why the map asserts every shape and a parity test compares
# logits: `tests/parity/test_gpt2_parity.py`.

# %%
c_proj = hf_model.transformer.h[0].attn.c_proj
wrong = torch.nn.Linear(C, C)
with torch.no_grad():
    wrong.weight.copy_(c_proj.weight)  # (C, C): loads fine, but it is the transpose of what Linear wants
    wrong.bias.copy_(c_proj.bias)
    print("c_proj loaded without the transpose, max abs diff:", f"{max_abs_diff(wrong(x), c_proj(x)):.2f}")

# %% [markdown]
# ## 4. Greedy generation, as a loop
#
# A language model gives, at every position, logits for the *next* token. To generate: run the
# model on the sequence so far, keep the logits of the last position, take the most likely token,
# append it, repeat. No cache: each step re-runs the whole sequence, so the cost grows with the
# square of the length. Chapter 9 keeps the keys and values of earlier tokens and makes each step
# cost one token's work.

# %%
@torch.no_grad()
def greedy_generate(model, input_ids: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    ids = input_ids
    for _ in range(max_new_tokens):
        logits = model(ids).logits[:, -1]  # (B, V): the last position predicts the next token
        next_id = logits.argmax(dim=-1, keepdim=True)  # (B, 1)
        ids = torch.cat([ids, next_id], dim=1)  # (B, T + 1)
    return ids


prompt = torch.randint(0, 100, (2, 4))
ours_out = greedy_generate(ours, prompt, 15)
with torch.no_grad():
    hf_out = hf_model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=15, do_sample=False)
print("ours        :", ours_out[0].tolist())
print("transformers:", hf_out[0].tolist())
print("token for token equal:", torch.equal(ours_out, hf_out))

# %% [markdown]
# ## 5. A left-padded batch: the positions come from you, not from the mask
#
# Prompts of different lengths share a batch by padding. For generation the padding goes on the left,
# so that every row ends with a real token, and the attention mask keeps the padding out of attention.
# The positions are another matter. A forward given no `position_ids` numbers the slots 0 .. T-1,
# whatever the mask says, so a row with 3 pads has its first real token at position 3, not 0, and
# GPT-2 adds the learned vector of position 3 to it: its logits are not those of the row run alone.
#
# That is what transformers' forward does, and ours follows it. A forward cannot tell left padding
# from right padding or from a mask with holes, and with a cache it counts on from the cache length,
# nothing else. `generate` knows that its prompts are left-padded, and passes positions that count
# real tokens only: `attention_mask.cumsum(-1) - 1`, padding set to 0
# (`minitransformer.models.base.positions_from_attention_mask`). Pass the same to a forward of your own.

# %%
row = torch.tensor([[11, 12, 13, 14]])
batch = torch.tensor([[0, 0, 0, 11, 12, 13, 14],  # the same row behind 3 pads
                      [21, 22, 23, 24, 25, 26, 27]])
mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]])
positions = positions_from_attention_mask(mask, 7, mask.device)  # (B, T)
print("positions by default:", list(range(7)), "  from the mask:", positions[0].tolist())
with torch.no_grad():
    alone = ours(row).logits[0]  # (4, V)
    by_default = ours(batch, attention_mask=mask).logits[0, 3:]  # (4, V): row 0's real tokens
    from_mask = ours(batch, attention_mask=mask, position_ids=positions).logits[0, 3:]
    hf_by_default = hf_model(batch, attention_mask=mask).logits[0, 3:]
print("the first 3 logits of each real token of row 0:")
print("token  " + "   ".join(f"{name:26}" for name in ("alone", "padded, default positions", "padded, mask positions")))
for t, token in enumerate(row[0].tolist()):
    cells = [" ".join(f"{v:6.2f}" for v in logits[t, :3].tolist()) for logits in (alone, by_default, from_mask)]
    print(f"{token:5}  " + "   ".join(f"{c:26}" for c in cells))
print(f"max abs diff vs the row alone: default positions {max_abs_diff(by_default, alone):.2f}, "
      f"positions from the mask {max_abs_diff(from_mask, alone):.1e}")
print(f"transformers' forward, default positions, vs ours: {max_abs_diff(hf_by_default, by_default):.1e}")

# %% [markdown]
# `generate` passes the positions from the mask, so the padded row generates what the row alone does,
# in transformers and in ours.

# %%
with torch.no_grad():
    ours_batch = ours.generate(batch, attention_mask=mask, max_new_tokens=6)
    ours_alone = ours.generate(row, max_new_tokens=6)
    hf_batch = hf_model.generate(batch, attention_mask=mask, max_new_tokens=6, do_sample=False)
print("row alone     :", ours_alone[0, 4:].tolist())
print("padded, ours  :", ours_batch[0, 7:].tolist(), " transformers:", hf_batch[0, 7:].tolist())

# %% [markdown]
# ## 6. Text in, text out
#
# Token ids are not text. Chapter 1 trained byte-level BPE; here `BPETokenizer.train` learns a small
# vocabulary from a built-in text, a tiny GPT-2 with that vocabulary is trained for a few seconds to
# memorise the text (chapter 10 is about training properly), and greedy generation continues a
# prompt. Then the trained model is saved with *our* `save_pretrained` and loaded by transformers,
# which continues the prompt the same way.

# %%
TEXT = """\
The transformer reads a sequence of tokens and writes a vector for each of them.
Attention lets every token look at the tokens before it and take what it needs.
The feed-forward network then works on each token alone, one position at a time.
A residual connection carries the input around every sublayer, so nothing is lost.
GPT-2 stacks twelve such blocks and predicts the next token from the last vector.
Greedy decoding always takes the most likely token, so the same prompt gives the same text.
"""

tokenizer = BPETokenizer.train(TEXT.splitlines(), vocab_size=320, min_frequency=2, show_progress=False)
data = torch.tensor(tokenizer.encode(TEXT))
print("vocabulary:", tokenizer.vocab_size, " text:", len(TEXT), "characters ->", len(data), "tokens")
print("first tokens:", [tokenizer.decode([i]) for i in data[:12].tolist()])

# %%
torch.manual_seed(0)
config = GPT2Config(vocab_size=tokenizer.vocab_size, n_positions=64, n_embd=64, n_layer=2, n_head=4,
                    resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
model = GPT2(config)
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
window = 32  # train on windows that start anywhere, so a prompt at position 0 is familiar
start = time.perf_counter()
for step in range(121):
    offsets = torch.randint(0, len(data) - window, (16,))
    batch = torch.stack([data[o : o + window] for o in offsets.tolist()])  # (B=16, T=32)
    loss = model.train()(batch, labels=batch).loss  # position t is scored on token t + 1
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if step % 40 == 0:
        print(f"step {step:3d}  loss {loss.item():.3f}")
print(f"trained in {time.perf_counter() - start:.1f} s")
model.eval()

# %%
prompt_text = "Attention lets every"
prompt_ids = torch.tensor([tokenizer.encode(prompt_text)])
out = greedy_generate(model, prompt_ids, 14)
print(repr(tokenizer.decode(out[0].tolist())))

model.save_pretrained(tmp / "trained")  # config.json + model.safetensors in transformers' layout
hf_trained = transformers.AutoModelForCausalLM.from_pretrained(tmp / "trained").eval()
with torch.no_grad():
    hf_text_out = hf_trained.generate(prompt_ids, attention_mask=torch.ones_like(prompt_ids), max_new_tokens=14,
                                      do_sample=False, eos_token_id=None, pad_token_id=0)
print("transformers, same ids:", torch.equal(hf_text_out, out), " ", type(hf_trained).__name__)

# %%
workdir.cleanup()

# %% [markdown]
# ## Your turn
# Open `exercises_07.py` and implement 7.1 to 7.6: the Conv1D transpose with a shape check, the
# `c_attn` split, the embeddings, the tied head, greedy generation and the shifted loss.
# `minitransformer check 7` compares each with transformers and tells you which case fails.
#
# From this notebook, `minitransformer.check("7")` prints the same lines (it reads your file
# afresh each time), and `from exercises_07 import ...` brings your functions here to try
# them on the tensors above.
