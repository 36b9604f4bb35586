"""The native libraries, loaded in the one order that works.

usearch 2.26's extension (statically linked libstdc++, loaded after NumKong with RTLD_GLOBAL) makes onnxruntime
1.31's extension crash with SIGSEGV inside std::codecvt when onnxruntime is imported *after* it; imported before,
both work. Every edge module takes onnxruntime and usearch from here so the order holds for any import path.
"""

from __future__ import annotations

import os
import sys

# onnxruntime 1.31 queues telemetry events for upload by default; an offline medical tool sends nothing.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

if "usearch.compiled" in sys.modules and "onnxruntime" not in sys.modules:
    # Importing onnxruntime now would kill the process; fail with a message instead.
    raise ImportError(
        "usearch was imported before onnxruntime, which crashes onnxruntime at import: "
        "import edge._native (or onnxruntime) before usearch"
    )

import onnxruntime as ort  # noqa: E402  (must precede usearch)
import usearch  # noqa: E402
from usearch.index import Index, MetricKind  # noqa: E402

USEARCH_VERSION: str = usearch.__version__

__all__ = ["Index", "MetricKind", "USEARCH_VERSION", "ort"]
