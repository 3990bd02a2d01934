"""Attacker-controlled text made safe to show: on a terminal, in syslog, in JSON lines, in SVG and HTML.

Header values in a capture may hold any character. Shown raw, C0 and C1 controls drive the reader's
terminal (ECMA-48: ESC and CSI sequences move the cursor and recolour, OSC retitles the window or
writes the clipboard, BEL rings, BS and CR overwrite what was shown); DEL and C1 are invisible; the
Unicode bidirectional controls reorder what is displayed (UAX #9 §2, the "Trojan Source" trick); XML
1.0 (§2.2) forbids every C0 control but TAB, LF and CR even as a character reference, so one such
byte makes an SVG unreadable. Every one of these characters is shown as a visible escape instead:
`\\xHH` for code points up to U+00FF, `\\uHHHH` above. Nothing else changes, so text that holds none
of them is shown exactly. Exact values stay in JSON and Parquet (JSON escapes them, see json_line).
"""
from __future__ import annotations

import json
import re

# C0 controls (U+0000-U+001F); then DEL (U+007F), C1 (U+0080-U+009F), the bidirectional controls
# (ALM U+061C, LRM/RLM U+200E-U+200F, LRE..RLO U+202A-U+202E, LRI..PDI U+2066-U+2069), the line and
# paragraph separators (U+2028, U+2029) and lone surrogates (not encodable in UTF-8).
_C0 = "\x00-\x1f"
_C0_BUT_WHITESPACE = "\x00-\x08\x0b\x0c\x0e-\x1f"         # TAB, LF, CR are whitespace in HTML and XML
_BEYOND_C0 = "\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff"
INVISIBLE_CHARS = _C0 + _BEYOND_C0                      # as the body of a regular expression class
INVISIBLE = re.compile(f"[{INVISIBLE_CHARS}]")
_MARKUP_UNSAFE = re.compile(f"[{_C0_BUT_WHITESPACE}{_BEYOND_C0}]")
# json.dumps escapes C0 itself (RFC 8259 §7) but writes the rest raw unless every non-ASCII
# character is escaped.
_JSON_RAW = re.compile(f"[{_BEYOND_C0}]")


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def visible(text: str) -> str:
    """`text` with every control, bidirectional control and lone surrogate shown as an escape."""
    if text.isprintable():      # every invisible character is outside Unicode's printable classes
        return text
    return INVISIBLE.sub(_escape, text) if INVISIBLE.search(text) else text


def visible_lines(text: str) -> str:
    """Multi-line text of our own with attacker-controlled parts: each line made visible, LF kept."""
    return "\n".join(visible(line) for line in text.split("\n"))


def markup_text(text: str) -> str:
    """`text` for an HTML or XML document: as visible(), but TAB, LF and CR (whitespace there) are kept."""
    if text.isprintable():
        return text
    return _MARKUP_UNSAFE.sub(_escape, text) if _MARKUP_UNSAFE.search(text) else text


def _json_escape(match: re.Match) -> str:
    return f"\\u{ord(match.group()):04x}"


def json_line(value, **options) -> str:
    """json.dumps with non-ASCII text kept as UTF-8 but DEL, C1, the bidirectional controls and the
    line separators written as \\u escapes (the same values read back; no raw control reaches a
    terminal that shows the file)."""
    text = json.dumps(value, ensure_ascii=False, **options)
    if text.isprintable():      # none of the characters escaped here is printable
        return text
    return _JSON_RAW.sub(_json_escape, text) if _JSON_RAW.search(text) else text
