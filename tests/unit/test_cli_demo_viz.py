import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minitransformer.cli import main
from minitransformer.demo import run_demo
from minitransformer.viz import plot_attention, select_head

REPO = Path(__file__).resolve().parents[2]


def test_demo_proves_its_two_properties(capsys):
    result = run_demo()
    assert result["ok"] == 1.0 and result["leak"] == 0.0 and result["math_vs_sdpa"] <= 1e-5
    out = capsys.readouterr().out
    assert "logits: shape (1, 44, 256)" in out and "demo OK" in out


def test_demo_rejects_a_text_too_short():
    with pytest.raises(ValueError, match="at least 2 bytes"):
        run_demo("a")


def test_console_script_demo_runs():
    proc = subprocess.run([sys.executable, "-m", "minitransformer.cli", "demo"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and "demo OK" in proc.stdout


def test_check_grades_reference_and_fails_on_stubs(monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    assert main(["check", "3", "--reference"]) == 0
    assert main(["check", "3"]) != 0
    with pytest.raises(SystemExit, match="no chapter 42"):
        main(["check", "42"])


def test_plot_attention_returns_the_figure_and_writes_only_when_asked(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    monkeypatch.chdir(tmp_path)
    attn = (torch.softmax(torch.randn(1, 2, 3, 3), -1),)
    fig = plot_attention(attn, ["a", "b", "c"], layer=0, head=1)
    assert fig.axes[0].get_title() == "layer 0, head 1" and list(tmp_path.iterdir()) == []  # no path: no file
    assert fig.axes[0].images[0].get_array().shape == (3, 3)
    fig = plot_attention(attn, ["a", "b", "c"], layer=0, head=1, path=tmp_path / "a.png")
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plt.close("all")
    assert torch.equal(select_head(attn, 0, 1), attn[0][0, 1])
    with pytest.raises(ValueError, match="3 query labels"):
        plot_attention(attn[0][0, 0][:, :2], ["a", "b", "c"], path=tmp_path / "b.png")
    with pytest.raises(IndexError, match="layer=3"):
        select_head(attn, layer=3)
    with pytest.raises(ValueError, match="output_attentions=True"):
        select_head((None,), 0)


def test_plots_leave_the_backend_alone(tmp_path):
    """A notebook's inline backend (here: pdf, set as MPLBACKEND sets it) survives viz and the trainer's plot."""
    code = ("import matplotlib, torch\n"
            "from pathlib import Path\n"
            "from minitransformer.viz import plot_attention\n"
            "from minitransformer.training.trainer import plot_losses\n"
            "plot_attention(torch.softmax(torch.randn(3, 3), -1), ['a', 'b', 'c'])\n"
            "plot_losses([{'step': 1, 'train_loss': 2.0}, {'step': 2, 'train_loss': 1.5, 'val_loss': 1.6}], "
            "Path('loss.png'))\n"
            "print(matplotlib.get_backend())\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "MPLBACKEND": "pdf"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-1] == "pdf" and (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"
