"""Where the chapters are, and grading one from the command line or from a notebook.

    minitransformer check 3.1          # in a terminal, anywhere inside your clone
    minitransformer.check("3.1")       # in a notebook: the same lines, printed in the cell

Each chapter folder ``chapters/NN_topic/`` has its own exercise module, ``exercises_NN.py``
(:func:`exercises_path`): a distinct name, so that a kernel that imported chapter 3's
``exercises_03`` still imports chapter 4's ``exercises_04`` (two modules named ``exercises``
would be one entry in ``sys.modules``, and the second import would return the first).
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

from minitransformer.exercises.pytest_plugin import exercises_path

__all__ = ["ChapterNotFound", "check", "exercises_path", "find_chapters_dir", "graded_chapters", "resolve"]


class ChapterNotFound(ValueError):
    """No ``chapters/`` folder, no such chapter, no such exercise: the message says what there is."""


def find_chapters_dir(explicit: str | Path | None = None) -> Path:
    """The ``chapters/`` folder: the one given, else one in the current directory or its parents."""
    if explicit:
        path = Path(explicit)
        if not path.is_dir():
            raise ChapterNotFound(f"--chapters-dir {explicit} is not a directory")
        return path
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "chapters" / "conftest.py").is_file():
            return folder / "chapters"
    raise ChapterNotFound(
        f"no chapters/ folder found in {here} or above: run from your clone of minitransformer (a notebook: open "
        "the chapter's lesson.ipynb in the clone), or pass --chapters-dir (in a notebook, chapters_dir=)"
    )


def graded_chapters(chapters: Path) -> list[Path]:
    """The chapter folders that have exercises and checks, in order."""
    return sorted(p for p in Path(chapters).glob("[0-9][0-9]_*")
                  if exercises_path(p).is_file() and (p / "test_checks.py").is_file())


def chapter_dir(chapters: Path, number: int) -> Path:
    """The folder of chapter ``number``, or :class:`ChapterNotFound` listing the chapters there are."""
    matches = [p for p in graded_chapters(chapters) if int(p.name[:2]) == number]
    if not matches:
        available = ", ".join(str(int(p.name[:2])) for p in graded_chapters(chapters))
        raise ChapterNotFound(f"no chapter {number} with exercises in {chapters}; the chapters are {available} "
                              "(minitransformer chapters lists them)")
    return matches[0]


def parse_target(target: str) -> tuple[int, str | None]:
    """``"3"`` -> ``(3, None)``; ``"3.1"`` -> ``(3, "3.1")``."""
    match = re.fullmatch(r"(\d+)(?:\.(\d+))?", str(target).strip())
    if not match:
        raise ChapterNotFound(f"'{target}' is neither a chapter nor an exercise: write 3 for chapter 3, "
                              "3.1 for its exercise 1")
    chapter = int(match.group(1))
    return chapter, None if match.group(2) is None else f"{chapter}.{int(match.group(2))}"


def resolve(target: str, chapters_dir: str | Path | None = None) -> tuple[Path, str | None]:
    """(the chapter's folder, the exercise or ``None``) for ``"3"`` or ``"3.1"``; checks that both exist."""
    from minitransformer.exercises.progress import checks_declared

    number, exercise = parse_target(target)
    folder = chapter_dir(find_chapters_dir(chapters_dir), number)
    if exercise is not None:
        known = sorted((n for n in checks_declared(folder / "test_checks.py") if n),
                       key=lambda n: int(n.split(".")[1]))
        if exercise not in known:
            raise ChapterNotFound(f"no exercise {exercise} in chapter {number}; its exercises are {', '.join(known)}")
    return folder, exercise


def grade_and_print(folder: Path, exercise: str | None = None, *, reference: bool = False, file: str | None = None,
                    pytest_args: list[str] = (), verbose: bool = False) -> bool:
    """Grade one chapter (or one of its exercises) and print a line per exercise; ``True`` when all pass."""
    from minitransformer.exercises.progress import grade, print_chapter, shown

    [chapter] = grade([folder], reference=reference, exercises_file=file, only=exercise,
                      pytest_args=pytest_args, verbose=verbose)
    what = "the reference solutions" if reference else shown(Path(file) if file else exercises_path(folder))
    if verbose:
        print()
    print_chapter(chapter, what + (f", exercise {exercise}" if exercise else ""))
    return chapter.ok


def check(target: str | int, *, reference: bool = False, file: str | None = None, chapters_dir: str | None = None,
          verbose: bool = False) -> bool:
    """Grade a chapter (``"3"``) or one exercise (``"3.1"``) from a notebook, as ``minitransformer check`` does.

    Prints one line per exercise (done, failing with what the check found, not started) and the
    exercise to do next, and returns ``True`` when every exercise graded passes. The checks read
    your ``exercises_NN.py`` afresh from disk, so an edit counts as soon as the file is saved; a
    module ``exercises_NN`` that this kernel imported is reloaded too, so that calling your
    functions in the notebook runs what the checks ran (names taken with ``from exercises_NN
    import f`` keep the old function: run that import again).

    Args:
        target: a chapter (``"3"`` or ``3``) or one exercise (``"3.1"``).
        reference: grade the library's reference solutions instead.
        file: grade this file instead of the chapter's ``exercises_NN.py``.
        chapters_dir: the ``chapters/`` folder; by default the one in the current directory or above
            (a notebook's current directory is its own folder).
        verbose: print pytest's report, with the full tracebacks, first.

    Example:
        >>> import minitransformer
        >>> minitransformer.check("3.1")  # doctest: +SKIP
        grading 03_attention: exercises_03.py, exercise 3.1
          3.1 attention_scores  not started
        next: 3.1 attention_scores. Hint: transpose the last two dims of key, ...
    """
    try:
        folder, exercise = resolve(str(target), chapters_dir)
        if file is not None and not Path(file).is_file():
            raise ChapterNotFound(f"file={file!r}: no such file")
    except ChapterNotFound as err:  # a message, not a traceback: this is what a student typed
        print(f"minitransformer.check: {err}")
        return False
    ok = grade_and_print(folder, exercise, reference=reference, file=file, verbose=verbose)
    _reload_imported(Path(file) if file else exercises_path(folder))
    return ok


def _reload_imported(path: Path) -> None:
    """Reload the kernel's own import of the graded file, if it has one (a broken file stays as it was)."""
    module = sys.modules.get(path.stem)
    if module is None or Path(getattr(module, "__file__", "") or "").resolve() != path.resolve():
        return
    try:
        importlib.reload(module)
    except Exception:  # noqa: BLE001 - the grade above already said what is wrong with the file
        pass
