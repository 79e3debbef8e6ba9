"""Fixtures shared by every test: where ../shared is, and the corpus in it.

A user's clone has no ``../shared``; every test that reads it is skipped with a reason there.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"
TINYSHAKESPEARE = SHARED_DIR / "data" / "tinyshakespeare.txt"


@pytest.fixture(scope="session")
def tinyshakespeare_path() -> Path:
    if not TINYSHAKESPEARE.is_file():
        pytest.skip(f"{TINYSHAKESPEARE} is absent (only developer machines and CI have ../shared)")
    return TINYSHAKESPEARE


@pytest.fixture(scope="session")
def tinyshakespeare(tinyshakespeare_path: Path) -> str:
    return tinyshakespeare_path.read_text(encoding="utf-8")
