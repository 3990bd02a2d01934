"""Other processes for the batch path (analyze --jobs): forked workers, results back through pipes.

Workers are forked, so they start at once and read the parent's data without copying it; only
their results are pickled. An exception in a worker is raised again in the parent.
"""
from __future__ import annotations

import multiprocessing
import pickle
import queue
import threading
import weakref
from collections import deque
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Sequence

_FORK = multiprocessing.get_context("fork")
# Bytes of pickled items a producing worker keeps ready while the consumer is busy (at least one item):
# enough for it to run well ahead of the consumer, and finish its own work early, on a typical capture.
AHEAD_BYTES = 64 << 20


class Producer:
    """The items of `source`, produced by a forked process while the caller consumes them.

    The source's `complete` flag is copied back once every item is consumed. Then the caller may put
    one question to the process: `answer(source, question)` runs there, on the state that producing
    the items (and then `settle(source)`, while the caller consumes the last items) left in the
    source, and its result comes back (the process then ends). Before that, the caller may `tell`
    the process notes at any time: once settled, it hands them to `hear(source, notes)`, every note
    that has arrived at once, in order. A Producer that is closed, or dropped, before the answer
    stops its process.
    """

    def __init__(self, source: Iterable, answer: Callable[[Any, Any], Any] | None = None,
                 settle: Callable[[Any], None] | None = None, hear: Callable[[Any, list], None] | None = None):
        self.source = source
        self.ended = False
        self._recv, send = _FORK.Pipe(duplex=False)
        question_recv, self._ask = _FORK.Pipe(duplex=False)
        # Not a daemon: answering may fork workers of its own (map_forked).
        self._worker = _FORK.Process(target=_produce, args=(source, _Replies(answer, settle, hear), send, question_recv,
                                                            (self._recv, self._ask)))
        self._worker.start()
        send.close()
        question_recv.close()
        self._stop = weakref.finalize(self, _stop, self._worker, self._recv, self._ask)

    def __iter__(self) -> Iterator[Any]:
        while not self.ended:
            kind, value = _receive(self._recv)
            if kind == "end":
                self.source.complete, self.ended = value, True
            else:
                yield value

    def tell(self, note: Any) -> None:
        """Send the producing process a note (it takes them as they come, so this never waits long)."""
        try:
            self._ask.send_bytes(pickle.dumps(("note", note), protocol=pickle.HIGHEST_PROTOCOL))
        except OSError:                   # it has ended: its error, if any, is the next item read
            pass

    def ask(self, question: Any) -> Any:
        """The answer of the producing process to `question`, once every item has been consumed."""
        if not self.ended:
            raise RuntimeError("ask() before every item was consumed")
        try:
            self._ask.send_bytes(pickle.dumps(("question", question), protocol=pickle.HIGHEST_PROTOCOL))
            return _receive(self._recv)[1]
        finally:
            self.close()

    def close(self) -> None:
        if not self.ended and self._worker.is_alive():
            self._worker.terminate()      # the rest of the items is not wanted
        self._stop()


def _stop(worker, recv, ask) -> None:
    ask.close()                           # a worker waiting for a question sees the end of its pipe
    if worker.is_alive():
        worker.join(timeout=0.1)
    if worker.is_alive():
        worker.terminate()
    worker.join()
    recv.close()


class _Replies(NamedTuple):
    """What a producing process does after its items (see Producer)."""
    answer: Callable[[Any, Any], Any] | None
    settle: Callable[[Any], None] | None
    hear: Callable[[Any, list], None] | None


