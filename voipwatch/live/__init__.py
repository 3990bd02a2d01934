"""The live path: capture sources (tcpdump, dumpcap, pyshark) and `voipwatch monitor`."""
