"""Cleartext management, provisioning and credentials: SNMP v1/v2c, TFTP/HTTP configs, passwords in clear,
web/Telnet admin of phones, changed provisioning files, admin login brute force."""
from __future__ import annotations

import ipaddress
from collections import deque
from dataclasses import dataclass

from dissectors.ftp import FtpCommand
from dissectors.http import HttpMessage
from dissectors.snmp import SnmpMessage
from dissectors.telnet import TelnetEvent
from voipwatch.config_schema import ConfigError, opt
from voipwatch.detect import AlertSpec, Detector, register
from voipwatch.records import SipMessage
from voipwatch.transfers import FileTransfer
from voipwatch.windows import BoundedMap

SNMP, PROV, TELNET, WEB = "Part IV: SNMP", "Part IV: Provisioning", "Part IV: Telnet", "Part IV: Web interface"
TRUST, ACCTS = "Part I: Trusted path and channel protections", "Part III: User accounts and passwords"
DAY_S = 86400.0


@dataclass(frozen=True)
class Config:
    phones: tuple[str, ...] = opt((), "UM-15: CIDRs of phones (hosts that sent SIP REGISTER are phones too).")
    allow_admin_clients: tuple[str, ...] = opt((), "UM-15/RF-10: CIDRs of management stations and scanners whose sessions are not judged.")
    window_s: float = opt(60.0, "RF-10: sliding window for failed logins per (client, server, service).")
    http_failures: int = opt(10, "RF-10: HTTP 401 responses in the window (nsa-checks: >= 10 in 60 s).")
    ftp_failures: int = opt(5, "RF-10: FTP 530 replies in the window.")
    telnet_failures: int = opt(3, "RF-10: Telnet failed logins in the window.")
    snmp_communities: int = opt(5, "RF-10: distinct SNMP communities from one manager to one agent in the window.")
    max_keys: int = opt(50000, "Cap on hosts, pairs and files remembered (least recent dropped, counted).")


def _nets(values, where: str) -> list:
    try:
        return [ipaddress.ip_network(v, strict=False) for v in values]
    except ValueError as exc:
        raise ConfigError(f"[detectors.cleartext_management] {where}: {exc}") from exc


def _in(ip: str | None, nets: list) -> bool:
    try:
        return ip is not None and any(ipaddress.ip_address(ip) in n for n in nets)
    except ValueError:
        return False


