"""Each chapter's lesson as a Jupyter notebook and as a web page, both generated from its ``lesson.py``.

    minitransformer notebooks            # write chapters/NN_*/lesson.ipynb from each lesson.py
    minitransformer notebooks --check    # exit 1 if one is missing or out of date (what CI runs)
    minitransformer notebooks --figures  # run each lesson that draws, keep its figures for the site

``lesson.py`` is the source: a jupytext percent-format script (``# %%`` starts a code cell,
``# %% [markdown]`` a text cell) that also runs as a plain script. ``lesson.ipynb`` beside it is
generated and committed, without outputs, so that a clone (or Colab, from the repository) opens it
without jupytext; ``--check`` keeps the two from drifting. The website renders the same cells
(:func:`lesson_markdown`, called by ``docs/hooks/lessons.py`` at build time).

Needs jupytext (the ``notebook`` and ``docs`` extras).
"""

from __future__ import annotations

import base64
import re
import tempfile
from pathlib import Path

from minitransformer.exercises.pytest_plugin import CHAPTER_DIR


def _jupytext():
    try:
        import jupytext
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("converting lessons needs jupytext: pip install 'minitransformer[notebook]'") from err
    return jupytext


def lessons(chapters: Path) -> list[Path]:
    """Every ``chapters/NN_topic/lesson.py``, in chapter order."""
    return sorted(p for p in Path(chapters).glob("*/lesson.py") if CHAPTER_DIR.match(p.parent.name))


def notebook_text(lesson: Path) -> str:
    """The ``.ipynb`` JSON of a lesson: its cells, no outputs, cell ids that depend only on their position.

    jupytext gives each cell a random id; fixed ids make the text a function of ``lesson.py``
    alone, so that ``--check`` can compare it with the committed file.
    """
    jupytext = _jupytext()
    notebook = jupytext.read(lesson)
    for index, cell in enumerate(notebook.cells):
        cell.id = f"cell-{index:03d}"
    notebook.metadata.pop("jupytext", None)  # the pairing with lesson.py is this module's job, not Jupyter's
    notebook.metadata["language_info"] = {"name": "python"}
    return jupytext.writes(notebook, fmt="ipynb")


def notebook_path(lesson: Path) -> Path:
    return lesson.with_suffix(".ipynb")


def stale_notebooks(chapters: Path) -> list[Path]:
    """The lessons whose ``lesson.ipynb`` is missing or differs from what ``lesson.py`` generates."""
    stale = []
    for lesson in lessons(chapters):
        target = notebook_path(lesson)
        if not target.is_file() or target.read_text(encoding="utf-8") != notebook_text(lesson):
            stale.append(lesson)
    return stale


def write_notebooks(chapters: Path) -> list[Path]:
    """Write every lesson's ``lesson.ipynb`` that is missing or out of date; return those written."""
    written = []
    for lesson in stale_notebooks(chapters):
        notebook_path(lesson).write_text(notebook_text(lesson), encoding="utf-8")
        written.append(notebook_path(lesson))
    return written


_LIST_ITEM = re.compile(r"^([-*+]|\d+\.) ")


def _markdown_for_the_site(text: str) -> str:
    """A lesson's markdown cell as Python-Markdown (the site) reads it the way Jupyter does.

    Jupyter (CommonMark) starts a list right after a line of text; Python-Markdown needs a blank
    line before it. The lesson's own headings go one level down, under the page's "The lesson".
    """
    out: list[str] = []
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if fenced or line.lstrip().startswith("```"):
            pass
        elif re.match(r"^#{1,5} ", line):
            line = "#" + line
        elif _LIST_ITEM.match(line) and out and out[-1].strip() and not _LIST_ITEM.match(out[-1]) \
                and not out[-1].startswith(" "):
            out.append("")
        out.append(line)
    return "\n".join(out)


def figures_dir(lesson: Path) -> Path:
    """Where :func:`write_figures` keeps a lesson's figures: ``chapters/NN_topic/figures/``."""
    return lesson.parent / "figures"


def write_figures(chapters: Path, timeout: int = 600) -> list[Path]:
    """Run every lesson that draws (its notebook, in a Jupyter kernel, from a temporary folder) and
    write each figure it shows as ``figures/codeII-K.png``: the K-th picture of its II-th code cell.

    The chapter pages show them under the code that draws them (``docs/hooks/lessons.py``). They
    are committed, so that building the site runs no lesson; run this again after changing a
    lesson's plots. Needs the ``notebook`` extra (nbclient, ipykernel).
    """
    import nbclient
    import nbformat

    written = []
    for lesson in lessons(chapters):
        if "matplotlib" not in lesson.read_text(encoding="utf-8"):
            continue
        notebook = nbformat.read(notebook_path(lesson), as_version=4)
        with tempfile.TemporaryDirectory() as tmp:
            nbclient.NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                                    resources={"metadata": {"path": tmp}}).execute()
        out = figures_dir(lesson)
        out.mkdir(exist_ok=True)
        for old in out.glob("code*.png"):
            old.unlink()
        code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
        for i, cell in enumerate(code_cells):
            pictures = [o["data"]["image/png"] for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
            for k, picture in enumerate(pictures, start=1):
                path = out / f"code{i:02d}-{k}.png"
                path.write_bytes(base64.b64decode(picture))
                written.append(path)
    return written


def lesson_markdown(lesson: Path, figures_url: str | None = None) -> str:
    """A lesson's cells as one markdown text for its chapter page: text as text, code in python blocks.

    The first heading (the chapter's title, which the page already has) is dropped; the rest go
    one level down. With ``figures_url``, each code cell is followed by the figures it draws
    (:func:`write_figures`), linked as ``figures_url/codeII-K.png``.
    """
    notebook = _jupytext().read(lesson)
    figures = sorted(p.name for p in figures_dir(lesson).glob("code*.png")) if figures_url else []
    code_index = 0
    parts = []
    for cell in notebook.cells:
        source = cell.source.strip("\n")
        if not source:
            continue
        if cell.cell_type == "markdown":
            if not parts:
                source = re.sub(r"^# .*\n*", "", source, count=1)
            parts.append(_markdown_for_the_site(source))
        else:
            parts.append(f"```python\n{source}\n```")
            parts += [f"![The figure this cell draws]({figures_url}/{name})" for name in figures
                      if name.startswith(f"code{code_index:02d}-")]
            code_index += 1
    return "\n\n".join(parts) + "\n"
