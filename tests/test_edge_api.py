"""The public API of ``edge``: the docstring example runs as written, ``__all__`` names it, and ``import edge``
(nor ``edge.formats`` / ``edge.writers``) loads neither onnxruntime nor usearch until one of its objects is used."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import edge

REPO_ROOT = Path(__file__).resolve().parent.parent
PREBUILT = REPO_ROOT / "prebuilt_index"


def _docstring_example() -> str:
    """The indented code block of edge's docstring, dedented."""
    block = edge.__doc__.split("::\n\n", 1)[1].split("\n\n", 1)[0]
    return "\n".join(line[4:] for line in block.splitlines())


def test_all_names_the_public_objects() -> None:
    assert edge.__all__ == ["Collection", "QueryEncoder", "SearchResponse", "SearchResult", "Searcher"]
    from edge.collection import Collection
    from edge.encoder import QueryEncoder
    from edge.search import SearchResponse, SearchResult, Searcher

    expected = [Collection, QueryEncoder, SearchResponse, SearchResult, Searcher]
    assert [getattr(edge, name) for name in edge.__all__] == expected
    assert not hasattr(edge, "open") and not hasattr(edge.Collection, "open") and not hasattr(edge.QueryEncoder, "open")
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        edge.Nope  # noqa: B018


@pytest.mark.skipif(not (PREBUILT / "cmed-zh" / "manifest.json").is_file(), reason="no shipped cmed-zh collection")
def test_docstring_example_runs_against_the_shipped_index(monkeypatch: pytest.MonkeyPatch) -> None:
    code = _docstring_example()
    assert re.search(r'Searcher\(Collection\(.*\), QueryEncoder\(.*\)\)', code)
    assert 'search("胸痛", k=3)' in code
    monkeypatch.chdir(REPO_ROOT)  # the example's paths are relative to the repository root
    namespace: dict = {}
    exec(code, namespace)
    response = namespace["response"]
    assert isinstance(response, edge.SearchResponse)
    assert response.query == "胸痛" and response.mode == "hybrid"  # cmed-zh searches hybrid by default
    assert len(response.results) == 3 and len({result.id for result in response.results}) == 3
    assert all(isinstance(result, edge.SearchResult) and result.text for result in response.results)


def test_import_edge_loads_no_native_library_until_used() -> None:
    code = (
        "import json, sys\n"
        "import edge\n"
        "import edge.files, edge.formats, edge.hybrid, edge.writers\n"  # what the offline tools read and write with
        "before = {name: name in sys.modules for name in ('onnxruntime', 'usearch', 'edge.search')}\n"
        "edge.Searcher\n"
        "after = {name: name in sys.modules for name in ('onnxruntime', 'usearch', 'edge.search')}\n"
        "print(json.dumps([before, after]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env,
                               cwd=REPO_ROOT, check=False)
    assert completed.returncode == 0, completed.stderr
    before, after = json.loads(completed.stdout)
    assert before == {"onnxruntime": False, "usearch": False, "edge.search": False}
    assert after == {"onnxruntime": True, "usearch": True, "edge.search": True}
