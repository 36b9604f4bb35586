"""Entry point of the care-edge binary: the same ``main`` as the ``care-edge`` console script and ``python -m edge``."""

from edge.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
