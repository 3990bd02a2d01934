"""Readers for other tools' expected outputs, and a model of Zeek's sip.log, for test_peer_expectations.

Everything here reads a peer's file as the peer wrote it; nothing imports voipwatch's dissectors, so a
parsing mistake on our side cannot hide behind the same mistake in the reader.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

# --------------------------------------------------------------------------------------------------
# Zeek TSV logs (full logs with #fields, and btest "cut" files whose first line names the columns)

_ZEEK_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})|\\\\")


def zeek_unescape(value: str) -> str:
    """Zeek's ASCII writer escapes a backslash as \\\\ and unprintable bytes as \\xNN."""
    return _ZEEK_ESCAPE.sub(lambda m: "\\" if m.group(0) == "\\\\" else chr(int(m.group(1), 16)), value)


def read_zeek_log(path: Path) -> list[dict[str, str]]:
    """Rows of a Zeek log as {column: raw value}; '-' is unset and '(empty)' an empty set/vector."""
    fields: list[str] | None = None
    rows: list[dict[str, str]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("### BTest") or not line.strip():
            continue
        if line.startswith("#fields\t"):
            fields = line.split("\t")[1:]
            continue
        if line.startswith("#"):
            continue
        values = line.split("\t")
        if fields is None:          # a btest-diff-cut / zeek-cut -m file: the first line is the header
            fields = values
            continue
        rows.append(dict(zip(fields, values)))
    return rows


def zeek_value(raw: str | None) -> str | None:
    """A scalar column: None when unset."""
    return None if raw in (None, "-") else zeek_unescape(raw)


def zeek_vector(raw: str | None) -> list[str] | None:
    """A vector/set column (set separator ','): None when unset, [] when '(empty)'."""
    if raw in (None, "-"):
        return None
    if raw == "(empty)":
        return []
    return [zeek_unescape(v) for v in raw.split(",")]


# --------------------------------------------------------------------------------------------------
# SIP name-addr values as a peer printed them: '"arik" <sip:816666@host>;tag=x' -> (uri, tag)

_TAG = re.compile(r";\s*tag=([^;\s>]+)", re.I)


def addr_uri_tag(value: str | None) -> tuple[str | None, str | None]:
    if value is None:
        return None, None
    if "<" in value and ">" in value[value.index("<"):]:
        lt = value.index("<")
        gt = value.index(">", lt)
        uri, rest = value[lt + 1:gt].strip(), value[gt + 1:]
    else:
        uri, _, rest = value.partition(";")
        uri, rest = uri.strip(), ";" + rest
    tag = _TAG.search(rest)
    return uri or None, tag.group(1) if tag else None


# --------------------------------------------------------------------------------------------------
# A minimal reader for suricata-verify's test.yaml (PyYAML is not a dependency of the project).
# Supports what those files use: nested mappings, "- " lists (of scalars or mappings), comments,
# plain/quoted scalars, integers and booleans.

_KEY = re.compile(r"^([^\s:#-][^:]*?|[^\s:#]*?[^\s:#-][^:]*?):(?:\s+(.*))?$")


def _scalar(text: str):
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if text in ("true", "yes"):
        return True
    if text in ("false", "no"):
        return False
    return text


def read_test_yaml(path: Path):
    lines = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        lines.append([len(raw) - len(raw.lstrip(" ")), stripped])
    value, pos = _block(lines, 0, lines[0][0])
    if pos != len(lines):
        raise ValueError(f"{path}: could not read line {pos + 1}: {lines[pos][1]!r}")
    return value


def _block(lines, pos, indent):
    if lines[pos][1] == "-" or lines[pos][1].startswith("- "):
        return _list(lines, pos, indent)
    return _map(lines, pos, indent)


def _list(lines, pos, indent):
    out = []
    while pos < len(lines) and lines[pos][0] == indent and (lines[pos][1] == "-" or lines[pos][1].startswith("- ")):
        content = lines[pos][1][1:]
        inner = content.lstrip(" ")
        if not inner:
            item, pos = _block(lines, pos + 1, lines[pos + 1][0])
        elif _KEY.match(inner):
            lines[pos] = [indent + 1 + (len(content) - len(inner)), inner]
            item, pos = _map(lines, pos, lines[pos][0])
        else:
            item, pos = _scalar(inner), pos + 1
        out.append(item)
    return out, pos


def _map(lines, pos, indent):
    out = {}
    while pos < len(lines) and lines[pos][0] == indent and not lines[pos][1].startswith("- "):
        m = _KEY.match(lines[pos][1])
        if not m:
            raise ValueError(f"not a mapping entry: {lines[pos][1]!r}")
        key, rest = m.group(1).strip(), m.group(2)
        pos += 1
        if rest is not None and rest.strip():
            out[key] = _scalar(rest)
        elif pos < len(lines) and (lines[pos][0] > indent
                                   or (lines[pos][0] == indent and lines[pos][1].startswith("- "))):
            out[key], pos = _block(lines, pos, lines[pos][0])
        else:
            out[key] = None
    return out, pos


# --------------------------------------------------------------------------------------------------
# ipfixprobe functional-test outputs: CSV rows, the typed header ("ipaddr DST_IP,...") on its own line

def read_ipfixprobe(path: Path) -> list[dict[str, str]]:
    header: list[str] | None = None
    rows: list[list[str]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        if line.startswith("ipaddr ") or line.startswith("uint"):
            header = [col.split(" ", 1)[1] for col in line.split(",")]
            continue
        rows.append(_csv(line))
    assert header is not None, f"{path}: no typed header line"
    return [dict(zip(header, row)) for row in rows]


def _csv(line: str) -> list[str]:
    out, cur, quoted, i = [], [], False, 0
    while i < len(line):
        ch = line[i]
        if quoted:
            if ch == '"' and line[i + 1:i + 2] == '"':
                cur.append('"')
                i += 1
            elif ch == '"':
                quoted = False
            else:
                cur.append(ch)
        elif ch == '"':
            quoted = True
        elif ch == ",":
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    out.append("".join(cur))
    return out


def ipfix_time(text: str) -> float:
    """ipfixprobe's text time (UTC, microseconds) as seconds since the epoch."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=timezone.utc).timestamp()


# --------------------------------------------------------------------------------------------------
# nDPI ndpiReader result files: per-protocol totals and one line per flow

@dataclass(frozen=True)
class NdpiFlow:
    l4: str
    a: tuple[str, int]             # the flow's first endpoint ("client" as nDPI prints it)
    b: tuple[str, int]
    bidirectional: bool
    proto: str                     # e.g. "SIP", "RTP", "GRE:100/SIP" -> "SIP", "Unknown"
    vlan: int | None
    pkts_ab: int
    pkts_ba: int
    detected: bool
    text: str                      # the flow line as printed


_FLOW = re.compile(r"^\t\d+\t(?P<l4>\S+) (?P<a>\S+) (?P<arrow><->|->) (?P<b>\S+) (?P<rest>\[.*)$")
_ENDPOINT = re.compile(r"^\[?(?P<ip>.+?)\]?:(?P<port>\d+)$")
_PROTO = re.compile(r"\[proto: (?:[A-Z]+:)?[\d.]+/(?P<name>[^\]]+)\]")
_PKTS = re.compile(r"\[(?P<ab>\d+) pkts/\d+ bytes (?:<->|->) (?P<ba>\d+) pkts/\d+ bytes\]")
_VLAN = re.compile(r"\[VLAN: (?P<vlan>\d+)\]")
_TOTAL = re.compile(r"^(?P<proto>[A-Za-z0-9_.]+)\t(?P<pkts>\d+)\t(?P<bytes>\d+)\t(?P<flows>\d+)$")


def read_ndpi(path: Path) -> tuple[dict[str, tuple[int, int, int]], list[NdpiFlow]]:
    """({protocol: (packets, bytes, flows)}, flows)."""
    totals: dict[str, tuple[int, int, int]] = {}
    flows: list[NdpiFlow] = []
    detected = True
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("Undetected flows"):
            detected = False
            continue
        t = _TOTAL.match(line)
        if t:
            totals[t["proto"]] = (int(t["pkts"]), int(t["bytes"]), int(t["flows"]))
            continue
        m = _FLOW.match(line)
        if not m:
            continue
        a, b = _ENDPOINT.match(m["a"]), _ENDPOINT.match(m["b"])
        proto = _PROTO.search(m["rest"])
        pkts = _PKTS.search(m["rest"])
        vlan = _VLAN.search(m["rest"])
        flows.append(NdpiFlow(m["l4"], (a["ip"], int(a["port"])), (b["ip"], int(b["port"])), m["arrow"] == "<->",
                              proto["name"] if proto else "Unknown", int(vlan["vlan"]) if vlan else None,
                              int(pkts["ab"]), int(pkts["ba"]), detected, line))
    return totals, flows


# --------------------------------------------------------------------------------------------------
# Snort 3 alert_csv lines: "timestamp, pkt_num, proto, pkt_gen, pkt_len, dir, src_ap, dst_ap, rule, action"

@dataclass(frozen=True)
class SnortAlert:
    frame: int
    proto: str
    pkt_len: int
    direction: str
    src: tuple[str, int]
    dst: tuple[str, int]
    rule: str                      # gid:sid:rev


def read_snort(path: Path) -> list[SnortAlert]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        cols = [c.strip() for c in line.split(",")]
        src_ip, _, src_port = cols[6].rpartition(":")
        dst_ip, _, dst_port = cols[7].rpartition(":")
        out.append(SnortAlert(int(cols[1]), cols[2], int(cols[4]), cols[5], (src_ip, int(src_port)),
                              (dst_ip, int(dst_port)), cols[8]))
    return out


# --------------------------------------------------------------------------------------------------
# Zeek's SIP logging (scripts/base/protocols/sip/main.zeek) replayed over voipwatch's SipMessages.
#
# Zeek keeps one pending SIP::Info per UDP connection (index 0: the analyzer never advances it), fills
# the request half from every request the originator sends and the response half from every response,
# writes a row at the end of every response (provisional ones too), drops the pending record after a
# final response, and writes whatever is still pending when the connection is removed (UDP
# inactivity timeout, 1 min by default, or the end of the trace). Fields are assigned per header, so
# a value survives until a later message of the same direction carries that header again, and the
# Via paths are appended to, never reset, until the record is dropped. Replaying that model over our
# records gives, row by row, what sip.log must say if both tools read the same messages.

ZEEK_UDP_INACTIVITY_TIMEOUT = 60.0
_BRANCH = re.compile(r";[ ]?branch")


@dataclass
class ZeekSipRow:
    conn: int                      # index of the modelled connection (stands in for uid)
    orig: tuple[str, int]
    resp: tuple[str, int]
    method: str | None = None
    uri: str | None = None
    request_from: str | None = None          # URI (Zeek logs the whole header minus ;tag=)
    request_to: tuple | None = None          # (URI, tag)
    response_from: str | None = None
    response_to: tuple | None = None
    call_id: str | None = None
    seq: str | None = None
    request_path: list[str] = field(default_factory=list)
    response_path: list[str] = field(default_factory=list)
    user_agent: str | None = None
    status_code: int | None = None
    status_msg: str | None = None
    request_body_len: int | None = None
    response_body_len: int | None = None
    content_type: str | None = None
    request_frames: list[int] = field(default_factory=list)
    response_frame: int | None = None

    def snapshot(self) -> "ZeekSipRow":
        return ZeekSipRow(**{k: (list(v) if isinstance(v, list) else v) for k, v in self.__dict__.items()})


def _via_path(vias) -> list[str]:
    # split_string1(value, /;[ ]?branch/)[0]: everything before the branch parameter
    return [_BRANCH.split(v, maxsplit=1)[0] for v in vias]


def zeek_sip_log(messages, max_request_path: int | None = None,
                 max_response_path: int | None = None) -> tuple[list[ZeekSipRow], list[int]]:
    """(rows in the order Zeek writes them, frames of messages Zeek's model cannot take).

    A request from the responder or a response from the originator is not parsed by Zeek's UDP SIP
    analyzer (it parses requests orig->resp and replies resp->orig); those frames are returned.
    """
    conns: dict[frozenset, dict] = {}
    rows: list[ZeekSipRow] = []
    skipped: list[int] = []
    counter = 0

    def expire(now: float) -> None:
        for key, c in sorted(conns.items(), key=lambda kv: kv[1]["last"]):
            if now >= c["last"] + ZEEK_UDP_INACTIVITY_TIMEOUT:
                if c["pending"] is not None:
                    rows.append(c["pending"].snapshot())
                del conns[key]

    for m in sorted(messages, key=lambda m: (m.pkt.ts, m.pkt.frame)):
        p = m.pkt
        expire(p.ts)
        key = frozenset({(p.src, p.sport), (p.dst, p.dport)})
        c = conns.get(key)
        if c is None:
            c = conns[key] = {"orig": (p.src, p.sport), "resp": (p.dst, p.dport), "pending": None,
                              "id": counter, "last": p.ts}
            counter += 1
        c["last"] = p.ts
        from_orig = (p.src, p.sport) == c["orig"]
        if m.is_request != from_orig:
            skipped.append(p.frame)
            continue
        if c["pending"] is None:
            c["pending"] = ZeekSipRow(c["id"], c["orig"], c["resp"])
        r = c["pending"]
        if m.is_request:
            r.method, r.uri = m.method, m.request_uri
            r.request_frames.append(p.frame)
            if m.call_id is not None:
                r.call_id = m.call_id
            if m.content_length is not None:
                r.request_body_len = m.content_length
            if m.cseq is not None:
                r.seq = f"{m.cseq} {m.cseq_method}"
            if m.from_uri is not None:
                r.request_from = m.from_uri
            if m.to_uri is not None:
                r.request_to = (m.to_uri, m.to_tag)
            if m.user_agent is not None:
                r.user_agent = m.user_agent
            r.request_path += _via_path(m.via)
            if max_request_path is not None:
                del r.request_path[max_request_path:]
        else:
            r.status_code, r.status_msg = m.status, m.reason
            r.response_frame = p.frame
            if m.content_length is not None:
                r.response_body_len = m.content_length
            if m.content_type is not None:
                r.content_type = m.content_type
            if m.from_uri is not None:
                r.response_from = m.from_uri
            if m.to_uri is not None:
                r.response_to = (m.to_uri, m.to_tag)
            r.response_path += _via_path(m.via)
            if max_response_path is not None:
                del r.response_path[max_response_path:]
            rows.append(r.snapshot())
            if m.status < 100 or m.status >= 200:
                c["pending"] = None
            if r.method is None or (r.method == "BYE" and 200 <= m.status < 300):
                c["pending"] = None
    expire(float("inf"))
    return rows, skipped
