"""``minitransformer parity``: our model against transformers' on checkpoints you name, as a table.

    minitransformer parity path/to/checkpoint                 # a folder: config.json + safetensors
    minitransformer parity sentence-transformers/all-MiniLM-L6-v2 gpt2   # hub ids, from the cache offline

Each checkpoint is loaded twice, by ``minitransformer.from_pretrained`` and by the transformers
class its ``config.json`` names (never with remote code), both in fp32 and eval mode. Both run on
the same inputs (a few sentences through the checkpoint's own tokenizer, or seeded random ids when
it has none), and the main output (``logits``, or ``last_hidden_state`` for a headless encoder) is
compared under the tolerance policy of ``minitransformer.testing``: max abs diff at most
``1e-5 x max(1, max |expected|)`` on the CPU (docs/tolerances.md). The exit status is 1 when any
difference is past its bound, 2 when a checkpoint cannot be compared at all (not a checkpoint, a
family we do not have, transformers not installed), 0 otherwise.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from minitransformer.loading import from_pretrained
from minitransformer.loading.hub import resolve_checkpoint_dir
from minitransformer.loading.registry import REGISTRY, family_for_model
from minitransformer.testing import max_abs_diff, seed_weights, tolerance
from minitransformer.tokenizers import load_tokenizer

TEXTS = ("The quick brown fox jumps over the lazy dog.",
         "Attention is all you need, they said; then came the KV cache.",
         "def f(x):\n    return x * 2")
INSTALL_HF = 'pip install -c constraints.txt -e ".[hf]"'


class ParityError(ValueError):
    """A checkpoint that cannot be compared: what is wrong, and what to do."""


@dataclass(frozen=True)
class ParityRow:
    """One comparison: a checkpoint's output on one input, ours against transformers'."""

    checkpoint: str
    architecture: str
    output: str
    shape: tuple[int, ...]
    max_abs_diff: float
    bound: float

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.bound


def inputs_for(directory, vocab_size: int) -> list[torch.Tensor]:
    """(1, T) ids of each sentence through the checkpoint's tokenizer, or seeded random ids without one."""
    try:
        tokenizer = load_tokenizer(directory)
    except (OSError, ValueError):
        tokenizer = None
    if tokenizer is not None:
        rows = [tokenizer.encode(text) for text in TEXTS]
        if all(rows) and max(max(r) for r in rows) < vocab_size:
            return [torch.tensor([r]) for r in rows]
    generator = torch.Generator().manual_seed(0)
    return [torch.randint(0, vocab_size, (1, n), generator=generator) for n in (7, 16)]


def check_parity(path_or_repo_id: str, revision: str | None = None) -> list[ParityRow]:
    """Compare our model with transformers' on one checkpoint; one row per input.

    Raises:
        ParityError: transformers is missing, the path is not a checkpoint, or its family is not ours.
    """
    try:
        import transformers
    except ImportError as err:
        raise ParityError(f"parity compares against transformers, which is not installed: {INSTALL_HF}") from err
    try:
        directory = resolve_checkpoint_dir(path_or_repo_id, revision)
        ours = from_pretrained(directory, dtype=torch.float32)
    except (OSError, ValueError, RuntimeError) as err:  # LoadingError is a RuntimeError
        raise ParityError(f"{path_or_repo_id}: {err}\n(the families minitransformer has: "
                          f"{', '.join(sorted(REGISTRY))})") from err
    _, architecture = family_for_model(ours)
    # The architecture is one of our registry's names (BertModel, GPT2LMHeadModel...), each a class of
    # transformers itself: no name read from the checkpoint reaches getattr unchecked.
    theirs = getattr(transformers, architecture).from_pretrained(directory, dtype=torch.float32).eval()
    ours.eval()
    rows = []
    encoder_decoder = getattr(ours.config, "is_encoder_decoder", False)
    for ids in inputs_for(directory, ours.config.vocab_size):
        kwargs = {"input_ids": ids}
        if encoder_decoder:  # the decoder reads the start token then the same ids, shifted right
            start = ours.config.decoder_start_token_id or 0
            kwargs["decoder_input_ids"] = torch.cat([torch.full((1, 1), start), ids[:, :-1]], dim=1)  # (1, T)
        with torch.no_grad():
            a, b = ours(**kwargs), theirs(**kwargs)
        name = "logits" if getattr(a, "logits", None) is not None else "last_hidden_state"
        actual, expected = getattr(a, name), getattr(b, name)
        bound = tolerance(torch.float32).atol * max(1.0, expected.abs().max().item())
        rows.append(ParityRow(str(path_or_repo_id), architecture, name, tuple(expected.shape),
                              max_abs_diff(actual, expected), bound))
    return rows


def tiny_hf_checkpoints(out: Path) -> dict[str, Path]:
    """Tiny random BERT, GPT-2, LLaMA and T5, built by transformers' own classes and saved to ``out``."""
    import transformers

    V = 61
    models = {
        "bert": lambda: transformers.BertModel(transformers.BertConfig(
            vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)),
        "gpt2": lambda: transformers.GPT2LMHeadModel(transformers.GPT2Config(
            vocab_size=V, n_positions=32, n_embd=32, n_layer=2, n_head=4, bos_token_id=0, eos_token_id=0)),
        "llama": lambda: transformers.LlamaForCausalLM(transformers.LlamaConfig(
            vocab_size=V, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=32)),
        "t5": lambda: transformers.T5ForConditionalGeneration(transformers.T5Config(
            vocab_size=V, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4, decoder_start_token_id=0)),
    }
    folders = {}
    for seed, (family, build) in enumerate(models.items()):
        folders[family] = out / family
        seed_weights(build(), seed=seed).save_pretrained(folders[family])
    return folders


def format_rows(rows: list[ParityRow]) -> str:
    lines = [f"{'checkpoint':40s} {'architecture':28s} {'output':18s} {'shape':>16s} {'max abs diff':>13s} "
             f"{'bound':>9s}  result"]
    for r in rows:
        lines.append(f"{r.checkpoint[-40:]:40s} {r.architecture:28s} {r.output:18s} {str(r.shape):>16s} "
                     f"{r.max_abs_diff:13.2e} {r.bound:9.1e}  {'ok' if r.ok else 'PAST THE BOUND'}")
    return "\n".join(lines)


def parity_main(checkpoints: list[str]) -> int:
    """The command: a table of every checkpoint's rows; exit 1 past a bound, 2 when one cannot be compared."""
    rows, failed = [], []
    for checkpoint in checkpoints:
        try:
            rows += check_parity(checkpoint)
        except ParityError as err:
            failed.append(checkpoint)
            print(f"minitransformer parity: error: {err}", file=sys.stderr)
    if rows:
        print(format_rows(rows))
        worst = max(rows, key=lambda r: r.max_abs_diff / r.bound)
        print(f"{sum(r.ok for r in rows)} of {len(rows)} within the tolerance policy (fp32 on the CPU: 1e-5 x "
              f"max(1, max |expected|)); the closest to its bound: {worst.max_abs_diff:.2e} of {worst.bound:.1e}")
    if failed:
        return 2
    return 0 if all(r.ok for r in rows) else 1


__all__ = ["ParityError", "ParityRow", "check_parity", "format_rows", "parity_main", "tiny_hf_checkpoints"]
