"""What a report is and how it is written: sections of text, tables and figures (the model), rendered as one
self-contained HTML file and as Markdown. Both writers render the same Report, so they never disagree on a number.

The HTML has inline CSS, figures embedded as base64 PNG, no script and no external URL; every string is escaped
and the markup is well-formed XML (void elements are self-closed), so a test can parse it strictly. The Markdown
links the figures as PNG files beside it.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from html import escape

from gradlab.analysis.regime import REGIMES


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


def table_from(frame, *, columns: dict[str, str], **kwargs) -> Table:
    """A Table from a frame of formatted strings: `columns` maps frame column → header."""
    rows = [[str(v) for v in row] for row in frame[list(columns)].itertuples(index=False, name=None)]
    return Table(list(columns.values()), rows, **kwargs)


CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2430; margin: 0;
       background: #f6f7f9; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 32px 64px; background: #fff; }
h1 { font-size: 1.7em; margin: 0.2em 0 0.1em; }
h2 { font-size: 1.3em; border-bottom: 2px solid #e3e6eb; padding-bottom: 4px; margin-top: 2em; }
.subtitle { color: #5b6472; margin: 0.1em 0; font-size: 0.92em; word-break: break-all; }
nav { margin: 14px 0 0; font-size: 0.92em; }
nav a { margin-right: 14px; color: #0b62a4; text-decoration: none; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: 10px 0 4px; font-size: 0.9em; }
th, td { border: 1px solid #dde1e6; padding: 4px 9px; text-align: left; vertical-align: top; }
th { background: #eef1f5; font-weight: 600; }
tbody tr:nth-child(even) td { background: #fafbfc; }
td.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
.caption, figcaption { color: #5b6472; font-size: 0.88em; margin: 2px 0 14px; max-width: 60em; }
.note { color: #3c4656; }
.warning { background: #fff6e0; border-left: 4px solid #e0a100; padding: 6px 10px; }
figure { margin: 18px 0 28px; }
figure img { max-width: 100%; height: auto; border: 1px solid #eef0f3; }
details { margin: 8px 0; }
summary { cursor: pointer; color: #0b62a4; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 9px; font-size: 0.86em; font-weight: 600;
         color: #fff; background: #6b7280; white-space: nowrap; }
.regime-healthy, .regime-implicit { background: #1a7f37; }
.regime-vanishing, .regime-saturation, .regime-implicit_fallback { background: #c26a00; }
.regime-collapse { background: #7c3aed; }
.regime-exploding, .regime-nonfinite { background: #c62828; }
.regime-one_step, .regime-no_grad, .regime-none { background: #6b7280; }
"""


def esc(text: object) -> str:
    return escape(str(text), quote=True)


def to_html(report: Report) -> str:
    nav = " ".join(f'<a href="#{esc(s.id)}">{esc(s.title)}</a>' for s in report.sections)
    head = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8"/>',
        '<meta name="viewport" content="width=device-width, initial-scale=1"/>',
        f"<title>{esc(report.title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>", "<main>",
        f"<h1>{esc(report.title)}</h1>", *(f'<p class="subtitle">{esc(line)}</p>' for line in report.subtitle),
        f"<nav>{nav}</nav>",
    ]
    body = [_html_section(s) for s in report.sections]
    return "\n".join([*head, *body, "</main>", "</body>", "</html>", ""])


def _html_section(section: Section) -> str:
    blocks = "\n".join(_html_block(b) for b in section.blocks)
    return f'<section id="{esc(section.id)}">\n<h2>{esc(section.title)}</h2>\n{blocks}\n</section>'


def _html_block(block: Block) -> str:
    if isinstance(block, Text):
        return f'<p class="{esc(block.kind)}">{esc(block.text)}</p>'
    if isinstance(block, Table):
        return _html_table(block)
    if isinstance(block, Image):
        return _html_image(block)
    raise TypeError(f"unknown report block {type(block).__name__}")


def _html_table(table: Table) -> str:
    header = "".join(f"<th>{esc(c)}</th>" for c in table.columns)
    badge = table.columns.index(table.badge) if table.badge in table.columns else -1
    rows = "\n".join("<tr>" + "".join(_html_cell(v, i == badge) for i, v in enumerate(row)) + "</tr>"
                     for row in table.rows)
    html = (f'<div class="scroll">\n<table>\n<thead><tr>{header}</tr></thead>\n<tbody>\n{rows}\n</tbody>\n'
            "</table>\n</div>")
    if table.caption:
        html += f'\n<p class="caption">{esc(table.caption)}</p>'
    if table.collapsed:
        html = f"<details>\n<summary>{esc(table.collapsed)}</summary>\n{html}\n</details>"
    return html


def _html_cell(value: str, badge: bool) -> str:
    if badge:
        regime = value if value in REGIMES or value == "none" else "other"
        return f'<td><span class="badge regime-{regime}">{esc(value)}</span></td>'
    numeric = value[:1] in "+-0123456789" and len(value) < 24
    return f'<td class="num">{esc(value)}</td>' if numeric else f"<td>{esc(value)}</td>"


def _html_image(image: Image) -> str:
    data = base64.b64encode(image.png).decode("ascii")
    return (f'<figure>\n<img src="data:image/png;base64,{data}" alt="{esc(image.title)}"/>\n'
            f"<figcaption><strong>{esc(image.title)}.</strong> {esc(image.caption)}</figcaption>\n</figure>")


def md(text: object) -> str:
    """Text safe in a Markdown table cell: no raw HTML (& and < escaped, so no tag can open), no column break,
    one line."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace("|", "\\|").replace("\n", " ")


def to_markdown(report: Report) -> str:
    lines = [f"# {md(report.title)}", "", *(f"{md(line)}  " for line in report.subtitle), ""]
    for section in report.sections:
        lines += [f"## {md(section.title)}", ""]
        for block in section.blocks:
            lines += [*_md_block(block), ""]
    return "\n".join(lines)


def _md_block(block: Block) -> list[str]:
    if isinstance(block, Text):
        return [f"> **Warning:** {md(block.text)}" if block.kind == "warning" else md(block.text)]
    if isinstance(block, Table):
        return _md_table(block)
    if isinstance(block, Image):
        return [f"### {md(block.title)}", "", f"![{md(block.title)}]({block.file})", "", f"*{md(block.caption)}*"]
    raise TypeError(f"unknown report block {type(block).__name__}")


def _md_table(table: Table) -> list[str]:
    lines = [f"**{md(table.collapsed)}**", ""] if table.collapsed else []
    lines += ["| " + " | ".join(md(c) for c in table.columns) + " |",
              "|" + "|".join("---" for _ in table.columns) + "|"]
    lines += ["| " + " | ".join(md(v) for v in row) + " |" for row in table.rows]
    if table.caption:
        lines += ["", f"*{md(table.caption)}*"]
    return lines
