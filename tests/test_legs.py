"""SDP offer/answer per leg (voipwatch.legs) on proxied, SBC and B2BUA calls, in both execution paths.

The answer of each leg must be the SDP of that leg's 200 OK (or reliable 18x, RFC 3262) as tshark shows it,
never the offer a proxy forwarded to the callee (the fact `voipwatch call` used to get wrong).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from voipwatch.call.select import select_calls
from voipwatch.call.text import investigate
from voipwatch.config import load_settings
from voipwatch.legs import MAX_JOINED, CallLegs, Link, call_groups, leg_ends, link_calls
from voipwatch.records import Call, PacketMeta, SdpMedia, SdpSession, SipMessage

ROOT = Path(__file__).resolve().parents[1]
LEGS = ROOT / "sample_captures" / "legs.pcap"
TRUNK = ROOT / "tests" / "lab" / "captures" / "sip-tcp-trunk.pcap"
MODES = ("batch", "stream")


def tshark_sdp(tshark: str, capture: Path, display_filter: str) -> list[dict]:
    """SIP messages with SDP as tshark dissects them: frame, hop, Call-ID, c= address and m= line."""
    fields = ["frame.number", "ip.src", "ipv6.src", "ip.dst", "ipv6.dst", "udp.srcport", "tcp.srcport",
              "udp.dstport", "tcp.dstport", "sip.Call-ID", "sdp.connection_info", "sdp.media"]
    out = subprocess.run([tshark, "-n", "-r", str(capture), "-Y", display_filter, "-T", "fields", "-E", "occurrence=f",
                          *[x for f in fields for x in ("-e", f)]], capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        frame, ip_src, ip6_src, ip_dst, ip6_dst, usport, tsport, udport, tdport, cid, conn, media = line.split("\t")
        rows.append({"frame": int(frame), "src": ip_src or ip6_src, "dst": ip_dst or ip6_dst,
                     "sport": int(usport or tsport), "dport": int(udport or tdport), "call_id": cid,
                     "address": conn.split()[-1], "media": media})
    return rows


def m_line(seen) -> tuple[str, str]:
    """(c= address, m= line as tshark prints it) of the first m= line of an SdpSeen."""
    m = seen.sdp.media[0]
    return m.connection or seen.sdp.connection, f"{m.kind} {m.port} {m.proto} {' '.join(m.formats)}"


def legs_by_hop(result, call_id: str) -> dict:
    (view,) = select_calls(result, call_id=call_id)
    return {(leg.call_id, leg.ends): leg for leg in view.legs}


def assert_answers_are_tshark_200s(result, rows: list[dict]) -> int:
    """Each row (a 200 OK to INVITE with SDP) is the answer of the first answered INVITE exchange of its leg."""
    checked = 0
    for row in rows:
        legs = legs_by_hop(result, row["call_id"])
        leg = legs[(row["call_id"], leg_ends(row["src"], row["sport"], row["dst"], row["dport"]))]
        exchange = leg.first_complete()
        assert exchange.answer.frame == row["frame"], (row, exchange)
        assert m_line(exchange.answer) == (row["address"], row["media"])
        assert exchange.offer.receiver.rsplit(":", 1)[0].strip("[]") == row["src"]   # the answerer was offered to
        assert m_line(exchange.answer) != m_line(exchange.offer)
        checked += 1
    return checked


@pytest.mark.peer
@pytest.mark.parametrize("mode", MODES)
def test_proxied_call_answer_is_each_legs_200_ok(public_captures, tshark, analysis, mode):
    """sipnab/sip-proxy.pcap: 10.33.6.101 -> proxy 10.33.6.102 -> 10.33.6.100, one Call-ID on both hops."""
    capture = public_captures / "sipnab/sip-proxy.pcap"
    rows = tshark_sdp(tshark, capture, 'sip.Status-Code == 200 && sip.CSeq.method == "INVITE" && sdp')
    assert [r["frame"] for r in rows] == [7, 8]
    assert assert_answers_are_tshark_200s(analysis(capture, mode=mode), rows) == 2
    (view,) = select_calls(analysis(capture, mode=mode), call_id=rows[0]["call_id"])
    # the caller's leg: offered by the caller, answered by the proxy with the callee's media address
    assert [leg.ends for leg in view.legs] == [("10.33.6.101", "10.33.6.102"), ("10.33.6.100", "10.33.6.102"),
                                               ("10.33.6.100", "10.33.6.101")]
    assert view.legs[0].exchanges[0].offerer == "10.33.6.101:5060"
    assert view.legs[1].exchanges[0].offerer == "10.33.6.102:5080"
    assert view.legs[2].exchanges == []           # ACK and BYE straight between the phones: no SDP
    assert (view.answer.media[0].connection or view.answer.connection, view.answer.media[0].port) == ("10.33.6.100", 6000)


@pytest.mark.peer
@pytest.mark.parametrize("mode", MODES)
def test_websocket_proxy_answers_per_leg(public_captures, tshark, analysis, mode):
    """heplify/sip_tcp_websocket.pcap: a proxy (10.243.0.157) between a WebSocket client, a PBX and a carrier;
    two Call-IDs, each forwarded on UDP legs with SDP previews in 183s before the 200. (SIP over WebSocket
    itself is not decoded: only the UDP legs are compared.)"""
    capture = public_captures.parent / "public-2" / "heplify" / "sip_tcp_websocket.pcap"
    rows = tshark_sdp(tshark, capture, 'udp && sip.Status-Code == 200 && sip.CSeq.method == "INVITE" && sdp')
    assert [r["frame"] for r in rows] == [40, 41, 44]
    result = analysis(capture, mode=mode)
    assert assert_answers_are_tshark_200s(result, rows) == 3
    previews = tshark_sdp(tshark, capture, 'udp && sip.Status-Code == 183 && !sip.Require && sdp')
    for row in rows:       # the last 183 before the 200 on the same hop is the preview kept
        leg = legs_by_hop(result, row["call_id"])[(row["call_id"], leg_ends(row["src"], row["sport"], row["dst"], row["dport"]))]
        last = [p for p in previews if p["call_id"] == row["call_id"] and (p["src"], p["dst"]) == (row["src"], row["dst"])][-1]
        assert (leg.exchanges[0].preview.frame, m_line(leg.exchanges[0].preview)) == (last["frame"], (last["address"], last["media"]))


@pytest.mark.peer
@pytest.mark.parametrize("mode", MODES)
def test_kamailio_trunk_answers_per_leg(tshark, analysis, mode):
    """The lab capture: SIPp -> kamailio (TCP) -> SIPp, three answered calls, each on two legs."""
    rows = tshark_sdp(tshark, TRUNK, 'sip.Status-Code == 200 && sip.CSeq.method == "INVITE" && sdp')
    assert len(rows) >= 6 and len({r["call_id"] for r in rows}) * 2 == len(rows)
    assert assert_answers_are_tshark_200s(analysis(TRUNK, mode=mode), rows) == len(rows)


@pytest.mark.peer
@pytest.mark.parametrize("mode", MODES)
def test_sbc_with_100rel_answers_in_the_reliable_183_and_update(public_captures, tshark, analysis, mode):
    """sngrep/ipv6frag.pcap: an SBC anchoring media, same Call-ID on both legs; the INVITE's offer is answered
    in a reliable 183 (Require: 100rel, RSeq: RFC 3262), a later UPDATE renegotiates (RFC 3311), and the
    200 to the INVITE carries no SDP."""
    capture = public_captures / "sngrep/ipv6frag.pcap"
    reliable = tshark_sdp(tshark, capture, 'sip.Status-Code == 183 && sip.Require contains "100rel" && sdp')
    updates = tshark_sdp(tshark, capture, 'sip.Status-Code == 200 && sip.CSeq.method == "UPDATE" && sdp')
    assert tshark_sdp(tshark, capture, 'sip.Status-Code == 200 && sip.CSeq.method == "INVITE" && sdp') == []
    result = analysis(capture, mode=mode)
    legs = legs_by_hop(result, reliable[0]["call_id"])
    first = {}
    for row in reliable:         # the first reliable 183 of each leg answers; the second (RSeq 2) repeats it
        first.setdefault(leg_ends(row["src"], row["sport"], row["dst"], row["dport"]), row)
    assert len(first) == 2
    for ends, row in first.items():
        invite, update = legs[(row["call_id"], ends)].exchanges
        assert (invite.method, invite.answer.frame, invite.answer.message) == ("INVITE", row["frame"], "183 INVITE (reliable)")
        assert m_line(invite.answer) == (row["address"], row["media"])
        # the client sends a second UPDATE with the same CSeq 3: the same transaction's number, so a repeat
        upd = [u for u in updates if leg_ends(u["src"], u["sport"], u["dst"], u["dport"]) == ends][0]
        assert (update.method, update.answer.frame) == ("UPDATE", upd["frame"])
        assert m_line(update.answer) == (upd["address"], upd["media"])


@pytest.mark.peer
@pytest.mark.parametrize("mode", MODES)
def test_generated_b2bua_and_sbc_answers_are_the_200_oks(tshark, analysis, mode):
    rows = tshark_sdp(tshark, LEGS, 'sip.Status-Code == 200 && sip.CSeq.method == "INVITE" && sdp '
                                    '&& !(sip.Call-ID == "late-offer@legs")')
    assert len(rows) == 13
    assert assert_answers_are_tshark_200s(analysis(LEGS, mode=mode), rows) == 13


@pytest.mark.parametrize("mode", MODES)
def test_b2bua_legs_are_joined_by_session_id_header_or_numbers(analysis, mode):
    result = analysis(LEGS, mode=mode)
    views = {v.call_id: v for v in select_calls(result, ip="10.30.1.6")}
    assert {cid: (v.call_ids, [lk.basis for lk in v.links]) for cid, v in views.items()} == {
        "b2bua-in@legs": (["b2bua-in@legs", "b2bua-out@legs"], ["session-id"]),
        "xcid-in@legs": (["xcid-in@legs", "xcid-out@legs"], ["header"]),
        "num-in@legs": (["num-in@legs", "num-out@legs"], ["number+time"])}
    # either Call-ID finds the joined call; the direct call to the same number 1 s later is not a leg of it
    assert [v.call_ids for v in select_calls(result, call_id="b2bua-out@legs")] == [["b2bua-in@legs", "b2bua-out@legs"]]
    assert [v.call_ids for v in select_calls(result, number="4202")] == [["num-in@legs", "num-out@legs"], ["direct@legs"]]
    # the 183 of the incoming leg previews the B2BUA's ringback port; the 200 answers with the media port
    leg_in = views["b2bua-in@legs"].legs[0]
    (exchange,) = leg_in.exchanges
    assert (exchange.preview.message, exchange.preview.sdp.media[0].port) == ("183 INVITE", 52004)
    assert (exchange.answer.message, exchange.answer.sdp.media[0].port) == ("200 INVITE", 52000)
    assert views["b2bua-in@legs"].answer.media[0].port == 52000


@pytest.mark.parametrize("mode", MODES)
def test_offer_in_2xx_is_answered_in_the_ack_on_each_leg(analysis, mode):
    """RFC 3261 §13.2.1 through a proxy: INVITE without SDP, offer in each leg's 200, answer in its ACK."""
    (view,) = select_calls(analysis(LEGS, mode=mode), call_id="late-offer@legs")
    got = [(leg.ends, x.offer.message, x.offer.frame, x.offer.sender, x.answer.message, x.answer.frame,
            x.answer.sdp.media[0].port) for leg in view.legs for x in leg.exchanges]
    assert got == [(("10.30.1.41", "10.30.1.7"), "200 INVITE", 469, "10.30.1.7:5060", "ACK", 470, 40030),
                   (("10.30.1.42", "10.30.1.7"), "200 INVITE", 468, "10.30.1.42:5060", "ACK", 471, 40030)]


