"""One-off measurements, not part of the pipeline (``fusion_probe``, ``int8_check``, ``kernel_bench``,
``index_report``): each runs as its own module, e.g. ``python -m tools.experiments.kernel_bench``, and writes what it
measured. They may import any step; no step imports them."""
