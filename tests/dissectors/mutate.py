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
