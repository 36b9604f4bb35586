"""Bounds on the numbers a user or a manifest hands to the native libraries, so that a huge value is a clear error
instead of an onnxruntime failure blamed on the model, a thread pool that cannot start, or an index call that never
returns."""

from __future__ import annotations

import os
from pathlib import Path

from edge.checks import parse_positive_int, positive_int
from edge.errors import ArtifactError, BadInput

# Concurrent callers in `bench` may exceed the CPUs (that is what the pass measures), within reason.
BENCH_THREADS_PER_CPU = 4
# HNSW expansion beyond this visits the whole graph of any collection care-edge builds, and only costs time.
MAX_EXPANSION_SEARCH = 1 << 16


def machine_cpus() -> int:
    """The machine's CPU count (``os.cpu_count()``; the affinity mask's size where that is unknown). Tools size their
    thread pools by ``os.cpu_count()``, so the bound admits that."""
    count = os.cpu_count()
    if count:
        return count
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return 1


def check_threads(value: object, option: str, maximum: int | None = None) -> int:
    """``value`` as a thread count from 1 to ``maximum`` (default: the machine's CPUs: more onnxruntime intra-op
    threads than CPUs only slow each query down); BadInput otherwise."""
    top = machine_cpus() if maximum is None else maximum
    value = positive_int(value, option)
    if value > top:
        raise BadInput(f"{option} must be at most {top} (this machine's CPUs), got {value}")
    return value


def parse_threads(text: str, option: str, maximum: int | None = None) -> int:
    """A command-line thread count (see :func:`check_threads`)."""
    return check_threads(parse_positive_int(text, option), option, maximum)


def bench_threads_limit() -> int:
    return BENCH_THREADS_PER_CPU * machine_cpus()


def checked_expansion_search(value: object, directory: str | os.PathLike[str]) -> int:
    """A manifest's ``index.expansion_search``; ArtifactError unless an integer from 1 to MAX_EXPANSION_SEARCH."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_EXPANSION_SEARCH:
        raise ArtifactError(
            f"{Path(directory) / 'manifest.json'}: index.expansion_search must be an integer from 1 to "
            f"{MAX_EXPANSION_SEARCH}, got {value!r}: rebuild the collection"
        )
    return value
