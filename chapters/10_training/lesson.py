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
# # Chapter 10: Training from scratch
#
# Every model so far had random weights, or weights someone else trained. This chapter trains one.
# Training is a loop of four lines (forward, backward, optimiser step, zero the gradients); what
# makes it work is the three things around it, each written out here by hand and compared with
# torch's own:
#
# 1. the **objective**: next-token cross-entropy, and what its value at initialisation, about
#    ln V, says about the model;
# 2. the **optimiser**: AdamW, one parameter at a time, equal to `torch.optim.AdamW`; bias
#    correction, decoupled weight decay, and which parameters decay;
# 3. the **schedule**: linear warmup, then a cosine decay, plotted;
# 4. the **first test of any training loop**: overfit one batch to a loss near 0; and gradient
#    accumulation, which gives the gradient of a batch too big to fit at once;
# 5. a **real short run**: a small GPT-2 learns the characters of a built-in corpus (Python's own
#    documentation, which every Python install has) with the library's `Trainer`, with its loss
#    curve and a sample of what it writes.
#
# Shapes (see the notation page): B batch, T sequence length, N = B x T positions, V vocabulary,
# C model width.
#
# Nothing is downloaded. Run it with `python lesson.py` (about 30 s on a 2-core CPU; it plots the
# schedule and the loss curve); grade the exercises with `minitransformer check 10`.

# %%
import copy
import math
import time

import torch
import torch.nn.functional as F

from minitransformer.layers.embeddings import LearnedPositionEmbedding, TokenEmbedding
from minitransformer.layers.norms import LayerNorm
from minitransformer.models import GPT2, GPT2Config

torch.manual_seed(0)
torch.set_num_threads(1)  # small matrices: one thread is as fast, and steadier on a shared machine

try:
    import matplotlib.pyplot as plt  # inline in a notebook, a window from a script, none headless
except ImportError:
    plt = None
    print("install matplotlib (pip install 'minitransformer[viz]') to draw the figures")

# %% [markdown]
# ## 1. The objective: next-token cross-entropy
#
# A causal language model reads tokens 0..t and outputs, at position t, a score (logit) for every
# token of the vocabulary: a guess at token t + 1. Softmax turns the V scores into probabilities,
# and the loss of position t is the negative log-probability of the token that actually came:
#
#     loss_t = -log softmax(logits_t)[target_t] = logsumexp(logits_t) - logits_t[target_t]
#
# The training loss is its mean over every position of the batch. A perfect prediction (p = 1)
# costs 0; a uniform guess over V tokens costs -log(1/V) = ln V.
#
# A freshly initialised GPT-2 has small weights (standard deviation 0.02), so its logits are all
# near 0 and its softmax nearly uniform: **the loss at initialisation should be about ln V**.
# Much higher means the initialisation is off (the model is confidently wrong); that is the first
# number to look at when a run starts. `gpt2-tiny` has V = 256:

# %%
model = GPT2(GPT2Config.from_name("gpt2-tiny")).eval()  # V = 256, 2 layers, C = 32
V = model.config.vocab_size
ids = torch.randint(0, V, (4, 32))  # (B, T) random tokens
with torch.no_grad():
    out = model(ids, labels=ids)  # the model shifts: position t is scored against ids[:, t + 1]
print(f"loss at initialisation {out.loss.item():.4f}   ln V = ln {V} = {math.log(V):.4f}")
print(f"perplexity exp(loss) = {out.loss.exp().item():.1f}: as unsure as a uniform guess among that many tokens")

# %% [markdown]
# Written out. Position t predicts token t + 1, so the logits lose their last position and the
# targets their first. Computing `log(sum(exp(x)))` directly overflows: `exp(89.0)` is already
# infinite in float32. Subtracting the row's maximum m first changes nothing mathematically,
# `logsumexp(x) = m + log(sum(exp(x - m)))`, and every exponent is then at most 0. Positions whose
# target is `ignore_index` (-100, padding) count for nothing: the mean is over the others.

