"""Other processes for the batch path (analyze --jobs): forked workers, results back through pipes.

Workers are forked, so they start at once and read the parent's data without copying it; only
their results are pickled. An exception in a worker is raised again in the parent.
"""
from __future__ import annotations

import multiprocessing
import pickle
import queue
import threading
from typing import Any, Callable, Iterable, Iterator, Sequence

_FORK = multiprocessing.get_context("fork")
AHEAD = 8                  # items a producing worker keeps ready while the consumer is busy


def scanned_elsewhere(reader: Iterable) -> Iterator[Any]:
    """The items of `reader` (a fastpath.ChunkReader), produced by a forked process while the caller
    consumes them; the reader's `complete` flag is copied back at the end."""
    recv, send = _FORK.Pipe(duplex=False)
    worker = _FORK.Process(target=_produce, args=(reader, send), daemon=True)
    worker.start()
    send.close()
    ended = False
    try:
        while not ended:
            kind, value = _receive(recv)
            if kind == "end":
                reader.complete, ended = value, True
            else:
                yield value
    finally:
        if not ended:                     # the consumer stopped early: the rest is not wanted
            worker.terminate()
        worker.join()
        recv.close()


def _produce(reader: Iterable, send) -> None:
    """Pickle the reader's items for the pipe; a thread writes them, up to AHEAD of them queued, so
    that the reader goes on while the consumer is busy (a pipe holds 64 KiB)."""
    out: queue.Queue = queue.Queue(maxsize=AHEAD)
    writer = threading.Thread(target=_write_all, args=(send, out))
    writer.start()
    try:
        for item in reader:
            out.put(pickle.dumps(("item", item), protocol=pickle.HIGHEST_PROTOCOL))
        out.put(pickle.dumps(("end", reader.complete)))
    except BaseException as exc:          # noqa: BLE001 - handed to the parent, which raises it
        out.put(pickle.dumps(("error", exc)))
    finally:
        out.put(None)
        writer.join()
        send.close()


def _write_all(send, out: queue.Queue) -> None:
    while (message := out.get()) is not None:
        send.send_bytes(message)


def map_forked(fn: Callable[[Any], Any], items: Sequence, jobs: int) -> list:
    """[fn(item) for item in items], the items dealt round-robin to this process and jobs - 1 forked ones."""
    jobs = min(jobs, len(items))
    if jobs <= 1:
        return [fn(item) for item in items]
    workers = []
    for k in range(1, jobs):
        recv, send = _FORK.Pipe(duplex=False)
        worker = _FORK.Process(target=_map_part, args=(fn, items[k::jobs], send), daemon=True)
        worker.start()
        send.close()
        workers.append((k, recv, worker))
    results: list = [None] * len(items)
    results[0::jobs] = [fn(item) for item in items[0::jobs]]
    for k, recv, worker in workers:
        with recv:
            results[k::jobs] = _receive(recv)[1]
        worker.join()
    return results


def _map_part(fn: Callable[[Any], Any], items: Sequence, send) -> None:
    try:
        send.send_bytes(pickle.dumps(("result", [fn(item) for item in items]), protocol=pickle.HIGHEST_PROTOCOL))
    except BaseException as exc:          # noqa: BLE001 - handed to the parent, which raises it
        send.send_bytes(pickle.dumps(("error", exc)))
    finally:
        send.close()


def _receive(recv) -> tuple[str, Any]:
    try:
        kind, value = pickle.loads(recv.recv_bytes())
    except EOFError:
        raise RuntimeError("a worker process ended without a result") from None
    if kind == "error":
        raise value
    return kind, value
