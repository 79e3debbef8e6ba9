"""The ``minitransformer`` command.

    minitransformer tour                    # every part of the library in a minute, into tour/index.html
    minitransformer demo                    # the layers on a built-in sentence, shape by shape
    minitransformer chapters                # the chapters, and how far you are in each
    minitransformer check 3                 # grade your chapters/03_*/exercises_03.py, a line per exercise
    minitransformer check 3.2 -v            # grade exercise 3.2 alone, with pytest's full tracebacks
    minitransformer check 3 --reference     # the same checks on the library's solutions
    minitransformer check 3 -- -x           # anything after -- goes to pytest
    minitransformer check --all             # one table of every chapter's exercises, for the room
    minitransformer notebooks               # each chapter's lesson.ipynb, generated from its lesson.py
    minitransformer train --model gpt2-tiny --max-steps 200 --out runs/tiny   # train from scratch
    minitransformer finetune --out runs/reviews   # fine-tune all-MiniLM-L6-v2 on the built-in reviews
    minitransformer generate runs/tiny "def f(x):" --max-new-tokens 40   # stream text from a checkpoint
    minitransformer parity runs/tiny sentence-transformers/all-MiniLM-L6-v2   # ours against transformers
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


class UsageError(SystemExit):
    """Bad usage: exit status 2, as for argparse's own errors; the message says what exists."""

    def __init__(self, message: str):
        super().__init__(2)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _course(call, *args):
    """Call a :mod:`minitransformer.exercises.course` function; a chapter that is not there is a usage error."""
    from minitransformer.exercises.course import ChapterNotFound

    try:
        return call(*args)
    except ChapterNotFound as err:
        raise UsageError(str(err)) from None


def find_chapters_dir(explicit: str | None = None) -> Path:
    """The ``chapters/`` folder: the one given, else one in the current directory or its parents."""
    from minitransformer.exercises import course

    return _course(course.find_chapters_dir, explicit)


def graded_chapters(chapters: Path) -> list[Path]:
    """The chapter folders that have exercises and checks, in order."""
    from minitransformer.exercises.course import graded_chapters

    return graded_chapters(chapters)


def cmd_check_all(args: argparse.Namespace) -> int:
    """``check --all``: one table of every chapter's exercises (done / failing / not started), for the room."""
    from minitransformer.exercises.progress import grade

    chapters = grade(graded_chapters(find_chapters_dir(args.chapters_dir)), reference=args.reference)
    rows = [(c, e) for c in chapters for e in c.ordered()]
    width = max((len(f"{e.number} {e.name}") for _, e in rows), default=10)
    print(f"{'exercise'.ljust(width)}  status")
    for chapter in chapters:
        if chapter.problem:
            print(f"{str(chapter.number).ljust(width)}  error: {chapter.problem.splitlines()[0]}")
        for exercise in chapter.ordered():
            status = exercise.status + (f": {exercise.message}" if exercise.status == "failing" else "")
            print(f"{f'{exercise.number} {exercise.name}'.ljust(width)}  {status}")
    counts = {s: sum(e.status == s for _, e in rows) for s in ("done", "failing", "not started")}
    print(f"{len(rows)} exercises in {len(chapters)} chapters: {counts['done']} done, {counts['failing']} failing, "
          f"{counts['not started']} not started")
    return 0 if all(c.ok for c in chapters) else 1


def cmd_check(args: argparse.Namespace) -> int:
    from minitransformer.exercises.course import grade_and_print, resolve

    if args.all:
        if args.target or args.file:
            raise UsageError("--all grades every chapter's own exercises file: drop the chapter and --file")
        return cmd_check_all(args)
    if args.target is None:
        raise UsageError("give a chapter (3), one exercise (3.1), or --all for every chapter")
    folder, exercise = _course(resolve, args.target, args.chapters_dir)
    if args.file and not Path(args.file).is_file():
        raise UsageError(f"--file {args.file}: no such file")
    ok = grade_and_print(folder, exercise, reference=args.reference, file=args.file,
                         pytest_args=args.pytest_args, verbose=args.verbose)
    return 0 if ok else 1


def cmd_chapters(args: argparse.Namespace) -> int:
    from minitransformer.exercises.progress import chapter_title, grade

    chapters = find_chapters_dir(args.chapters_dir)
    graded = {c.folder.name: c for c in grade(graded_chapters(chapters))}
    for folder in sorted(chapters.glob("[0-9][0-9]_*")):
        status = graded[folder.name].summary() if folder.name in graded else "lesson only"
        print(f"{int(folder.name[:2]):3d}  {chapter_title(folder):38s} {status}")
    return 0


