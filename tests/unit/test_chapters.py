"""The proof behind the graded exercises, for every chapter that has them.

1. Every check passes on the library's reference solutions (``--reference``).
2. Every check fails on the untouched stubs (``--stub-proof`` inverts outcomes, so a check that
   passes on a stub is reported as a failure).
3. Every check belongs to a numbered exercise: ``test_3_2_<anything>`` grades exercise 3.2 (what
   ``minitransformer check 3.2`` runs and the per-exercise summary counts), and every exercise has checks.
4. Every lesson runs top to bottom.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from minitransformer.exercises.course import exercises_path
from minitransformer.exercises.progress import checks_declared, exercise_of, exercises_declared

REPO = Path(__file__).resolve().parents[2]
CHAPTERS = sorted(p for p in (REPO / "chapters").iterdir() if p.is_dir() and p.name[:2].isdigit()
                  and exercises_path(p).is_file())
LESSONS = sorted((REPO / "chapters").glob("*/lesson.py"))


def _env() -> dict[str, str]:
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1")
    env.pop("MINITRANSFORMER_REFERENCE", None)
    return env


def _run_checks(mode: str, tmp_path: Path) -> dict[str, str]:
    """Run every chapter's checks in ``mode``; return {test id: outcome}."""
    report = tmp_path / f"{mode}.xml"
    cmd = [sys.executable, "-m", "pytest", *map(str, CHAPTERS), mode, "-q", "-p", "no:cacheprovider",
           f"--junitxml={report}"]
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    if not report.exists():
        pytest.fail(f"pytest {mode} produced no report:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    outcomes = {}
    for case in ET.parse(report).iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        failed = case.find("failure") is not None or case.find("error") is not None
        skipped = case.find("skipped") is not None
        outcomes[name] = "failed" if failed else "skipped" if skipped else "passed"
    return outcomes, proc


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    return _run_checks("--reference", tmp_path_factory.mktemp("ref"))


@pytest.fixture(scope="module")
def stub_run(tmp_path_factory):
    return _run_checks("--stub-proof", tmp_path_factory.mktemp("stub"))


def test_there_are_chapters():
    assert {p.name[:2] for p in CHAPTERS} >= {"00", "02", "03", "04", "05"}


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_every_check_passes_on_the_reference(chapter, reference_run):
    outcomes, proc = reference_run
    mine = {k: v for k, v in outcomes.items() if f"chapters.{chapter.name}" in k or chapter.name in k}
    assert len(mine) >= 3, f"{chapter.name} has too few checks: {sorted(mine)}\n{proc.stdout[-2000:]}"
    bad = sorted(k for k, v in mine.items() if v != "passed")
    assert not bad, f"checks that do not pass on the reference solutions: {bad}\n{proc.stdout[-4000:]}"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_every_check_fails_on_the_stubs(chapter, stub_run, reference_run):
    outcomes, proc = stub_run
    mine = {k: v for k, v in outcomes.items() if f"chapters.{chapter.name}" in k or chapter.name in k}
    assert set(mine) == {k for k in reference_run[0] if k in mine or chapter.name in k}
    bad = sorted(k for k, v in mine.items() if v != "passed")
    assert not bad, f"checks that PASS on the untouched stubs (a defect): {bad}\n{proc.stdout[-4000:]}"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_every_check_belongs_to_a_numbered_exercise(chapter, reference_run):
    number = int(chapter.name[:2])
    declared = exercises_declared(exercises_path(chapter))  # docstrings "Exercise 3.2: ..."
    assert declared, f"{exercises_path(chapter)} has no docstring starting 'Exercise {number}.1'"
    assert all(n.startswith(f"{number}.") for n in declared), f"{chapter.name}: exercises of another chapter"
    checks = checks_declared(chapter / "test_checks.py")
    assert None not in checks, (f"{chapter.name}/test_checks.py: checks not named test_{number}_<exercise>_...: "
                                f"{checks.get(None)}; rename them so that each grades one exercise")
    assert set(checks) == set(declared), (f"{chapter.name}: exercises {sorted(declared)} but checks for "
                                          f"{sorted(checks)}: every exercise needs checks, every check an exercise")
    # and what pytest actually ran (parametrized, generated) maps the same way
    ran = [k.rpartition("::")[2] for k in reference_run[0] if chapter.name in k]
    assert ran and all(exercise_of(name) in declared for name in ran), sorted(ran)


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda p: p.parent.name)
def test_lesson_runs_top_to_bottom(lesson, tmp_path):
    # run in a copy of the chapter folder's cwd-free context: outputs (plots) land in tmp_path
    proc = subprocess.run([sys.executable, str(lesson)], cwd=tmp_path, env=_env(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f"{lesson} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
