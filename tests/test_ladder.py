"""SIP ladder: rows, labels, parties and retransmission flags; terminal golden; PNG and SVG figures;
the bounds of a drawing (lifelines grouped by host, rows left out, labels escaped and cut)."""
from __future__ import annotations

import xml.etree.ElementTree as ET

from dissectors.sip import parse_sip
from voipwatch.call.ladder import (MAX_LABEL, MAX_LIFELINES, MAX_ROWS, Gap, Ladder, LadderRow, bounded_view,
                                   build_ladder, render_figure, render_text, save_ladder)
from voipwatch.records import PacketMeta

ALICE = ("192.0.2.10", 5060)
BOB = ("192.0.2.20", 5062)
PROXY = ("198.51.100.1", 5060)
CALL = "f81d4fae@192.0.2.10"

SDP = """v=0
o=alice 1 1 IN IP4 192.0.2.10
s=-
c=IN IP4 192.0.2.10
t=0 0
m=audio 49170 RTP/AVP 0
"""


def sip(ts: float, frame: int, src: tuple[str, int], dst: tuple[str, int], text: str, body: str = ""):
    """Parse a message written with \\n line ends (sent with CRLF, RFC 3261 §7)."""
    head = text.strip("\n") + f"\nContent-Length: {len(body.replace(chr(10), chr(13) + chr(10)))}\n"
    if body:
        head = head.replace("\nContent-Length", "\nContent-Type: application/sdp\nContent-Length")
    payload = (head + "\n" + body).replace("\n", "\r\n").encode()
    msg, anomalies = parse_sip(PacketMeta(1700000000.0 + ts, frame, (), *src, *dst, "udp"), payload)
    assert msg is not None and not anomalies, anomalies
    return msg


def request(method: str, cseq: int, branch: str, to_tag: str = "", frm: str = "alice", tag: str = "a1") -> str:
    to = "bob" if frm == "alice" else "alice"
    return f"""{method} sip:{to}@example.com SIP/2.0
Via: SIP/2.0/UDP host.example.com:5060;branch={branch};rport
From: <sip:{frm}@example.com>;tag={tag}
To: <sip:{to}@example.com>{f';tag={to_tag}' if to_tag else ''}
Call-ID: {CALL}
CSeq: {cseq} {method}"""


def response(status: str, cseq: int, method: str, branch: str, to_tag: str = "", frm: str = "alice",
             tag: str = "a1") -> str:
    to = "bob" if frm == "alice" else "alice"
    return f"""SIP/2.0 {status}
Via: SIP/2.0/UDP host.example.com:5060;branch={branch};received=192.0.2.10
From: <sip:{frm}@example.com>;tag={tag}
To: <sip:{to}@example.com>{f';tag={to_tag}' if to_tag else ''}
Call-ID: {CALL}
CSeq: {cseq} {method}"""


def basic_call():
    return [
        sip(0.000, 1, ALICE, BOB, request("INVITE", 1, "z9hG4bKinv1"), SDP),
        sip(0.500, 2, ALICE, BOB, request("INVITE", 1, "z9hG4bKinv1"), SDP),
        sip(0.520, 3, BOB, ALICE, response("100 Trying", 1, "INVITE", "z9hG4bKinv1")),
        sip(0.600, 4, BOB, ALICE, response("180 Ringing", 1, "INVITE", "z9hG4bKinv1", "b1")),
        sip(2.000, 5, BOB, ALICE, response("200 OK", 1, "INVITE", "z9hG4bKinv1", "b1"), SDP),
        sip(2.010, 6, ALICE, BOB, request("ACK", 1, "z9hG4bKack1", "b1")),
        sip(12.345, 8, BOB, ALICE, request("BYE", 1, "z9hG4bKbye1", "a1", frm="bob", tag="b1")),
        sip(12.400, 9, ALICE, BOB, response("200 OK", 1, "BYE", "z9hG4bKbye1", "a1", frm="bob", tag="b1")),
    ]


