"""Files moved in the clear: TFTP transfers followed from their request (RFC 1350 §4: the server answers
from a new port to the client's request port) and HTTP downloads (a GET's response body), each as one
FileTransfer with name, size, SHA-256 and what its content is (dissectors.provisioning). Bounded: at most
MAX_TRANSFERS open, MAX_FILE_BYTES hashed per file; caps counted."""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

from dissectors import provisioning
from dissectors.http import HttpMessage
from dissectors.tftp import TFTP_PORT, TftpPacket
from voipwatch.records import at_ts, declare, r6, vlan_text

MAX_TRANSFERS = 10_000          # transfers (TFTP) or requests awaiting a response (HTTP) tracked at once
MAX_FILE_BYTES = 64 << 20       # bytes hashed per TFTP file; beyond it the size is still counted
KEPT_BYTES = 65536              # first bytes kept for the content check
TFTP_IDLE_S = 30.0              # capture seconds without a packet before a TFTP transfer is closed as cut


@dataclass(frozen=True, slots=True)
class FileTransfer:
    """One file moved over TFTP or HTTP. Never its content: size, SHA-256, kind and credential field names."""
    ts: float                       # the request
    frame: int
    end_ts: float
    protocol: str                   # "tftp" | "http"
    client: str
    server: str
    server_port: int
    vlan: tuple[int, ...]
    direction: str                  # "download" (RRQ, GET) | "upload" (WRQ, PUT/POST)
    name: str
    size: int
    sha256: str | None              # None when cut or over the cap
    complete: bool
    status: str                     # "ok", an HTTP status, "tftp error N", "cut", "unanswered" (TFTP)
    file_kind: str | None           # provisioning.kind_of_name: "config" | "firmware" | None
    content: str                    # provisioning.classify: plaintext | signed | encrypted | binary | empty
    credential_fields: tuple[str, ...]


declare(FileTransfer, rank=70, timeline=at_ts, table="file_transfers", sort=lambda t: (t.ts, t.frame), columns=(
    ("ts", "Float64", lambda t: r6(t.ts)),
    ("frame", "Int64", lambda t: t.frame),
    ("end_ts", "Float64", lambda t: r6(t.end_ts)),
    ("protocol", "string", lambda t: t.protocol),
    ("client", "string", lambda t: t.client),
    ("server", "string", lambda t: t.server),
    ("server_port", "Int64", lambda t: t.server_port),
    ("vlan", "string", lambda t: vlan_text(t.vlan)),
    ("direction", "string", lambda t: t.direction),
    ("name", "string", lambda t: t.name),
    ("size", "Int64", lambda t: t.size),
    ("sha256", "string", lambda t: t.sha256),
    ("complete", "boolean", lambda t: t.complete),
    ("status", "string", lambda t: t.status),
    ("file_kind", "string", lambda t: t.file_kind),
    ("content", "string", lambda t: t.content),
    ("credential_fields", "string", lambda t: ",".join(t.credential_fields) or None),
))


class _Tftp:
    __slots__ = ("req", "peer_port", "sha", "size", "kept", "next_block", "last_ts", "block_size", "data_from_client")

    def __init__(self, req: TftpPacket) -> None:
        self.req = req
        self.peer_port: int | None = None     # the server's transfer port (RFC 1350 §4), learnt from its first reply
        self.sha = hashlib.sha256()
        self.size = 0
        self.kept = bytearray()
        self.next_block = 1
        self.last_ts = req.pkt.ts
        self.block_size: int | None = None
        self.data_from_client = req.opcode == "WRQ"


