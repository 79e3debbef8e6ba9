"""``minitransformer check`` and ``chapters`` as a new student meets them, on copies of chapter 3.

Each case writes an attempt (the stubs, one exercise copied from the reference solutions, the scale
forgotten, a syntax error) and asserts on the lines printed and the exit status.
"""

from __future__ import annotations

import ast
import inspect
import re
import shutil
import sys
from pathlib import Path

import pytest
import torch

from minitransformer.cli import main
from minitransformer.exercises.solutions import ch03

REPO = Path(__file__).resolve().parents[2]
CHAPTER = REPO / "chapters" / "03_attention"
STUBS = (CHAPTER / "exercises_03.py").read_text(encoding="utf-8")

FORGOT_THE_SCALE = '''
def scaled_dot_product_attention(query, key, value, mask=None, scale=None):
    scores = query @ key.transpose(-2, -1)  # the 1/sqrt(D) is missing
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(-1) @ value
'''


def with_functions(source: str, **replacements: str) -> str:
    """``source`` with each named top-level function replaced by the given source text."""
    lines = source.splitlines(keepends=True)
    nodes = {n.name: n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)}
    for name in sorted(replacements, key=lambda n: -nodes[n].lineno):  # bottom up: line numbers stay valid
        node = nodes[name]
        lines[node.lineno - 1:node.end_lineno] = [replacements[name].strip("\n") + "\n"]
    return "".join(lines)


def reference(name: str) -> str:
    return inspect.getsource(getattr(ch03, name))


def attempt(tmp_path: Path, source: str) -> str:
    path = tmp_path / "my_exercises.py"
    path.write_text(source, encoding="utf-8")
    return str(path)


def run(capsys, *argv: str) -> tuple[int, list[str], str]:
    """(exit status, stdout lines, stderr) of ``minitransformer *argv``, run in this process."""
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # usage errors exit 2, as argparse's do
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch):
    monkeypatch.chdir(REPO)


def status_of(lines: list[str]) -> dict[str, str]:
    """{"3.1": "not started", "3.2": "failing", ...} from the per-exercise lines."""
    out = {}
    for line in lines:
        match = re.match(r"^  (\d+\.\d+) \w+ +(done|failing|not started|skipped|not run)", line)
        if match:
            out[match.group(1)] = match.group(2)
    return out


def test_untouched_stubs_say_not_started_one_line_each(tmp_path, capsys):
    code, lines, _ = run(capsys, "check", "3", "--file", attempt(tmp_path, STUBS))
    assert code == 1
    assert len(lines) == 8, lines  # header, six exercises, next
    assert set(status_of(lines).values()) == {"not started"} and len(status_of(lines)) == 6
    assert lines[-1].startswith("next: 3.1 attention_scores. Hint: ")
    assert "Traceback" not in "\n".join(lines)


def test_a_copy_of_the_stubs_folder_grades_the_same(tmp_path, capsys):
    chapters = tmp_path / "chapters"
    shutil.copytree(CHAPTER, chapters / CHAPTER.name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "chapters" / "conftest.py", chapters)
    code, lines, _ = run(capsys, "check", "3", "--chapters-dir", str(chapters))
    assert code == 1 and lines[-1].startswith("next: 3.1")
    assert set(status_of(lines).values()) == {"not started"}


def test_one_exercise_solved(tmp_path, capsys):
    source = with_functions(STUBS, attention_scores=reference("attention_scores"))
    code, lines, _ = run(capsys, "check", "3", "--file", attempt(tmp_path, source))
    status = status_of(lines)
    assert code == 1 and status["3.1"] == "done" and status["3.2"] == "not started"
    assert lines[-1].startswith("next: 3.2 scaled_dot_product_attention")