# %%
def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Mean of logsumexp(logits) - logits[target] over the rows not ignored. logits (N, V), targets (N,)."""
    m = logits.max(dim=-1, keepdim=True).values.detach()  # (N, 1): a shift, no gradient needed
    log_z = m.squeeze(-1) + (logits - m).exp().sum(dim=-1).log()  # (N,): every exponent <= 0
    keep = targets != ignore_index  # (N,)
    safe = torch.where(keep, targets, torch.zeros_like(targets))  # an ignored row still needs a valid index
    picked = logits.gather(-1, safe.unsqueeze(-1)).squeeze(-1)  # (N,): the target's logit
    return ((log_z - picked) * keep).sum() / keep.sum()


def naive_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The textbook formula, without the max: correct on paper, inf or NaN for large logits."""
    probs = logits.exp() / logits.exp().sum(dim=-1, keepdim=True)  # (N, V)
    return -probs.gather(-1, targets.unsqueeze(-1)).log().mean()


flat_logits = out.logits[:, :-1].reshape(-1, V)  # (B * (T - 1), V)
flat_targets = ids[:, 1:].reshape(-1)  # (B * (T - 1),)
loss = cross_entropy(flat_logits, flat_targets)
print(f"|ours - the model's loss| = {abs(loss - out.loss).item():.1e}")
print(f"|ours - F.cross_entropy|  = {abs(loss - F.cross_entropy(flat_logits, flat_targets)).item():.1e}")

big = 100.0 * torch.randn(3, 10)  # confident logits, as a trained model's can be
target3 = torch.tensor([1, 4, 7])
print(f"logits of size 100: naive {naive_cross_entropy(big, target3).item()}, "
      f"ours {cross_entropy(big, target3).item():.2f}, torch {F.cross_entropy(big, target3).item():.2f}")
padded = flat_targets.clone()
padded[::3] = -100  # every third position is padding
print(f"with ignored positions: ours {cross_entropy(flat_logits, padded).item():.6f}, "
      f"torch {F.cross_entropy(flat_logits, padded).item():.6f}")

# %% [markdown]
# What the gradient says. The derivative of the loss of one row with respect to its logits is
# `softmax(logits) - one_hot(target)`, divided by N for the mean: push the target's score up by
# 1 - p, push every other score down by its probability. Autograd through our formula finds the
# same:

# %%
logits = torch.randn(6, 5, requires_grad=True)
targets = torch.tensor([0, 1, 2, 3, 4, 0])
cross_entropy(logits, targets).backward()
by_hand = (logits.softmax(dim=-1) - F.one_hot(targets, 5)) / 6  # (N, V)
print(f"|autograd - (softmax - one_hot) / N| = {(logits.grad - by_hand).abs().max().item():.1e}")

# %% [markdown]
# ## 2. The optimiser: AdamW
#
# Plain gradient descent moves every weight by lr x its gradient: one learning rate for weights
# whose gradients differ by orders of magnitude. Adam (Kingma and Ba, 2015) keeps, per weight, a
# running mean of the gradient (m, *momentum*) and of its square (v), and moves the weight by
# lr x m / sqrt(v): about lr per step whatever the gradient's scale. Two details:
#
# - **Bias correction**: m and v start at 0, so for the first steps they are too small (after one
#   step m = (1 - beta1) g = 0.1 g). Dividing by 1 - beta ** step undoes it exactly.
# - **Decoupled weight decay** (AdamW, Loshchilov and Hutter, 2019): the weights shrink by
#   lr x weight_decay x themselves, apart from the gradient. Adding weight_decay x param to the
#   gradient instead (L2, Adam's original way) would be divided by sqrt(v) too, so weights with
#   large gradients would hardly decay at all.

# %%
@torch.no_grad()
def adamw_step(param, grad, exp_avg, exp_avg_sq, step, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
    """One AdamW update of one tensor, in place; ``step`` counts from 1. torch.optim.AdamW's arithmetic."""
    beta1, beta2 = betas
    param.mul_(1 - lr * weight_decay)  # decoupled weight decay
    exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)  # m = beta1 m + (1 - beta1) g
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)  # v = beta2 v + (1 - beta2) g^2
    m_hat = exp_avg / (1 - beta1**step)  # bias correction
    v_hat = exp_avg_sq / (1 - beta2**step)
    param.sub_(lr * m_hat / (v_hat.sqrt() + eps))


