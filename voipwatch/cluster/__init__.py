"""Many captures, many machines: `voipwatch analyze --cluster` on Dask, and capture sets (directories).

Workers decode one capture file each (cluster.decode) and return a picklable FilePart; the client
merges the parts in capture-time order exactly as voipwatch.capture.read_captures merges files, and
feeds one Analyzer and the detectors (cluster.stitch), so that the outputs equal a one-process run.
"""
