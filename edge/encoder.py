"""The query encoder: one generic ONNX model class (tokenize -> onnxruntime -> pool -> normalise).

A query encoder directory (see README.md) holds model.onnx, tokenizer.json, config.json and manifest.json. The
config says how to read the graph: ``pooling: "in-graph"`` means the output named ``output`` already is the
``[batch, dims]`` embedding; ``"mean"`` / ``"cls"`` pool a ``[batch, seq, dims]`` output such as a plain BERT's
``last_hidden_state``.

Thread safety: the onnxruntime session and the tokenizer are created and configured once in ``__init__`` and only
read afterwards; ``InferenceSession.run`` and ``Tokenizer.encode``/``encode_batch`` may be called from many threads.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tokenizers import Tokenizer

from edge import formats as fmt
from edge._native import ort
from edge.errors import ArtifactError
from edge.integrity import verify_files
from edge.limits import check_threads
from edge.text import cap_chars

# One text per onnxruntime call. An INT8 graph quantizes its activations at run time with one scale per tensor, so in
# a padded batch a text's vector depends on its neighbours (shipped encoder: cosine down to 0.985 against the text
# alone, top-1 changes); alone, every text gets exactly the vector a single query gets. It is also faster on short
# queries (no padding): 200 bench queries in 2.3 s one by one against 4.2 s in batches of 64 (2-core EPYC).
ENCODE_CHUNK = 1

_INPUT_DTYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}
_KNOWN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True)
class EncodeResult:
    """``vectors``: float32 ``[n, dims]``; ``truncated[i]``: text i was cut to fit ``max_tokens``;
    ``tokenize_ms`` / ``encode_ms``: wall time of the two stages for the whole call."""

    vectors: np.ndarray
    truncated: list[bool]
    tokenize_ms: float
    encode_ms: float


# onnxruntime's CPU SkipLayerNormalization kernel is several times slower than the Add + LayerNormalization it
# replaces on query-sized inputs (`python -m tools.experiments.kernel_bench` measures both), and the session would fuse them back
# at load even when the file keeps them apart.
DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)


class QueryEncoder:
    """Loads a query encoder directory once; :meth:`encode` turns texts into vectors."""

    def __init__(
        self, directory: str | Path, *, threads: int = 1, prompt: str | None = None, max_tokens: int | None = None
    ) -> None:
        """``prompt`` / ``max_tokens`` override config.json: the offline tools embed documents with a symmetric
        encoder's own graph under its passage prompt and a longer limit."""
        self.directory = Path(directory)
        self.threads = check_threads(threads, "threads")
        self.manifest: dict[str, Any] = fmt.read_manifest(self.directory, fmt.QUERY_ENCODER_FORMAT)
        verify_files(self.directory, self.manifest, self.manifest["files"])
        self.config = fmt.read_encoder_config(self.directory)
        if prompt is not None or max_tokens is not None:
            self.config = dataclasses.replace(
                self.config,
                prompt=self.config.prompt if prompt is None else prompt,
                max_tokens=self.config.max_tokens if max_tokens is None else max_tokens,
            )
        aligned_dims = self.manifest["alignment"].get("dims")
        if aligned_dims != self.config.dims:
            raise ArtifactError(
                f"{self.directory}: config.json dims {self.config.dims} != manifest alignment dims {aligned_dims}: "
                "rebuild the query encoder"
            )
        self._tokenizer = self._load_tokenizer()
        self._session = self._load_session()
        self._input_dtypes = self._check_inputs()
        self._check_output()

    # ------------------------------------------------------------------------------------------ properties

    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    @property
    def dims(self) -> int:
        return self.config.dims

    @property
    def max_tokens(self) -> int:
        return self.config.max_tokens

    @property
    def prompt(self) -> str:
        return self.config.prompt

    @property
    def alignment(self) -> dict[str, Any]:
        return dict(self.manifest["alignment"])

    @property
    def alignment_id(self) -> str:
        return str(self.manifest["alignment"]["alignment_id"])

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """How many tokens the model sees for each text (prompt and special tokens included, at most
        ``max_tokens``): what a query's encoding time grows with."""
        return [sum(self._tokenizer.encode(cap_chars(self.config.prompt + text)[0]).attention_mask) for text in texts]

    def verify(self) -> None:
        """Full sha256 of every file against the manifest; raises ArtifactError naming the first bad file."""
        fmt.check_files(self.directory, self.manifest, full_hash=True)

    # ------------------------------------------------------------------------------------------ loading

    def _load_tokenizer(self) -> Tokenizer:
        path = self.directory / fmt.TOKENIZER_FILE
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # the Rust side raises plain Exception for any parse error
            raise ArtifactError(f"{path} cannot be loaded ({exc}): re-copy or rebuild the query encoder") from None
        # Configured once here and never again: encode/encode_batch only read this state, so threads can share it.
        tokenizer.enable_truncation(max_length=self.config.max_tokens, stride=0, direction="right")
        pad_id, pad_token = _padding_token(tokenizer)
        tokenizer.enable_padding(direction="right", pad_id=pad_id, pad_token=pad_token)
        return tokenizer

    def _load_session(self) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: optimizer notes on stderr would break the one-line contract
        path = self.directory / fmt.MODEL_FILE
        try:
            return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"],
                                        disabled_optimizers=list(DISABLED_OPTIMIZERS))
        except Exception as exc:  # onnxruntime raises its own exception types, all subclasses of Exception
            raise ArtifactError(f"{path} cannot be loaded by onnxruntime ({exc}): re-copy or rebuild it") from None

    def _check_inputs(self) -> dict[str, type]:
        dtypes: dict[str, type] = {}
        for graph_input in self._session.get_inputs():
            if graph_input.name not in _KNOWN_INPUTS:
                raise ArtifactError(
                    f"{self.directory / fmt.MODEL_FILE}: unsupported graph input {graph_input.name!r} "
                    f"(supported: {', '.join(_KNOWN_INPUTS)})"
                )
            if graph_input.type not in _INPUT_DTYPES:
                raise ArtifactError(
                    f"{self.directory / fmt.MODEL_FILE}: input {graph_input.name!r} has type {graph_input.type}, "
                    "expected int64 or int32"
                )
            dtypes[graph_input.name] = _INPUT_DTYPES[graph_input.type]
        if "input_ids" not in dtypes:
            raise ArtifactError(f"{self.directory / fmt.MODEL_FILE}: the graph has no 'input_ids' input")
        return dtypes

    def _check_output(self) -> None:
        outputs = {output.name: output for output in self._session.get_outputs()}
        wanted = self.config.output
        if wanted not in outputs:
            raise ArtifactError(
                f"{self.directory}: config.json output {wanted!r} is not a graph output "
                f"(graph outputs: {', '.join(outputs)})"
            )
        rank = len(outputs[wanted].shape or [])
        expected_rank = 2 if self.config.pooling == "in-graph" else 3
        if rank and rank != expected_rank:
            raise ArtifactError(
                f"{self.directory}: output {wanted!r} has rank {rank}, pooling {self.config.pooling!r} needs "
                f"rank {expected_rank}"
            )

    # ------------------------------------------------------------------------------------------ encoding

    def encode(self, texts: Sequence[str]) -> EncodeResult:
        """Embed ``texts`` (the config prompt is prepended to each), each on its own: a text's vector never depends
        on the other texts of the call. Texts longer than ``max_tokens`` are truncated and flagged. Callers are
        expected to have cleaned the texts (see :func:`edge.text.clean_query`)."""
        if isinstance(texts, str):
            raise TypeError("encode() takes a list of texts, not a single string")
        vectors: list[np.ndarray] = []
        truncated: list[bool] = []
        tokenize_ms = 0.0
        encode_ms = 0.0
        for start in range(0, len(texts), ENCODE_CHUNK):
            chunk = texts[start : start + ENCODE_CHUNK]
            chunk_vectors, chunk_truncated, chunk_tokenize, chunk_encode = self._encode_chunk(chunk)
            vectors.append(chunk_vectors)
            truncated.extend(chunk_truncated)
            tokenize_ms += chunk_tokenize
            encode_ms += chunk_encode
        matrix = np.concatenate(vectors) if vectors else np.zeros((0, self.dims), dtype=np.float32)
        return EncodeResult(vectors=matrix, truncated=truncated, tokenize_ms=tokenize_ms, encode_ms=encode_ms)

    def _encode_chunk(self, texts: Sequence[str]) -> tuple[np.ndarray, list[bool], float, float]:
        started = time.perf_counter()
        prompted: list[str] = []
        char_cut: list[bool] = []
        for text in texts:
            capped, was_cut = cap_chars(self.config.prompt + text)
            prompted.append(capped)
            char_cut.append(was_cut)
        if len(prompted) == 1:
            encodings = [self._tokenizer.encode(prompted[0])]
        else:
            encodings = self._tokenizer.encode_batch(prompted)
        truncated = [bool(encoding.overflowing) or cut for encoding, cut in zip(encodings, char_cut)]
        ids = np.array([encoding.ids for encoding in encodings], dtype=np.int64)
        mask = np.array([encoding.attention_mask for encoding in encodings], dtype=np.int64)
        feeds: dict[str, np.ndarray] = {}
        for name, dtype in self._input_dtypes.items():
            if name == "input_ids":
                feeds[name] = ids.astype(dtype, copy=False)
            elif name == "attention_mask":
                feeds[name] = mask.astype(dtype, copy=False)
            else:  # token_type_ids: a single segment
                feeds[name] = np.zeros_like(ids, dtype=dtype)
        tokenized = time.perf_counter()

        try:
            (output,) = self._session.run([self.config.output], feeds)
        except Exception as exc:
            raise ArtifactError(f"{self.directory / fmt.MODEL_FILE} failed to run ({exc})") from None
        vectors = self._pool(np.asarray(output, dtype=np.float32), mask)
        encoded = time.perf_counter()
        return vectors, truncated, (tokenized - started) * 1e3, (encoded - tokenized) * 1e3

    def _pool(self, output: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if self.config.pooling == "in-graph":
            pooled = output
        elif self.config.pooling == "cls":
            pooled = output[:, 0, :]
        else:
            weights = mask.astype(np.float32)[:, :, None]
            pooled = (output * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
        if pooled.ndim != 2 or pooled.shape[1] != self.config.dims:
            raise ArtifactError(
                f"{self.directory}: the model produced vectors of shape {pooled.shape[1:]}, config.json says dims "
                f"{self.config.dims}"
            )
        if self.config.normalize:
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            pooled = pooled / np.maximum(norms, 1e-12)
        return np.ascontiguousarray(pooled, dtype=np.float32)


def _padding_token(tokenizer: Tokenizer) -> tuple[int, str]:
    """The tokenizer's own pad token if it declares one, else a conventional one from its vocabulary, else id 0.
    The attention mask hides padding from pooling, so any valid id would do; a real pad token keeps it tidy."""
    configured = tokenizer.padding
    if configured and configured.get("pad_token") is not None:
        return int(configured["pad_id"]), str(configured["pad_token"])
    for token in ("[PAD]", "<pad>"):
        token_id = tokenizer.token_to_id(token)
        if token_id is not None:
            return token_id, token
    return 0, tokenizer.id_to_token(0) or "[PAD]"
