"""What a report is, independent of how it is written: sections of text, tables and figures. The HTML and the
Markdown writers render the same Report, so the two never disagree on a number."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Text:
    """A paragraph. kind: "p" (plain), "note" (an explanation), "warning" (something missing or wrong)."""

    text: str
    kind: str = "p"


@dataclass(frozen=True)
class Table:
    """Cells already formatted as text. `badge`: the column whose cells are regime names (drawn as badges);
    `collapsed`: a summary line under which the HTML folds the table (<details>)."""

    columns: list[str]
    rows: list[list[str]]
    caption: str = ""
    badge: str | None = None
    collapsed: str | None = None


@dataclass(frozen=True)
class Image:
    """A PNG figure: embedded in the HTML, linked by `file` (relative to the report folder) in the Markdown."""

    title: str
    caption: str
    file: str
    png: bytes


Block = Text | Table | Image


@dataclass
class Section:
    id: str
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Report:
    title: str
    subtitle: list[str]
    sections: list[Section]


def table_from(frame, columns: dict[str, str], **kwargs) -> Table:
    """A Table from a frame of formatted strings: `columns` maps frame column → header."""
    rows = [[str(v) for v in row] for row in frame[list(columns)].itertuples(index=False, name=None)]
    return Table(list(columns.values()), rows, **kwargs)
