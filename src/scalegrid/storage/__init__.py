"""Results storage: a results root (path, file://, s3://, gs://) and the name of every path under it.

    results = layout("s3://bucket/x")             # parsed once; carried by every Trial
    results.write_bytes(results.stage_graph("quickstart"), data)

`layout.py` names the paths and does the I/O, `uri.py` parses roots, `local.py` publishes local
directories atomically, `checks.py` refuses unusable roots before anything is written.
"""

from scalegrid.storage.checks import check_readable, check_reachable, check_writable, materialised
from scalegrid.storage.layout import CACHE_MARKER, MODEL_MARKER, Parts, ResultsLayout, layout
from scalegrid.storage.local import atomic_dir, node_cache_dir
from scalegrid.storage.uri import OBJECT_STORES, absolute, first_line, is_uri, redacted

__all__ = [
    "CACHE_MARKER", "MODEL_MARKER", "OBJECT_STORES", "Parts", "ResultsLayout", "absolute", "atomic_dir", "check_readable",
    "check_reachable", "check_writable", "first_line", "is_uri", "layout", "materialised", "node_cache_dir", "redacted",
]
