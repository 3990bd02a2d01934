"""Incidents: findings grouped by the actor behind them and by time, with the attack phases they show.

Rule: two findings belong to one incident when they share an actor (a source address, an account or a
MAC) and the second began less than `[alerts] incident_gap_s` (one hour) after that actor's latest
activity in the first. Grouping is transitive, so scan -> enumeration -> crack -> rogue binding ->
fraud -> flood from one address (or continued from another address with the cracked account) is one
incident. Addresses of the site's own servers (roles esc, sbc, pstn_gw, trusted_trunks) relay
everybody's traffic and never link findings. The grouping follows the order in which the detector bus
creates findings, which is the same in the batch and streaming paths.

An incident's id is "I-" and 10 hex digits of the SHA-256 of its first finding's id; a finding's id is
"F-" and 10 hex digits of the SHA-256 of its name, identifier and first raise time. Both depend on
content only, so they are the same in both paths and across runs. When a later finding joins two
incidents, the older keeps its id and lists the other in `merged_ids`.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from voipwatch.records import declare, r6
from voipwatch.site import Site

SEVERITIES = ("info", "low", "medium", "high", "critical")
SERVER_ROLES = ("esc", "sbc", "pstn_gw", "trusted_trunks")   # hosts that carry everybody's traffic
# Phases in attack order (MITRE ATT&CK-like tactics, and hygiene for standing weaknesses).
PHASES = ("recon", "credential_access", "persistence", "lateral_movement", "fraud", "dos", "hygiene")
# Check id (nsa-checks.md) -> phase; a detector may name another with AlertSpec(phase=...).
CHECK_PHASES = {
    "RF-01": "recon", "RF-02": "recon", "RF-03": "credential_access", "RF-04": "credential_access",
    "RF-05": "credential_access", "RF-06": "persistence", "RF-07": "persistence", "RF-08": "dos",
    "TF-03": "recon",
    "XV-12": "lateral_movement", "XV-13": "lateral_movement", "XV-03": "lateral_movement",
}
FAMILY_PHASES = {"TF": "fraud", "UM": "hygiene", "XV": "hygiene", "RF": "credential_access"}
MAX_ACTORS = 8               # actor keys kept per finding
MAX_LISTED = 50              # actors, victims and merged ids listed per incident row
MAX_FINDINGS = 1000          # finding ids listed per incident row (n_findings counts them all)
MAX_GROUPS = 100_000         # incidents kept; beyond it the oldest quarter is forgotten (counted in `dropped`)
MAX_ACTORS_TRACKED = 100_000 # actor keys remembered for linking; beyond it those idle longer than the gap go


def phase_of(check: str) -> str:
    """The attack phase of a check id: its own entry, else its family's, else hygiene."""
    return CHECK_PHASES.get(check) or FAMILY_PHASES.get(check.split("-", 1)[0], "hygiene")


def finding_id(name: str, identifier: str, raised_ts: float) -> str:
    return "F-" + hashlib.sha256(f"{name}\0{identifier}\0{raised_ts!r}".encode()).hexdigest()[:10]


@dataclass(frozen=True, slots=True)
class Incident:
    """One incident: findings linked by a shared actor and time (see the module docstring)."""
    id: str
    actors: tuple[str, ...]        # "ip:203.0.113.9", "account:1001", "mac:00:11:22:33:44:55"
    victims: tuple[str, ...]       # destination addresses of its findings
    first_ts: float
    last_ts: float
    phases: tuple[str, ...]        # in attack order (PHASES)
    max_severity: str
    findings: tuple[str, ...]      # finding ids, in order of creation
    n_findings: int
    names: tuple[str, ...]         # alert names, sorted
    merged_ids: tuple[str, ...] = ()
    order: int = 0                 # creation order of its first finding: breaks ties of first_ts (not a column)


declare(Incident, rank=200, timeline=lambda i, timing: (i.last_ts, 0), table="incidents",
        sort=lambda i: (i.first_ts, i.order), columns=(
    ("id", "string", lambda i: i.id),
    ("actors", "string", lambda i: " ".join(i.actors)),
    ("victims", "string", lambda i: " ".join(i.victims)),
    ("first_ts", "Float64", lambda i: r6(i.first_ts)),
    ("last_ts", "Float64", lambda i: r6(i.last_ts)),
    ("phases", "string", lambda i: " ".join(i.phases)),
    ("max_severity", "string", lambda i: i.max_severity),
    ("n_findings", "Int64", lambda i: i.n_findings),
    ("findings", "string", lambda i: " ".join(i.findings)),
    ("names", "string", lambda i: " ".join(i.names)),
    ("merged_ids", "string", lambda i: " ".join(i.merged_ids) or None),
))


class _Group:
    __slots__ = ("id", "first_ts", "last_ts", "actors", "victims", "phases", "severity", "findings", "names",
                 "merged", "parent", "serial", "count")

    def __init__(self, gid: str, first_ts: float, serial: int):
        self.id, self.first_ts, self.last_ts, self.serial = gid, first_ts, first_ts, serial
        self.actors: set[str] = set()
        self.victims: set[str] = set()
        self.phases: set[str] = set()
        self.severity = 0
        self.findings: list[str] = []     # the first MAX_FINDINGS ids
        self.count = 0
        self.names: set[str] = set()
        self.merged: list[str] = []
        self.parent: _Group | None = None


