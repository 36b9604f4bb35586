"""What the care-edge binary must not contain: the offline tools' dependencies and unused parts of the runtime's.

Used twice: as PyInstaller ``excludes`` by ``care-edge.spec``, and by ``build.py`` to check the built archive, so a
dependency that slips in through a new import fails the build instead of growing the binary.
"""

from __future__ import annotations

# The offline pipeline (pyproject extra ``tools``) and its heavy transitive dependencies.
TOOLS_DEPENDENCIES: tuple[str, ...] = (
    "tools",
    "torch",
    "torchvision",
    "torchaudio",
    "transformers",
    "tokenizers.tools",  # visualiser; pulls in IPython/HTML helpers
    "onnx",
    "onnxscript",
    "onnxconverter_common",
    "matplotlib",
    "bm25s",
    "sentencepiece",
    "safetensors",
    "gguf",
    "google.protobuf",
    "sympy",
    "mpmath",
    "scipy",
    "pandas",
    "PIL",
    "numba",
    "huggingface_hub",
    "networkx",
    "psutil",
    "cpuinfo",
    "py3nvml",
    "coloredlogs",
    "flatbuffers",
    "IPython",
    "pytest",
)

# Parts of the runtime dependencies that the runtime never imports: model tooling in onnxruntime, usearch's server,
# client, evaluation and numba JIT helpers.
UNUSED_RUNTIME_PARTS: tuple[str, ...] = (
    "onnxruntime.quantization",
    "onnxruntime.transformers",
    "onnxruntime.tools",
    "onnxruntime.training",
    "onnxruntime.backend",
    "onnxruntime.datasets",
    "usearch.server",
    "usearch.client",
    "usearch.eval",
    "usearch.numba",
    "yaml",  # numpy.__config__.show() only
    "numpy.f2py",
    "numpy.distutils",
    "numpy.testing",
)

# Standard-library parts with no use in a command-line search program.
UNUSED_STDLIB: tuple[str, ...] = (
    "tkinter",
    "unittest",
    "pydoc",
    "pydoc_data",
    "doctest",
    "lib2to3",
    "distutils",
    "setuptools",
    "pkg_resources",
    "pip",
    "xmlrpc",
    "curses",
    "idlelib",
    "turtle",
    "turtledemo",
    "sqlite3.test",
    # Nothing here talks TLS, runs an event loop or forks workers (bench uses threads); leaving these out also drops
    # their native extensions from what a onefile start must unpack, and PyInstaller's multiprocessing runtime hook.
    "ssl",
    "_ssl",
    "asyncio",
    "multiprocessing",
    "concurrent.futures.process",
)

EXCLUDED_MODULES: tuple[str, ...] = TOOLS_DEPENDENCIES + UNUSED_RUNTIME_PARTS + UNUSED_STDLIB

# What `care-edge index` needs beyond the search runtime: llama-cpp-python (its Python package imports jinja2 and
# diskcache at load time; its shared libraries are added by the spec), pypdf for PDFs, tqdm for the progress bar.
# Bundled by default, loaded only when `index` runs (search keeps the silent tqdm stand-in of rthooks/); a
# search-only build (`build.py --search-only`) leaves them out like the tools.
INDEX_DEPENDENCIES: tuple[str, ...] = ("llama_cpp", "jinja2", "markupsafe", "diskcache", "pypdf", "tqdm")


def is_excluded(module: str, excluded: tuple[str, ...] = EXCLUDED_MODULES) -> bool:
    """True when ``module`` (dotted name) is one of the excluded modules or inside one."""
    return any(module == name or module.startswith(name + ".") for name in excluded)
