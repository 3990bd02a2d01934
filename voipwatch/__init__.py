"""voipwatch: passive SIP/RTP security analyzer."""
__version__ = "0.1.0"
