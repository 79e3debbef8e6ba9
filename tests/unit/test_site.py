"""The course website: built strictly and offline, every chapter page showing its lesson, and a real browser.

One ``mkdocs build --strict`` (about 6 s) is shared by every test here. The browser tests serve
that build on 127.0.0.1 and open it in headless Chromium (the ``visit`` fixture of
``tests/conftest.py``): the pages must load with no console error, their tables and images must
render, and nothing may be fetched from off the machine except MathJax's script, which the
fixture answers empty.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import subprocess
import sys
import threading
from html import unescape
from pathlib import Path

import pytest

import minitransformer
from minitransformer.exercises.notebooks import lessons

REPO = Path(__file__).resolve().parents[2]
LESSONS = lessons(REPO / "chapters")
MATHJAX = "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"


def chapter_page(lesson: Path) -> str:
    """``chapters/03_attention/lesson.py`` -> ``chapters/03-attention``: its page in the built site."""
    [page] = (REPO / "docs" / "chapters").glob(f"{lesson.parent.name[:2]}-*.md")
    return f"chapters/{page.stem}"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    pytest.importorskip("mkdocs", reason="the site needs the docs extra: pip install -e '.[docs]'")
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stderr[-4000:]}"
    return out


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda p: p.parent.name)
def test_every_chapter_page_renders_its_lesson(site, lesson):
    html = (site / chapter_page(lesson) / "index.html").read_text(encoding="utf-8")
    text = unescape(re.sub(r"<[^>]+>", "", html))  # what the page says, highlighting and links aside
    source = lesson.read_text(encoding="utf-8")
    for heading in re.findall(r"^# ## (.+)$", source, flags=re.MULTILINE):  # the lesson's sections
        assert re.sub(r"[`*]", "", heading).strip() in text, f"{chapter_page(lesson)} lacks {heading!r}"
    code = [line for line in source.split("\n# %%\n")[-1].splitlines() if line.strip() and line[0] != "#"]
    assert code and all(line in text for line in code[:3]), f"{chapter_page(lesson)} lacks its code: {code[:3]}"
    notebook = lesson.with_suffix(".ipynb").relative_to(REPO).as_posix()
    assert f"https://colab.research.google.com/github/YOUR-ORG/minitransformer/blob/main/{notebook}" in html
    assert "The notebook runs top to bottom in about" in html and "minutes in class" in html
    served = site / "notebooks" / f"{Path(chapter_page(lesson)).name}.ipynb"
    assert served.read_bytes() == lesson.with_suffix(".ipynb").read_bytes()
    assert json.loads(served.read_text(encoding="utf-8"))["nbformat"] == 4


def test_the_math_is_marked_for_mathjax(site):
    html = (site / "chapters" / "03-attention" / "index.html").read_text(encoding="utf-8")
    assert '<div class="arithmatex">\\[\\mathrm{Attention}(Q, K, V)' in html
    assert "javascripts/mathjax.js" in html and MATHJAX in html


def test_the_instructors_guide_has_every_chapter_with_its_times_and_exercises(site):
    html = (site / "instructors" / "index.html").read_text(encoding="utf-8")
    assert "<!-- course-times -->" not in html
    for lesson in LESSONS:
        number = int(lesson.parent.name[:2])
        assert f"exercises_{number:02d}.py" in html and f"{number}.1, {number}.2" in html, number
    assert (site / "instructors" / "chapters" / "index.html").is_file()
    assert (site / "instructors" / "offline" / "index.html").is_file()


def _modules() -> set[str]:
    package = Path(minitransformer.__file__).parent
    found = set()
    for path in package.rglob("*.py"):
        rel = path.relative_to(package.parent).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        if "solutions" not in parts and rel.name != "__main__":
            found.add(".".join(parts))
    return found


def test_the_api_reference_has_every_module(site):
    """The hook writes a block per module (``<!-- api: ... -->``): a new module shows up by itself."""
    html = "".join(page.read_text(encoding="utf-8") for page in (site / "api").rglob("index.html"))
    missing = sorted(m for m in _modules() if f'id="{m}"' not in html)
    assert not missing, f"modules without a section in the API reference: {missing}; name them in docs/api/"
    course = (site / "api" / "course" / "index.html").read_text(encoding="utf-8")
    assert 'id="minitransformer.exercises.course.check"' in course  # a function, with its docstring
    assert "Grade a chapter" in course and "<!-- api:" not in course


@pytest.fixture(scope="module")
def served(site):
    """The built site over HTTP on 127.0.0.1 (a free port), as ``mkdocs serve`` would serve it."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


#: page -> (the least number of tables it shows, a text it must show)
PAGES = {
    "": (0, "minitransformer"),
    "setup/": (1, "In a notebook"),
    "chapters/03-attention/": (2, "Scores, by hand"),
    "chapters/12-efficient/": (1, "The lesson"),
    "instructors/": (2, "The chapters at a glance"),
    "instructors/chapters/": (0, "Chapter by chapter"),
    "glossary/": (0, "KV cache"),
    "api/layers/": (0, "scaled_dot_product_attention"),
    "training-benchmarks/": (1, "Training benchmarks"),
}


@pytest.mark.parametrize("path", list(PAGES), ids=lambda p: p or "home")
def test_site_pages_render_in_chromium(served, visit, path):
    least_tables, text = PAGES[path]
    report = visit(f"{served}/{path}")
    assert not report.errors, f"/{path}: console errors {report.errors}"
    assert not report.broken_images, f"/{path}: images that did not load {report.broken_images}"
    assert report.tables >= least_tables, f"/{path}: {report.tables} tables, expected {least_tables} or more"
    assert text in report.text, f"/{path} does not show {text!r}"
    assert set(report.external) <= {MATHJAX}, f"/{path} reached off the machine: {report.external}"


def test_the_site_fixture_sees_a_broken_image_and_an_error(served, visit, site):
    """The checks above can fail: a page with a missing image and a script error is reported as such."""
    (site / "broken.html").write_text('<html><body><table><tr><td>x</td></tr></table><img src="nope.png">'
                                      "<script>undefinedFunction()</script></body></html>", encoding="utf-8")
    report = visit(f"{served}/broken.html")
    assert report.broken_images == ["nope.png"] and report.tables == 1
    assert any("undefinedFunction" in e for e in report.errors)