# %% [markdown]
# Two copies of the tiny GPT-2, trained for 5 steps on the same batch: one by `torch.optim.AdamW`,
# one by our function, called on every parameter with its own m and v. They differ only by float32
# rounding (torch orders the same operations differently; dividing by sqrt(v) magnifies the last
# bits where a gradient is tiny), far below the steps of 1e-2 they take:

# %%
hyper = dict(lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
ours_model, torch_model = copy.deepcopy(model), copy.deepcopy(model)  # eval mode: no dropout, same forward
optimizer = torch.optim.AdamW(torch_model.parameters(), **hyper)
state = {p: (torch.zeros_like(p), torch.zeros_like(p)) for p in ours_model.parameters()}
for step in range(1, 6):
    for m in (ours_model, torch_model):
        m.zero_grad()
        m(ids, labels=ids).loss.backward()
    optimizer.step()
    for p in ours_model.parameters():
        adamw_step(p, p.grad, *state[p], step, **hyper)
worst = max((a - b).abs().max().item() for a, b in zip(ours_model.parameters(), torch_model.parameters()))
print(f"after 5 steps, largest |ours - torch.optim.AdamW| over every weight: {worst:.1e}")

# Bias correction at step 1: m_hat = g and v_hat = g^2, so every weight moves by lr x sign(g).
p, g = torch.zeros(5), torch.tensor([3.0, -0.001, 20.0, -7.0, 0.5])
adamw_step(p, g, torch.zeros(5), torch.zeros(5), 1, lr=0.01, weight_decay=0.0)
print("gradient", [f"{x:g}" for x in g.tolist()], "-> first update", [f"{x:g}" for x in p.tolist()])

# Decoupled decay: with a zero gradient the weight only shrinks, by the factor 1 - lr x wd.
p = torch.full((1,), 2.0)
adamw_step(p, torch.zeros(1), torch.zeros(1), torch.zeros(1), 1, lr=0.5, weight_decay=0.1)
print(f"zero gradient, lr 0.5, weight decay 0.1: 2.0 -> {p.item():.3f} (= 2 x (1 - 0.05))")

# %% [markdown]
# The first update is lr times the sign of each gradient, however large or small the gradient:
# Adam's steps have the size of the learning rate, which is why one lr works for every layer.
#
# **Which parameters decay.** Weight decay pulls weights towards 0. That suits the matrices of the
# linear layers, whose scale is free; it does not suit a LayerNorm's gain (its neutral value is 1),
# the biases, or the embeddings (a rare token's row gets few gradient updates to fight back). So the
# optimiser gets two groups: matrices with weight decay, everything else without. In GPT-2 the head
# is tied to the token embedding, so that matrix counts once, as an embedding:

# %%
no_decay_types = (TokenEmbedding, LearnedPositionEmbedding, LayerNorm)  # the library's layers
no_decay = {id(p) for module in model.modules() for p in module.parameters(recurse=False)
            if isinstance(module, no_decay_types) or p.dim() < 2}  # the tied head: owned by wte too
params = list(model.parameters())  # each tensor once, the tied head included once
decayed = [p for p in params if id(p) not in no_decay]
print(f"decayed: {len(decayed)} matrices, {sum(p.numel() for p in decayed):,} weights;  "
      f"not decayed: {len(params) - len(decayed)} tensors, {sum(p.numel() for p in params if id(p) in no_decay):,}")
optimizer = torch.optim.AdamW([{"params": decayed, "weight_decay": 0.1},
                               {"params": [p for p in params if id(p) in no_decay], "weight_decay": 0.0}], lr=1e-3)

# %% [markdown]
# ## 3. The schedule: warmup, then cosine decay
#
# At the first steps Adam's v is an average of very few gradients and the weights are random, so
# full-size steps can throw the model somewhere it never recovers from. **Warmup** raises the
# learning rate linearly over the first steps. Then a **cosine decay** lowers it smoothly to a
# floor (often max_lr / 10): big steps while the loss falls fast, small ones to settle at the end.
# This is nanoGPT's `get_lr`:

# %%
def lr_at(step: int, max_lr: float, warmup_steps: int, max_steps: int, min_lr: float) -> float:
    """The learning rate of ``step`` (from 0): linear warmup, cosine from max_lr to min_lr, then min_lr."""
    if step < warmup_steps:
        return max_lr * (step + 1) / (warmup_steps + 1)  # never exactly 0: step 0 already learns
    if step > max_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)  # 0 -> 1
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (max_lr - min_lr)


