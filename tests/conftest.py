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


@pytest.fixture
def parity_off_by_a_little(monkeypatch):
    """``minitransformer.parity`` loads our model with one weight moved by 1e-3: a row past its bound."""
    import torch

    import minitransformer.parity as parity

    load = parity.from_pretrained

    def off_by_a_little(*args, **kwargs):
        model = load(*args, **kwargs)
        with torch.no_grad():
            next(model.parameters()).view(-1)[0] += 1e-3
        return model

    monkeypatch.setattr(parity, "from_pretrained", off_by_a_little)