def cmd_notebooks(args: argparse.Namespace) -> int:
    """Write each lesson's ``lesson.ipynb`` from its ``lesson.py`` (``--check``: only say which are out of date)."""
    from minitransformer.exercises.notebooks import lessons, notebook_path, stale_notebooks, write_notebooks
    from minitransformer.exercises.progress import shown

    chapters = find_chapters_dir(args.chapters_dir)
    total = len(lessons(chapters))
    try:
        import jupytext  # noqa: F401 - the conversion's one dependency, asked for before any work
    except ImportError:
        raise UsageError("converting lessons needs jupytext: pip install -e '.[notebook]'") from None
    if args.figures:
        from minitransformer.exercises.notebooks import write_figures

        for path in write_figures(chapters):
            print(f"wrote {shown(path)}")
        return 0
    if args.check:
        stale = stale_notebooks(chapters)
        for lesson in stale:
            print(f"{shown(notebook_path(lesson))} is missing or out of date with {lesson.name}")
        if stale:
            print(f"{len(stale)} of {total} notebooks out of date: run minitransformer notebooks")
            return 1
        print(f"{total} notebooks up to date with their lesson.py")
        return 0
    written = write_notebooks(chapters)
    for path in written:
        print(f"wrote {shown(path)}")
    print(f"{total} notebooks, {len(written)} written, {total - len(written)} already up to date")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from minitransformer.demo import run_demo

    result = run_demo(args.text, plot=args.plot)
    return 0 if result["ok"] else 1


def cmd_generate(args: argparse.Namespace) -> int:
    """Load a checkpoint and its tokenizer, then stream what the model writes after the prompt.

    The fastest correct path: torch's fused attention (``sdpa``) and the KV cache. Beam search
    cannot stream (the best beam is known at the end only): its text is printed when it is done.
    Bad input (a folder that is not a checkpoint, an encoder-only model, bad options) is one line
    on stderr and exit status 2.
    """
    import time

    import torch

    from minitransformer.generation.streaming import TextStreamer
    from minitransformer.loading import from_pretrained
    from minitransformer.loading.errors import LoadingError
    from minitransformer.models.base import DecoderOnlyModel, EncoderDecoderModel
    from minitransformer.tokenizers import load_tokenizer

    def fail(message: str) -> int:
        print(f"minitransformer generate: error: {message}", file=sys.stderr)
        return 2

    try:
        model = from_pretrained(args.model, attn_implementation=args.attn_implementation, device=args.device)
        tokenizer = load_tokenizer(args.model)
    except (LoadingError, OSError, ValueError) as err:
        return fail(f"cannot load {args.model!r}: {err}")
    if not isinstance(model, DecoderOnlyModel | EncoderDecoderModel):
        return fail(f"{args.model} holds a {type(model).__name__}, which does not generate text (an encoder); "
                    "generate needs a decoder: GPT-2, LLaMA (Mistral, Qwen2) or T5")
    ids = tokenizer.encode(args.prompt)
    if not ids:
        return fail("the prompt is empty after tokenization: give some text to continue")
    options = dict(max_new_tokens=args.max_new_tokens, do_sample=args.do_sample, num_beams=args.num_beams)
    if args.compile:
        options["compile"] = True
    options |= {k: v for k, v in (("temperature", args.temperature), ("top_k", args.top_k),
                                  ("top_p", args.top_p)) if v is not None}
    torch.manual_seed(args.seed)
    streaming = args.num_beams == 1
    prompt = torch.tensor([ids], device=model.device)  # (1, P)
    is_seq2seq = getattr(model.config, "is_encoder_decoder", False)
    # A decoder's streamer shows the prompt first (once the options are checked), then each new piece;
    # T5 writes a new text, not a continuation: its prompt is not repeated.
    streamer = TextStreamer(tokenizer, skip_prompt=is_seq2seq, skip_special_tokens=True) if streaming else None
    start = time.perf_counter()
    try:
        out = model.generate(prompt, streamer=streamer, **options)
    except ValueError as err:
        return fail(str(err))
    seconds = time.perf_counter() - start
    new = out[0, 0 if is_seq2seq else prompt.shape[1]:]
    if not streaming:
        print(("" if is_seq2seq else args.prompt) + tokenizer.decode(new.tolist(), skip_special_tokens=True))
    print(f"[{len(new)} tokens in {seconds:.2f} s: {len(new) / seconds:.1f} tokens/s, "
          f"{type(model).__name__}, {args.attn_implementation}]", file=sys.stderr)
    return 0


def cmd_tour(args: argparse.Namespace) -> int:
    from minitransformer.tour import tour_main

    return tour_main(args.out, args.quick, args.skip)