def _produce(source: Iterable, replies: _Replies, send, question_recv, parent_ends) -> None:
    """Pickle the source's items for the pipe; a thread writes them, up to AHEAD_BYTES of them
    queued, so that the source goes on while the consumer is busy (a pipe holds 64 KiB). Another
    thread takes the notes and the question as they come. Then settle, hear the notes, answer."""
    for end in parent_ends:               # the parent's ends of the pipes: its closing them must show here
        end.close()
    out = _Outbox(AHEAD_BYTES)
    writer = threading.Thread(target=_write_all, args=(send, out))
    writer.start()
    inbox: queue.SimpleQueue = queue.SimpleQueue()
    threading.Thread(target=_read_all, args=(question_recv, inbox), daemon=True).start()
    answer = replies.answer
    failed: BaseException | None = None
    try:
        for item in source:
            out.put(pickle.dumps(("item", item), protocol=pickle.HIGHEST_PROTOCOL))
        out.put(pickle.dumps(("end", source.complete)))
        out.put(None)
    except ConsumerGone:
        return
    except BaseException as exc:          # noqa: BLE001 - handed to the parent, which raises it
        answer = None
        try:
            out.put(pickle.dumps(("error", exc)))
            out.put(None)
        except ConsumerGone:
            return
    try:
        if answer is not None and replies.settle is not None:
            try:
                replies.settle(source)
            except BaseException as exc:  # noqa: BLE001 - the answer to any question
                failed = exc
        writer.join()
        if answer is None:
            return
        for kind, value in _messages(inbox):
            if kind == "notes" and failed is None and replies.hear is not None:
                try:
                    replies.hear(source, value)
                except BaseException as exc:  # noqa: BLE001 - the answer to any question
                    failed = exc
            elif kind == "question":
                try:
                    if failed is not None:
                        raise failed
                    reply = ("answer", answer(source, value))
                except BaseException as exc:  # noqa: BLE001 - handed to the parent, which raises it
                    reply = ("error", exc)
                try:
                    send.send_bytes(pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL))
                except OSError:           # the parent is gone
                    pass
                return
    finally:
        send.close()


def _messages(inbox: queue.SimpleQueue) -> Iterator[tuple[str, Any]]:
    """("notes", [every note that has arrived]) as notes come, then ("question", question); nothing
    more once the parent has closed its end."""
    while True:
        kind, value = inbox.get()
        notes = []
        while kind == "note":
            notes.append(value)
            if inbox.empty():
                break
            kind, value = inbox.get()
        if notes:
            yield "notes", notes
        if kind == "question":
            yield kind, value
            return
        if kind == "end":
            return


def _read_all(recv, inbox: queue.SimpleQueue) -> None:
    """Every (kind, value) message of the parent, then ("end", None) when it closes its end."""
    while True:
        try:
            inbox.put(pickle.loads(recv.recv_bytes()))
        except (EOFError, OSError):
            inbox.put(("end", None))
            return


class _Outbox:
    """Messages between two threads, in order; put() waits while `limit` bytes or more are waiting,
    and raises ConsumerGone once the reading thread has given up (the parent is gone)."""

    def __init__(self, limit: int):
        self.limit = limit
        self._messages: deque[bytes | None] = deque()
        self._bytes = 0
        self._changed = threading.Condition()
        self.gone = False

    def put(self, message: bytes | None) -> None:
        size = len(message) if message is not None else 0
        with self._changed:
            self._changed.wait_for(lambda: self.gone or self._bytes < self.limit or not self._messages)
            if self.gone:
                raise ConsumerGone
            self._messages.append(message)
            self._bytes += size
            self._changed.notify_all()

    def get(self) -> bytes | None:
        with self._changed:
            self._changed.wait_for(lambda: self._messages)
            message = self._messages.popleft()
            self._bytes -= len(message) if message is not None else 0
            self._changed.notify_all()
            return message


    def give_up(self) -> None:
        with self._changed:
            self.gone = True
            self._changed.notify_all()


class ConsumerGone(Exception):
    """The process the items were for has closed its end (it ended, or was killed)."""


def _write_all(send, out: _Outbox) -> None:
    try:
        while (message := out.get()) is not None:
            send.send_bytes(message)
    except OSError:                       # the parent closed its end: nothing more to produce for
        out.give_up()


def forked(fn: Callable[[], Any]) -> Callable[[], Any]:
    """fn() run by a forked process from now on; the returned function waits for its result (call it once)."""
    recv, send = _FORK.Pipe(duplex=False)
    worker = _FORK.Process(target=_map_part, args=(lambda _: fn(), [None], send), daemon=True)
    worker.start()
    send.close()

    def result() -> Any:
        with recv:
            value = _receive(recv)[1][0]
        worker.join()
        return value
    return result


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