def test_the_missing_scale_is_named(tmp_path, capsys):
    source = with_functions(STUBS, attention_scores=reference("attention_scores"),
                            scaled_dot_product_attention=FORGOT_THE_SCALE)
    code, lines, _ = run(capsys, "check", "3", "--file", attempt(tmp_path, source))
    [line] = [ln for ln in lines if ln.strip().startswith("3.2 ")]
    assert code == 1 and "failing 3 of 4 checks" in line, line  # the 'custom scale' case (scale=1) passes
    assert "without the 1/sqrt(D) scale" in line and "divide the scores by sqrt(D)" in line
    assert lines[-1].startswith("next: 3.2")


def test_a_syntax_error_is_one_short_message(tmp_path, capsys):
    broken = STUBS.replace("def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:",
                           "def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor")
    lineno = broken.splitlines().index("def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor") + 1
    code, lines, _ = run(capsys, "check", "3", "--file", attempt(tmp_path, broken))
    text = "\n".join(lines)
    assert code == 1 and len(lines) < 10, text
    assert f"my_exercises.py line {lineno}: SyntaxError" in text
    assert "def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor" in text


def test_an_import_error_names_the_line(tmp_path, capsys):
    broken = STUBS.replace("import torch\n", "import torch\nimport torchh\n", 1)
    code, lines, _ = run(capsys, "check", "3", "--file", attempt(tmp_path, broken))
    assert code == 1 and len(lines) < 10
    assert any("line" in ln and "ModuleNotFoundError" in ln and "torchh" in ln for ln in lines), lines


def test_check_one_exercise_and_options_in_any_order(tmp_path, capfd):  # fd: -v lets pytest print its report
    capsys = capfd
    source = with_functions(STUBS, attention_scores=reference("attention_scores"))
    path = attempt(tmp_path, source)
    code, lines, _ = run(capsys, "check", "3.1", "--file", path)
    assert code == 0 and status_of(lines) == {"3.1": "done"}
    code, lines, _ = run(capsys, "check", "--file", path, "-v", "3.2", "--", "-x")
    assert code == 1 and status_of(lines) == {"3.2": "not started"}
    assert any("ExerciseNotDone: Exercise 3.2 is not done yet" in ln for ln in lines)  # -v: pytest report first
    code, lines, _ = run(capsys, "check", "--reference", "3")
    assert code == 0 and lines[-1] == "all done"


def test_bad_usage_exits_2_and_says_what_exists(capsys):
    code, _, err = run(capsys, "check", "99")
    assert code == 2 and "no chapter 99" in err and "3, 4" in err
    code, _, err = run(capsys, "check", "3.99")
    assert code == 2 and "no exercise 3.99" in err and "3.1, 3.2, 3.3, 3.4, 3.5, 3.6" in err
    code, _, err = run(capsys, "check", "three")
    assert code == 2 and "3.1" in err


def test_chapters_lists_each_chapter_with_its_status(tmp_path, capsys):
    chapters = tmp_path / "chapters"
    shutil.copytree(CHAPTER, chapters / CHAPTER.name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "chapters" / "conftest.py", chapters)
    (chapters / "04_causal_attention").mkdir()  # a chapter with no exercises yet
    code, lines, _ = run(capsys, "chapters", "--chapters-dir", str(chapters))
    assert code == 0 and len(lines) == 2, lines
    assert lines[0].split() == ["3", "attention", "not", "started"]
    assert lines[1].split()[0] == "4" and lines[1].endswith("lesson only")

    solved = with_functions(STUBS, attention_scores=reference("attention_scores"),
                            scaled_dot_product_attention=FORGOT_THE_SCALE)
    (chapters / CHAPTER.name / "exercises_03.py").write_text(solved, encoding="utf-8")
    code, lines, _ = run(capsys, "chapters", "--chapters-dir", str(chapters))
    assert code == 0 and lines[0].split()[:2] == ["3", "attention"]
    assert lines[0].endswith("failing 3.2 (done 1/6)"), lines[0]


