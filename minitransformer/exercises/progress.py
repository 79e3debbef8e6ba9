"""Grade chapters in-process and say where the student stands, one line per exercise.

    grading 03_attention: chapters/03_attention/exercises_03.py
      3.1 attention_scores              done
      3.2 scaled_dot_product_attention  failing 3 of 4 checks: case 'no mask': your attention equals ...
      3.3 split_heads                   not started
    next: 3.2 scaled_dot_product_attention (minitransformer check 3.2 -v shows the full traceback)

Which exercise a check grades is in its name: ``test_3_2_<what it checks>`` grades exercise 3.2
(:func:`exercise_of`). ``tests/unit/test_chapters.py`` proves that every check of every chapter is
named so, and that every exercise of an ``exercises_NN.py`` has checks.

An exercise is *not started* while its checks stop at the stub's :func:`~minitransformer.exercises.todo`
(or any ``NotImplementedError`` of its own); *done* when all its checks pass; otherwise *failing*, with
the first line of the first failing check's message, which the checks write for students.
"""

from __future__ import annotations

import ast
import contextlib
import io
import re
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from minitransformer.exercises.grading import ExerciseNotDone
from minitransformer.exercises.pytest_plugin import chapter_number, exercises_path, load_exercises

CHECK_NAME = re.compile(r"^test_(\d+)_(\d+)_")
EXERCISE_DOC = re.compile(r"^Exercise (\d+\.\d+)\b")


def exercise_of(check_name: str) -> str | None:
    """``test_3_2_scaled_dot_product_attention[no mask]`` -> ``"3.2"``; ``None`` for a name off the convention."""
    match = CHECK_NAME.match(check_name)
    return f"{int(match.group(1))}.{int(match.group(2))}" if match else None


def _sort_key(number: str) -> tuple[int, ...]:
    return tuple(int(part) for part in number.split("."))


