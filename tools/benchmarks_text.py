"""Text helpers of docs/benchmarks.md (tools/make_benchmarks_doc.py): numbers, tables, and the fixed prose kept
in tools/benchmarks_template.md, one block per passage, filled in with str.format placeholders."""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent / "benchmarks_template.md"
_BLOCK = re.compile(r"^<!-- block: (\w+) -->\n", re.MULTILINE)


def f(x, nd=2, unit="") -> str:
    """``x`` with ``nd`` decimals and ``unit``; "-" for None or NaN."""
    if x is None or (isinstance(x, float) and x != x):
        return "-"
    return f"{x:.{nd}f}{unit}"


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table."""
    return "\n".join(["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
                     + ["| " + " | ".join(r) + " |" for r in rows])


def short(s: str, n: int = 160) -> str:
    """A message fit for a table cell: no pipes or backticks, temporary paths as <tmp>/, at most ``n`` characters."""
    s = s.replace("|", "/").replace("`", "'")
    for tmp in ("/tmp/pytest-of-", "/tmp/"):
        if tmp in s:  # temporary paths differ from run to run
            s = re.sub(r"/tmp/\S*/", "<tmp>/", s)
    return s if len(s) <= n else s[: n - 3] + "..."


@lru_cache(maxsize=None)
def blocks(path: Path = TEMPLATE) -> dict[str, str]:
    """{name: text} of the template: a block runs from its ``<!-- block: name -->`` line to the newline before the
    next one (or the end of the file)."""
    parts = _BLOCK.split(path.read_text(encoding="utf-8"))
    return {name: text[:-1] if text.endswith("\n") else text for name, text in zip(parts[1::2], parts[2::2])}


def render(name: str, **values) -> str:
    """The template's block ``name`` with its ``{placeholders}`` filled from ``values``."""
    return blocks()[name].format_map(values)
