"""pytest options and the ``ex`` fixture for grading chapters.

    pytest chapters/03_attention                 # grade the student's exercises_03.py
    pytest chapters/03_attention --reference     # the same checks on the library's solutions
    pytest chapters --stub-proof                 # every check must FAIL on the untouched stubs
    pytest chapters/03_attention --exercises-file my_copy.py

``chapters/conftest.py`` imports this module, so it works for any chapter that arrives later.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
from pathlib import Path
from types import ModuleType

import pytest

CHAPTER_DIR = re.compile(r"^(\d\d)_")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("minitransformer chapters")
    group.addoption("--reference", action="store_true", default=False,
                    help="grade the library's reference solutions instead of the student's exercises_NN.py")
    group.addoption("--stub-proof", action="store_true", default=False,
                    help="invert outcomes: a check passes only if it fails on the untouched stub")
    group.addoption("--exercises-file", default=None,
                    help="grade this file instead of the chapter's exercises_NN.py (one chapter at a time)")


def chapter_number(path: Path) -> int:
    """The chapter a test file belongs to, from its folder name ``NN_topic``."""
    for part in reversed(path.parts):
        match = CHAPTER_DIR.match(part)
        if match:
            return int(match.group(1))
    raise ValueError(f"{path} is not inside a chapter folder named like '03_attention'")


def exercises_path(folder: Path) -> Path:
    """The student's exercise file of a chapter folder: ``chapters/03_attention/exercises_03.py``.

    Each chapter's module has its own name, so that one Python process (a notebook's kernel) can
    import chapter 3's and chapter 4's side by side.
    """
    return Path(folder) / f"exercises_{chapter_number(Path(folder)):02d}.py"


def load_exercises(chapter_dir: Path, reference: bool = False, exercises_file: str | None = None) -> ModuleType:
    """The module the checks call: the reference solutions or a student's exercise file."""
    number = chapter_number(chapter_dir)
    if reference:
        return importlib.import_module(f"minitransformer.exercises.solutions.ch{number:02d}")
    path = Path(exercises_file) if exercises_file else exercises_path(chapter_dir)
    if not path.is_file():
        raise FileNotFoundError(f"no exercise file at {path}; pass --exercises-file or run with --reference")
    spec = importlib.util.spec_from_file_location(f"student_exercises_ch{number:02d}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def ex(request: pytest.FixtureRequest) -> ModuleType:
    """The implementation under test for this chapter."""
    config = request.config
    reference = config.getoption("--reference") or os.environ.get("MINITRANSFORMER_REFERENCE") == "1"
    return load_exercises(Path(request.path).parent, reference, config.getoption("--exercises-file"))


@pytest.fixture
def one_thread():
    """For checks on tiny models: a second thread only adds synchronisation (and crawls on a busy machine).

    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``; the previous setting comes back after.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    if not item.config.getoption("--stub-proof"):
        return
    report = outcome.get_result()
    if report.when != "call":
        return
    if report.passed:
        report.outcome = "failed"
        report.longrepr = (
            f"{item.nodeid} PASSED on the untouched stubs: this check cannot tell a stub from a solution. "
            "Make it assert a value the stub cannot produce."
        )
    elif report.failed:
        report.outcome = "passed"
        report.longrepr = None
