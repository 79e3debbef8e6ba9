"""mkdocs hook: every chapter page shows its lesson, rendered from ``chapters/NN_*/lesson.py`` at build time.

The page ``docs/chapters/03-attention.md`` keeps what is written for the site (goals, exercises,
checks); this hook adds, under its title, the links to the notebook (Colab, the repository, a
download from the site) and the times from ``chapters/course.toml``, and at the end the lesson
itself: its text, its math and its code, cell by cell. The lesson is read when the site is built,
so the page cannot drift from it. It also copies each ``lesson.ipynb`` into the site, as
``notebooks/03-attention.ipynb``, and replaces ``<!-- course-times -->`` on any page (the
instructor's guide) with a table of every chapter's times and exercises, read from the same files.

On the API reference pages (``docs/api/``), ``<!-- api: minitransformer.layers -->`` becomes one
mkdocstrings block per module of that package, so that a module added to the package has its
section without anyone editing the docs (``minitransformer!``: that module alone, not what is below).

The Colab link is ``extra.colab_url`` of ``mkdocs.yml`` with ``{repo}``, ``{branch}`` and ``{path}``
filled in from ``extra.repository`` and ``extra.branch``.
"""

from __future__ import annotations

import re
from pathlib import Path

import tomllib
from mkdocs.structure.files import File

from minitransformer.exercises.course import exercises_path
from minitransformer.exercises.notebooks import figures_dir, lesson_markdown
from minitransformer.exercises.progress import chapter_title, checks_declared

CHAPTER_PAGE = re.compile(r"^chapters/(\d\d)-[\w-]+\.md$")


def _chapters_dir(config) -> Path:
    return Path(config.config_file_path).parent / "chapters"


def _lesson(config, number: int) -> Path | None:
    found = sorted(_chapters_dir(config).glob(f"{number:02d}_*/lesson.py"))
    return found[0] if found else None


def _course(config) -> dict[int, dict]:
    text = (_chapters_dir(config) / "course.toml").read_text(encoding="utf-8")
    return {chapter["number"]: chapter for chapter in tomllib.loads(text)["chapter"]}


def on_files(files, config):
    """Copy each chapter's ``lesson.ipynb`` into the site, beside its page: ``notebooks/03-attention.ipynb``."""
    for page in list(files.documentation_pages()):
        match = CHAPTER_PAGE.match(page.src_uri)
        lesson = match and _lesson(config, int(match.group(1)))
        if lesson and lesson.with_suffix(".ipynb").is_file():
            name = Path(page.src_uri).with_suffix(".ipynb").name
            files.append(File.generated(config, f"notebooks/{name}", abs_src_path=str(lesson.with_suffix(".ipynb"))))
        if lesson:  # the figures the lesson draws (minitransformer notebooks --figures), beside it on the site
            for figure in sorted(figures_dir(lesson).glob("code*.png")):
                stem = Path(page.src_uri).stem
                files.append(File.generated(config, f"figures/{stem}/{figure.name}", abs_src_path=str(figure)))
    return files


def _banner(config, page, number: int, lesson: Path) -> str:
    extra = config.extra
    repo_path = lesson.with_suffix(".ipynb").relative_to(_chapters_dir(config).parent).as_posix()
    colab = extra["colab_url"].format(repo=extra["repository"], branch=extra["branch"], path=repo_path)
    download = "../" * page.file.src_uri.count("/") + "notebooks/" + Path(page.file.src_uri).with_suffix(".ipynb").name
    times = _course(config).get(number, {})
    lines = [
        '!!! info "The lesson as a notebook"',
        f"    [Open in Colab]({colab}) · [download lesson.ipynb]({download}) · in your clone: "
        f"`{repo_path}` (generated from `lesson.py`: `minitransformer notebooks`)",
        "",
    ]
    if times:
        lines.append(f"    The notebook runs top to bottom in about {times['notebook_seconds']:.0f} s on a 2-core CPU "
                     f"(CI allows {times['budget_seconds']} s). Plan about {times['class_minutes']} minutes in "
                     f"class for the lesson and its exercises ([instructor's guide](../instructors/index.md)).")
        lines.append("")
    lines.append("    In Colab, install the library first: "
                 f"`%pip install \"minitransformer[viz,hf] @ git+https://github.com/{extra['repository']}\"`; "
                 "the exercises and `minitransformer.check` need the clone.")
    return "\n".join(lines) + "\n"


def _times_table(config, page, files) -> str:
    """Every chapter: its page, the class time, the notebook's run time, its exercises in order."""
    up = "../" * page.file.src_uri.count("/")
    pages = {int(m.group(1)): f"{up}{f.src_uri}" for f in files.documentation_pages()
             if (m := CHAPTER_PAGE.match(f.src_uri))}
    rows = ["| chapter | in class | notebook | exercises, in order |", "| --- | --- | --- | --- |"]
    for number, times in sorted(_course(config).items()):
        folder = next(iter(sorted(_chapters_dir(config).glob(f"{number:02d}_*"))))
        exercises = sorted((n for n in checks_declared(folder / "test_checks.py") if n),
                           key=lambda n: int(n.split(".")[1]))
        title = f"{number}. {chapter_title(folder)}"
        link = f"[{title}]({pages[number]})" if number in pages else title
        rows.append(f"| {link} | {times['class_minutes']} min | {times['notebook_seconds']:.0f} s | "
                    f"{', '.join(exercises)} (`{exercises_path(folder).name}`) |")
    return "\n".join(rows)


API_MARKER = re.compile(r"^<!-- api: ([\w. !]+) -->$", re.MULTILINE)


def _modules_of(root: Path, name: str) -> list[str]:
    """``name`` and, for a package, every module below it (the reference solutions aside), in path order.

    A name ending in ``!`` is that module alone: ``minitransformer!`` is the package's ``__init__``.
    """
    alone = name.endswith("!")
    name = name.rstrip("!")
    path = root.joinpath(*name.split("."))
    if alone or not path.is_dir():
        return [name]
    found = []
    for file in sorted(path.rglob("*.py"), key=lambda f: (f.parent.as_posix(), f.name != "__init__.py", f.name)):
        parts = file.relative_to(root).with_suffix("").parts
        if "solutions" in parts or parts[-1] == "__main__":
            continue
        found.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return found


def _api_blocks(config, match: re.Match) -> str:
    root = Path(config.config_file_path).parent
    blocks = []
    for name in match.group(1).split():
        for module in _modules_of(root, name):
            package = root.joinpath(*module.split(".")).is_dir()
            blocks.append(f"::: {module}" + ("\n    options:\n      members: false" if package else ""))
    return "\n\n".join(blocks)


def on_page_markdown(markdown: str, page, config, files) -> str:
    markdown = API_MARKER.sub(lambda m: _api_blocks(config, m), markdown)
    if "<!-- course-times -->" in markdown:
        markdown = markdown.replace("<!-- course-times -->", _times_table(config, page, files))
    match = CHAPTER_PAGE.match(page.file.src_uri)
    if not match:
        return markdown
    number = int(match.group(1))
    lesson = _lesson(config, number)
    if lesson is None:
        return markdown
    title, _, rest = markdown.partition("\n")
    return (f"{title}\n\n{_banner(config, page, number, lesson)}\n{rest.rstrip()}\n\n"
            f"## The lesson\n\nRendered from `{lesson.relative_to(_chapters_dir(config).parent).as_posix()}`.\n\n"
            f"{lesson_markdown(lesson, f'../figures/{Path(page.file.src_uri).stem}')}")