def test_check_all_is_one_table_for_the_room(tmp_path, capsys):
    chapters = tmp_path / "chapters"
    for name in (CHAPTER.name, "12_efficient"):
        shutil.copytree(REPO / "chapters" / name, chapters / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "chapters" / "conftest.py", chapters)
    solved = with_functions(STUBS, attention_scores=reference("attention_scores"),
                            scaled_dot_product_attention=FORGOT_THE_SCALE)
    (chapters / CHAPTER.name / "exercises_03.py").write_text(solved, encoding="utf-8")
    code, lines, _ = run(capsys, "check", "--all", "--chapters-dir", str(chapters))
    assert code == 1
    assert lines[0].split() == ["exercise", "status"]
    rows = {line.split()[0]: line for line in lines[1:-1]}
    assert list(rows) == ["3.1", "3.2", "3.3", "3.4", "3.5", "3.6", "12.1", "12.2", "12.3", "12.4", "12.5"]
    assert rows["3.1"].endswith("done") and "failing: " in rows["3.2"] and "scale" in rows["3.2"]
    assert rows["12.1"].endswith("not started")
    assert lines[-1] == "11 exercises in 2 chapters: 1 done, 1 failing, 9 not started"

    code, lines, _ = run(capsys, "check", "--all", "--reference", "--chapters-dir", str(chapters))
    assert code == 0 and lines[-1] == "11 exercises in 2 chapters: 11 done, 0 failing, 0 not started"
    code, _, err = run(capsys, "check", "3", "--all")
    assert code == 2 and "--all grades every chapter" in err


def test_check_from_a_notebook_prints_what_the_cli_prints(tmp_path, capsys):
    import minitransformer

    path = attempt(tmp_path, with_functions(STUBS, attention_scores=reference("attention_scores")))
    code, cli_lines, _ = run(capsys, "check", "3", "--file", path)
    assert code == 1 and minitransformer.check("3", file=path) is False
    assert capsys.readouterr().out.splitlines() == cli_lines
    assert minitransformer.check("3.1", file=path) is True
    assert status_of(capsys.readouterr().out.splitlines()) == {"3.1": "done"}


def test_check_from_a_notebook_says_what_is_wrong_without_a_traceback(tmp_path, capsys, monkeypatch):
    import minitransformer

    assert minitransformer.check("3.99") is False
    assert capsys.readouterr().out.startswith("minitransformer.check: no exercise 3.99 in chapter 3; its exercises")
    assert minitransformer.check("three") is False and "3.1 for its exercise 1" in capsys.readouterr().out
    monkeypatch.chdir(tmp_path)  # a notebook outside the clone (Colab, a plain install)
    assert minitransformer.check("3") is False
    assert "no chapters/ folder found" in capsys.readouterr().out


def test_check_reloads_the_module_the_notebook_imported(tmp_path, capsys, monkeypatch):
    import minitransformer

    chapters = tmp_path / "chapters"
    shutil.copytree(CHAPTER, chapters / CHAPTER.name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "chapters" / "conftest.py", chapters)
    folder = chapters / CHAPTER.name
    monkeypatch.chdir(folder)  # where Jupyter runs the chapter's lesson.ipynb
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, "exercises_03", raising=False)
    import exercises_03

    with pytest.raises(NotImplementedError):
        exercises_03.attention_scores(torch.ones(1, 1, 2, 4), torch.ones(1, 1, 3, 4))
    (folder / "exercises_03.py").write_text(with_functions(STUBS, attention_scores=reference("attention_scores")),
                                            encoding="utf-8")
    assert minitransformer.check("3.1") is True
    assert capsys.readouterr().out.splitlines()[0] == "grading 03_attention: exercises_03.py, exercise 3.1"
    assert exercises_03.attention_scores(torch.ones(1, 1, 2, 4), torch.ones(1, 1, 3, 4)).shape == (1, 1, 2, 3)
    monkeypatch.delitem(sys.modules, "exercises_03")
