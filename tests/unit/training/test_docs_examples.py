"""The code blocks marked ``<!-- runnable -->`` anywhere on the site run as written, and do what they say."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[3] / "docs"
RUNNABLE = re.compile(r"<!-- runnable -->\s*```python\n(.*?)```", re.S)


def runnable_blocks(page: str) -> list[str]:
    return RUNNABLE.findall((DOCS / page).read_text(encoding="utf-8"))


PAGES = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md") if "<!-- runnable -->" in p.read_text(encoding="utf-8"))


def test_the_pages_have_runnable_blocks():
    assert {"training.md", "generation.md"} <= set(PAGES)
    assert all(runnable_blocks(page) for page in PAGES), "a <!-- runnable --> mark not followed by a python block"


@pytest.mark.parametrize("page", PAGES)
def test_runnable_blocks_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the examples write under runs/
    for code in runnable_blocks(page):
        namespace: dict = {}
        exec(compile(code, f"{page} (runnable block)", "exec"), namespace)  # its asserts check the results
    if page == "training.md":
        assert (tmp_path / "runs" / "notebook" / "model.safetensors").is_file()
        assert os.path.getsize(tmp_path / "runs" / "notebook" / "metrics.jsonl") > 0
