"""Severity follows impact: the one table that says which severity each kind of impact gets.

Detectors name the impact of what they found and take its severity from here, so that a completed fraud
call, a cracked or taken-over account and a live rogue binding always outrank cleartext hygiene. The README
("How severities are assigned") shows the same table with the findings that fall in each row.
"""
from __future__ import annotations

# impact -> (severity, what it means); ordered from the most to the least severe
IMPACTS: dict[str, tuple[str, str]] = {
    "compromise": ("critical", "an attacker holds something: a completed fraud call, a cracked or taken-over account, "
                               "a live rogue binding, keys or calls readable from a public network"),
    "attack": ("high", "an attack in progress against a real target, or one that reached it: fraud calls placed, "
                       "brute force, a moved binding, a flood; or credentials exposed to offline cracking"),
    "exposure": ("medium", "hygiene: a standing weakness that leaves calls readable to anyone on the internal path "
                           "(cleartext media or SIP inside the site), or an attempt that got nowhere"),
    "weakness": ("low", "a weak setting with nothing exposed yet"),
    "inventory": ("info", "evidence of compliance or an accepted exception"),
}


def severity_of(impact: str) -> str:
    """The severity of an impact (a KeyError names a programming mistake: impacts are fixed)."""
    return IMPACTS[impact][0]
