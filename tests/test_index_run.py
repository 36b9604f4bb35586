"""``care-edge index`` end to end with the shipped query encoder as document encoder (``--encoder query``: real
model, seconds): bad input, incremental runs equal to a fresh build, interrupted runs, the CLI and search."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from pathlib import Path

import pytest

from index_docs import (
    AMOXICILLIN, AMOXICILLIN_DOSE, DIABETES_ZH, GLAUCOMA, HYPERTENSION_ZH, write_docx, write_encrypted_pdf, write_pdf,
)

from edge.collection import Collection
from edge.encoder import QueryEncoder
from edge.errors import BadInput
from edge.index import publish
from edge.index.chunk import ChunkSettings
from edge.index.run import FileEvent, IndexOptions, index_folders
from edge.search import Searcher

REPO_ROOT = Path(__file__).resolve().parent.parent
PREBUILT = REPO_ROOT / "prebuilt_index"
SHIPPED_ENCODER = PREBUILT / "query_encoder"

pytestmark = pytest.mark.skipif(not (SHIPPED_ENCODER / "model.onnx").is_file(), reason="no shipped query encoder")

QUERIES = ["amoxicillin dose for children", "glaucoma optic nerve", "高血压 饮食", "糖尿病 血糖"]


def make_folder(root: Path) -> Path:
    (root / "guides" / "zh").mkdir(parents=True)
    (root / "guides" / "amox.md").write_text(
        f"# Amoxicillin\n\n{AMOXICILLIN}\n\n## Dosage\n\n{AMOXICILLIN_DOSE}\n", encoding="utf-8")
    (root / "guides" / "glaucoma.html").write_text(f"<h1>Glaucoma</h1><p>{GLAUCOMA}</p>", encoding="utf-8")
    (root / "guides" / "zh" / "gaoxueya.txt").write_bytes(f"{HYPERTENSION_ZH}\n".encode("gb18030"))
    (root / "guides" / "zh" / "tangniaobing.txt").write_bytes(f"{DIABETES_ZH}\n".encode("utf-16"))
    write_docx(root / "guides" / "formulary.docx", [("Amoxicillin", [AMOXICILLIN_DOSE])])
    write_pdf(root / "guides" / "leaflet.pdf", [["Glaucoma leaflet", GLAUCOMA[:80]], [GLAUCOMA[80:]]])
    return root / "guides"


def run(folder: Path, out: Path, events: list | None = None, **overrides) -> object:
    options = IndexOptions(folders=[str(folder)], collection_path=out, name=out.name, encoder="query",
                           query_encoder_dir=SHIPPED_ENCODER, progress=False, **overrides)
    sink = events if events is not None else []
    return index_folders(options, sink.append)


def results(collection_path: Path, mode: str) -> list[list[tuple[str, str]]]:
    with Collection(collection_path) as collection:
        searcher = Searcher(collection, QueryEncoder(SHIPPED_ENCODER))
        return [[(r.id, r.text) for r in searcher.search(q, k=5, mode=mode).results] for q in QUERIES]


def collection_rows(collection_path: Path) -> list[tuple]:
    with sqlite3.connect(collection_path / "docs.sqlite") as db:
        return db.execute("SELECT id, text, meta FROM docs ORDER BY key").fetchall()


def test_index_then_search_with_sources(tmp_path):
    folder = make_folder(tmp_path)
    out = tmp_path / "out" / "mine"
    out.parent.mkdir()
    summary = run(folder, out)
    assert summary.indexed == 6 and summary.skipped == 0 and summary.written
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["document_encoder"]["kind"] == "onnx"
    shipped = json.loads((SHIPPED_ENCODER / "manifest.json").read_text())
    assert manifest["alignment_id"] != shipped["alignment"]["alignment_id"]  # never mixed with GGUF vectors
    top = results(out, "hybrid")
    assert "amox" in top[0][0][0] or "formulary" in top[0][0][0]
    assert "glaucoma" in top[1][0][0] or "leaflet" in top[1][0][0]
    assert "gaoxueya" in top[2][0][0] and "tangniaobing" in top[3][0][0]
    assert results(out, "dense")[2][0][0].endswith("gaoxueya.txt#0")
    metas = {row[0]: json.loads(row[2]) for row in collection_rows(out)}
    pdf = [m for i, m in metas.items() if "leaflet.pdf" in i]
    assert sorted(m["page"] for m in pdf) == [1, 2] and all(m["file"].endswith("leaflet.pdf") for m in pdf)
    assert metas[f"{folder / 'amox.md'}#1"]["headings"] == ["Amoxicillin", "Dosage"]


def test_bad_input_is_skipped_with_one_line_each(tmp_path):
    folder = make_folder(tmp_path)
    bad = folder / "bad"
    bad.mkdir()
    write_encrypted_pdf(bad / "locked.pdf", folder / "leaflet.pdf")
    write_pdf(bad / "scan.pdf", [[]])
    (bad / "corrupt.pdf").write_bytes(b"%PDF-1.4\n" + os.urandom(2000))
    (bad / "photo.txt").write_bytes(bytes(range(256)) * 40)
    with open(bad / "huge.txt", "wb") as handle:  # a 1 GiB file (sparse: no disk used)
        handle.truncate(1 << 30)
    os.mkfifo(bad / "pipe.txt")  # would block a naive reader forever
    (bad / "loop").symlink_to("..")  # a symlink loop
    (bad / "dangling.md").symlink_to(bad / "nowhere.md")
    (bad / "copy.md").write_bytes((folder / "amox.md").read_bytes())  # a duplicate
    (bad / "empty.txt").write_text("\n\n  \n", encoding="utf-8")
    events: list[FileEvent] = []
    summary = run(folder, tmp_path / "c", events)
    reasons = {Path(e.path).name: e.reason for e in events if e.status == "skipped"}
    assert "encrypted PDF" in reasons["locked.pdf"]
    assert reasons["scan.pdf"].startswith("no text: OCR not supported")
    assert "corrupt PDF" in reasons["corrupt.pdf"] or "no text" in reasons["corrupt.pdf"]
    assert "binary" in reasons["photo.txt"]
    assert "cap per file" in reasons["huge.txt"]
    assert reasons["pipe.txt"] == "not a regular file"
    assert reasons["dangling.md"] == "broken symlink"
    assert reasons["empty.txt"] == "no text"
    duplicates = [e for e in events if e.status == "duplicate"]
    assert [Path(e.path).name for e in duplicates] == ["copy.md"]
    assert summary.indexed == 6 and summary.skipped == len(reasons) == 8 and summary.duplicates == 1
    with sqlite3.connect(tmp_path / "c" / "docs.sqlite") as db:
        amox = [json.loads(m) for (m,) in db.execute("SELECT meta FROM docs WHERE id LIKE '%amox.md#%'")]
    assert amox and all(m["duplicates"] == [str(bad / "copy.md")] for m in amox)  # embedded once, both named
    # Walking the loop did not index anything twice.
    assert len({r[0] for r in collection_rows(tmp_path / "c")}) == len(collection_rows(tmp_path / "c"))


def test_incremental_runs_equal_a_fresh_build(tmp_path):
    folder = make_folder(tmp_path)
    out = tmp_path / "inc"
    first = run(folder, out)
    again = run(folder, out)
    assert again.passages_embedded == 0 and not again.written and again.unchanged == 6
    (folder / "glaucoma.html").unlink()
    (folder / "amox.md").write_text(f"# Amoxicillin\n\n{AMOXICILLIN}\n\n## Allergy\n\nDo not use with a "
                                    "penicillin allergy.\n", encoding="utf-8")
    (folder / "zh" / "new.txt").write_text("胸痛伴呼吸困难应尽快就医。", encoding="utf-8")
    os.utime(folder / "formulary.docx")  # touched, not changed: not embedded again
    changed = run(folder, out)
    assert changed.written and changed.indexed == 3 and changed.removed_files == 1 and changed.unchanged == 3
    assert changed.passages_embedded == changed.passages_added == 3  # amox.md (2) + new.txt (1), nothing else
    assert changed.passages_removed == 3  # glaucoma.html (1) + the old amox.md (2)
    assert changed.passages_total == first.passages_total
    fresh = run(folder, tmp_path / "fresh")
    assert collection_rows(out) == collection_rows(tmp_path / "fresh")
    for mode in ("dense", "hybrid"):
        assert results(out, mode) == results(tmp_path / "fresh", mode)
    assert fresh.passages_embedded == fresh.passages_total


def test_interrupted_embedding_resumes_and_keeps_the_old_collection(tmp_path, monkeypatch):
    folder = make_folder(tmp_path)
    out = tmp_path / "col"
    (folder / "extra").mkdir()
    run(folder / "zh", out)  # a first, small collection
    before = collection_rows(out)
    long_text = "\n\n".join(f"Paragraph {i}: {GLAUCOMA[:70]}" for i in range(200))
    (folder / "extra" / "long.txt").write_text(long_text, encoding="utf-8")

    from edge.index import run as run_module

    calls = {"n": 0}
    original = run_module.IndexState.store_vectors

    def crash_after_two(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt  # what a Ctrl-C (or a kill) mid-embedding looks like to the state
        return original(self, *args, **kwargs)

    monkeypatch.setattr(run_module.IndexState, "store_vectors", crash_after_two)
    small = ChunkSettings(64, 8)  # many short passages: several committed batches, quickly
    with pytest.raises(KeyboardInterrupt):
        run(folder, out, chunk=small, rebuild=True)
    monkeypatch.undo()
    assert collection_rows(out) == before  # still the previous collection, still searchable
    assert results(out, "dense")
    resumed = run(folder, out, chunk=small)
    assert resumed.passages_embedded == resumed.passages_total - 2 * run_module.EMBED_BATCH
    run(folder, tmp_path / "fresh", chunk=small)
    assert collection_rows(out) == collection_rows(tmp_path / "fresh")


def test_a_failed_write_leaves_the_previous_collection(tmp_path, monkeypatch):
    folder = make_folder(tmp_path)
    out = tmp_path / "col"
    run(folder / "zh", out)
    before = collection_rows(out)

    def broken_write(directory, **kwargs):
        (Path(directory) / "docs.sqlite").write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(publish.writers, "write_collection", broken_write)
    with pytest.raises(OSError):
        run(folder, out)
    monkeypatch.undo()
    assert collection_rows(out) == before
    assert len(list(publish.work_dir_for(out).glob("gen-*"))) == 2  # the half-written generation
    summary = run(folder, out)
    assert summary.written and summary.passages_embedded == 0  # the vectors were kept in the state
    assert [p.name for p in publish.work_dir_for(out).glob("gen-*")] == [os.readlink(out).split("/")[-1]]


def test_settings_change_needs_rebuild_and_destination_is_protected(tmp_path):
    folder = make_folder(tmp_path)
    out = tmp_path / "col"
    run(folder / "zh", out)
    with pytest.raises(BadInput, match="--rebuild"):
        run(folder / "zh", out, chunk=ChunkSettings(128, 16))
    someone = tmp_path / "theirs"
    someone.mkdir()
    with pytest.raises(BadInput, match="not made by `care-edge index`"):
        run(folder, someone)
    with pytest.raises(BadInput, match="no passages"):
        (tmp_path / "nothing").mkdir()
        run(tmp_path / "nothing", tmp_path / "empty")


def test_cli_index_into_a_name_then_search_it(tmp_path, run_cli):
    folder = make_folder(tmp_path)
    (folder / "photo.txt").write_bytes(bytes(range(256)) * 40)
    env = {"CARE_EDGE_COLLECTIONS_DIR": str(tmp_path / "collections")}
    result = run_cli("index", folder, "--into", "guides", "--encoder", "query", "--json", prebuilt=PREBUILT, env=env,
                     timeout=300)
    assert result.returncode == 4, result.stderr  # written, but a file was skipped
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert {"file": str(folder / "photo.txt"), "status": "skipped", "passages": 0,
            "reason": "binary content (NUL bytes): not a text file"} in lines
    summary = lines[-1]["summary"]
    assert summary["indexed"] == 6 and summary["skipped"] == 1 and summary["skipped_reasons"] == {"binary content": 1}
    for mode in ("hybrid", "dense"):
        found = run_cli("search", "amoxicillin dose for children", "--index", "guides", "--mode", mode, "-k", "3",
                        prebuilt=PREBUILT, env=env)
        assert found.returncode == 0, found.stderr
        assert f"from {folder / 'amox.md'}, Amoxicillin > Dosage, chars" in found.stdout or \
            f"from {folder / 'formulary.docx'}" in found.stdout
    again = run_cli("index", folder, "--into", "guides", "--encoder", "query", prebuilt=PREBUILT, env=env)
    assert again.returncode == 4 and "unchanged, not rewritten" in again.stdout


def test_cli_no_gguf_is_one_line_and_exit_2(tmp_path, run_cli):
    folder = make_folder(tmp_path)
    env = {"CARE_EDGE_COLLECTIONS_DIR": str(tmp_path / "c"), "CARE_EDGE_CACHE": str(tmp_path / "no-cache"),
           "CARE_EDGE_GGUF": ""}
    result = run_cli("index", folder, "--into", "x", prebuilt=PREBUILT, env=env)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert str(tmp_path / "no-cache" / "models" / "embeddinggemma-300m-q8_0.gguf") in result.stderr
    assert "tools.models fetch" in result.stderr


def test_search_runtime_never_loads_llama_cpp_or_extractors(tmp_path, run_cli):
    code = ("import sys, edge.cli; edge.cli.main(['search', 'chest pain', '-k', '1']); "
            "print(sorted(m for m in ('llama_cpp', 'pypdf', 'edge.index.run', 'edge.index.gguf') if m in sys.modules))")
    env = dict(os.environ, CARE_EDGE_INDEX_DIR=str(PREBUILT), PYTHONPATH=str(REPO_ROOT))
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO_ROOT,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_user_collections_dir_follows_the_environment(monkeypatch, tmp_path):
    from edge.paths import resolve_collection_dir, user_collections_dir

    monkeypatch.delenv("CARE_EDGE_COLLECTIONS_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert user_collections_dir() == tmp_path / "xdg" / "care-edge" / "collections"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert user_collections_dir() == tmp_path / "home" / ".local" / "share" / "care-edge" / "collections"
    monkeypatch.setenv("CARE_EDGE_COLLECTIONS_DIR", str(tmp_path / "mine"))
    assert user_collections_dir() == tmp_path / "mine"
    (tmp_path / "mine" / "notes").mkdir(parents=True)
    monkeypatch.setenv("CARE_EDGE_INDEX_DIR", str(PREBUILT))
    assert resolve_collection_dir("notes") == tmp_path / "mine" / "notes"
    assert resolve_collection_dir("icd10") == PREBUILT / "icd10"  # the shipped name wins
