"""``python -m edge`` runs the ``care-edge`` command line."""

from edge.cli import main

raise SystemExit(main())