schedule = dict(max_lr=6e-4, warmup_steps=100, max_steps=1000, min_lr=6e-5)
for s in (0, 50, 99, 100, 550, 1000, 1200):
    print(f"step {s:5d}: lr {lr_at(s, **schedule):.3e}")

# The same curve through torch's LambdaLR, which multiplies the optimiser's lr by a factor per step.
opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=schedule["max_lr"])
scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_at(s, **schedule) / schedule["max_lr"])
curve = []
for _ in range(1200):
    curve.append(opt.param_groups[0]["lr"])
    opt.step()
    scheduler.step()
print("LambdaLR gives the same 1200 values:", all(math.isclose(c, lr_at(s, **schedule)) for s, c in enumerate(curve)))

if plt is not None:
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot(range(1200), curve, color="tab:blue")
    ax.axvline(schedule["warmup_steps"], color="grey", linestyle=":", label="end of warmup")
    ax.axvline(schedule["max_steps"], color="grey", linestyle="--", label="max_steps: min_lr from here")
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    ax.set_title("warmup 100 steps, cosine to max_lr / 10 at step 1000")
    ax.legend()
    fig.tight_layout()
    plt.show()  # fig.savefig("lr_schedule.png") keeps a copy

# %% [markdown]
# ## 4. The first test of any training loop: overfit one batch
#
# Before training on real data, train on a single batch, over and over. A model with a few
# thousand weights can memorise 4 x 32 random tokens, so the loss must go from ln V to nearly 0.
# If it does not, something is broken: the gradients are not zeroed, the optimiser holds other
# parameters than the model's, the labels are shifted twice, the learning rate is 0... It takes
# a second and catches most bugs.

# %%
torch.manual_seed(1)
model = GPT2(GPT2Config.from_name("gpt2-tiny"))
batch = {"input_ids": ids, "labels": ids}
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
model.train()
start = time.perf_counter()
for step in range(100):
    loss = model(**batch).loss  # forward: (B, T, V) logits and the mean cross-entropy
    optimizer.zero_grad(set_to_none=True)  # backward adds into .grad: clear last step's first
    loss.backward()  # d loss / d every weight
    optimizer.step()  # the AdamW update
    if step % 20 == 0 or step == 99:
        print(f"step {step:3d}  loss {loss.item():.4f}")
print(f"100 steps in {time.perf_counter() - start:.1f} s; ln V = {math.log(V):.2f}")

# %% [markdown]
# **Gradient accumulation.** A batch too big for memory can be cut into k micro-batches, each run
# forward and backward in turn: `backward` adds into `.grad`, so after the k calls the gradient is
# the sum of theirs. Dividing each micro-batch's loss by k makes it the mean, the big batch's
# gradient exactly (when every micro-batch holds as many tokens; with padding, weight each by its
# share of the real tokens instead). Then one optimiser step, as if the batch had been run whole.

# %%
model.eval()  # dropout off, so that both ways run the same forward
big_batch = torch.randint(0, V, (8, 32))
model.zero_grad()
model(big_batch, labels=big_batch).loss.backward()
whole = [p.grad.clone() for p in model.parameters()]
model.zero_grad()
k = 4
for micro in big_batch.chunk(k):  # 4 x (2, 32)
    (model(micro, labels=micro).loss / k).backward()  # adds into .grad