class Grouper:
    """Assigns each finding to an incident as findings are created and grow (union by shared actor)."""

    def __init__(self, site: Site | None, gap_s: float):
        self.site = site
        self.gap_s = gap_s
        self._actor: dict[str, tuple[_Group, float]] = {}     # actor key -> (its group, latest activity)
        self._groups: list[_Group] = []                        # roots and merged ones, in creation order
        self.dropped = 0                                       # incidents forgotten by MAX_GROUPS
        self._serial = 0

    def linkable(self, actor: str) -> bool:
        """Server addresses link nobody: every phone talks to them."""
        if self.site is None or not actor.startswith("ip:"):
            return True
        return not any(self.site.has_role(actor[3:], r) for r in SERVER_ROLES)

    def add(self, fid: str, name: str, check: str, phase: str | None, severity: str, first_ts: float,
            last_ts: float, actors: tuple[str, ...], victim: str | None) -> _Group:
        """A new finding: it joins the incident of an actor active within the gap, else starts one."""
        linked = [self._actor[a][0] for a in actors if a in self._actor and self.linkable(a)
                  and first_ts - self._actor[a][1] < self.gap_s]
        if linked:
            group = min((self.root(g) for g in linked), key=lambda g: g.serial)
        else:
            group = _Group("I-" + hashlib.sha256(fid.encode()).hexdigest()[:10], first_ts, self._serial)
            self._serial += 1
            self._groups.append(group)
            if len(self._groups) > MAX_GROUPS:              # bounded memory on long live runs
                cut = MAX_GROUPS // 4
                self.dropped += sum(1 for g in self._groups[:cut] if g.parent is None)
                del self._groups[:cut]
            if len(self._actor) > MAX_ACTORS_TRACKED:
                self._actor = {a: v for a, v in self._actor.items() if first_ts - v[1] < self.gap_s}
        group.count += 1
        if len(group.findings) < MAX_FINDINGS:
            group.findings.append(fid)
        return self.grow(group, name, check, phase, severity, first_ts, last_ts, actors, victim)

    def grow(self, group: _Group, name: str, check: str, phase: str | None, severity: str, first_ts: float,
             last_ts: float, actors: tuple[str, ...], victim: str | None) -> _Group:
        """A finding of `group` was raised again: its actors, time and severity join the incident."""
        root = self.root(group)
        for actor in actors:
            if not self.linkable(actor):
                continue
            known = self._actor.get(actor)
            if known is not None and first_ts - known[1] < self.gap_s:
                root = self._union(root, self.root(known[0]))
            latest = last_ts if known is None else max(known[1], last_ts)
            self._actor[actor] = (root, latest)
            if len(root.actors) < MAX_LISTED:
                root.actors.add(actor)
        root.first_ts, root.last_ts = min(root.first_ts, first_ts), max(root.last_ts, last_ts)
        root.phases.add(phase or phase_of(check))
        root.names.add(name)
        root.severity = max(root.severity, SEVERITIES.index(severity))
        if victim and len(root.victims) < MAX_LISTED:
            root.victims.add(victim)
        return root

    def root(self, group: _Group) -> _Group:
        while group.parent is not None:
            group = group.parent
        return group

    def _union(self, a: _Group, b: _Group) -> _Group:
        if a is b:
            return a
        older, newer = (a, b) if a.serial < b.serial else (b, a)
        newer.parent = older
        older.first_ts, older.last_ts = min(older.first_ts, newer.first_ts), max(older.last_ts, newer.last_ts)
        older.actors |= newer.actors
        older.victims |= newer.victims
        older.phases |= newer.phases
        older.names |= newer.names
        older.severity = max(older.severity, newer.severity)
        older.findings = (older.findings + newer.findings)[:MAX_FINDINGS]
        older.count += newer.count
        older.merged = (older.merged + [newer.id] + newer.merged)[:MAX_LISTED]
        return older

    def incidents(self) -> list[Incident]:
        out = []
        for g in self._groups:
            if g.parent is not None:
                continue
            victims = sorted(g.victims - {a[3:] for a in g.actors if a.startswith("ip:")})
            out.append(Incident(
                g.id, tuple(sorted(g.actors))[:MAX_LISTED], tuple(victims)[:MAX_LISTED], g.first_ts,
                g.last_ts, tuple(p for p in PHASES if p in g.phases), SEVERITIES[g.severity],
                tuple(g.findings), g.count, tuple(sorted(g.names)), tuple(g.merged), g.serial))
        return sorted(out, key=lambda i: (i.first_ts, i.order))


def by_importance(incidents: list[Incident]) -> list[Incident]:
    """Attacks before hygiene, then by highest severity, phases shown, findings, and time."""
    def key(i: Incident):
        attack = any(p != "hygiene" for p in i.phases)
        return (-attack, -SEVERITIES.index(i.max_severity), -len(i.phases), -i.n_findings, i.first_ts, i.order)
    return sorted(incidents, key=key)


def one_line(incident: Incident, max_actors: int = 3) -> str:
    """An incident in one line of our own words around the capture's (escape it before showing)."""
    clock = lambda ts: time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))   # noqa: E731 - capture time, UTC
    actors = ", ".join(incident.actors[:max_actors]) + (f" +{len(incident.actors) - max_actors}"
                                                         if len(incident.actors) > max_actors else "")
    return (f"{incident.id} {incident.max_severity:<8} {clock(incident.first_ts)} .. {clock(incident.last_ts)} UTC  "
            f"{actors or 'no actor'}: {' > '.join(incident.phases)} ({incident.n_findings} finding"
            f"{'s' if incident.n_findings != 1 else ''})")
