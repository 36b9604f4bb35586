"""The models step: fetch, verify, convert and cache the models care-edge is built from (``cache``), and the e5
4-bit decoder the conversion uses (``e5s1``). ``python -m tools.models fetch|verify|path``."""