def exercises_declared(exercises_py: Path) -> dict[str, str]:
    """{exercise number: the function or class it asks for}, from docstrings that start ``Exercise N.M``.

    Read from the source without running it; empty when the file does not parse.
    """
    try:
        tree = ast.parse(exercises_py.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return {}
    found = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            match = EXERCISE_DOC.match(ast.get_docstring(node) or "")
            if match:
                found.setdefault(match.group(1), node.name)
    return dict(sorted(found.items(), key=lambda kv: _sort_key(kv[0])))


def checks_declared(test_checks_py: Path) -> dict[str | None, list[str]]:
    """{exercise number: its check functions} from a ``test_checks.py``; key ``None`` holds misnamed checks."""
    tree = ast.parse(test_checks_py.read_text(encoding="utf-8"))
    found: dict[str | None, list[str]] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
            found.setdefault(exercise_of(node.name), []).append(node.name)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            found.setdefault(None, []).append(node.name)
    return found


def chapter_title(folder: Path) -> str:
    """``attention`` for ``03_attention``: the lesson's ``# Chapter 3: attention`` heading, else the folder name."""
    lesson = folder / "lesson.py"
    if lesson.is_file():
        for line in lesson.read_text(encoding="utf-8").splitlines():
            match = re.match(r"^# # Chapter \d+: (.+)$", line)
            if match:
                return match.group(1).strip()
    return folder.name[3:].replace("_", " ")


def shown(path: Path) -> str:
    """``path`` relative to the current directory where it is below it (shorter to read)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def load_problem(folder: Path, reference: bool = False, exercises_file: str | None = None) -> str | None:
    """Why the exercise file cannot be loaded, in one short message naming its file and line; ``None`` if it loads."""
    path = Path(exercises_file) if exercises_file else exercises_path(folder)
    try:
        load_exercises(folder, reference, exercises_file)
    except SyntaxError as err:  # IndentationError too
        where = f"{shown(Path(err.filename)) if err.filename else shown(path)} line {err.lineno}"
        text = (err.text or "").strip()
        return (f"{where}: {type(err).__name__}: {err.msg}" + (f"\n    {text}" if text else "") + "\n"
                "Fix that line, then check again: nothing in this file can be graded until it parses.")
    except FileNotFoundError as err:
        return str(err)
    except Exception as err:  # noqa: BLE001 - any error at import time stops all grading; say where it came from
        frames = [f for f in traceback.extract_tb(err.__traceback__) if Path(f.filename) == path.resolve()
                  or Path(f.filename) == path]
        where = f"{shown(path)} line {frames[-1].lineno}" if frames else shown(path)
        text = frames[-1].line if frames and frames[-1].line else ""
        return (f"{where}: {type(err).__name__} while loading the file: {err}" + (f"\n    {text}" if text else "")
                + "\n"
                "Fix that, then check again: nothing in this file can be graded until it imports.")
    return None


@dataclass
class Exercise:
    """One exercise's checks, summed up."""

    number: str
    name: str = ""
    passed: int = 0
    failed: int = 0
    not_started: int = 0
    skipped: int = 0
    message: str = ""  # the first failing check's teaching line
    hint: str = ""  # the stub's hint, while it is not started
    skip_reason: str = ""

    @property
    def status(self) -> str:
        if self.failed:
            return "failing"
        if self.not_started:
            return "not started"
        if self.passed:
            return "done"
        return "skipped" if self.skipped else "not run"

    def line(self, width: int) -> str:
        label = f"{self.number} {self.name}".ljust(width)
        status = self.status
        if status == "failing":
            total = self.passed + self.failed + self.not_started
            return f"  {label}  failing {self.failed} of {total} check{'s' * (total > 1)}: {self.message}"
        if status == "skipped":
            return f"  {label}  skipped: {self.skip_reason}"
        return f"  {label}  {status}"


@dataclass
class Chapter:
    folder: Path
    exercises: dict[str, Exercise] = field(default_factory=dict)
    problem: str | None = None  # the exercise file does not load, or the checks do not collect

    @property
    def number(self) -> int:
        return chapter_number(self.folder)

    def ordered(self) -> list[Exercise]:
        return [self.exercises[k] for k in sorted(self.exercises, key=_sort_key)]

    @property
    def ok(self) -> bool:
        return self.problem is None and not any(e.status in ("failing", "not started")
                                                for e in self.exercises.values())

    def next_line(self) -> str:
        todo = next((e for e in self.ordered() if e.status in ("failing", "not started")), None)
        if todo is None:
            not_run = [e.number for e in self.ordered() if e.status == "not run"]
            return f"nothing failed; not run: {', '.join(not_run)}" if not_run else "all done"
        if todo.status == "not started":
            return f"next: {todo.number} {todo.name}".rstrip() + (f". Hint: {todo.hint}" if todo.hint else "")
        return (f"next: {todo.number} {todo.name}".rstrip()
                + f" (minitransformer check {todo.number} -v shows the full traceback)")

    def summary(self) -> str:
        """``done 6/6``, ``failing 3.2 (done 1/6)``, ``not started`` or the load problem, for ``chapters``."""
        if self.problem:
            return "error: " + self.problem.splitlines()[0]
        done = sum(e.status == "done" for e in self.exercises.values())
        failing = [e.number for e in self.ordered() if e.status == "failing"]
        if failing:
            return f"failing {', '.join(failing)} (done {done}/{len(self.exercises)})"
        if done == 0:
            return "not started"
        return f"done {done}/{len(self.exercises)}"


def _teaching_line(err: BaseException, number: str, exercises_file: Path | None) -> tuple[str, str]:
    """(kind, text): kind is "not started" or "failing"; text is what to tell the student, on one line."""
    if isinstance(err, NotImplementedError):
        theirs = getattr(err, "exercise", number)
        if isinstance(err, ExerciseNotDone) and theirs != number:
            return "failing", f"it calls exercise {theirs}, which is not done yet: do {theirs} first"
        return "not started", getattr(err, "hint", "")
    text = str(err).strip()
    first = text.splitlines()[0] if text else ""
    if isinstance(err, AssertionError):
        first = re.sub(rf"^Exercise {re.escape(number)}, ", "", first) or "an assertion failed (no message)"
        return "failing", first
    where = ""
    if exercises_file is not None:
        frames = [f for f in traceback.extract_tb(err.__traceback__) if Path(f.filename) == exercises_file]
        if frames:
            where = f" (your line {frames[-1].lineno}: {(frames[-1].line or '').strip()})"
    return "failing", f"{type(err).__name__}: {first}{where}"


class _Collector:
    """A pytest plugin: keeps one exercise's checks (when asked) and records each check's outcome."""

    def __init__(self, only: str | None, exercise_files: dict[Path, Path]):
        self.only = only
        self.exercise_files = exercise_files  # chapter folder -> the file graded there
        self.results: dict[Path, dict[str, Exercise]] = {}
        self.problems: dict[Path, str] = {}
        self.skipped: dict[Path, str] = {}  # chapter folder -> why its whole checks module skipped
        self.graded: set[str] = set()

    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        if self.only is None:
            return
        keep = [item for item in items if exercise_of(item.name) == self.only]
        dropped = [item for item in items if exercise_of(item.name) != self.only]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
        items[:] = keep

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.skipped and report.fspath.endswith(".py"):
            self.skipped[Path(report.fspath).resolve().parent] = _skip_reason(report)
        if report.failed and report.fspath.endswith(".py"):
            text = str(report.longrepr).strip().splitlines()
            self.problems[Path(report.fspath).resolve().parent] = (
                f"the checks in {shown(Path(report.fspath))} do not load: {text[-1] if text else 'unknown error'}")

    def _exercise(self, item: pytest.Item) -> Exercise | None:
        number = exercise_of(item.name)
        if number is None:
            return None
        folder = item.path.resolve().parent
        chapter = self.results.setdefault(folder, {})
        return chapter.setdefault(number, Exercise(number))

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        outcome = yield
        report = outcome.get_result()
        exercise = self._exercise(item)
        if exercise is None or item.nodeid in self.graded:  # one verdict per check: its first failure, else its call
            return
        if report.skipped:
            exercise.skipped += 1
            exercise.skip_reason = exercise.skip_reason or _skip_reason(report)
        elif report.failed:
            err = call.excinfo.value if call.excinfo is not None else AssertionError(str(report.longrepr))
            kind, text = _teaching_line(err, exercise.number, self.exercise_files.get(item.path.resolve().parent))
            if kind == "not started":
                exercise.not_started += 1
                exercise.hint = exercise.hint or text
            else:
                exercise.failed += 1
                exercise.message = exercise.message or text
        elif report.when == "call":
            exercise.passed += 1
        else:
            return
        self.graded.add(item.nodeid)


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    return reason.removeprefix("Skipped: ")


def grade(folders: list[Path], *, reference: bool = False, exercises_file: str | None = None,
          only: str | None = None, pytest_args: list[str] = (), verbose: bool = False) -> list[Chapter]:
    """Run the checks of ``folders`` (of exercise ``only`` alone, when given) and sum them up per exercise.

    A folder whose exercise file does not load is not run: its :attr:`Chapter.problem` says why.
    ``verbose`` lets pytest print its own report (the full tracebacks) before the summary.
    """
    chapters = [Chapter(folder.resolve()) for folder in folders]
    runnable, files = [], {}
    for chapter in chapters:
        graded = exercises_file or str(exercises_path(chapter.folder))
        # a student may delete a docstring: the chapter's own stubs name the rest
        names = {**exercises_declared(exercises_path(chapter.folder)), **exercises_declared(Path(graded))}
        for number in checks_declared(chapter.folder / "test_checks.py"):
            if number is not None and (only is None or number == only):
                chapter.exercises[number] = Exercise(number, names.get(number, ""))
        chapter.problem = load_problem(chapter.folder, reference, exercises_file)
        if chapter.problem is None:
            runnable.append(chapter)
            files[chapter.folder] = Path(graded).resolve() if not reference else None
    if not runnable:
        return chapters
    collector = _Collector(only, files)
    root = chapters[0].folder.parent
    args = [*(str(c.folder) for c in runnable), "--no-header", "-p", "no:cacheprovider",
            "--import-mode=importlib", f"--rootdir={root.parent}", f"--confcutdir={root}"]
    if reference:
        args.append("--reference")
    if exercises_file:
        args += ["--exercises-file", str(Path(exercises_file).resolve())]
    if verbose:
        pytest.main([*args, *pytest_args], plugins=[collector])
    else:  # pytest's own report goes nowhere: the summary says it in a line per exercise
        with contextlib.redirect_stdout(io.StringIO()):
            pytest.main([*args, "-q", *pytest_args], plugins=[collector])
    for chapter in runnable:
        chapter.problem = collector.problems.get(chapter.folder)
        for number, result in collector.results.get(chapter.folder, {}).items():
            result.name = chapter.exercises.get(number, result).name
            chapter.exercises[number] = result
        if chapter.folder in collector.skipped:  # e.g. importorskip("transformers") at the top of the checks
            for exercise in chapter.exercises.values():
                exercise.skipped, exercise.skip_reason = exercise.skipped or 1, collector.skipped[chapter.folder]
    return chapters


def print_chapter(chapter: Chapter, what: str) -> None:
    """The student's view of one graded chapter: a header, a line per exercise, then what to do next."""
    print(f"grading {chapter.folder.name}: {what}")
    if chapter.problem:
        print(chapter.problem)
        return
    exercises = chapter.ordered()
    width = max((len(f"{e.number} {e.name}") for e in exercises), default=0)
    for exercise in exercises:
        print(exercise.line(width))
    print(chapter.next_line())
