"""Where a benchmark ran: the machine (CPU model, cores, the instruction sets the INT8 encoder and the i8 index use,
memory) and the software (Python and the runtime libraries), for ``care-edge bench --out``.

Everything here is best effort: a fact that cannot be read on this platform is ``None``, never an exception, so a
benchmark on macOS, Windows or inside a container still runs and says what it could not see. Linux reads
``/proc/cpuinfo`` and ``/proc/meminfo``; elsewhere the standard library's ``platform`` and ``os.sysconf`` answer
what they can (macOS and Windows then report no instruction sets: ``None``, unknown).
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any, Mapping

CPUINFO = Path("/proc/cpuinfo")
MEMINFO = Path("/proc/meminfo")

# Instruction sets that decide the speed of onnxruntime's INT8 MatMuls and of usearch's i8 distances, by the name
# the report uses -> the /proc/cpuinfo flags that show it (the kernel spells AVX-512 VNNI both ways over the years).
ISA_FLAGS: dict[str, tuple[str, ...]] = {
    "avx2": ("avx2",),
    "avx512f": ("avx512f",),
    "avx512_vnni": ("avx512_vnni", "avx512vnni"),
    "avx_vnni": ("avx_vnni",),
    "avx512_bf16": ("avx512_bf16",),
    "amx_tile": ("amx_tile",),
    "amx_int8": ("amx_int8",),
    # Arm: the dot-product and int8 matrix-multiply extensions play VNNI's role there.
    "asimddp": ("asimddp",),
    "i8mm": ("i8mm",),
}

# The packages whose versions change what a benchmark measures.
SOFTWARE_PACKAGES = ("onnxruntime", "usearch", "numpy", "tokenizers")


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def parse_cpuinfo(text: str) -> dict[str, Any]:
    """CPU model, flags and physical core count from the text of ``/proc/cpuinfo`` (x86 or Arm layout).
    ``flags`` is None when no processor block lists any (then the instruction sets are unknown, not absent)."""
    model: str | None = None
    flags: set[str] | None = None
    cores: set[tuple[str, str]] = set()
    physical_id = "0"
    for line in text.splitlines():
        key, separator, value = line.partition(":")
        if not separator:
            continue
        key, value = key.strip().lower(), value.strip()
        if key in ("model name", "cpu model", "hardware") and model is None and value:
            model = value
        elif key in ("flags", "features"):
            flags = (flags or set()) | set(value.split())
        elif key == "physical id":
            physical_id = value
        elif key == "core id":
            cores.add((physical_id, value))
    return {"model": model, "flags": flags, "physical_cores": len(cores) or None}


def isa_support(flags: set[str] | None) -> dict[str, bool | None]:
    """Each of :data:`ISA_FLAGS` -> True / False, or None for every one when the flags could not be read."""
    return {name: None if flags is None else any(flag in flags for flag in names) for name, names in ISA_FLAGS.items()}


def parse_meminfo_mb(text: str) -> int | None:
    """MemTotal of ``/proc/meminfo`` in MiB."""
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]) // 1024
    return None


def _memory_total_mb() -> int | None:
    text = _read_text(MEMINFO)
    if text is not None:
        found = parse_meminfo_mb(text)
        if found is not None:
            return found
    try:  # macOS and other POSIX systems
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // (1024 * 1024))
    except (AttributeError, ValueError, OSError):
        return None


def _usable_cpus() -> int | None:
    """CPUs this process may run on (a container's or taskset's limit), where the platform can tell."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def _load_average() -> list[float] | None:
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def machine_info() -> dict[str, Any]:
    """The machine facts of a bench report (the keys are documented in docs/BENCHMARKS.md)."""
    cpuinfo = _read_text(CPUINFO)
    parsed = parse_cpuinfo(cpuinfo) if cpuinfo is not None else {"model": None, "flags": None, "physical_cores": None}
    model = parsed["model"] or platform.processor() or None
    return {
        "cpu_model": model,
        "architecture": platform.machine() or None,
        "logical_cpus": os.cpu_count(),
        "physical_cores": parsed["physical_cores"],
        "usable_cpus": _usable_cpus(),
        "isa": isa_support(parsed["flags"]),
        "memory_total_mb": _memory_total_mb(),
        "os": platform.platform(),
        "load_average": _load_average(),
    }


def _package_version(module: Any, name: str) -> str | None:
    version = getattr(module, "__version__", None)
    if isinstance(version, str):
        return version
    try:  # a package without __version__; its metadata may be missing inside the binary, hence the None
        from importlib.metadata import PackageNotFoundError, version as metadata_version

        return metadata_version(name)
    except (ImportError, PackageNotFoundError):
        return None


def software_info(modules: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Python and the runtime libraries' versions, and how care-edge itself runs: ``"binary"`` (the PyInstaller
    single file) or ``"python"`` (``python -m edge`` / the installed ``care-edge`` script)."""
    import edge

    if modules is None:
        import numpy
        import tokenizers

        from edge._native import ort, usearch

        modules = {"onnxruntime": ort, "usearch": usearch, "numpy": numpy, "tokenizers": tokenizers}
    return {
        "care_edge": edge.__version__,
        "runner": "binary" if getattr(sys, "frozen", False) else "python",
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        **{name: _package_version(modules.get(name), name) for name in SOFTWARE_PACKAGES},
    }
