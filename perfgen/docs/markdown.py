"""The little Markdown the generated blocks need: code spans and tables."""

from __future__ import annotations

import re
from collections.abc import Sequence

_CODE_SPAN = re.compile(r"(``.*?``|`[^`]*`)")


def number(value: float) -> str:
    """`67108864`, `0.5`, `30`: whole numbers in full, others as short as they go."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def code(text: str) -> str:
    """A code span that survives backticks inside it."""
    fence = "``" if "`" in text else "`"
    pad = " " if fence == "``" else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def text(prose: str) -> str:
    """Prose from code (help texts) made safe for Markdown: `<URL>` is not an HTML tag."""
    parts = _CODE_SPAN.split(prose)
    # Odd parts are code spans, where Markdown shows every character as it is.
    return "".join(
        part if index % 2 else part.replace("<", "&lt;") for index, part in enumerate(parts)
    )


def _cell(cell: str) -> str:
    # GitHub's tables split on every unescaped pipe, code spans included.
    return " ".join(text(cell).replace("|", "\\|").split())


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(cell) for cell in row) + " |" for row in rows]
    return lines
