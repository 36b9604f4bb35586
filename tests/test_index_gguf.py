"""``care-edge index`` with real GGUF models (slow; needs `python -m tools.models fetch` and llama-cpp-python):
the shipped collections' document-encoder identity reproduced exactly, and a run killed with SIGKILL mid-embedding
that resumes without losing or re-embedding anything."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from index_docs import AMOXICILLIN, AMOXICILLIN_DOSE, GLAUCOMA, HYPERTENSION_ZH

from edge import formats as fmt
from edge.index.gguf import EMBEDDINGGEMMA_FILE, model_cache_root

REPO_ROOT = Path(__file__).resolve().parent.parent
PREBUILT = REPO_ROOT / "prebuilt_index"
MODELS = model_cache_root() / "models"
EMBEDDINGGEMMA = MODELS / EMBEDDINGGEMMA_FILE
GEMMA3_270M = MODELS / "gemma-3-270m-q4_k_m.gguf"


def _has_llama_cpp() -> bool:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True


pytestmark = [pytest.mark.slow, pytest.mark.skipif(not _has_llama_cpp(), reason="pip install 'care-edge[index]'")]


@pytest.mark.skipif(not EMBEDDINGGEMMA.is_file(), reason="run `python -m tools.models fetch --only embeddinggemma`")
def test_gguf_path_reproduces_the_shipped_document_encoder():
    from edge.collection import Collection
    from edge.index.gguf import GGUFEncoder

    encoder = GGUFEncoder(EMBEDDINGGEMMA, n_threads=2)
    for name in ("cmed-zh", "icd10"):
        shipped = fmt.read_manifest(PREBUILT / name, fmt.COLLECTION_FORMAT)
        assert encoder.identity == shipped["document_encoder"]
        assert fmt.alignment_id(encoder.identity) == shipped["alignment_id"]
    with Collection(PREBUILT / "cmed-zh") as collection:
        keys = list(range(0, collection.count, collection.count // 12))[:12]
        texts = [doc.text for doc in collection.fetch(keys)]
        shipped_vectors = np.asarray(collection.index.get(np.array(keys, dtype=np.uint64)), dtype=np.float32)
    ours = encoder.embed(texts).vectors
    shipped_vectors /= np.linalg.norm(shipped_vectors, axis=1, keepdims=True)
    assert np.sum(ours * shipped_vectors, axis=1).min() > 0.99  # the shipped vectors are stored as i8
    # Through the same i8 storage most rows come back bit for bit; the rest differ by a rounding flip (batches).
    from edge._native import Index

    index = Index(ndim=ours.shape[1], metric="cos", dtype="i8")
    index.add(np.arange(len(ours), dtype=np.uint64), ours)
    stored = np.asarray(index.get(np.arange(len(ours), dtype=np.uint64)), dtype=np.float32)
    stored /= np.linalg.norm(stored, axis=1, keepdims=True)
    cosines = np.sum(stored * shipped_vectors, axis=1)
    assert cosines.min() > 0.995, cosines


def _folder(root: Path, n: int) -> Path:
    folder = root / "docs"
    (folder / "first").mkdir(parents=True)
    (folder / "first" / "zh.txt").write_text(HYPERTENSION_ZH, encoding="utf-8")
    for i in range(n):
        (folder / f"note{i:03d}.md").write_text(
            f"# Note {i}\n\n{AMOXICILLIN} Case {i}.\n\n## Dose\n\n{AMOXICILLIN_DOSE} Patient {i}.\n\n{GLAUCOMA} {i}.",
            encoding="utf-8")
    return folder


def _cli(*args: object, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edge", "index", *map(str, args)], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _embedded(state: Path) -> int:
    with sqlite3.connect(state) as db:
        return db.execute("SELECT COUNT(*) FROM passages WHERE vector IS NOT NULL").fetchone()[0]


def _total(state: Path) -> int:
    with sqlite3.connect(state) as db:
        return db.execute("SELECT COUNT(*) FROM passages").fetchone()[0]


def _vectors(collection: Path) -> tuple[list, np.ndarray]:
    from edge.collection import Collection

    with Collection(collection) as c:
        ids = [d.id for d in c.fetch(list(range(c.count)))]
        return ids, np.asarray(c.index.get(np.arange(c.count, dtype=np.uint64)), dtype=np.float32)


@pytest.mark.skipif(not GEMMA3_270M.is_file(), reason="run `python -m tools.models fetch --only gemma3-270m`")
def test_kill_9_mid_embedding_loses_nothing(tmp_path):
    folder = _folder(tmp_path, 24)
    out = tmp_path / "col"
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), CARE_EDGE_GGUF=str(GEMMA3_270M))
    common = ("--out", out, "--passage-tokens", "64", "--overlap-tokens", "8", "--threads", "2", "--quiet")
    first = _cli(folder / "first", *common, env=env)
    assert first.wait(timeout=600) == 0, first.stderr.read()
    before_ids, before_vectors = _vectors(out)

    state = out.parent / f".{out.name}.index" / "state.sqlite"
    run = _cli(folder, *common, env=env)
    deadline = time.time() + 1200
    while _embedded(state) < 32 and time.time() < deadline:  # wait until batches are committed, then kill
        time.sleep(0.2)
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    kept = _embedded(state)
    assert 32 <= kept < _total(state)
    ids, vectors = _vectors(out)  # the previous collection, untouched and readable
    assert ids == before_ids and np.array_equal(vectors, before_vectors)

    resumed = _cli(folder, *common, "--json", env=env)
    stdout, stderr = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, stderr
    summary = json.loads(stdout.splitlines()[-1])["summary"]
    assert summary["passages_embedded"] == summary["passages_total"] - kept  # nothing embedded twice

    fresh_out = tmp_path / "fresh"
    fresh = _cli(folder, *common[2:], "--out", fresh_out, env=env)
    assert fresh.wait(timeout=900) == 0, fresh.stderr.read()
    fresh_ids, fresh_vectors = _vectors(fresh_out)
    ids, vectors = _vectors(out)
    assert ids == fresh_ids
    cosines = np.sum(vectors * fresh_vectors, axis=1) / (
        np.linalg.norm(vectors, axis=1) * np.linalg.norm(fresh_vectors, axis=1))
    assert cosines.min() > 0.99  # the same vectors, whichever run computed them (i8 storage)