@pytest.mark.parametrize("mode", MODES)
def test_sbc_streams_are_judged_by_their_own_legs_sdp(analysis, mode):
    """UM-01 per leg: the SBC's outer leg is DTLS-SRTP, its inner leg plain RTP/AVP. Only the two inner
    streams are cleartext (one SDP exchange for the whole Call-ID judged all four as DTLS-SRTP before)."""
    result = analysis(LEGS, mode=mode)
    # UM-01 is a roll-up per pair of places (here all "internal hosts"): its host pairs count cleartext
    # streams. tshark: SDP of the inner leg (frames 9, 10) is RTP/AVP, of the outer leg (7, 11)
    # UDP/TLS/RTP/SAVP; 2 RTP streams each way between 10.30.1.5:50002 and 10.30.1.12:40002.
    (alert,) = [a for a in result.alerts if a.name == "unencrypted_media.cleartext_rtp"
                and "sbc-anchor@legs" in a.evidence["call_ids"]]
    pairs = {frozenset(p["hosts"]): p["count"] for p in alert.evidence["top_host_pairs"]}
    assert alert.evidence["host_pairs"] == len(pairs)          # every pair listed: an absent one had no cleartext
    assert pairs[frozenset({"10.30.1.5", "10.30.1.12"})] == 2   # the inner leg's two streams
    assert frozenset({"10.30.1.11", "10.30.1.5"}) not in pairs  # the outer DTLS-SRTP leg
    assert not [a for a in result.alerts if a.call_id == "sbc-anchor@legs" and a.name in (
        "unencrypted_media.zrtp_suspected", "cross_vlan.unannounced_media_peer", "unencrypted_media.srtp_downgrade")]
    assert {s.call_id for s in result.records["rtp_streams"] if "10.30.1.5" in (s.src, s.dst)} == {"sbc-anchor@legs"}
    # the calls table: the weakest leg's protection (the caller's leg alone said dtls)
    protection = {c.call_id: c.media_protection for c in result.records["calls"]}
    assert (protection["sbc-anchor@legs"], protection["srtp-inside@legs"], protection["b2bua-in@legs"]) == ("none", "none", "none")