diff = max((p.grad - w).abs().max().item() for p, w in zip(model.parameters(), whole))
print(f"{k} micro-batches of 2 vs one batch of 8: largest gradient difference {diff:.1e}")

# %% [markdown]
# ## 5. A real short run
#
# Now a model that learns something. The corpus is built in: the text of Python's `help()` on its
# keywords and statements (`pydoc_data.topics`, part of every Python install; about 465,000
# characters of English with code), cut into characters (a vocabulary of about 100). The first 90%
# is for training, the last 10% held out to measure what the model learned rather than memorised.
# The library's `Trainer` runs the loop of section 4 with everything of sections 2 and 3:
# AdamW with the two groups, warmup then cosine, gradient clipping, and an evaluation on held-out
# batches every `eval_every` steps.
#
# Before training, two baselines, from counts on the training split: the loss of predicting each
# character by its frequency alone (a unigram model), and by the character before it (a bigram
# model). A model that beats the bigram has learned something beyond pairs of letters.

# %%
from minitransformer.training.corpus import builtin_corpus  # noqa: E402
from minitransformer.training.data import TokenBlocks, char_tokenizer  # noqa: E402
from minitransformer.training.trainer import Trainer, TrainingConfig  # noqa: E402

text = builtin_corpus()
tokenizer = char_tokenizer(text)  # one id per distinct character
tokens = torch.tensor(tokenizer.encode(text))
V = tokenizer.vocab_size
data = TokenBlocks(tokens, block_size=64, seed=0)  # get_batch(split, index, B): random blocks, reproducible
train_ids = torch.as_tensor(data.splits["train"])
val_ids = torch.as_tensor(data.splits["val"])
print(f"{len(text):,} characters, vocabulary {V}; train {len(train_ids):,} tokens, val {len(val_ids):,}")

counts = torch.bincount(train_ids, minlength=V).double() + 1  # + 1: no zero probabilities on val
unigram = -(counts / counts.sum()).log()[val_ids].mean().item()
pairs = torch.ones(V, V, dtype=torch.float64)  # pairs[a, b]: how often b follows a (+ 1)
pairs.index_put_((train_ids[:-1], train_ids[1:]), torch.ones(len(train_ids) - 1, dtype=torch.float64),
                 accumulate=True)
bigram = -(pairs / pairs.sum(dim=1, keepdim=True)).log()[val_ids[:-1], val_ids[1:]].mean().item()
print(f"val loss of: a uniform guess ln V = {math.log(V):.2f}, unigram {unigram:.2f}, bigram {bigram:.2f}")

# %%
torch.manual_seed(0)
config = GPT2Config(vocab_size=V, n_positions=64, n_embd=96, n_layer=3, n_head=4,
                    resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)  # too short a run to overfit
model = GPT2(config, attn_implementation="sdpa")  # torch's fused kernels: the same maths, faster
training = TrainingConfig(max_steps=500, batch_size=16, block_size=64, lr=2e-3, min_lr=2e-4, warmup_steps=25,
                          weight_decay=0.1, grad_clip=1.0, eval_every=50, eval_batches=5, seed=0, device="cpu",
                          sample_every_eval=False, progress=False)
print(f"{sum(p.numel() for p in model.parameters()):,} parameters; {training.max_steps} steps of "
      f"{training.batch_size} x {training.block_size} tokens")
start = time.perf_counter()
result = Trainer(model, training, data, tokenizer=tokenizer).train()
seconds = time.perf_counter() - start
evals = [row for row in result.history if row["val_loss"] is not None]
for row in evals[::2] + ([evals[-1]] if len(evals) % 2 == 0 else []):
    print(f"step {row['step']:4d}  train {row['train_loss']:.3f}  val {row['val_loss']:.3f}  lr {row['lr']:.1e}")
print(f"{seconds:.0f} s, {result.tokens_per_s:,.0f} tokens/s; best val loss {result.best_val_loss:.3f} "
      f"(bigram {bigram:.2f}, uniform {math.log(V):.2f})")

