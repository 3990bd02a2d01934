"""Deterministic byte mutations of sample messages, for the dissectors' never-raise fuzz tests."""
from __future__ import annotations

import random
from typing import Iterator


def mutations(seed: int, seeds: list[bytes], count: int) -> Iterator[bytes]:
    """`count` mutants of the seed messages: 1-6 random overwrites, truncations or insertions each."""
    rng = random.Random(seed)
    for _ in range(count):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 6)):
            op = rng.random()
            if op < 0.5 and data:
                data[rng.randrange(len(data))] = rng.randrange(256)
            elif op < 0.7 and data:
                del data[rng.randrange(len(data)):]
            else:
                data.insert(rng.randrange(len(data) + 1), rng.randrange(256))
        yield bytes(data)


# Strings that have broken SIP parsers: separators, folding, escapes, multipart, huge numbers, long runs.
SIP_TOKENS = [b"\r\n", b"\n", b"\r", b":", b",", b";", b'"', b"\\", b"<", b">", b" ", b"\t", b"\x00", b"\xff",
              b"SIP/2.0", b"SIP/2.0 200 OK\r\n", b"Content-Length: 99999999999999999999\r\n", b"l: -1\r\n",
              b"\r\n\r\n", b"%", b"%zz", b"=", b"boundary=x", b"--x\r\n", b"Content-Type: multipart/mixed;boundary=x\r\n",
              b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:!!!", b"m=audio 99999999 RTP/AVP", b"\r\n ", b"9" * 5000]


def sip_damage(rng: random.Random, data: bytes) -> bytes:
    """1-8 overwrites, SIP-shaped token insertions, deletions, repeated runs or cuts of one message."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        pos = rng.randrange(len(buf) + 1)
        op = rng.randrange(5)
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] = rng.randrange(256)
        elif op == 1:
            buf[pos:pos] = rng.choice(SIP_TOKENS)
        elif op == 2:
            del buf[pos:pos + rng.randint(1, 64)]
        elif op == 3:
            buf[pos:pos] = buf[pos:pos + rng.randint(1, 200)] * rng.randint(1, 20)
        else:
            del buf[pos:]
    return bytes(buf)