@pytest.mark.parametrize("mode", MODES)
def test_srtp_downgrade_is_judged_per_leg(analysis, mode):
    """UM-03 per leg: an SBC answers a carrier's RTP/AVP offer with RTP/AVP and offers DTLS-SRTP inside. Only
    the phone that answered the SBC's SRTP offer with plain RTP downgraded (one exchange list for the whole
    Call-ID paired the SBC's inner SRTP offer with its outer RTP answer, a false high alert)."""
    downgrades = [(a.call_id, a.src, a.dst, a.evidence["lines"]) for a in analysis(LEGS, mode=mode).alerts
                  if a.name == "unencrypted_media.srtp_downgrade"]
    assert downgrades == [("srtp-refused-inside@legs", "10.30.1.14", "10.30.1.5", ["audio UDP/TLS/RTP/SAVP -> RTP/AVP"])]


def test_call_shows_each_leg_and_summary_json_states_them(public_captures, tmp_path):
    capture = str(public_captures / "sipnab/sip-proxy.pcap")
    text, found = investigate([capture], load_settings(), ip="10.33.6.100", out_dir=str(tmp_path))
    assert found == 1
    assert "   Leg 1: 10.33.6.101 <-> 10.33.6.102\n       SDP offer from 10.33.6.101:5060 in INVITE (frame 1):\n" \
           "         audio 10.33.6.101:6010 RTP/AVP" in text
    assert "       SDP answer from 10.33.6.102:5080 in 200 INVITE (frame 8):\n         audio 10.33.6.100:6000 RTP/AVP" in text
    assert "   Leg 3: 10.33.6.100 <-> 10.33.6.101: no SDP on this leg" in text
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    summary = json.loads((folder / "summary.json").read_text())
    answer = summary["sdp"]["answer"]["media"][0]
    assert (answer["address"], answer["port"]) == ("10.33.6.100", 6000)
    assert [(leg["ends"], x["offerer"], x["offer"]["frame"], x["answer"]["frame"], x["answer"]["from"])
            for leg in summary["legs"] for x in leg["exchanges"]] == [
        (["10.33.6.101", "10.33.6.102"], "10.33.6.101:5060", 1, 8, "10.33.6.102:5080"),
        (["10.33.6.100", "10.33.6.102"], "10.33.6.102:5080", 3, 7, "10.33.6.100:5060")]


