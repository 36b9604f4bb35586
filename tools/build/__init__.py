"""The build step: the GGUF document encoder and its text-keyed vector cache (``doc_encoder``), readers of that cache
for whole corpora (``vectors``), collections built from a corpus (``index``: ``python -m tools.build.index``) and
the pruned query-encoder vocabulary (``vocab``: ``python -m tools.build.vocab prune``)."""
