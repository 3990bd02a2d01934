"""The call views behind `voipwatch call`: selection, terminal text, ladder, quality, audio and the evidence bundle."""
