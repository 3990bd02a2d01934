"""Phone provisioning files (configs, firmware): is a file name one, and is its content plaintext, signed or
encrypted, and does it carry credentials (field names only, never values)."""
from __future__ import annotations

import math
import re
from collections import Counter

# Names phones fetch at boot: Cisco SEP<MAC>.cnf.xml(.sgn), XMLDefault.cnf.xml, ITL/CTL files; Yealink
# y0000000000xx.cfg and <MAC>.cfg; Polycom 000000000000.cfg / <MAC>-phone.cfg; Snom/Grandstream cfg<MAC>.xml;
# generic *.cfg, *.cnf, *.xml, *.conf, *.ini; firmware *.bin, *.rom, *.loads, *.ld, *.sbn.
CONFIG_NAME = re.compile(r"(?i)(\.(cfg|cnf|conf|ini|xml|tlv|boot)(\.sgn|\.enc(\.sgn)?)?$|^(sep|cfg)[0-9a-f]{12}|"
                         r"^y0{10}\d\d\.cfg$|^(itl|ctl)\w*\.tlv$)")
FIRMWARE_NAME = re.compile(r"(?i)\.(bin|rom|loads|ld|sbn|img|zup)(\.sgn)?$")
# Cisco signed (.sgn) and encrypted (.enc.sgn) configuration files; ITL/CTL trust lists are signed by design.
SIGNED_NAME = re.compile(r"(?i)(\.sgn$|^(itl|ctl)\w*\.tlv$)")
ENCRYPTED_NAME = re.compile(r"(?i)\.enc(\.sgn)?$")
# nsa-checks UM-11: credential keys in plaintext configs (XML element or attribute, key=value, key: value).
CREDENTIAL_KEY = re.compile(rb"(?i)([\w.\-]*(?:pass(?:word)?|passwd|pwd|secret|auth[\w.\-]*pass)[\w.\-]*)\s*[=:>\"]")
PRINTABLE = frozenset(b"\t\n\r" + bytes(range(32, 127)))
PLAINTEXT_MIN_RATIO = 0.9         # nsa-checks UM-11: printable ratio above which content is plaintext
ENCRYPTED_MIN_ENTROPY = 7.5       # ... and byte entropy above which a blob is encrypted (or compressed)
MAX_FIELDS = 20                   # credential field names reported per file at most


def kind_of_name(name: str) -> str | None:
    """"config", "firmware" or None for a transferred file's name (its last path component)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1].split("?", 1)[0]
    if CONFIG_NAME.search(base):
        return "config"
    if FIRMWARE_NAME.search(base):
        return "firmware"
    return None


def entropy(data: bytes) -> float:
    """Shannon entropy of the bytes, in bits per byte."""
    if not data:
        return 0.0
    n = len(data)
    return -sum(c / n * math.log2(c / n) for c in Counter(data).values())


def classify(name: str, head: bytes) -> tuple[str, tuple[str, ...]]:
    """(content kind, credential field names) of a file from its name and its first bytes.

    Kinds: "signed" (a signed file name, readable or not), "encrypted" (an encrypted name, or byte
    entropy > 7.5), "plaintext" (printable ratio > 0.9), "binary" otherwise, "empty" for no bytes.
    Field names are listed for plaintext and signed files (a signed file may still be readable)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    if ENCRYPTED_NAME.search(base):
        return "encrypted", ()
    if not head:
        return "empty", ()
    printable = sum(1 for b in head if b in PRINTABLE) / len(head)
    fields: list[str] = []
    if printable > PLAINTEXT_MIN_RATIO:
        for m in CREDENTIAL_KEY.finditer(head):
            field = m.group(1).decode("ascii", "replace")[:64]
            if field not in fields:
                fields.append(field)
            if len(fields) >= MAX_FIELDS:
                break
    if SIGNED_NAME.search(base):
        return "signed", tuple(fields)
    if printable > PLAINTEXT_MIN_RATIO:
        return "plaintext", tuple(fields)
    if entropy(head) > ENCRYPTED_MIN_ENTROPY:
        return "encrypted", ()
    return "binary", ()