def cmd_parity(args: argparse.Namespace) -> int:
    from minitransformer.parity import parity_main

    return parity_main(args.checkpoints)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minitransformer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the layers on a built-in sentence and prove two properties live")
    demo.add_argument("--text", default=None, help="the text to run (default: a built-in sentence)")
    demo.add_argument("--plot", default=None, help="also save a heatmap of layer 0, head 0 to this PNG")
    demo.set_defaults(func=cmd_demo)

    tour = sub.add_parser("tour", help="a guided tour: tokenizer, training, generation, parity, attention, "
                                       "into one folder with an index.html report")
    tour.add_argument("--out", default="tour", help="the output folder (default: tour/ here)")
    tour.add_argument("--quick", action="store_true", help="a shorter run of every step (under a minute)")
    tour.add_argument("--skip", action="append", default=[], metavar="STEP",
                      help="skip a step (repeatable, or comma-separated): tokenizer, train, generate, parity, "
                           "attention")
    tour.set_defaults(func=cmd_tour)

    check = sub.add_parser("check", help="grade a chapter's exercises (or one exercise)",
                           usage="minitransformer check N[.M] [--reference] [--file F] [-v] [-- PYTEST_ARGS]\n"
                                 "       minitransformer check --all [--reference]")
    check.add_argument("target", nargs="?", default=None, help="a chapter (3) or one of its exercises (3.1)")
    check.add_argument("--all", action="store_true", help="one table of every chapter's exercises")
    check.add_argument("--reference", action="store_true", help="grade the library's reference solutions")
    check.add_argument("--file", default=None, help="grade this exercise file instead of the chapter's own")
    check.add_argument("-v", "--verbose", action="store_true", help="also print pytest's report, tracebacks and all")
    check.add_argument("--chapters-dir", default=None, help="where the chapters/ folder is")
    check.set_defaults(func=cmd_check, pytest_args=[])

    chapters = sub.add_parser("chapters", help="list the chapters and how far you are in each")
    chapters.add_argument("--chapters-dir", default=None)
    chapters.set_defaults(func=cmd_chapters)

    notebooks = sub.add_parser("notebooks", help="write each chapter's lesson.ipynb from its lesson.py")
    notebooks.add_argument("--check", action="store_true",
                           help="write nothing; exit 1 if a notebook is missing or out of date")
    notebooks.add_argument("--figures", action="store_true",
                           help="run each lesson that draws and keep its figures for the chapter pages (~2 min)")
    notebooks.add_argument("--chapters-dir", default=None)
    notebooks.set_defaults(func=cmd_notebooks)

    gen = sub.add_parser("generate", help="stream text from a checkpoint (a folder or a cached hub id)")
    gen.add_argument("model", help="a checkpoint folder (config.json, safetensors, tokenizer) or a hub id")
    gen.add_argument("prompt", help="the text to continue")
    gen.add_argument("--max-new-tokens", type=int, default=50)
    gen.add_argument("--do-sample", action="store_true", help="sample (default: greedy, or beam search)")
    gen.add_argument("--temperature", type=float, default=None)
    gen.add_argument("--top-k", type=int, default=None)
    gen.add_argument("--top-p", type=float, default=None)
    gen.add_argument("--num-beams", type=int, default=1)
    gen.add_argument("--seed", type=int, default=0, help="of the sampling")
    gen.add_argument("--device", default=None, help="cpu, cuda... (default: the loader's)")
    gen.add_argument("--attn-implementation", default="sdpa", choices=("sdpa", "math", "flash"),
                     help="sdpa (default, the fastest here), math (written out) or flash (tiled)")
    gen.add_argument("--compile", action="store_true",
                     help="the compiled decode step (generate(compile=True)): the fastest per token, after "
                          "15 to 60 s of compiling the first time (docs/generation.md)")
    gen.set_defaults(func=cmd_generate)

    parity = sub.add_parser("parity", help="compare our model with transformers' on checkpoints you name")
    parity.add_argument("checkpoints", nargs="+", help="checkpoint folders or hub ids (from the cache offline)")
    parity.set_defaults(func=cmd_parity)

    # train parses its own options (minitransformer/training/cli.py): this entry is for --help's list
    sub.add_parser("train", help="train a model from scratch (see: minitransformer train --help)", add_help=False)
    sub.add_parser("finetune", help="fine-tune a BERT classifier (see: minitransformer finetune --help)",
                   add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "train":  # its options live with the trainer
        from minitransformer.training.cli import train_main

        return train_main(argv[1:])
    if argv and argv[0] == "finetune":
        from minitransformer.training.finetune import finetune_main

        return finetune_main(argv[1:])
    pytest_args = []
    if argv and argv[0] == "check" and "--" in argv:  # everything after -- is pytest's, wherever the rest is
        cut = argv.index("--")
        argv, pytest_args = argv[:cut], argv[cut + 1:]
    args = build_parser().parse_args(argv)
    if args.command == "demo" and args.text is None:
        from minitransformer.demo import DEFAULT_TEXT

        args.text = DEFAULT_TEXT
    if args.command == "check":
        args.pytest_args = pytest_args
    try:
        return args.func(args)
    except UsageError as err:
        print(f"minitransformer {args.command}: error: {err}", file=sys.stderr)
        raise


if __name__ == "__main__":
    sys.exit(main())