def test_b2bua_bundle_holds_both_call_ids(tmp_path):
    text, found = investigate([str(LEGS)], load_settings(), call_id="b2bua-out@legs", out_dir=str(tmp_path))
    assert found == 1 and "== Call b2bua-in@legs + b2bua-out@legs" in text
    assert "Call-ID b2bua-out@legs is another leg of this call (same Session-ID, RFC 7989)" in text
    assert "SDP preview (SDP of a non-reliable 18x, not the answer) from 10.30.1.6:5060 in 183 INVITE" in text
    summary = json.loads((tmp_path / "1-b2bua-in@legs" / "summary.json").read_text())
    assert summary["call_ids"] == ["b2bua-in@legs", "b2bua-out@legs"]
    assert summary["linked_call_ids"] == [{"call_id": "b2bua-in@legs", "other": "b2bua-out@legs", "basis": "session-id"}]
    # each stream bound to the leg whose offer and answer announced both its ends
    assert [(s["src"], s["dst"], s["offered_in_sdp"]["leg"]) for s in summary["streams"]] == [
        ("10.30.1.21", "10.30.1.6", 1), ("10.30.1.6", "10.30.1.21", 1), ("10.30.1.6", "10.30.1.22", 2),
        ("10.30.1.22", "10.30.1.6", 2)]
    assert "10.30.1.6:52002 -> 10.30.1.22:40012 SSRC 0x62320003 PCMU: 50 pkts" in text and "as negotiated on leg 2" in text


