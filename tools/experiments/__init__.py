"""One-off measurements, not part of the pipeline: each is ``python -m tools.experiments.NAME`` and records what it
measured (docs/experiments.md). They may import any step; no step imports them."""
