"""The real-traffic lab: network namespaces, a userspace 802.1Q switch, kamailio, SIPp and sipvicious."""
