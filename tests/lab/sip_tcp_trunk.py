"""Record a SIP-over-TCP trunk in the lab: tests/lab/captures/sip-tcp-trunk.pcap.

A PBX (SIPp in the ph1 namespace, -t t1: every call on one TCP connection) places CALLS calls through
kamailio, listening on TCP as well as UDP for this capture; kamailio authenticates each INVITE (407,
then digest) and relays the 7xxx numbers over one TCP connection of its own to the carrier (SIPp in the
ph2 namespace, -t t1), which answers, or answers 486 for 79xx; the 6xxx numbers are nobody's (404 from
the proxy). No media. The three hosts have an MTU of 576, so the larger messages span two segments.
tcpdump records the switch's mirror port, 802.1Q-tagged, as in the lab test.

The lab is the one of lab.py (namespaces, userspace switch, no route out; kamailio relays only to IP
next hops inside the lab networks); every process is bounded by `timeout` and ended by its pid.
tests/test_sip_tcp_trunk.py cuts the capture with editcap so that it starts in the middle of both TCP
connections and checks voipwatch's calls against tshark's. Run as root:

    python tests/lab/sip_tcp_trunk.py tests/lab/captures/sip-tcp-trunk.pcap
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lab.lab import HOST, TRUNK_PEER_IP, USERS, LabError, running_lab  # noqa: E402

CALLER = "1001"
# Called numbers in the order dialled: answered (7xxx), busy at the carrier (79xx), unknown (6xxx).
NUMBERS = ("7001", "7002", "7901", "7003", "6001", "7004", "7005", "7902", "7006", "7007", "6002", "7008",
           "7009", "7903", "7010", "7011", "6003", "7012", "7013", "7904", "7014", "7015", "6004", "7016")
TO_CARRIER = sum(1 for n in NUMBERS if n.startswith("7"))
# The MTU of the three hosts: an MSS of 536 bytes (RFC 9293 §3.7.1's default), so that INVITEs and
# 200s with SDP span two segments and a capture may begin with the second half of a message.
MTU = 576


def record(pcap: Path, workdir: Path) -> dict:
    """Run the trunk calls with tcpdump on the mirror port; return each SIPp's exit code."""
    assert HOST["ph2"].ip == TRUNK_PEER_IP
    caller = HOST["ph1"]
    with running_lab(workdir, pcap=pcap, kamailio=False, max_seconds=90) as lab:
        for role in ("ph1", "kam", "ph2"):
            lab.set_mtu(role, MTU)
        lab.start_kamailio(tcp=True)
        calls = workdir / "trunk_calls.csv"
        calls.write_text("SEQUENTIAL\n" + "".join(f"{CALLER};{n};\n" for n in NUMBERS))
        carrier = lab.spawn("ph2", lab.sipp_argv(TRUNK_PEER_IP, "trunk_uas.xml", calls=TO_CARRIER, limit=10, limit_s=40,
                                                 uas=True, transport="t1"), name="trunk_carrier", limit_s=45)
        time.sleep(0.5)
        pbx = lab.run("ph1", lab.sipp_argv(caller.ip, "trunk_uac.xml", inf=calls, auth=(CALLER, USERS[CALLER]),
                                           calls=len(NUMBERS), rate=4, limit=8, limit_s=40, transport="t1"),
                      name="trunk_pbx", limit_s=45)
        carrier.wait(5)
        time.sleep(0.5)                        # the last responses reach the mirror
        lab.end(carrier)
        refused = [line for line in lab.kamailio.stderr().splitlines() if "LAB SAFETY" in line]
    return {"pbx": pbx.popen.returncode, "carrier": carrier.popen.returncode, "safety_refusals": refused}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pcap", type=Path)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="vw-trunk-"))
    try:
        result = record(args.pcap.resolve(), workdir)
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(result)
    if result["pbx"] != 0 or result["carrier"] != 0:
        print(f"error: SIPp failed; logs kept in {workdir}/logs", file=sys.stderr)
        return 1
    shutil.rmtree(workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
