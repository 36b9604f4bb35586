"""Shared test fixtures: no network, and tiny artifacts built in-process (no model download, no real data).

Reusable fixtures:

- ``tiny``: a session-scoped :class:`TinyArtifacts` — a tiny WordPiece tokenizer + random BERT-like ONNX query encoder
  (in-graph mean pool -> projection -> L2 norm, output ``embedding``), a ~200-document collection written through
  ``edge.writers.write_collection`` with vectors from that encoder, and a ``prebuilt_index``-style directory with
  ``default.json`` pointing at both. Read-only: copy before modifying (``tiny_copy``).
- ``tiny_copy``: a per-test copy of ``tiny``'s prebuilt directory that a test may corrupt.
- ``build_encoder`` / ``build_collection``: the builder functions, for tests that need variants.
- ``run_cli``: runs ``python -m edge ...`` in a subprocess against the tiny prebuilt dir.

Under ``CI=true`` (or ``1``) a skipped test fails: a skip there means a missing resource (``../shared/data``, a fetched
model, the tools extra, the built binary) that CI must provide, and a silent skip would hide that the test never ran.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import edge.encoder  # noqa: E402  (loads onnxruntime before usearch: see edge/_native.py)
from edge import formats, writers  # noqa: E402
from edge.files import atomic_write_json, sha256_file
from tools.provenance import created_info

# --------------------------------------------------------------------------------------------------- no network


class NetworkUsed(RuntimeError):
    pass


def _refuse(*args: object, **kwargs: object) -> None:
    raise NetworkUsed(f"a test tried to open a network connection: {args!r}")


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any outgoing connection (or DNS lookup) in the test process fails the test."""
    monkeypatch.setattr(socket.socket, "connect", _refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", _refuse)
    monkeypatch.setattr(socket, "create_connection", _refuse)
    monkeypatch.setattr(socket, "getaddrinfo", _refuse)


_STAMP_CACHE = Path(tempfile.mkdtemp(prefix="care-edge-stamps-"))


def pytest_configure(config: pytest.Config) -> None:
    """Verified stamps (edge.integrity) go to a scratch directory, never the user's cache, from the first fixture on
    (session fixtures open artifacts too); subprocesses inherit it."""
    os.environ["CARE_EDGE_CACHE_DIR"] = str(_STAMP_CACHE)


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_STAMP_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def stamp_cache_dir() -> Path:
    return _STAMP_CACHE


# A sitecustomize.py that gives subprocesses the same guard; its presence on PYTHONPATH arms it.
SOCKET_GUARD_SOURCE = '''
import socket

def _refuse(*args, **kwargs):
    raise OSError("network access is forbidden in care-edge tests")

socket.socket.connect = _refuse
socket.socket.connect_ex = _refuse
socket.create_connection = _refuse
socket.getaddrinfo = _refuse
'''

# --------------------------------------------------------------------------------------------------- CI: no silent skips

CI = os.environ.get("CI", "").strip().lower() in ("true", "1")
# Test modules that cannot even be imported without the tools extra (torch at module level): when the -m expression
# leaves out `needs_tools` (`make test`), they are not collected at all instead of being skipped at import.
TOOLS_ONLY_MODULES = frozenset({"test_train.py"})


def _deselects_needs_tools(config: pytest.Config) -> bool:
    expression = config.getoption("markexpr", "") or ""
    if not expression:
        return False
    from _pytest.mark.expression import Expression

    return not Expression.compile(expression).evaluate(lambda name, **kwargs: name == "needs_tools")


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path.name in TOOLS_ONLY_MODULES and _deselects_needs_tools(config):
        return True
    return None


def _skip_reason(longrepr: Any) -> str:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def _fail_skip_under_ci(report: pytest.CollectReport | pytest.TestReport) -> None:
    if CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = _skip_reason(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, where every test must run: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    _fail_skip_under_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):  # type: ignore[no-untyped-def]
    outcome = yield
    _fail_skip_under_ci(outcome.get_result())


# --------------------------------------------------------------------------------------------------- tokenizer

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
WORDS = (
    "query passage fever cough headache nausea chest pain blood pressure diabetes insulin asthma inhaler "
    "allergy rash infection antibiotic virus vaccine heart lung kidney liver stomach ulcer migraine stroke "
    "cancer tumor dose tablet child adult pregnancy sleep fatigue dizziness anemia iron vitamin diet exercise "
    "surgery fracture bone joint arthritis thyroid hormone skin eye ear throat dental tooth weight obesity "
    "symptom treatment diagnosis chronic acute severe mild daily night morning what how is the of for with and"
).split()
CJK_CHARS = list("头痛发烧咳嗽胃肠肝肾心肺血压糖尿病药物治疗症状医生检查感冒过敏皮疹儿童孕妇睡眠疲劳")
PUNCT = [":", "?", ",", "."]
VOCAB: list[str] = SPECIAL_TOKENS + WORDS + CJK_CHARS + PUNCT


def write_tokenizer(path: Path) -> None:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = {token: index for index, token in enumerate(VOCAB)}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True, handle_chinese_chars=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    tokenizer.save(str(path))


# --------------------------------------------------------------------------------------------------- ONNX model


def write_tiny_onnx(
    path: Path,
    *,
    vocab_size: int,
    hidden: int = 24,
    dims: int = 32,
    output: str = "embedding",
    seed: int = 0,
) -> None:
    """A random BERT-like graph. ``output="embedding"``: Gather -> mask-weighted mean -> MatMul -> L2 norm, shape
    [batch, dims]. ``output="last_hidden_state"``: also takes token_type_ids; Gather + type embedding -> MatMul ->
    Tanh, shape [batch, seq, dims] (the runtime pools it)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    initializers = [
        numpy_helper.from_array(rng.standard_normal((vocab_size, hidden)).astype(np.float32), "word_embeddings"),
        numpy_helper.from_array((rng.standard_normal((hidden, dims)) / np.sqrt(hidden)).astype(np.float32), "proj"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
        numpy_helper.from_array(np.array([2], dtype=np.int64), "axis2"),
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one"),
        numpy_helper.from_array(np.array(1e-12, dtype=np.float32), "eps"),
    ]
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
    ]
    nodes = [helper.make_node("Gather", ["word_embeddings", "input_ids"], ["emb"], axis=0)]
    if output == "embedding":
        nodes += [
            helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["maskf", "axis2"], ["mask3"]),
            helper.make_node("Mul", ["emb", "mask3"], ["masked"]),
            helper.make_node("ReduceSum", ["masked", "axis1"], ["summed"], keepdims=0),
            helper.make_node("ReduceSum", ["maskf", "axis1"], ["count"], keepdims=1),
            helper.make_node("Max", ["count", "one"], ["count_safe"]),
            helper.make_node("Div", ["summed", "count_safe"], ["mean"]),
            helper.make_node("MatMul", ["mean", "proj"], ["projected"]),
            helper.make_node("Mul", ["projected", "projected"], ["squared"]),
            helper.make_node("ReduceSum", ["squared", "axis1"], ["sum_sq"], keepdims=1),
            helper.make_node("Sqrt", ["sum_sq"], ["norm"]),
            helper.make_node("Max", ["norm", "eps"], ["norm_safe"]),
            helper.make_node("Div", ["projected", "norm_safe"], ["embedding"]),
        ]
        outputs = [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", dims])]
    elif output == "last_hidden_state":
        initializers.append(
            numpy_helper.from_array(rng.standard_normal((2, hidden)).astype(np.float32), "type_embeddings")
        )
        inputs.append(helper.make_tensor_value_info("token_type_ids", TensorProto.INT64, ["batch", "seq"]))
        nodes += [
            helper.make_node("Gather", ["type_embeddings", "token_type_ids"], ["type_emb"], axis=0),
            helper.make_node("Add", ["emb", "type_emb"], ["summed_emb"]),
            helper.make_node("MatMul", ["summed_emb", "proj"], ["projected"]),
            helper.make_node("Tanh", ["projected"], ["last_hidden_state"]),
        ]
        outputs = [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "seq", dims])]
    else:
        raise ValueError(output)
    graph = helper.make_graph(nodes, "tiny_query_encoder", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="care-edge-tests")
    model.ir_version = 8  # old enough for any onnxruntime >= 1.18
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


# --------------------------------------------------------------------------------------------------- builders

TINY_LICENSES = [{"name": "tiny synthetic test data", "license": "Apache-2.0"}]


def tiny_document_encoder(model_sha256: str, *, dims: int = 32, prompt: str = "query: ") -> dict[str, Any]:
    """The document-encoder description of a tiny collection: the tiny ONNX model itself embeds the documents."""
    return {
        "name": "tiny-doc-encoder",
        "kind": "onnx",
        "sha256": model_sha256,
        "prompt": prompt,
        "pooling": "mean",
        "dims": dims,
        "full_dims": dims,
        "max_tokens": 16,
        "normalize": True,
    }


def build_encoder_dir(
    directory: Path,
    *,
    output: str = "embedding",
    pooling: str = "in-graph",
    dims: int = 32,
    max_tokens: int = 16,
    prompt: str = "query: ",
    seed: int = 0,
    alignment: dict[str, Any] | None = None,
    name: str = "tiny-query-encoder",
) -> Path:
    """Write a complete query encoder directory; returns it. ``alignment`` defaults to the tiny document encoder
    (whose sha256 is this model's)."""
    directory.mkdir(parents=True, exist_ok=True)
    write_tiny_onnx(directory / formats.MODEL_FILE, vocab_size=len(VOCAB), dims=dims, output=output, seed=seed)
    write_tokenizer(directory / formats.TOKENIZER_FILE)
    writers.write_encoder_config(
        directory,
        formats.EncoderConfig(
            prompt=prompt, max_tokens=max_tokens, pooling=pooling, dims=dims, normalize=True, output=output
        ),
    )
    if alignment is None:
        alignment = tiny_document_encoder(sha256_file(directory / formats.MODEL_FILE), dims=dims)
    writers.write_query_encoder_manifest(
        directory,
        name=name,
        base_model="random tiny BERT-like graph",
        alignment=alignment,
        licenses=TINY_LICENSES,
        created=created_info("tests.conftest"),
    )
    return directory


def make_documents(count: int, seed: int = 1) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    """Distinct synthetic documents: ids, texts (English words, some with Chinese), metas."""
    rng = np.random.default_rng(seed)
    english = [word for word in WORDS if word not in ("query", "passage")]
    texts: list[str] = []
    seen: set[str] = set()
    while len(texts) < count:
        words = list(rng.choice(english, size=int(rng.integers(4, 10)), replace=False))
        if rng.random() < 0.3:
            words.append("".join(rng.choice(CJK_CHARS, size=3, replace=False)))
        text = " ".join(words)
        if text not in seen:
            seen.add(text)
            texts.append(text)
    ids = [f"doc-{index:04d}" for index in range(count)]
    metas = [{"source": "synthetic", "row": index} for index in range(count)]
    return ids, texts, metas


def build_collection_dir(
    directory: Path,
    encoder_dir: Path,
    *,
    count: int = 200,
    dtype: str = "i8",
    name: str = "tiny",
    bench_queries: Sequence[str] | None = None,
) -> Path:
    """Embed ``count`` synthetic documents with the encoder in ``encoder_dir`` and write a collection; returns it."""
    from edge.encoder import QueryEncoder

    encoder = QueryEncoder(encoder_dir)
    ids, texts, metas = make_documents(count)
    vectors = encoder.encode(texts).vectors
    writers.write_collection(
        directory,
        name=name,
        description="tiny synthetic collection for tests",
        document_encoder=encoder.alignment,  # includes alignment_id: checked and dropped by the writer
        vectors=vectors,
        ids=ids,
        texts=texts,
        metas=metas,
        index_params={"dtype": dtype, "connectivity": 8, "expansion_add": 64, "expansion_search": 32},
        licenses=TINY_LICENSES,
        created=created_info("tests.conftest"),
        bench_queries=bench_queries,
    )
    return directory


@dataclass(frozen=True)
class TinyArtifacts:
    prebuilt: Path  # a prebuilt_index-like directory with default.json
    collection: Path
    encoder: Path
    ids: list[str]
    texts: list[str]
    bench_queries: list[str]


def build_tiny_prebuilt(root: Path) -> TinyArtifacts:
    prebuilt = root / "prebuilt_index"
    encoder_dir = build_encoder_dir(prebuilt / "query_encoder")
    ids, texts, _ = make_documents(200)
    bench_queries = [" ".join(text.split()[:3]) for text in texts[:20]] + ["头痛 发烧", "what is the dose for a child"]
    collection_dir = build_collection_dir(prebuilt / "tiny", encoder_dir, bench_queries=bench_queries)
    atomic_write_json(prebuilt / "default.json", {"collection": "tiny", "query_encoder": "query_encoder"})
    return TinyArtifacts(
        prebuilt=prebuilt,
        collection=collection_dir,
        encoder=encoder_dir,
        ids=ids,
        texts=texts,
        bench_queries=bench_queries,
    )


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyArtifacts:
    return build_tiny_prebuilt(tmp_path_factory.mktemp("tiny"))


@pytest.fixture()
def tiny_copy(tiny: TinyArtifacts, tmp_path: Path) -> TinyArtifacts:
    prebuilt = tmp_path / "prebuilt_index"
    shutil.copytree(tiny.prebuilt, prebuilt)
    return TinyArtifacts(
        prebuilt=prebuilt,
        collection=prebuilt / tiny.collection.name,
        encoder=prebuilt / tiny.encoder.name,
        ids=tiny.ids,
        texts=tiny.texts,
        bench_queries=tiny.bench_queries,
    )


@pytest.fixture(scope="session")
def build_encoder() -> Callable[..., Path]:
    return build_encoder_dir


@pytest.fixture(scope="session")
def build_collection() -> Callable[..., Path]:
    return build_collection_dir


# --------------------------------------------------------------------------------------------------- CLI runner


@dataclass(frozen=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def json_lines(self) -> list[Any]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    def assert_error(self, exit_code: int, *fragments: str) -> str:
        """The command failed with ``exit_code`` and exactly one stderr line (no traceback) holding every fragment;
        returns that line."""
        assert self.returncode == exit_code, (self.returncode, self.stderr)
        assert "Traceback" not in self.stderr, self.stderr
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, self.stderr
        for fragment in fragments:
            assert fragment in lines[0], (fragment, lines[0])
        return lines[0]


@pytest.fixture(scope="session")
def socket_guard_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("socket_guard")
    (directory / "sitecustomize.py").write_text(SOCKET_GUARD_SOURCE, encoding="utf-8")
    return directory


@pytest.fixture()
def run_cli(tiny: TinyArtifacts, socket_guard_dir: Path) -> Callable[..., CliResult]:
    """``run_cli(*args, prebuilt=None, stdin=None, env=None, prefix=())`` runs ``python -m edge`` with
    CARE_EDGE_INDEX_DIR at the tiny prebuilt dir and sockets disabled."""

    def run(
        *args: str | os.PathLike[str],
        prebuilt: Path | None = None,
        stdin: bytes | None = None,
        env: dict[str, str] | None = None,
        prefix: Sequence[str] = (),
        timeout: float = 60,
    ) -> CliResult:
        environment = {key: value for key, value in os.environ.items() if key != "CARE_EDGE_DEBUG"}
        environment["PYTHONPATH"] = os.pathsep.join([str(socket_guard_dir), str(REPO_ROOT)])
        environment["CARE_EDGE_INDEX_DIR"] = str(prebuilt if prebuilt is not None else tiny.prebuilt)
        environment.update(env or {})
        completed = subprocess.run(
            [*prefix, sys.executable, "-m", "edge", *map(str, args)],
            input=stdin,
            capture_output=True,
            env=environment,
            cwd=REPO_ROOT,
            timeout=timeout,
            check=False,
        )
        return CliResult(
            completed.returncode,
            completed.stdout.decode("utf-8", errors="replace"),
            completed.stderr.decode("utf-8", errors="replace"),
        )

    return run
