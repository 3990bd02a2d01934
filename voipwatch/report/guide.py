"""What the NSA guide advises for each check: one or two sentences per check id, with the guide part and heading.

Source: NSA Cybersecurity Technical Report "Deploying Secure Unified Communications/Voice and Video over IP
Systems" (U/OO/153515-21, June 2021), Parts I-IV; the check ids are those of ../shared/design/nsa-checks.md,
all 70 of them, so that a new detector family finds the advice for its checks here.
The advice is paraphrased from the guide's mitigations; where a check is derived (the guide states the goal,
the signature is ours) the advice restates the guide's goal, not a claim the guide makes about the signature.
`advice_for` gives every check something: a check without an entry gets a pointer to the guide part and
heading named by its alert's guide_ref.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

GUIDE_TITLE = "Deploying Secure Unified Communications/Voice and Video over IP Systems (NSA, June 2021)"

PARTS = {
    "Part I": "Network security",
    "Part II": "Perimeter security",
    "Part III": "Enterprise session controller (ESC) security",
    "Part IV": "UC/VVoIP endpoint security",
}


@dataclass(frozen=True, slots=True)
class Advice:
    part: str          # "Part I" .. "Part IV"
    heading: str       # the guide's heading, e.g. "Call eavesdropping protections"
    text: str          # one or two sentences, paraphrased from the guide's mitigations

    @property
    def where(self) -> str:
        return f"{self.part}: {self.heading}"


def _a(part: str, heading: str, text: str) -> Advice:
    return Advice(part, heading, text)


I, II, III, IV = "Part I", "Part II", "Part III", "Part IV"

ADVICE: dict[str, Advice] = {
    # ---------------------------------------------------------------- unencrypted media / signalling
    "UM-01": _a(I, "Call eavesdropping protections",
                "Encrypt all voice and video end to end (SRTP): tools exist that rebuild calls from captured "
                "cleartext packets. Port security and 802.1X on the switches make capturing harder but do not "
                "replace encryption."),
    "UM-02": _a(I, "Trusted path and channel protections",
                "Protect keying material in transit: carry SDES a=crypto keys only inside SIP over TLS (or IPsec), "
                "or key SRTP with DTLS-SRTP, so that an eavesdropper cannot read the keys and decrypt the media."),
    "UM-03": _a(I, "Trusted path and channel protections",
                "Use encryption and cryptographically secure authentication on every channel, with algorithms from "
                "the CNSA suite (CNSSP 15); do not accept answers that fall back to plain RTP or SRTP profiles that "
                "switch encryption or authentication off."),
    "UM-04": _a(II, "Signaling gateway protections",
                "Encrypt all signalling that can be encrypted: run SIP over TLS (SIPS) between phones, the ESC, "
                "the SBC and gateways, and use two-way authentication so neither side can be impersonated."),
    "UM-05": _a(I, "Trusted path and channel protections",
                "Use TLS/DTLS with two-way authentication and CNSA-suite algorithms (CNSSP 15); retire old protocol "
                "versions and weak cipher suites, and have the ESC authenticate clients as well as the reverse."),
    "UM-06": _a(II, "Protections for public IP networks functioning as voice carriers",
                "Use encrypted trunks over public IP networks and to the cloud (SIP over TLS, SRTP), and an IPsec or "
                "TLS VPN for inter-office WAN links; the organisation has no control over traffic on other networks."),
    "UM-07": _a(II, "Signaling gateway protections",
                "Encrypt every signalling and media-control protocol that supports it (H.235 for H.323, TLS or "
                "IPsec for gateway control); otherwise tunnel it through an encrypted channel."),
    "UM-08": _a(I, "Call eavesdropping protections",
                "Encrypt voice end to end: DTMF digits carried in cleartext RTP events or SIP INFO expose PINs and "
                "card numbers to anyone who can capture the traffic."),
    "UM-09": _a(III, "Web-based management interfaces",
                "Manage the ESC only over an encrypted channel: enable TLS on its web server and disable all non-TLS "
                "access; encrypt proprietary management traffic or route it through an encrypted tunnel."),
    "UM-10": _a(IV, "Simple Network Management Protocol (SNMP)",
                "Do not manage endpoints with SNMP and turn off all SNMP versions on them; if SNMP is unavoidable, "
                "use SNMPv3 over TLS or DTLS with its authentication features."),
    "UM-11": _a(IV, "Downloading firmware and configuration files",
                "Use endpoints that process cryptographically signed firmware and configuration files, and have "
                "each endpoint verify every file and reject any with an invalid signature."),
    "UM-12": _a(I, "Trusted path and channel protections",
                "Without encryption an eavesdropper can steal credentials: use protocols with encryption and two-way "
                "authentication (IPsec, SSH, TLS, DTLS, HTTPS) for every login and change any exposed password."),
    "UM-13": _a(III, "Audit and logging apparatus",
                "Transmit logs securely to a separate hardened logging server that accepts entries only from "
                "authenticated machines; encrypt the channel between the ESC and its database as well."),
    "UM-14": _a(IV, "Convergence features",
                "Protect convergence data while it is in transit and enforce strong authentication and authorisation "
                "for every convergence service (directories, voicemail to email, address book sync)."),
    "UM-15": _a(IV, "Web-based management interface",
                "Deactivate the phone's web interface and disable Telnet; configure endpoints through signed "
                "configuration downloads and use SSHv2 where a command line is needed."),
    "UM-16": _a(I, "Trusted path and channel protections",
                "Use SSHv2 and IPsec with two-way authentication and CNSA-suite algorithms (CNSSP 15); disable "
                "SSHv1 and obsolete ciphers, MACs and key exchanges."),
    # ----------------------------------------------------------------------------------- toll fraud
    "TF-01": _a(II, "PSTN gateway protections",
                "Place PSTN gateways in their own VLAN in a DMZ off an SBC interface and filter so that only "
                "authorised servers can send them signalling; endpoints must go through the ESC."),
    "TF-02": _a(II, "PSTN gateway protections",
                "Require authorised users or peer gateways to authenticate before the gateway completes a call; "
                "if the gateway asks an authorisation server, use a secure channel to it."),
    "TF-03": _a(III, "Audit and logging apparatus",
                "Enable call detail records and review them regularly: CDRs are how toll fraud and other "
                "unauthorised use of the call-processing system are detected."),
    "TF-04": _a(III, "Audit and logging apparatus",
                "Keep CDRs and review them for toll fraud, such as calls to premium or high-risk destinations and "
                "international calls outside business hours; restrict such destinations to the users who need them."),
    "TF-05": _a(I, "Network availability protections",
                "Decide how many simultaneous external calls the system may carry and limit them at the perimeter "
                "(SBC, firewall); review CDRs for bursts of short or concurrent external calls."),
    "TF-06": _a(II, "Protections for public IP networks functioning as voice carriers",
                "Do not trust traffic that originates from another organisation: the SBC must not relay calls that "
                "arrive from a trunk straight back out to the PSTN."),
    "TF-07": _a(III, "Default UC/VVoIP server configuration settings",
                "Harden the ESC (STIG or vendor guide) and evaluate features such as forwarding and transfer to "
                "external numbers before enabling them; periodically check the configuration for unattended changes."),
    "TF-08": _a(III, "Client registration protections",
                "Disable automatic registration and use two-way authentication between clients and the ESC, so that "
                "an actor cannot masquerade as a legitimate device and place calls from it."),
    "TF-09": _a(III, "Audit and logging apparatus",
                "Enable logging and CDRs on voicemail, conferencing and gateways and review them; restrict voicemail "
                "and auto-attendant features that can place outbound external calls."),
    # ------------------------------------------------------------- registration floods and brute force
    "RF-01": _a(III, "Client registration protections",
                "Require two-way authentication for every registration and disable automatic registration; block "
                "scanning sources at the perimeter and keep SIP services off networks that do not need them."),
    "RF-02": _a(III, "User accounts and passwords",
                "Limit password guessing: the ESC should answer unknown and known users alike and limit consecutive "
                "failed attempts, so that valid extensions cannot be enumerated."),
    "RF-03": _a(III, "User accounts and passwords",
                "Enforce password complexity and limit the number of consecutive failed login attempts (NIST SP "
                "800-63B); change default credentials."),
    "RF-04": _a(III, "User accounts and passwords",
                "Limit consecutive failed attempts per account and per source, enforce complexity rules and follow "
                "NIST SP 800-63B; distributed guessing needs account-level lockout, not only per-source filtering."),
    "RF-05": _a(III, "User accounts and passwords",
                "Enforce an account lockout after consecutive failures; a success after many failures suggests a "
                "guessed password: reset the account's credentials and review its calls."),
    "RF-06": _a(III, "Client registration protections",
                "Disable automatic registration and configure two-way authentication: the ESC must authenticate "
                "every client before accepting its registration."),
    "RF-07": _a(III, "Client registration protections",
                "Authenticate every REGISTER (two-way authentication) and disable automatic registration, so that an "
                "actor cannot masquerade as a legitimate device and move its binding."),
    "RF-08": _a(I, "Network availability protections",
                "Limit the rate of traffic into the UC VLANs and use the DoS features of firewalls, SBCs and filtering "
                "routers at the perimeter."),
    "RF-09": _a(I, "Network availability protections",
                "Determine how many simultaneous external calls can be handled and use perimeter devices to limit "
                "the bandwidth allocated to incoming external calls."),
    "RF-10": _a(III, "User accounts and passwords",
                "Limit consecutive failed logins on management interfaces, use multi-factor authentication where "
                "possible, and restrict management to a dedicated management network."),
    "RF-11": _a(I, "Network services and protocols protections (DHCP)",
                "Enable port security and 802.1X on the LAN switches and DHCP snooping, so that a malicious client "
                "cannot exhaust the DHCP pool of the voice network."),
    "RF-12": _a(IV, "Malicious software",
                "Use cryptographically signed updates and keep endpoints on their own VLANs; a phone or server that "
                "scans the network may be infected and should be isolated."),
    # ------------------------------------------------------------------------ cross-VLAN leakage
    "XV-01": _a(I, "Accessibility and network separation",
                "Keep UC traffic off the data VLANs: place UC devices on voice VLANs by role and softphones on their "
                "own VLAN, and deny access between the data and UC networks unless explicitly allowed."),
    "XV-02": _a(I, "Accessibility and network separation",
                "Place every device not used for UC (PCs, file and email servers) on data VLANs, and allow only the "
                "protocols needed for operation on the voice VLANs."),
    "XV-03": _a(I, "Accessibility and network separation",
                "Separate the UC and data VLANs with an application-layer firewall: no traffic should pass directly "
                "between them without inspection by the firewall or a DMZ proxy."),
    "XV-04": _a(I, "Accessibility and network separation",
                "Use stateful filtering so that endpoints reach only the UC servers they need (filter on address, "
                "port and transport) and deny everything else."),
    "XV-05": _a(I, "Network services and protocols protections",
                "Give the UC network its own DNS, DHCP and NTP servers and let only UC clients use them, so that "
                "these services never cross the voice/data boundary."),
    "XV-06": _a(II, "PSTN gateway protections",
                "Put gateways in their own VLAN in a DMZ off an SBC interface; endpoints must not send signalling "
                "directly to a gateway but go through the ESC."),
    "XV-07": _a(II, "Protections for public IP networks functioning as voice carriers",
                "Route all external UC traffic through the SBC, hide internal addressing with NAT, and have remote "
                "endpoints connect back through a cryptographic VPN."),
    "XV-08": _a(IV, "Third-party software",
                "Block direct Internet access by endpoints (or use a DMZ proxy) and block vendor sites that offer "
                "application downloads; distribute software only through signed firmware upgrades."),
    "XV-09": _a(III, "Web-based management interfaces",
                "Make management interfaces reachable only from the management network and from the addresses of "
                "administrative workstations; remote administrators connect in through a trusted channel."),
    "XV-10": _a(III, "Database security",
                "Give the ESC and its database a dedicated, encrypted VLAN channel and allow only the ESC and "
                "management hosts to reach the database."),
    "XV-11": _a(IV, "Ethernet",
                "Do not use the phone's PC port and disable it; if it must be used, the phone's integrated switch "
                "must support and be configured for VLANs."),
    "XV-12": _a(I, "Accessibility and network separation",
                "Treat the voice/data border as untrusted: restrict which ports may join the voice VLAN (port "
                "security, 802.1X) and investigate any host that reaches it from the data side."),
    "XV-13": _a(I, "Accessibility and network separation",
                "Devices with roles on both networks, such as unified messaging servers, belong in the DMZ managed "
                "by the application-layer firewall, not directly on both VLANs."),
    "XV-14": _a(I, "Accessibility and network separation",
                "Place UC servers in VLANs by protocol (H.323-only, SIP-only); a server that implements several "
                "protocols should join each VLAN through a VLAN-capable NIC."),
    "XV-15": _a(IV, "Wireless local area network (WLAN)",
                "Wireless UC endpoints must keep voice and data separate (VLANs, separate SSIDs or separate WLAN "
                "infrastructure); the guide recommends wired Ethernet only."),
    "XV-16": _a(IV, "Convergence features",
                "Data must not move directly between endpoints and other devices: use a firewall or SBC as gateway "
                "and a DMZ messaging server, with strong authentication for convergence services."),
    # ------------------------------------------------------------------------------------------ other
    "OT-01": _a(I, "DHCP",
                "Employ DHCP snooping on the LAN switches so that messages from unauthorized DHCP servers are "
                "dropped, and give the UC network its own DHCP server that only UC clients may use."),
    "OT-02": _a(IV, "Downloading firmware and configuration files",
                "Use endpoints that process cryptographically signed firmware and configuration files and reject "
                "any file with an invalid signature; keep the signing key off the download server."),
    "OT-03": _a(IV, "Web-based management interface",
                "Deactivate the phones' web interface and configure them through signed configuration files; turn "
                "off SNMP (or use SNMPv3 over TLS or DTLS) and disable Telnet in favour of SSHv2."),
    "OT-04": _a(III, "Network services",
                "Disable every network service on the ESC that is not needed for its function (DHCP, DNS, FTP, "
                "SMTP and the like); ask the vendor which services the system requires."),
    "OT-05": _a(III, "Malicious software",
                "Do not use ESCs for general Internet activities such as email and web applications; run "
                "anti-virus and a host-based firewall where the ESC sits on a general-purpose operating system."),
    "OT-06": _a(I, "DNS",
                "Disable zone transfers: allow them only to servers with a specific need for the data, since a "
                "transfer hands an attacker a map of the internal servers to target."),
    "OT-07": _a(I, "DNS",
                "Enable DNSSEC validation at the recursive resolvers at the enterprise boundary, so that DNS data "
                "that fails authentication or integrity checks is dropped."),
    "OT-08": _a(I, "DNS",
                "Use forward-confirmed reverse DNS: each server's forward (name to address) and reverse (address "
                "to name) entries should match each other."),
    "OT-09": _a(I, "NTP",
                "Give UC clients a dedicated NTP server running the latest NTP version with authentication and "
                "integrity, behind a firewall that lets only the UC VLAN request time."),
    "OT-10": _a(I, "Network availability protections",
                "Enable quality of service on the network hardware that carries UC traffic and give that traffic "
                "a higher priority than less time-sensitive traffic."),
    "OT-11": _a(II, "Protections for public IP networks functioning as voice carriers",
                "Hide the internal network topology with NAT and non-routable addresses; an SBC at the perimeter "
                "rewrites the internal addresses carried inside the signalling."),
    "OT-12": _a(III, "Emergency Services",
                "Subscribe to an E911 service and route only emergency calls that originate within the network to "
                "it; keep location information current and group numbers into DIDs by physical location."),
    "OT-13": _a(III, "Software vulnerabilities",
                "Apply security patches to the ESC and endpoints as soon as they are available, using updates and "
                "firmware signed by the vendor and downloaded from a trusted central server."),
    "OT-14": _a(IV, "Embedded microphones",
                "In sensitive areas remove or disable the speakerphone microphone and use push-to-talk handsets or "
                "headsets, so that software cannot turn a microphone on without the user knowing."),
    "OT-15": _a(IV, "Softphones",
                "Place PCs with softphones in their own VLAN and filter what reaches the UC VLANs; the call "
                "server cannot ensure that softphones that users install are configured securely."),
    "OT-16": _a(I, "Call eavesdropping protections",
                "Enable port security and 802.1X device authentication on all switches, so that clients must "
                "authenticate before they are allowed onto the network."),
    "OT-17": _a(II, "PSTN gateway protections",
                "Gateways must validate and terminate all PSTN signalling and convert it to UC signalling, so that "
                "PSTN messages never pass directly to the internal ESCs."),
}

# voipwatch's own checks, after the catalogue's ids (README: toll_fraud); advice restates the guide's goals.
OWN_ADVICE: dict[str, Advice] = {
    "TF-10": _a(III, "Audit and logging apparatus",
                "Keep call detail records and review them for toll fraud; restrict international and premium "
                "destinations to the users who need them, which also stops callbacks into a range that rang once."),
    "TF-11": _a(III, "Client registration protections",
                "Disable automatic registration and use two-way authentication between clients and the ESC, so "
                "that an actor cannot masquerade as a legitimate device; change the credentials of an account in "
                "use from two places."),
}

_PART = re.compile(r"^\s*(Part\s+(?:IV|III|II|I))\b\s*[:\-\u2013\u00b7]?\s*(.*)$")


def split_ref(guide_ref: str | None) -> tuple[str | None, str]:
    """("Part I", "Call eavesdropping protections") from "Part I: Call eavesdropping protections"."""
    m = _PART.match(guide_ref or "")
    if not m:
        return None, (guide_ref or "").strip()
    return re.sub(r"\s+", " ", m.group(1)), m.group(2).strip()


def part_of(check: str | None, guide_ref: str | None) -> str | None:
    """The guide part of a finding: from its guide_ref, else from the check's advice."""
    part, _ = split_ref(guide_ref)
    if part is None and check in ADVICE:
        part = ADVICE[check].part
    return part


def advice_for(check: str | None, guide_ref: str | None = None) -> Advice:
    """The advice for a check id; an unknown check gets a pointer to the guide section of its guide_ref."""
    known = ADVICE.get((check or "").upper()) or OWN_ADVICE.get((check or "").upper())
    if known is not None:
        return known
    part, heading = split_ref(guide_ref)
    where = f"{part}: {heading}" if part and heading else (part or heading or "the guide")
    return Advice(part or "", heading or "",
                  f"No specific advice is recorded for check {check or '(none)'}: read {where} of the NSA guide "
                  f"for the mitigations that apply.")
