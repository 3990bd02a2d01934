"""What makes an output safe for the person reading it, judged independently of voipwatch's own code.

- Spreadsheet: a cell is run as a formula when it starts with = + - @, TAB or CR (OWASP "CSV
  Injection"); a cell that is a plain number is a number, whatever its sign.
- Terminal: no C0 or C1 control, no DEL (ECMA-48 controls and sequences start with them), no
  bidirectional control (UAX #9) and no line or paragraph separator.
- Markup: an SVG or XML file parses with xml.etree (XML 1.0 forbids most C0 controls); an HTML
  page parses with html.parser and holds none of those characters but TAB, LF and CR.
"""
from __future__ import annotations

import html.parser
import re
import xml.etree.ElementTree as ET
from pathlib import Path

FORMULA_START = re.compile(r"[=+\-@\t\r]")
PLAIN_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", re.ASCII)
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
MARKUP_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def spreadsheet_safe(cell: str) -> bool:
    starts_formula = bool(cell) and FORMULA_START.match(cell) is not None and not PLAIN_NUMBER.fullmatch(cell)
    return not starts_formula and CONTROL.search(cell) is None


def terminal_clean(text: str) -> bool:
    """Lines free of every control character (the line ends themselves aside)."""
    return all(CONTROL.search(line) is None for line in text.split("\n"))


def xml_parses(path: Path) -> ET.ElementTree:
    return ET.parse(path)


class _Strict(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def html_text(path: Path) -> str:
    """The text of an HTML page, parsed with html.parser; the page must hold no control character
    but TAB, LF and CR (whitespace there)."""
    page = path.read_text(encoding="utf-8")
    assert MARKUP_CONTROL.search(page) is None, MARKUP_CONTROL.search(page)
    parser = _Strict()
    parser.feed(page)
    parser.close()
    return "".join(parser.text)
