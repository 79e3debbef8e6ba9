"""The built-in corpus: text every Python install has offline, to train on without downloading anything.

It is Python's own documentation of its keywords, statements and operators, as ``help("if")`` shows
it: the ``topics`` dict of the standard library's ``pydoc_data.topics`` module, about 460,000
characters of English prose with code examples, 103 distinct characters. It ships with CPython under
the Python Software Foundation License (the documentation is PSF-licensed text, free to copy and
use; see https://docs.python.org/3/license.html), so every install of Python can train on it.

    text = builtin_corpus()          # the topics in sorted order, joined by blank lines
    text = read_corpus("book.txt")   # or your own UTF-8 text file
"""

from __future__ import annotations

from pathlib import Path

BUILTIN_NAME = "pydoc_data.topics"


def builtin_corpus() -> str:
    """Python's ``pydoc_data.topics`` (PSF licence): every topic, in sorted order, separated by blank lines.

    Sorted so that the text is the same whatever order the dict was written in.
    """
    from pydoc_data.topics import topics

    return "\n\n".join(topics[name].strip("\n") for name in sorted(topics)) + "\n"


def read_corpus(path: str | Path | None) -> str:
    """The text of ``path`` (UTF-8), or the built-in corpus when ``path`` is None.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not UTF-8 text, or empty.
    """
    if path is None:
        return builtin_corpus()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"corpus {path} is not a file: pass a UTF-8 text file, or no --corpus for the "
                                f"built-in one ({BUILTIN_NAME})")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"corpus {path} is not UTF-8 text (byte {err.start}): convert it, e.g. "
                         f"iconv -t UTF-8") from err
    if not text:
        raise ValueError(f"corpus {path} is empty")
    return text
