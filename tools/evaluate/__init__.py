"""The evaluate step: systems (BM25, e5, the LLM, CARE, their fusion, the shipped runtime) on the tasks of
``tools.data.tasks``, scored by ``metrics`` and ``probes``, written as JSON, Markdown and a plot (``report``).
``python -m tools.evaluate``; ``python -m tools.evaluate.report REPORT.json`` re-renders a report."""