# -- `voipwatch call` beyond INVITE dialogs: --ip any dialog or flow, --number by prefix, --list ---------------
RF_ATTACKS = ROOT / "sample_captures" / "rf-attacks.pcap"


def tshark_call_ids(tshark: str, capture: Path, display_filter: str) -> list[str]:
    out = subprocess.run([tshark, "-n", "-r", str(capture), "-Y", display_filter, "-T", "fields", "-e", "sip.Call-ID"],
                         capture_output=True, text=True, check=True).stdout
    return list(dict.fromkeys(out.split()))


@pytest.mark.peer
@pytest.mark.parametrize("mode", MODES)
def test_ip_selects_every_dialog_of_a_scanner(tshark, analysis, mode):
    """A sweep of OPTIONS to 25 hosts (rf-attacks, 198.51.100.20): one OPTIONS dialog per Call-ID, as tshark
    counts them, none of them a call."""
    views = select_calls(analysis(RF_ATTACKS, mode=mode), ip="198.51.100.20")
    expected = tshark_call_ids(tshark, RF_ATTACKS, "ip.addr == 198.51.100.20 && sip")
    assert len(expected) == 25
    assert [v.call_id for v in views] == expected
    assert {(v.call, v.line().method, v.line().path.split(" -> ")[0]) for v in views} == {(None, "OPTIONS", "198.51.100.20")}


