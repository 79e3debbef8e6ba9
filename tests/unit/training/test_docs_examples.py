"""The code blocks marked ``<!-- runnable -->`` on the training pages run as written, and do what they say."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[3] / "docs"
RUNNABLE = re.compile(r"<!-- runnable -->\s*```python\n(.*?)```", re.S)


def runnable_blocks(page: str) -> list[str]:
    return RUNNABLE.findall((DOCS / page).read_text(encoding="utf-8"))


def test_the_pages_have_runnable_blocks():
    assert len(runnable_blocks("training.md")) == 1


@pytest.mark.parametrize("page", ["training.md"])
def test_runnable_blocks_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the examples write under runs/
    for code in runnable_blocks(page):
        namespace: dict = {}
        exec(compile(code, f"{page} (runnable block)", "exec"), namespace)  # its asserts check the results
    assert (tmp_path / "runs" / "notebook" / "model.safetensors").is_file()
    assert os.path.getsize(tmp_path / "runs" / "notebook" / "metrics.jsonl") > 0
