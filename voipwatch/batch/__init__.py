"""The batch speed-up: vectorised capture reading, RTP column decoding and the processes of --jobs."""
