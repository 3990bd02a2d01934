"""What a final answer says about a request's credentials: the one definition that the registrations
table (voipwatch.sessions) and the registration checks (detectors/registration_flood.py, RF-03 to RF-06)
both count with, so that a table row and an alert about the same packets state the same numbers.
"""
from __future__ import annotations

from voipwatch.records import SipAuth, SipMessage

CREDENTIALS = ("authorization", "proxy-authorization")   # RFC 3261 §22.2, §22.3
CHALLENGES = frozenset({401, 407})                        # RFC 3261 §21.4.2, §21.4.8
REJECTED_CREDENTIALS = frozenset({401, 403, 407})         # §22.2: a 401/407 to credentials rejects them; 403 refuses
OUTCOMES = ("success", "challenge", "failure", "rejected")


def credentials(request: SipMessage) -> SipAuth | None:
    """The request's Authorization or Proxy-Authorization, if any."""
    return next((a for a in request.auth if a.header in CREDENTIALS), None)


def stale_nonce(response: SipMessage) -> bool:
    """A 401/407 whose challenge says stale=true (RFC 7616 §3.3): the nonce expired, the credentials did not fail."""
    return response.status in CHALLENGES and any(a.stale for a in response.auth)


def outcome(had_credentials: bool, response: SipMessage) -> str | None:
    """success: a 2xx. challenge: a 401/407 to a request without credentials, or one with stale=true.
    failure: a 401/403/407 to a request that carried credentials (a failed login, RF-03/RF-05).
    rejected: any other final answer >= 300 (403 or 404 without credentials, 503, ...). None: not final."""
    status = response.status
    if status is None or status < 200:
        return None
    if status < 300:
        return "success"
    if status in CHALLENGES and (not had_credentials or stale_nonce(response)):
        return "challenge"
    if had_credentials and status in REJECTED_CREDENTIALS:
        return "failure"
    return "rejected"
