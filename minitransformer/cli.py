"""The ``minitransformer`` command.

    minitransformer demo                    # the tour of the layers on a built-in sentence
    minitransformer chapters                # list the chapters that have graded exercises
    minitransformer check 3                 # grade your chapters/03_*/exercises.py
    minitransformer check 3 --reference     # the same checks on the library's solutions
    minitransformer train --model gpt2-tiny --max-steps 200 --out runs/tiny   # train from scratch
    minitransformer finetune --out runs/reviews   # fine-tune all-MiniLM-L6-v2 on the built-in reviews
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def find_chapters_dir(explicit: str | None = None) -> Path:
    """The ``chapters/`` folder: the one given, else one in the current directory or its parents."""
    if explicit:
        path = Path(explicit)
        if not path.is_dir():
            raise SystemExit(f"--chapters-dir {explicit} is not a directory")
        return path
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "chapters" / "conftest.py").is_file():
            return folder / "chapters"
    raise SystemExit(
        "no chapters/ folder found here or above; run from your clone of minitransformer or pass --chapters-dir"
    )


def chapter_dir(chapters: Path, number: int) -> Path:
    matches = sorted(chapters.glob(f"{number:02d}_*"))
    if not matches:
        available = ", ".join(p.name for p in sorted(chapters.glob("[0-9][0-9]_*")))
        raise SystemExit(f"no chapter {number} in {chapters}; available: {available}")
    return matches[0]


def cmd_check(args: argparse.Namespace) -> int:
    import pytest

    folder = chapter_dir(find_chapters_dir(args.chapters_dir), args.chapter)
    pytest_args = [str(folder), "-q", "--no-header", "-p", "no:cacheprovider", "--import-mode=importlib"]
    if args.reference:
        pytest_args.append("--reference")
    if args.file:
        pytest_args += ["--exercises-file", str(Path(args.file).resolve())]
    pytest_args += args.pytest_args
    print(f"grading {folder.name} ({'reference solutions' if args.reference else args.file or 'exercises.py'})")
    return int(pytest.main(pytest_args))


def cmd_chapters(args: argparse.Namespace) -> int:
    chapters = find_chapters_dir(args.chapters_dir)
    for folder in sorted(chapters.glob("[0-9][0-9]_*")):
        status = "exercises" if (folder / "exercises.py").is_file() else "lesson only"
        print(f"{int(folder.name[:2]):3d}  {folder.name:28s} {status}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from minitransformer.demo import run_demo

    result = run_demo(args.text, plot=args.plot)
    return 0 if result["ok"] else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minitransformer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the layers on a built-in sentence and prove two properties live")
    demo.add_argument("--text", default=None, help="the text to run (default: a built-in sentence)")
    demo.add_argument("--plot", default=None, help="also save a heatmap of layer 0, head 0 to this PNG")
    demo.set_defaults(func=cmd_demo)

    check = sub.add_parser("check", help="grade a chapter's exercises")
    check.add_argument("chapter", type=int, help="chapter number, e.g. 3")
    check.add_argument("--reference", action="store_true", help="grade the library's reference solutions")
    check.add_argument("--file", default=None, help="grade this exercise file instead of the chapter's own")
    check.add_argument("--chapters-dir", default=None, help="where the chapters/ folder is")
    check.add_argument("pytest_args", nargs="*", help="extra arguments for pytest (after --)")
    check.set_defaults(func=cmd_check)

    chapters = sub.add_parser("chapters", help="list the chapters")
    chapters.add_argument("--chapters-dir", default=None)
    chapters.set_defaults(func=cmd_chapters)

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
    args = build_parser().parse_args(argv)
    if args.command == "demo" and args.text is None:
        from minitransformer.demo import DEFAULT_TEXT

        args.text = DEFAULT_TEXT
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
