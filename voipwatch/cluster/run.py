"""analyze --cluster: the captures decoded on Dask workers, stitched and judged here.

`tcp://host:port` (or any address dask.distributed.Client takes) joins a running scheduler;
`local:N` starts a LocalCluster of N worker processes with one thread each, for this run only.
Workers open the capture paths themselves, so the paths must name the same files on every worker
(a shared filesystem). One task per file; a task that fails (a worker that died, a file it could not
read) costs that file only: it is named in summary.json's captures_failed and the run goes on.
"""
from __future__ import annotations

import contextlib
import time
from typing import Callable, Iterator

from voipwatch.analyze import AnalysisResult, analyze_files
from voipwatch.cluster.decode import FilePart, decode_capture, decoder_identity
from voipwatch.cluster.inputs import failure
from voipwatch.cluster.stitch import feed_parts
from voipwatch.config import Settings

class ClusterError(Exception):
    """The cluster could not be reached or started: names the address."""


def parse_local(address: str) -> int | None:
    """N of `local:N` (N >= 1), None for a scheduler address; ValueError for a bad `local:`."""
    if not address.startswith("local:"):
        return None
    n = address[len("local:"):]
    if not n.isdigit() or int(n) < 1:
        raise ValueError(f"--cluster local:N needs a number of workers >= 1, not {address!r}")
    return int(n)


@contextlib.contextmanager
def connect(address: str) -> Iterator:
    """A dask.distributed Client for `address` (see the module), closed (and a LocalCluster stopped) on exit."""
    from dask.distributed import Client, LocalCluster

    workers = parse_local(address)
    try:
        if workers is not None:
            # Loopback only; the scheduler's HTTP server on a free port (its default, 8787, may be taken).
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                   dashboard_address="127.0.0.1:0")
            client = Client(cluster)
        else:
            cluster, client = None, Client(address)    # waits distributed.comm.timeouts.connect (30 s)
    except (OSError, TimeoutError) as exc:
        raise ClusterError(f"cannot reach the Dask scheduler at {address}: {exc}") from exc
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def decode_on(client, paths: list[str]) -> tuple[list[FilePart], list[dict]]:
    """Every capture decoded by the cluster's workers, one task per file: the parts read, in the
    order of `paths`, and captures_failed entries for the others."""
    futures = client.map(decode_capture, paths, pure=False)
    parts, failed = [], []
    here = decoder_identity()
    for path, future in zip(paths, futures):
        try:
            part = future.result()
        except Exception as exc:          # noqa: BLE001 - a worker's failure costs this file only
            failed.append(failure(path, 0, f"decoding failed on the cluster: {type(exc).__name__}: {exc}"))
            continue
        if part.decoder != here:
            raise ClusterError(f"a worker decoded {path} with voipwatch {part.decoder[0]} and dissector plugins "
                               f"{list(part.decoder[1])}; this client has {here[0]} and {list(here[1])}: install "
                               "the same on every worker")
        if part.error is not None:
            failed.append(failure(path, part.offset, part.error))
        else:
            parts.append(part)
    return parts, failed


def analyze_on_cluster(paths: list[str], address: str, settings: Settings, jobs: int = 1,
                       timings: Callable[[dict], None] | None = None) -> tuple[AnalysisResult, list[dict]]:
    """analyze_files' result for `paths` decoded on the cluster at `address`, and captures_failed.
    `timings` receives the seconds spent decoding (wall, and summed over workers) and stitching."""
    started = time.perf_counter()
    with connect(address) as client:
        connected = time.perf_counter()
        parts, failed = decode_on(client, paths)
    decoded = time.perf_counter()
    result = analyze_files([p.path for p in parts], settings, "batch", None, jobs,
                           feed=lambda analyzer, rtp: feed_parts(parts, analyzer, rtp), failed=failed)
    result.summary["run_s"] = round(time.perf_counter() - started, 3)   # the cluster's part included
    if timings is not None:
        timings({"connect_s": connected - started, "decode_s": decoded - connected,
                 "worker_s": sum(p.seconds for p in parts), "client_s": time.perf_counter() - decoded})
    return result, failed
