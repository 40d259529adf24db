"""Write a Report as Markdown: the same sections and tables, figures linked as PNG files beside it."""

from __future__ import annotations

from gradlab.report.document import Block, Image, Report, Table, Text


def md(text: object) -> str:
    """Text safe in a Markdown table cell: no raw HTML (& and < escaped, so no tag can open), no column break,
    one line."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace("|", "\\|").replace("\n", " ")


def to_markdown(report: Report) -> str:
    lines = [f"# {md(report.title)}", "", *(f"{md(line)}  " for line in report.subtitle), ""]
    for section in report.sections:
        lines += [f"## {md(section.title)}", ""]
        for block in section.blocks:
            lines += [*_block(block), ""]
    return "\n".join(lines)


def _block(block: Block) -> list[str]:
    if isinstance(block, Text):
        return [f"> **Warning:** {md(block.text)}" if block.kind == "warning" else md(block.text)]
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, Image):
        return [f"### {md(block.title)}", "", f"![{md(block.title)}]({block.file})", "", f"*{md(block.caption)}*"]
    raise TypeError(f"unknown report block {type(block).__name__}")


def _table(table: Table) -> list[str]:
    lines = [f"**{md(table.collapsed)}**", ""] if table.collapsed else []
    lines += ["| " + " | ".join(md(c) for c in table.columns) + " |",
              "|" + "|".join("---" for _ in table.columns) + "|"]
    lines += ["| " + " | ".join(md(v) for v in row) + " |" for row in table.rows]
    if table.caption:
        lines += ["", f"*{md(table.caption)}*"]
    return lines
