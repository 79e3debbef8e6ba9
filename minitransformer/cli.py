"""The ``minitransformer`` command.

    minitransformer tour                    # every part of the library in a minute, into tour/index.html
    minitransformer demo                    # the layers on a built-in sentence, shape by shape
    minitransformer chapters                # the chapters, and how far you are in each
    minitransformer check 3                 # grade your chapters/03_*/exercises.py, one line per exercise
    minitransformer check 3.2 -v            # grade exercise 3.2 alone, with pytest's full tracebacks
    minitransformer check 3 --reference     # the same checks on the library's solutions
    minitransformer check 3 -- -x           # anything after -- goes to pytest
    minitransformer check --all             # one table of every chapter's exercises, for the room
    minitransformer train --model gpt2-tiny --max-steps 200 --out runs/tiny   # train from scratch
    minitransformer finetune --out runs/reviews   # fine-tune all-MiniLM-L6-v2 on the built-in reviews
    minitransformer generate runs/tiny "def f(x):" --max-new-tokens 40   # stream text from a checkpoint
    minitransformer parity runs/tiny sentence-transformers/all-MiniLM-L6-v2   # ours against transformers
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path


class UsageError(SystemExit):
    """Bad usage: exit status 2, as for argparse's own errors; the message says what exists."""

    def __init__(self, message: str):
        super().__init__(2)
        self.message = message

    def __str__(self) -> str:
        return self.message


def find_chapters_dir(explicit: str | None = None) -> Path:
    """The ``chapters/`` folder: the one given, else one in the current directory or its parents."""
    if explicit:
        path = Path(explicit)
        if not path.is_dir():
            raise UsageError(f"--chapters-dir {explicit} is not a directory")
        return path
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "chapters" / "conftest.py").is_file():
            return folder / "chapters"
    raise UsageError(
        "no chapters/ folder found here or above; run from your clone of minitransformer or pass --chapters-dir"
    )


def graded_chapters(chapters: Path) -> list[Path]:
    """The chapter folders that have exercises and checks, in order."""
    return sorted(p for p in chapters.glob("[0-9][0-9]_*")
                  if (p / "exercises.py").is_file() and (p / "test_checks.py").is_file())


def chapter_dir(chapters: Path, number: int) -> Path:
    matches = [p for p in graded_chapters(chapters) if int(p.name[:2]) == number]
    if not matches:
        available = ", ".join(str(int(p.name[:2])) for p in graded_chapters(chapters))
        raise UsageError(f"no chapter {number} with exercises in {chapters}; the chapters are {available} "
                         "(minitransformer chapters lists them)")
    return matches[0]


def parse_target(target: str) -> tuple[int, str | None]:
    """``"3"`` -> ``(3, None)``; ``"3.1"`` -> ``(3, "3.1")``."""
    match = re.fullmatch(r"(\d+)(?:\.(\d+))?", target.strip())
    if not match:
        raise UsageError(f"'{target}' is neither a chapter nor an exercise: write 3 for chapter 3, "
                         "3.1 for its exercise 1")
    chapter = int(match.group(1))
    return chapter, None if match.group(2) is None else f"{chapter}.{int(match.group(2))}"


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
    from minitransformer.exercises.progress import checks_declared, grade, print_chapter, shown

    if args.all:
        if args.target or args.file:
            raise UsageError("--all grades every chapter's own exercises file: drop the chapter and --file")
        return cmd_check_all(args)
    if args.target is None:
        raise UsageError("give a chapter (3), one exercise (3.1), or --all for every chapter")
    number, exercise = parse_target(args.target)
    folder = chapter_dir(find_chapters_dir(args.chapters_dir), number)
    if exercise is not None:
        known = sorted((n for n in checks_declared(folder / "test_checks.py") if n),
                       key=lambda n: int(n.split(".")[1]))
        if exercise not in known:
            raise UsageError(f"no exercise {exercise} in chapter {number}; its exercises are {', '.join(known)}")
    if args.file and not Path(args.file).is_file():
        raise UsageError(f"--file {args.file}: no such file")
    [chapter] = grade([folder], reference=args.reference, exercises_file=args.file, only=exercise,
                      pytest_args=args.pytest_args, verbose=args.verbose)
    what = "the reference solutions" if args.reference else shown(Path(args.file or folder / "exercises.py"))
    if args.verbose:
        print()
    print_chapter(chapter, what + (f", exercise {exercise}" if exercise else ""))
    return 0 if chapter.ok else 1


def cmd_chapters(args: argparse.Namespace) -> int:
    from minitransformer.exercises.progress import chapter_title, grade

    chapters = find_chapters_dir(args.chapters_dir)
    graded = {c.folder.name: c for c in grade(graded_chapters(chapters))}
    for folder in sorted(chapters.glob("[0-9][0-9]_*")):
        status = graded[folder.name].summary() if folder.name in graded else "lesson only"
        print(f"{int(folder.name[:2]):3d}  {chapter_title(folder):38s} {status}")
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