if plt is not None:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([r["step"] for r in result.history], [r["train_loss"] for r in result.history],
            label="train (one batch each step)", color="tab:blue", alpha=0.6)
    ax.plot([r["step"] for r in evals], [r["val_loss"] for r in evals], "o-", label="val (held-out 10%)",
            color="tab:red")
    ax.axhline(math.log(V), color="grey", linestyle=":", label=f"uniform guess, ln {V}")
    ax.axhline(unigram, color="grey", linestyle="-.", label="unigram counts")
    ax.axhline(bigram, color="grey", linestyle="--", label="bigram counts")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per character)")
    ax.set_title("GPT-2, 3 layers, C=96, on Python's help() text")
    ax.legend()
    fig.tight_layout()
    plt.show()  # fig.savefig("training_loss.png") keeps a copy

# %% [markdown]
# The loss starts at ln V, drops below the unigram line in a few dozen steps (the model learns
# which characters are common), then below the bigram line (it learns which follow which, then
# words). Train and val stay close: the run is far too short to memorise 400,000 characters. What
# it writes after two prompts, sampled at temperature 0.8 from the 20 likeliest characters:

# %%
model.eval()
for prompt in ("The ", "def "):
    prompt_ids = torch.tensor([tokenizer.encode(prompt)])  # (1, 4)
    with torch.no_grad():  # 60 new tokens: the model has 64 positions
        sample = model.generate(prompt_ids, max_new_tokens=60, do_sample=True, temperature=0.8, top_k=20,
                                eos_token_id=[], generator=torch.Generator().manual_seed(0))
    print(repr(tokenizer.decode(sample[0].tolist())))

# %% [markdown]
# Words, spaces and punctuation in the right places, a few real words, no meaning: what 500 steps
# buy. Longer runs, wider models and subword tokens go further: `minitransformer train` runs
# this `Trainer` from the command line, with checkpoints and an exact resume, and
# `scripts/bench_training.py --part recipe` reproduces nanoGPT's shakespeare-char run.
#
# ## 6. The library's versions
#
# `minitransformer.training` (in `training/optim.py`) has the three functions of this chapter,
# written out the same way (its `adamw_update` takes its hyperparameters by keyword, with GPT-style defaults); the
# `Trainer` uses torch's AdamW and the library's `lr_at`. They agree with ours:

# %%
from minitransformer.training.optim import adamw_update  # noqa: E402
from minitransformer.training.optim import cross_entropy as library_cross_entropy  # noqa: E402
from minitransformer.training.optim import lr_at as library_lr_at  # noqa: E402

logits, targets = 5.0 * torch.randn(20, 30), torch.randint(0, 30, (20,))
targets[::4] = -100
print("cross_entropy equal :", torch.allclose(cross_entropy(logits, targets), library_cross_entropy(logits, targets)))
print("lr_at equal         :", all(math.isclose(lr_at(s, **schedule), library_lr_at(s, **schedule))
                                    for s in range(1200)))
p1, g = torch.randn(8), torch.randn(8)
p2 = p1.clone()
s1, s2 = (torch.zeros(8), torch.zeros(8)), (torch.zeros(8), torch.zeros(8))
for step in range(1, 4):
    adamw_step(p1, g, *s1, step, **hyper)
    adamw_update(p2, g, *s2, step, **hyper)
print("adamw equal         :", torch.allclose(p1, p2))

# %% [markdown]
# ## Your turn
# Open `exercises_10.py` and implement 10.1 to 10.5: the cross-entropy with log-sum-exp and ignored
# positions, one AdamW step, the warmup-cosine schedule, the overfit-one-batch loop, and (optional)
# gradient accumulation. `minitransformer check 10` compares each with torch's own
# (`F.cross_entropy`, `torch.optim.AdamW`, torch's schedulers) and tells you which case fails.
#
# From this notebook, `minitransformer.check("10")` prints the same lines (it reads your file
# afresh each time), and `from exercises_10 import ...` brings your functions here to try
# them on the tensors above.