def test_build_ladder_rows_labels_parties_and_retransmissions():
    messages = basic_call()
    ladder = build_ladder(list(reversed(messages)))        # input order does not matter
    assert ladder.parties == ["192.0.2.10:5060", "192.0.2.20:5062"]
    assert [(r.src, r.dst, r.label, r.is_retransmission) for r in ladder.rows] == [
        (0, 1, "INVITE (SDP)", False),
        (0, 1, "INVITE (SDP)", True),
        (1, 0, "100 Trying", False),
        (1, 0, "180 Ringing", False),
        (1, 0, "200 OK (SDP)", False),
        (0, 1, "ACK", False),
        (1, 0, "BYE", False),
        (0, 1, "200 OK", False),
    ]
    assert [r.frame for r in ladder.rows] == [1, 2, 3, 4, 5, 6, 8, 9]
    assert ladder.rows[0] == LadderRow(1700000000.0, 1, 0, 1, "INVITE (SDP)", False)


def test_retransmitted_final_response_and_its_ack():
    messages = basic_call()[:6] + [
        sip(2.500, 7, BOB, ALICE, response("200 OK", 1, "INVITE", "z9hG4bKinv1", "b1"), SDP),
        sip(2.510, 8, ALICE, BOB, request("ACK", 1, "z9hG4bKack1", "b1")),
    ]
    flags = [r.is_retransmission for r in build_ladder(messages).rows]
    assert flags == [False, True, False, False, False, False, True, True]


def test_two_legs_through_a_proxy_are_not_retransmissions():
    """A proxy forwards with its own Via on top: same Call-ID, CSeq and tags on both legs."""
    leg2_via = "z9hG4bKproxy1"
    messages = [
        sip(0.0, 1, ALICE, PROXY, request("INVITE", 1, "z9hG4bKinv1"), SDP),
        sip(0.01, 2, PROXY, BOB, request("INVITE", 1, leg2_via), SDP),
        sip(1.0, 3, BOB, PROXY, response("200 OK", 1, "INVITE", leg2_via, "b1"), SDP),
        sip(1.01, 4, PROXY, ALICE, response("200 OK", 1, "INVITE", "z9hG4bKinv1", "b1"), SDP),
    ]
    ladder = build_ladder(messages)
    assert ladder.parties == ["192.0.2.10:5060", "198.51.100.1:5060", "192.0.2.20:5062"]
    assert [(r.src, r.dst) for r in ladder.rows] == [(0, 1), (1, 2), (2, 1), (1, 0)]
    assert not any(r.is_retransmission for r in ladder.rows)


def test_ipv6_party_and_via_without_branch():
    text = request("OPTIONS", 7, "x").replace(";branch=x;rport", "")
    msgs = [sip(0.0, 1, ("2001:db8::1", 5060), BOB, text), sip(1.0, 2, ("2001:db8::1", 5060), BOB, text)]
    ladder = build_ladder(msgs)
    assert ladder.parties == ["[2001:db8::1]:5060", "192.0.2.20:5062"]
    assert [r.is_retransmission for r in ladder.rows] == [False, True]


GOLDEN = """\
         192.0.2.10:5060                      192.0.2.20:5062
 0.000          │───────────INVITE (SDP)────────────▶│
 0.500          │───────────INVITE (SDP)────────────▶│  [retrans]
 0.520          │◀────────────100 Trying─────────────│
 0.600          │◀────────────180 Ringing────────────│
 2.000          │◀───────────200 OK (SDP)────────────│
 2.010          │────────────────ACK────────────────▶│
12.345          │◀────────────────BYE────────────────│
12.400          │──────────────200 OK───────────────▶│
"""


def test_render_text_golden():
    assert render_text(build_ladder(basic_call()), width=72) == GOLDEN


def test_render_text_three_parties_and_truncation():
    ladder = Ladder(["a:1", "b:2", "c:3"], [
        LadderRow(5.0, 1, 0, 2, "INVITE (SDP)", False),
        LadderRow(5.25, 2, 2, 1, "183 Session Progress with a long reason", False),
        LadderRow(5.5, 3, 1, 1, "OPTIONS", True),
    ])
    assert render_text(ladder, width=40) == """\
        a:1         b:2         c:3
0.000    │─────INVITE (SDP)─────▶│
0.250    │           │◀──183 S…──│
0.500    │           │           │ ↻ OPTIONS  [retrans]
"""
    assert render_text(Ladder([], [])) == ""


