"""A griffe extension for the API reference: a docstring's ``Example:`` section is read as ``Examples:``.

The library's docstrings head their doctests ``Example:``. Google style, as griffe reads it, knows
only ``Examples:`` as the section whose ``>>>`` lines become code; under any other title they are
plain Markdown, where ``r["a"]["precision"]`` reads as a link. Renaming the heading when a docstring
is loaded keeps the source as it is and renders every example as code.
"""

from __future__ import annotations

import re

import griffe

EXAMPLE_HEADING = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)


class ExampleIsExamples(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None and "Example:" in obj.docstring.value:
            obj.docstring.value = EXAMPLE_HEADING.sub(r"\1Examples:", obj.docstring.value)
