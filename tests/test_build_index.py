"""tools.build.index through a real GGUF (Gemma 3 270M, small enough for CI) on a small real corpus: a killed build
resumes to exactly the uninterrupted result, and two merged shards equal a single build."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import edge._native  # noqa: F401  (loads onnxruntime before usearch)
from tools.models.cache import ModelCache, cache_root

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
GGUF = ModelCache(cache_root()).gemma3_270m_gguf
N_DOCS = 160

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not GGUF.exists(), reason="run `python -m tools.models fetch --only gemma3-270m` first"),
    pytest.mark.skipif(not DATA.exists(), reason="../shared/data is absent"),
]


def _cli(*args: str, cache: Path, corpus: bool = True, **kwargs) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "tools.build.index", *args, "--encoder", "gemma3-270m", "--cache-dir", str(cache),
           "--threads", "2"]
    if corpus:
        cmd += ["--corpus", "cmed-zh", "--limit", str(N_DOCS)]
    env = dict(os.environ, CARE_EDGE_CACHE=str(cache))
    models = ModelCache(cache_root()).models
    (cache / "models").mkdir(parents=True, exist_ok=True)
    for item in ("gemma-3-270m-q4_k_m.gguf", "manifest.json"):
        link = cache / "models" / item
        if not link.exists():
            link.symlink_to(models / item)
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def _run(*args: str, cache: Path, corpus: bool = True) -> str:
    proc = _cli(*args, cache=cache, corpus=corpus)
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err.decode()[-2000:]
    return out.decode()


def _vectors(collection: Path) -> tuple[list[str], np.ndarray]:
    from usearch.index import Index

    import sqlite3

    index = Index.restore(str(collection / "vectors.usearch"), view=True)
    with sqlite3.connect(collection / "docs.sqlite") as db:
        ids = [row[0] for row in db.execute("SELECT id FROM docs ORDER BY key")]
    return ids, np.stack([index.get(k) for k in range(len(ids))])


def _cached_vectors(cache: Path) -> dict[bytes, np.ndarray]:
    out: dict[bytes, np.ndarray] = {}
    for shard in sorted(cache.glob("vectors/*/shard-*.npz")):
        with np.load(shard) as data:
            for key, vec in zip(data["keys"], data["vectors"]):
                assert key.tobytes() not in out, "a text was embedded twice"
                out[key.tobytes()] = vec
    return out


@pytest.fixture(scope="module")
def single_build(tmp_path_factory) -> tuple[Path, Path]:
    cache = tmp_path_factory.mktemp("single")
    _run("build", "--out", str(cache / "collection"), "--dims", "256", "--dtype", "f32", cache=cache)
    return cache, cache / "collection"


def test_killed_build_resumes_to_identical_result(single_build, tmp_path):
    cache = tmp_path / "killed"
    cache.mkdir()
    proc = _cli("embed", "--checkpoint-every", "16", cache=cache)
    deadline = time.time() + 600
    while time.time() < deadline and not list(cache.glob("vectors/*/shard-*.npz")):
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    partial = _cached_vectors(cache)
    assert 0 < len(partial) < N_DOCS, f"kill landed outside the build ({len(partial)} of {N_DOCS})"
    # A kill mid-write leaves at most a temp file beside the shards, never a torn shard (every shard above loaded).
    # Plant a torn one: the resumed build must neither read it nor trip over it.
    shard_dir = next(cache.glob("vectors/*/shard-*.npz")).parent
    whole = sorted(shard_dir.glob("shard-*.npz"))[0].read_bytes()
    (shard_dir / "tmpkilled.tmp").write_bytes(whole[: len(whole) // 2])

    _run("build", "--out", str(cache / "collection"), "--dims", "256", "--dtype", "f32", cache=cache)
    resumed = _cached_vectors(cache)
    for key, vec in partial.items():  # nothing done before the kill was redone
        np.testing.assert_array_equal(resumed[key], vec)

    ids_a, vec_a = _vectors(single_build[1])
    ids_b, vec_b = _vectors(cache / "collection")
    assert ids_a == ids_b and len(set(ids_b)) == len(ids_b) == N_DOCS
    np.testing.assert_allclose(vec_a, vec_b, rtol=0, atol=1e-6)


def test_two_shards_merged_equal_single_build(single_build, tmp_path):
    shard_caches = []
    for i in range(2):
        cache = tmp_path / f"shard{i}"
        cache.mkdir()
        _run("embed", "--shard", f"{i}/2", cache=cache)
        shard_caches.append(cache)
    sizes = [len(_cached_vectors(c)) for c in shard_caches]
    assert all(s > 0 for s in sizes) and sum(sizes) == N_DOCS  # disjoint, complete

    merged = tmp_path / "merged"
    merged.mkdir()
    proc = subprocess.run([sys.executable, "-m", "tools.build.index", "merge-cache", *map(str, shard_caches),
                           "--cache-dir", str(merged)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(_run("build", "--out", str(merged / "collection"), "--dims", "256", "--dtype", "f32",
                          cache=merged).strip().splitlines()[-1])
    assert out["counts"]["documents"] == N_DOCS

    ids_a, vec_a = _vectors(single_build[1])
    ids_b, vec_b = _vectors(merged / "collection")
    assert ids_a == ids_b
    np.testing.assert_allclose(vec_a, vec_b, rtol=0, atol=1e-6)


def test_built_collection_loads_in_the_runtime(single_build):
    from edge.collection import Collection

    collection = Collection(single_build[1])
    assert collection.count == N_DOCS and collection.dims == 256
    manifest = collection.manifest
    assert manifest["document_encoder"]["kind"] == "gguf"
    assert manifest["document_encoder"]["prompt"] == "title: none | text: "
    collection.verify()


def test_seed_cache_refills_a_fresh_cache_from_a_full_dims_collection(tmp_path):
    source = tmp_path / "source"
    _run("build", "--out", str(source / "collection"), "--dims", "640", "--dtype", "f16", cache=source)
    fresh = tmp_path / "fresh"
    out = _run("seed-cache", str(source / "collection"), cache=fresh, corpus=False)
    assert f"{N_DOCS} vectors added" in out
    assert "embedded 0 texts" in _run("embed", cache=fresh)  # nothing left to embed
    _run("build", "--out", str(fresh / "collection"), "--dims", "640", "--dtype", "f16", cache=fresh)
    ids_a, vectors_a = _vectors(source / "collection")
    ids_b, vectors_b = _vectors(fresh / "collection")
    assert ids_a == ids_b
    np.testing.assert_allclose(vectors_a, vectors_b, atol=2e-3)


def test_seed_cache_refuses_a_truncated_collection(single_build, tmp_path):
    _, collection = single_build  # built at 256 of 640 dims
    proc = _cli("seed-cache", str(collection), cache=tmp_path, corpus=False)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode != 0
    assert "only a full-dims collection" in err.decode()