class Transfers:
    """Follows TFTP transfers and pairs HTTP requests with responses; yields FileTransfer records."""

    def __init__(self) -> None:
        self._tftp: OrderedDict[tuple, _Tftp] = OrderedDict()   # (vlan, client, client port, server) -> transfer
        self._http: OrderedDict[tuple, list[HttpMessage]] = OrderedDict()   # connection -> requests awaiting answer
        self.overflows = 0

    # -- TFTP ---------------------------------------------------------------------------------
    def on_tftp(self, p: TftpPacket) -> list[FileTransfer]:
        m = p.pkt
        done: list[FileTransfer] = []
        if p.opcode in ("RRQ", "WRQ") and m.dport == TFTP_PORT:
            key = (m.vlan, m.src, m.sport, m.dst)
            old = self._tftp.get(key)
            if old is not None and old.peer_port is None and old.req.filename == p.filename:
                return done                  # RFC 1350 §4: a request repeated before any answer
            if old is not None:
                del self._tftp[key]
                done.append(self._tftp_record(old, "cut", False))
            self._tftp[key] = _Tftp(p)
            if len(self._tftp) > MAX_TRANSFERS:
                self.overflows += 1
                self._tftp.popitem(last=False)
            return done
        # From the server (src = server, dst = client request port) or from the client to the server's port.
        key, from_server = (m.vlan, m.dst, m.dport, m.src), True
        t = self._tftp.get(key)
        if t is None:
            key, from_server = (m.vlan, m.src, m.sport, m.dst), False
            t = self._tftp.get(key)
        if t is None:
            return done
        server_port = m.sport if from_server else m.dport
        if t.peer_port is None and from_server:
            t.peer_port = server_port
        if server_port != t.peer_port:
            return done                      # RFC 1350 §4: a packet from another port is not this transfer's
        t.last_ts = p.pkt.ts
        if p.opcode == "ERROR":
            del self._tftp[key]
            return [self._tftp_record(t, f"tftp error {p.error_code}", False, p)]
        if p.opcode != "DATA" or from_server == t.data_from_client:
            return done
        if p.block != t.next_block & 0xFFFF:
            return done                      # a duplicate (retransmission) or out of order: RFC 1350 lock-step
        t.next_block += 1
        if t.block_size is None:
            t.block_size = max(len(p.data), 512)
        if t.size + len(p.data) <= MAX_FILE_BYTES:
            t.sha.update(p.data)
        if len(t.kept) < KEPT_BYTES:
            t.kept += p.data[:KEPT_BYTES - len(t.kept)]
        t.size += len(p.data)
        if len(p.data) < t.block_size:       # RFC 1350 §6: a short block ends the transfer
            del self._tftp[key]
            done.append(self._tftp_record(t, "ok", True, p))
        return done

    def _tftp_record(self, t: _Tftp, status: str, complete: bool, last: TftpPacket | None = None) -> FileTransfer:
        if status == "cut" and t.peer_port is None:
            status = "unanswered"
        r = t.req.pkt
        name = t.req.filename or ""
        content, fields = provisioning.classify(name, bytes(t.kept))
        return FileTransfer(r.ts, r.frame, last.pkt.ts if last else t.last_ts, "tftp", r.src, r.dst,
                            t.peer_port or TFTP_PORT, r.vlan, "download" if t.req.opcode == "RRQ" else "upload",
                            name, t.size, t.sha.hexdigest() if complete and t.size <= MAX_FILE_BYTES else None,
                            complete, status, provisioning.kind_of_name(name), content, fields)

    # -- HTTP ---------------------------------------------------------------------------------
    def on_http(self, msg: HttpMessage) -> list[FileTransfer]:
        m = msg.pkt
        if msg.is_request:
            key = (m.vlan, m.src, m.sport, m.dst, m.dport)
            self._http.setdefault(key, []).append(msg)   # RFC 9112 §9.3.2: responses come in request order
            self._http.move_to_end(key)
            if len(self._http) > MAX_TRANSFERS:
                self.overflows += 1
                self._http.popitem(last=False)
            return []
        key = (m.vlan, m.dst, m.dport, m.src, m.sport)
        waiting = self._http.get(key)
        if not waiting:
            return []
        req = waiting.pop(0)
        if not waiting:
            del self._http[key]
        if req.method not in ("GET", "POST", "PUT") or msg.status is None or msg.status >= 300:
            return []
        if req.method == "GET":
            if not msg.body_len and msg.body_complete:
                return []
            body, direction = msg, "download"
        else:
            if not req.body_len:
                return []
            body, direction = req, "upload"
        name = msg.content_disposition_filename or (req.uri or "").split("?", 1)[0].rsplit("/", 1)[-1] or "/"
        content, fields = provisioning.classify(name, body.body_head)
        r = req.pkt
        return [FileTransfer(r.ts, r.frame, m.ts, "http", r.src, r.dst, r.dport, r.vlan, direction, name,
                             body.body_len, body.body_sha256 if body.body_complete else None, body.body_complete,
                             str(msg.status), provisioning.kind_of_name(name), content, fields)]

    # -- time ---------------------------------------------------------------------------------
    def expire(self, now: float) -> list[FileTransfer]:
        done = []
        for key in [k for k, t in self._tftp.items() if now - t.last_ts > TFTP_IDLE_S]:
            done.append(self._tftp_record(self._tftp.pop(key), "cut", False))
        return done

    def finish(self) -> list[FileTransfer]:
        done = [self._tftp_record(t, "cut", False) for t in self._tftp.values()]
        self._tftp.clear()
        self._http.clear()
        return done