def test_figure_png_and_svg(tmp_path):
    ladder = build_ladder(basic_call())
    fig = render_figure(ladder)
    assert len(fig.axes) == 1
    png, svg = tmp_path / "ladder.png", tmp_path / "ladder.svg"
    save_ladder(ladder, png, svg)
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    text = svg.read_text()
    assert text.lstrip().startswith("<?xml")
    for label in ["INVITE (SDP) [retrans]", "100 Trying", "180 Ringing", "200 OK (SDP)", "ACK", "BYE",
                  "192.0.2.10:5060", "192.0.2.20:5062", "12.400 s"]:
        assert label in text
    save_ladder(ladder, tmp_path / "again.png", tmp_path / "again.svg")
    assert (tmp_path / "again.svg").read_text() == text           # deterministic SVG


def rows_between(pairs: list[tuple[int, int]]) -> list[LadderRow]:
    return [LadderRow(10.0 + 0.01 * i, i + 1, a, b, "INFO", False) for i, (a, b) in enumerate(pairs)]


def test_at_the_limits_everything_is_drawn():
    parties = [f"192.0.2.{i}:5060" for i in range(1, MAX_LIFELINES + 1)]
    view = bounded_view(Ladder(parties, rows_between([(i % MAX_LIFELINES, 0) for i in range(MAX_ROWS)])))
    assert (view.lifelines, view.grouping, view.drawn, view.limits()) == (parties, "address", MAX_ROWS, [])
    assert not any(isinstance(row, Gap) for row in view.rows)


def test_parties_beyond_the_limit_are_grouped_by_host():
    parties = ["192.0.2.10:5060", "[2001:db8::1]:5060", "[2001:db8::1]:5062", "192.0.2.20:5060",
               "192.0.2.20:5070", "192.0.2.20:5080", "192.0.2.30:5060"]
    ladder = Ladder(parties, rows_between([(0, 1), (2, 0), (3, 0), (4, 5), (5, 6)]))
    view = bounded_view(ladder)
    assert view.lifelines == ["192.0.2.10:5060", "2001:db8::1 (2 ports)", "192.0.2.20 (3 ports)", "192.0.2.30:5060"]
    assert view.lane == [0, 1, 1, 2, 2, 2, 3]
    assert view.limits() == ["7 addresses drawn as 4 lifelines, grouped by host (at most 6 lifelines)"]
    text = render_text(ladder)
    assert text.splitlines()[0].split() == ["192.0.2.10:5060", "2001:db8::1", "(2", "ports)", "192.0.2.20", "(3",
                                            "ports)", "192.0.2.30:5060"]
    assert text.splitlines()[-1] == f"(ladder limited: {view.limits()[0]})"
    assert text.splitlines()[4].endswith("│ ↻ INFO")          # 192.0.2.20:5070 -> :5080, one lifeline


def test_hostile_labels_are_drawn_escaped_and_never_read_as_tex(tmp_path):
    label = "180 \x1b]0;owned\x07 $\\frac{1}{0}$ $x^ \x0c\x9b" + "x" * 200
    ladder = Ladder(["a:1", "b:2"], [LadderRow(1.0, 1, 0, 1, label, False), LadderRow(1.1, 2, 1, 1, label, True)])
    save_ladder(ladder, tmp_path / "l.png", tmp_path / "l.svg")
    shown = "180 \\x1b]0;owned\\x07 $\\frac{1}{0}$ $x^ \\x0c\\x9b" + "x" * 12 + "…"
    assert len(shown) == MAX_LABEL
    texts = [t.text for t in ET.parse(tmp_path / "l.svg").iter("{http://www.w3.org/2000/svg}text")]
    assert shown in texts and f"{shown} [retrans]" in texts
    assert f"↻ {shown}  [retrans]" in render_text(ladder)