@register
class CleartextManagement(Detector):
    """Management, provisioning and logins in the clear (NSA guide Part IV: SNMP, Provisioning, Telnet, Web
    interface; Part I: Trusted path; Part III: User accounts and passwords).

    What: SNMP v1/v2c (community in clear; default community critical, SetRequest high) and SNMPv3 without
    privacy (UM-10); TFTP/HTTP downloads of phone configs or firmware that are plaintext (medium), carry
    credential fields (critical, field names only) or are signed but readable (low) (UM-11); passwords sent
    in clear: HTTP Basic, urlencoded form posts with a password field, HTTP Digest over HTTP (medium), FTP
    PASS, a Telnet password prompt (UM-12); HTTP or Telnet sessions a phone answers (UM-15); one file name
    served with two SHA-256 (OT-02); failed admin logins in a burst: HTTP 401, FTP 530, Telnet login
    failures, SNMP community guessing or authenticationFailure traps (RF-10).
    Why: the guide asks that phones and servers be managed and provisioned only over protected channels,
    that SNMP be off (or SNMPv3 with privacy) and that Telnet and phone web interfaces be disabled.
    Secrets: never in an alert; passwords and communities as SHA-256 + length, config credentials by name.
    Tune: phones, allow_admin_clients, the RF-10 thresholds.
    False positives: SNMP on switches/UPS in the voice VLAN; planned config pushes change a file's hash
    (OT-02); an NMS polling with a stale community looks like guessing only if it tries several.
    """
    name = "cleartext_management"
    consumes = (SnmpMessage, FileTransfer, HttpMessage, FtpCommand, TelnetEvent, SipMessage)
    Config = Config
    alerts = {
        "cleartext_snmp": AlertSpec("UM-10", "medium", SNMP, "SNMP v1/v2c sent its community string in clear"),
        "snmpv3_without_privacy": AlertSpec("UM-10", "low", SNMP, "SNMPv3 was used without privacy (encryption)"),
        "cleartext_provisioning": AlertSpec("UM-11", "medium", PROV, "A phone configuration or firmware file was downloaded in clear"),
        "credentials_in_clear": AlertSpec("UM-12", "critical", TRUST, "A password or credential crossed the network in clear"),
        "cleartext_phone_admin": AlertSpec("UM-15", "high", WEB, "A phone's web or Telnet administration answered in clear"),
        "provisioning_file_changed": AlertSpec("OT-02", "high", PROV, "A provisioning file was served with different content"),
        "admin_login_brute_force": AlertSpec("RF-10", "high", ACCTS, "Repeated failed administrative logins"),
    }

    def __init__(self, config: Config, site):
        super().__init__(config, site)
        self._phones_nets = _nets(config.phones, "phones")
        self._allowed = _nets(config.allow_admin_clients, "allow_admin_clients")
        self._phones: BoundedMap[bool] = BoundedMap(config.max_keys, float("inf"))
        self._seen: BoundedMap[bool] = BoundedMap(config.max_keys, DAY_S)       # alert keys raised (once a day)
        self._files: BoundedMap[str] = BoundedMap(config.max_keys, float("inf"))  # file name -> last SHA-256
        self._failures: BoundedMap[deque] = BoundedMap(config.max_keys, config.window_s, deque)
        self._communities: BoundedMap[dict] = BoundedMap(config.max_keys, config.window_s, dict)

    def idle_reasons(self) -> list[str]:
        if self._phones_nets:
            return []
        return ["UM-15 (cleartext_phone_admin) knows phones only from SIP REGISTER sources until phones is set"]

    def _once(self, key: tuple, ts: float) -> bool:
        if key in self._seen:
            return False
        self._seen.set(key, True, ts)
        return True

    def _is_phone(self, ip: str) -> bool:
        return ip in self._phones or _in(ip, self._phones_nets)

    # -- SIP: who the phones are (the sources of REGISTER requests) ---------------------------------
    def on_sip_message(self, msg: SipMessage):
        if msg.method == "REGISTER":
            self._phones.set(msg.pkt.src, True, msg.pkt.ts)
        return ()

    # -- UM-10, RF-10 (SNMP) -------------------------------------------------------------------
    def on_snmp_message(self, m: SnmpMessage):
        p = m.pkt
        to_agent = p.dport == 161 or m.pdu_type in ("get-request", "get-next-request", "set-request", "get-bulk-request")
        manager, agent = (p.src, p.dst) if to_agent else (p.dst, p.src)
        where = dict(ts=p.ts, src=manager, dst=agent, dport=161, vlan=p.vlan)
        if m.version == "v3":
            # RFC 3414 §4: engine discovery and time synchronisation are requests at noAuthNoPriv answered by
            # a report; what shows the level in use is the agent's answer (or a notification) carrying data.
            carries_data = m.pdu_type in ("response", "trap", "snmpV2-trap", "inform-request")
            if not m.v3_priv and carries_data and self._once(("v3", manager, agent), p.ts):
                level = "authNoPriv" if m.v3_auth else "noAuthNoPriv"
                yield self.alert("snmpv3_without_privacy", identifier=f"{manager}->{agent}",
                                 severity="low" if m.v3_auth else "medium",
                                 msg=f"SNMPv3 {level} between manager {manager} and agent {agent}: the PDUs are readable; "
                                     "use authPriv (or SNMP over TLS/DTLS, RFC 6353).",
                                 evidence={"security_level": level, "v3_user": m.v3_user, "pdu_type": m.pdu_type}, **where)
            return
        if m.generic_trap == "authenticationFailure":
            yield from self._failure("snmp", p.src, p.dst, p.ts, p.vlan, 1, "authenticationFailure trap")
        if to_agent and m.community_sha256:
            seen = self._communities.touch((manager, agent), p.ts)
            seen.setdefault(m.community_sha256, m.community_len)
            if len(seen) >= self.config.snmp_communities and not _in(manager, self._allowed) \
                    and self._once(("rf10-snmp", manager, agent), p.ts):
                yield self.alert("admin_login_brute_force", identifier=f"snmp {manager}->{agent}",
                                 msg=f"{manager} tried {len(seen)} SNMP communities on {agent} within "
                                     f"{self.config.window_s:g} s: community guessing; block the source and turn "
                                     "SNMP v1/v2c off.",
                                 evidence={"service": "snmp", "distinct_communities": len(seen),
                                           "community_sha256": sorted(seen)[:20]}, **where)
        severity = "critical" if m.community_default else "high" if m.pdu_type == "set-request" else None
        key = ("snmp", manager, agent, m.community_sha256, severity)
        if self._once(key, p.ts):
            yield self.alert("cleartext_snmp", identifier=f"{manager}->{agent}", severity=severity,
                             msg=f"SNMP {m.version} {m.pdu_type} between manager {manager} and agent {agent} carries "
                                 f"its community in clear{' (a default community)' if m.community_default else ''}: "
                                 "anyone on the path can read or, with a write community, reconfigure the device; "
                                 "turn SNMP v1/v2c off or use SNMPv3 authPriv.",
                             evidence={"version": m.version, "pdu_type": m.pdu_type,
                                       "community_sha256": m.community_sha256, "community_len": m.community_len,
                                       "well_known_default": m.community_default}, **where)

    # -- UM-11, OT-02 -----------------------------------------------------------------------------
    def on_file_transfer(self, t: FileTransfer):
        if t.file_kind is None or t.direction != "download":
            return
        where = dict(ts=t.ts, src=t.server, sport=t.server_port, dst=t.client, vlan=t.vlan)
        fields = list(t.credential_fields)
        if t.content != "encrypted":
            severity = "critical" if fields else "low" if t.content == "signed" else "medium"
            if self._once(("um11", t.server, t.name, t.sha256), t.ts):
                yield self.alert("cleartext_provisioning", identifier=f"{t.server} {t.name}", severity=severity,
                                 msg=f"{t.client} downloaded {t.file_kind} file {t.name!r} ({t.size} bytes) from {t.server} "
                                     f"over {t.protocol.upper()}: content {t.content}"
                                     + (f", with credential fields {', '.join(fields)}" if fields else "")
                                     + "; provision over HTTPS with signed (and encrypted) files.",
                                 evidence={"protocol": t.protocol, "file": t.name, "size": t.size, "sha256": t.sha256,
                                           "content": t.content, "credential_fields": fields,
                                           "complete": t.complete, "first_ts": t.ts, "last_ts": t.end_ts}, **where)
        if t.sha256 is None or not t.complete:
            return
        before = self._files.get(t.name)
        self._files.set(t.name, t.sha256, t.ts)
        if before is not None and before != t.sha256 and self._once(("ot02", t.name, before, t.sha256), t.ts):
            yield self.alert("provisioning_file_changed", identifier=t.name,
                             msg=f"{t.file_kind} file {t.name!r} served by {t.server} to {t.client} has SHA-256 "
                                 f"{t.sha256[:16]}..., earlier {before[:16]}...: a change outside a change window "
                                 "may be a tampered file; verify it and sign provisioning files.",
                             evidence={"file": t.name, "sha256": t.sha256, "previous_sha256": before,
                                       "protocol": t.protocol, "size": t.size}, **where)

    # -- UM-12, UM-15, RF-10 (HTTP) ---------------------------------------------------------------
    def on_http_message(self, m: HttpMessage):
        p = m.pkt
        if m.is_request:
            where = dict(ts=p.ts, src=p.src, dst=p.dst, dport=p.dport, vlan=p.vlan)
            if m.auth_scheme in ("Basic", "Digest") and self._once(("um12", "http", p.src, p.dst, m.auth_user), p.ts):
                basic = m.auth_scheme == "Basic"
                yield self.alert("credentials_in_clear", identifier=f"http {m.auth_user or '?'}@{p.dst} from {p.src}",
                                 severity="critical" if basic else "medium",
                                 msg=f"{p.src} sent HTTP {m.auth_scheme} credentials for user {m.auth_user!r} to "
                                     f"{p.dst}:{p.dport} without TLS" + (": the password is readable" if basic else
                                     ": the digest can be cracked offline") + "; use HTTPS only.",
                                 evidence={"service": "http", "scheme": m.auth_scheme, "user": m.auth_user,
                                           "uri": m.uri, "password_sha256": m.auth_secret_sha256,
                                           "password_len": m.auth_secret_len,
                                           "well_known_default": m.auth_secret_default}, **where)
            if m.form_password_fields and self._once(("um12", "form", p.src, p.dst, m.uri), p.ts):
                yield self.alert("credentials_in_clear", identifier=f"http form {p.dst}{m.uri or ''}",
                                 msg=f"{p.src} posted a login form with field(s) {', '.join(m.form_password_fields)} "
                                     f"to {p.dst}:{p.dport} over HTTP: the password is readable; use HTTPS only.",
                                 evidence={"service": "http", "uri": m.uri,
                                           "form_fields": list(m.form_password_fields)}, **where)
            return
        client, server = p.dst, p.src
        if m.status == 401:
            yield from self._failure("http", client, server, p.ts, p.vlan, 1, "HTTP 401")
        yield from self._phone_admin("http", client, server, p.sport, p.ts, p.vlan,
                                     f"HTTP {m.status}" + (f" (Server: {m.server})" if m.server else ""))

    def _phone_admin(self, service: str, client: str, server: str, port: int, ts: float, vlan, what: str):
        if not self._is_phone(server) or _in(client, self._allowed) or not self._once(("um15", service, server), ts):
            return
        yield self.alert("cleartext_phone_admin", identifier=f"{service} {server}", ts=ts, src=client, dst=server,
                         dport=port, vlan=vlan,
                         msg=f"Phone {server} answered {client} over {service.upper()} ({what}): its cleartext "
                             f"management interface is enabled; disable the phone's web server and Telnet (use SSHv2/HTTPS "
                             "from a management network only).",
                         evidence={"service": service, "port": port, "answer": what})

    # -- UM-12, RF-10 (FTP) -----------------------------------------------------------------------
    def on_ftp_command(self, c: FtpCommand):
        p = c.pkt
        if c.is_request and c.command == "PASS" and self._once(("um12", "ftp", p.src, p.dst), p.ts):
            yield self.alert("credentials_in_clear", identifier=f"ftp {p.src}->{p.dst}", ts=p.ts, src=p.src, dst=p.dst,
                             dport=p.dport, vlan=p.vlan,
                             msg=f"{p.src} sent an FTP password to {p.dst} in clear; use SFTP or FTPS.",
                             evidence={"service": "ftp", "password_sha256": c.secret_sha256,
                                       "password_len": c.secret_len, "well_known_default": c.secret_default})
        if not c.is_request and c.reply_code == 530:
            yield from self._failure("ftp", p.dst, p.src, p.ts, p.vlan, 1, "FTP 530")

    # -- UM-12, UM-15, RF-10 (Telnet) -------------------------------------------------------------
    def on_telnet_event(self, e: TelnetEvent):
        p = e.pkt
        server, client = (p.src, p.dst) if p.sport == 23 else (p.dst, p.src)
        if e.event == "password_prompt" and self._once(("um12", "telnet", client, server), p.ts):
            yield self.alert("credentials_in_clear", identifier=f"telnet {client}->{server}", ts=p.ts, src=client, dst=server,
                             dport=23, vlan=p.vlan,
                             msg=f"{server} asked {client} for a Telnet password: the answer crosses the network in "
                                 "clear; disable Telnet, use SSHv2.",
                             evidence={"service": "telnet", "event": e.event})
        if e.event == "login_failed":
            yield from self._failure("telnet", client, server, p.ts, p.vlan, 1, "Telnet login failed")
        if p.sport == 23:
            yield from self._phone_admin("telnet", client, server, 23, p.ts, p.vlan, e.event.replace("_", " "))

    # -- RF-10 ------------------------------------------------------------------------------------
    def _failure(self, service: str, client: str, server: str, ts: float, vlan, n: int, what: str):
        if _in(client, self._allowed):
            return
        window = self._failures.touch((service, client, server), ts)
        window.append(ts)
        while window and ts - window[0] > self.config.window_s:
            window.popleft()
        threshold = {"http": self.config.http_failures, "ftp": self.config.ftp_failures,
                     "telnet": self.config.telnet_failures, "snmp": 1}[service]
        if len(window) >= threshold and self._once(("rf10", service, client, server), ts):
            yield self.alert("admin_login_brute_force", identifier=f"{service} {client}->{server}", ts=ts,
                             src=client, dst=server, vlan=vlan,
                             msg=f"{client} failed {len(window)} {service.upper()} logins on {server} within "
                                 f"{self.config.window_s:g} s ({what}): a password-guessing attack; block the source, "
                                 "lock out after failures, disable cleartext admin.",
                             evidence={"service": service, "failures": len(window), "first_ts": window[0],
                                       "last_ts": ts, "signal": what})
