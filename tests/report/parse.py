"""Read a report back the strict way: the HTML as XML (it is written well-formed), tables as lists of cells."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

MD_IMAGE = re.compile(r"!\[[^\]]*\]\(([^)]+)\)")


def parse_html(path: Path) -> ET.Element:
    text = path.read_text()
    assert text.startswith("<!DOCTYPE html>\n")
    return ET.fromstring(text.removeprefix("<!DOCTYPE html>\n"))  # raises on unbalanced or unescaped markup


def section(root: ET.Element, section_id: str) -> ET.Element:
    found = root.find(f".//section[@id='{section_id}']")
    assert found is not None, f"no section {section_id!r}"
    return found


def text_of(element: ET.Element) -> str:
    return "".join(element.itertext())


def table_rows(element: ET.Element, index: int = 0) -> tuple[list[str], list[list[str]]]:
    """Header and body cells (as text) of the index-th table under `element`."""
    table = element.findall(".//table")[index]
    header = [text_of(th) for th in table.findall("./thead/tr/th")]
    rows = [[text_of(td) for td in tr.findall("td")] for tr in table.findall("./tbody/tr")]
    return header, rows


def column(header: list[str], rows: list[list[str]], name: str) -> list[str]:
    return [row[header.index(name)] for row in rows]
