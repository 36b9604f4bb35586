"""PyInstaller runtime hook: a silent stand-in for ``tqdm``, which the binary leaves out.

``usearch.index`` imports ``tqdm`` at module level but uses it only to draw a progress bar when a caller passes
``log=True`` to ``add`` or ``search``; the runtime never does. Registering this small module under the name ``tqdm``
lets usearch import without bundling the real package; should a progress bar ever be asked for, it counts silently.
"""

import sys
import types


class _SilentProgress:
    """The part of ``tqdm.tqdm`` that usearch calls: ``n``, ``update`` and ``close``; draws nothing."""

    def __init__(self, iterable=None, desc=None, total=None, unit="it", **_options):
        self.iterable = iterable
        self.desc = desc
        self.total = total
        self.unit = unit
        self.n = 0

    def update(self, n=1):
        self.n += n
        return True

    def close(self):
        pass

    def __iter__(self):
        for item in self.iterable if self.iterable is not None else ():
            self.n += 1
            yield item

    def __enter__(self):
        return self

    def __exit__(self, *_exc):
        self.close()
        return False


if "tqdm" not in sys.modules:
    _module = types.ModuleType("tqdm", "care-edge stand-in for tqdm: silent progress counting (see packaging/)")
    _module.tqdm = _SilentProgress
    _module.__version__ = "0+care-edge-stand-in"
    sys.modules["tqdm"] = _module