@pytest.mark.cli
@pytest.mark.peer
def test_list_prints_one_line_per_match(tshark):
    """--list: time, Call-ID, method, from -> to, src -> dst, state; the REGISTER enumeration's 40 dialogs."""
    proc = subprocess.run([sys.executable, "-m", "voipwatch", "call", str(RF_ATTACKS), "--ip", "198.51.100.30", "--list"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    header, *rows = proc.stdout.rstrip("\n").split("\n")
    assert header == "time (UTC)  Call-ID  method  from -> to  src -> dst  state"
    expected = tshark_call_ids(tshark, RF_ATTACKS, "ip.src == 198.51.100.30 && sip.Method == REGISTER")
    assert [row.split("  ")[1] for row in rows] == expected and len(rows) == 40
    states = [row.rsplit("  ", 1)[1] for row in rows]
    assert (sum(s.startswith("401") for s in states), sum(s.startswith("404") for s in states)) == (7, 33)


@pytest.mark.peer
def test_bundle_of_a_register_dialog_holds_its_packets(tshark, tmp_path):
    text, found = investigate([str(LEGS)], load_settings(), call_id="reg-legs@legs", out_dir=str(tmp_path))
    assert found == 1 and "== REGISTER dialog reg-legs@legs" in text and "200 OK" in text
    summary = json.loads((tmp_path / "1-reg-legs@legs" / "summary.json").read_text())
    assert (summary["method"], summary["state"], summary["legs"][0]["exchanges"]) == ("REGISTER", "200 OK", [])
    theirs = tshark_call_ids(tshark, LEGS, 'sip.Call-ID == "reg-legs@legs"')
    assert theirs == ["reg-legs@legs"]
    count = subprocess.run([tshark, "-n", "-r", str(tmp_path / "1-reg-legs@legs" / "call.pcap")],
                           capture_output=True, text=True, check=True).stdout.count("\n")
    expected = subprocess.run([tshark, "-n", "-r", str(LEGS), "-Y", 'sip.Call-ID == "reg-legs@legs"'],
                              capture_output=True, text=True, check=True).stdout.count("\n")
    assert count == expected == summary["call_pcap_packets"] == 4


def test_options_and_prefix_selection(analysis):
    result = analysis(LEGS)
    assert [(v.call_id, v.line().method, v.line().state) for v in select_calls(result, ip="10.30.1.99")] == [
        ("opt-legs@legs", "OPTIONS", "200 OK")]
    # a prefix of the digits (+ and separators dropped): 4930... is the callee the B2BUA rewrote
    assert [v.call_ids for v in select_calls(result, number="+4930")] == [
        ["xcid-in@legs", "xcid-out@legs"], ["srtp-inside@legs"], ["srtp-refused-inside@legs"]]
    assert select_calls(result, number="202") == []          # 2202 and 4202 end with it: a prefix, not a suffix
    with pytest.raises(ValueError):
        select_calls(result, number="+49")


# -- leg links are bounded: forged or busy evidence joins nothing it should not -----------------------------
def _call(cid: str, ts: float, src: str, dst: str, caller: str, callee: str) -> Call:
    return Call(cid, ts, ts + 1, caller, callee, src, dst, (), "udp", "ended", 200, 0.5, 0.5, None, "none",
                first_frame=int(ts * 100))


def _invite(call: Call, session_id: tuple[str, ...] = (), refs: tuple[str, ...] = ()) -> SipMessage:
    pkt = PacketMeta(call.first_ts, call.first_frame, (), call.src, 5060, call.dst, 5060, "udp")
    return SipMessage(pkt, True, "INVITE", f"sip:{call.callee}@x", call.callee, None, None, call.call_id, 1, "INVITE",
                      None, call.caller, None, None, call.callee, None, session_ids=session_id, leg_refs=refs)


def test_a_session_id_or_reference_on_many_call_ids_joins_none():
    calls = [_call(f"c{i}", 100.0 + i * 20, f"10.0.0.{i + 1}", "10.0.1.1", f"1{i:03d}", f"2{i:03d}") for i in range(MAX_JOINED + 1)]
    forged = [_invite(c, ("ab30317f1a784dc48ff824d0d3715d86",), ("c0",)) for c in calls]
    assert link_calls(calls, forged) == []
    pair = [_invite(c, ("ab30317f1a784dc48ff824d0d3715d86",)) for c in calls[:2]]
    assert link_calls(calls, pair) == [Link("c0", "c1", "session-id")]


def test_number_and_time_link_each_incoming_call_to_its_own_outgoing_leg():
    """Two callers reach the same busy number through one B2BUA 20 ms apart, the B2BUA hiding the caller on its
    outgoing legs: two calls of two legs each, not one call of four."""
    b2bua, agent = "10.0.0.6", "10.0.2.9"
    calls = [_call("in-1", 100.0, "10.0.0.1", b2bua, "1001", "5000"), _call("in-2", 100.02, "10.0.0.2", b2bua, "1002", "5000"),
             _call("out-1", 100.05, b2bua, agent, None, "5000"), _call("out-2", 100.07, b2bua, agent, None, "5000"),
             _call("late", 200.0, b2bua, agent, None, "5000")]
    groups, _ = call_groups(calls, [])
    assert (groups["in-1"], groups["in-2"], groups["late"]) == (["in-1", "out-1"], ["in-2", "out-2"], ["late"])


def test_legs_and_exchanges_are_capped_and_counted():
    """A dialog fanned out to many hops, or re-INVITEd without end, keeps bounded state and says so."""
    legs = CallLegs("fan@test", max_legs=4, max_exchanges=3)
    sdp = SdpSession("-", "10.0.0.1", "10.0.0.1", (SdpMedia("audio", 4000, "RTP/AVP", ("0",)),))
    for i in range(10):                               # INVITEs to ten hosts: four legs kept
        pkt = PacketMeta(float(i), i + 1, (), "10.0.0.1", 5060, f"10.0.1.{i}", 5060, "udp")
        legs.on_sip(SipMessage(pkt, True, "INVITE", "sip:x@y", "x", None, None, "fan@test", 1, "INVITE",
                               None, "a", None, None, "x", None, sdp=sdp))
    assert (len(legs.legs), legs.dropped_legs) == (4, 6)
    for cseq in range(2, 8):                          # six re-INVITEs on the first leg: the last three kept
        pkt = PacketMeta(20.0 + cseq, 20 + cseq, (), "10.0.0.1", 5060, "10.0.1.0", 5060, "udp")
        role = legs.on_sip(SipMessage(pkt, True, "INVITE", "sip:x@y", "x", None, None, "fan@test", cseq, "INVITE",
                                      None, "a", None, None, "x", None, sdp=sdp))
        assert role.role == "offer"
    first = legs.ordered()[0]
    assert ([x.cseq for x in first.exchanges], first.dropped_exchanges) == ([5, 6, 7], 4)
