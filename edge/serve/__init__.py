"""``care-edge serve``: a local search page and a small JSON API over the same objects ``care-edge search`` uses.

- :mod:`edge.serve.catalog`: finds every collection (index folder, user data folder) and opens it once, beside one
  shared query encoder;
- :mod:`edge.serve.api`: request parameters -> the JSON answers (the CLI's validation and one-line messages);
- :mod:`edge.serve.hierarchy`: parent and child codes of a code collection (ICD-10);
- :mod:`edge.serve.server`: the loopback HTTP server (Host/Origin checks, static files, limits);
- :mod:`edge.serve.loadtest`: concurrent clients against a running server (latency percentiles, errors, memory);
- ``static/``: the page (plain HTML, CSS and JavaScript; nothing is fetched from elsewhere).
"""
