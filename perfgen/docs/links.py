"""Every relative link of the Markdown docs must reach a file, and its anchor a heading."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from urllib.parse import unquote

LINKED_DOCS = ("*.md", "docs/*.md")

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.DOTALL | re.MULTILINE)
_CODE_SPAN = re.compile(r"``.*?``|`[^`\n]*`")
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.MULTILINE)
_HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")


def _prose(text: str) -> str:
    """The text without code: a link shown in a code block is an example, not a link."""
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps only its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    text = _FENCE.sub("", path.read_text(encoding="utf-8"))
    found: set[str] = set(_HTML_ANCHOR.findall(text))
    counts: dict[str, int] = {}
    for heading in _HEADING.findall(text):
        base = slug(heading)
        # GitHub numbers repeated headings: #usage, #usage-1, ...
        n = counts.get(base, 0)
        counts[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return frozenset(found)


def broken_links(root: Path) -> list[str]:
    """`file: link: problem` for every relative link that does not resolve."""
    anchors.cache_clear()
    problems: list[str] = []
    for pattern in LINKED_DOCS:
        for doc in sorted(root.glob(pattern)):
            for target in _LINK.findall(_prose(doc.read_text(encoding="utf-8"))):
                if re.match(r"^[a-z][a-z0-9+.-]*:", target):
                    continue  # http:, https:, mailto:: not this repository's
                file_part, _, anchor = target.partition("#")
                path = (doc.parent / unquote(file_part)).resolve() if file_part else doc
                where = f"{doc.relative_to(root)}: {target}"
                if not path.exists():
                    problems.append(f"{where}: no such file")
                elif anchor and path.suffix == ".md" and unquote(anchor) not in anchors(path):
                    problems.append(f"{where}: no heading with that anchor")
    return problems
