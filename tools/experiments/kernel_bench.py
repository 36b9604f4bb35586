"""Why the export leaves residual + LayerNorm and bias + GELU unfused: onnxruntime's CPU contrib kernels against the
plain ops they replace, on query-sized inputs, in one run.

    python -m tools.experiments.kernel_bench [--seq 20] [--repeats 500] [--model prebuilt_index/query_encoder/model.onnx]

Each variant is a chain of 24 identical nodes (so per-call overhead is amortised) run on one intra-op thread; the
figure is microseconds per node. With ``--model``, it also counts the SkipLayerNormalization nodes of that graph
after onnxruntime's load-time optimisations, with the runtime's settings (``edge.encoder.DISABLED_OPTIMIZERS``)
and with onnxruntime's defaults: on the exported BERT graph the default SkipLayerNormFusion folds Add +
LayerNormalization back into the slow kernel, which is why the runtime disables it.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Sequence

import numpy as np

CHAIN = 24
HIDDEN = 384
INTERMEDIATE = 1536


def _model(nodes_of, inputs: Sequence[tuple[str, int]], initializers: dict[str, np.ndarray], output: str) -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        nodes_of,
        "chain",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, "seq", width]) for name, width in inputs],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)],
        [numpy_helper.from_array(value, name) for name, value in initializers.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    return model.SerializeToString()


def layer_norm_chain(fused: bool) -> bytes:
    from onnx import helper

    rng = np.random.default_rng(0)
    inits = {"gamma": np.ones(HIDDEN, np.float32), "beta": np.zeros(HIDDEN, np.float32),
             "bias": (rng.standard_normal(HIDDEN) * 0.01).astype(np.float32)}
    nodes, x = [], "x"
    for i in range(CHAIN):
        if fused:
            nodes.append(helper.make_node("SkipLayerNormalization", [x, "skip", "gamma", "beta", "bias"], [f"y{i}"],
                                          domain="com.microsoft", epsilon=1e-12))
        else:
            nodes += [helper.make_node("Add", [x, "skip"], [f"a{i}"]), helper.make_node("Add", [f"a{i}", "bias"], [f"b{i}"]),
                      helper.make_node("LayerNormalization", [f"b{i}", "gamma", "beta"], [f"y{i}"], axis=-1,
                                       epsilon=1e-12)]
        x = f"y{i}"
    return _model(nodes, [("x", HIDDEN), ("skip", HIDDEN)], inits, x)


def gelu_chain(fused: bool) -> bytes:
    from onnx import helper

    rng = np.random.default_rng(0)
    inits = {"bias": (rng.standard_normal(INTERMEDIATE) * 0.01).astype(np.float32)}
    nodes, x = [], "x"
    for i in range(CHAIN):
        if fused:
            nodes.append(helper.make_node("BiasGelu", [x, "bias"], [f"y{i}"], domain="com.microsoft"))
        else:
            nodes += [helper.make_node("Add", [x, "bias"], [f"a{i}"]),
                      helper.make_node("Gelu", [f"a{i}"], [f"y{i}"], domain="com.microsoft")]
        x = f"y{i}"
    return _model(nodes, [("x", INTERMEDIATE)], inits, x)


def time_chain(model: bytes, feeds: dict[str, np.ndarray], *, optimize: bool, repeats: int) -> float:
    """Microseconds per chained node, one intra-op thread."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    for _ in range(max(10, repeats // 10)):
        session.run(None, feeds)
    started = time.perf_counter()
    for _ in range(repeats):
        session.run(None, feeds)
    return (time.perf_counter() - started) / repeats / CHAIN * 1e6


def count_after_load(model_path: str, op_type: str, disabled: Sequence[str]) -> int:
    """How many ``op_type`` nodes the graph holds once an ORT_ENABLE_ALL session has optimised it."""
    import tempfile
    from pathlib import Path

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        options.log_severity_level = 3
        ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"], disabled_optimizers=list(disabled))
        graph = onnx.load(options.optimized_model_filepath, load_external_data=False).graph
        return sum(node.op_type == op_type for node in graph.node)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.experiments.kernel_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seq", type=int, default=20, help="sequence length (tokens of a typical query)")
    parser.add_argument("--repeats", type=int, default=500)
    parser.add_argument("--model", help="an INT8 query-encoder graph whose load-time fusions to count")
    args = parser.parse_args(argv)
    import onnxruntime as ort

    rng = np.random.default_rng(1)
    hidden = {"x": rng.standard_normal((1, args.seq, HIDDEN)).astype(np.float32),
              "skip": rng.standard_normal((1, args.seq, HIDDEN)).astype(np.float32)}
    wide = {"x": (rng.standard_normal((1, args.seq, INTERMEDIATE)) * 0.1).astype(np.float32)}
    results = {
        "onnxruntime": ort.__version__,
        "seq": args.seq,
        "us_per_node": {
            "SkipLayerNormalization": time_chain(layer_norm_chain(True), hidden, optimize=False, repeats=args.repeats),
            "Add+Add+LayerNormalization": time_chain(layer_norm_chain(False), hidden, optimize=False,
                                                     repeats=args.repeats),
            "BiasGelu": time_chain(gelu_chain(True), wide, optimize=False, repeats=args.repeats),
            "Add+Gelu": time_chain(gelu_chain(False), wide, optimize=False, repeats=args.repeats),
        },
    }
    results["us_per_node"] = {name: round(value, 1) for name, value in results["us_per_node"].items()}
    if args.model:
        from edge.encoder import DISABLED_OPTIMIZERS

        results["skip_layer_norms_after_load"] = {
            "runtime settings": count_after_load(args.model, "SkipLayerNormalization", DISABLED_OPTIMIZERS),
            "onnxruntime defaults": count_after_load(args.model, "SkipLayerNormalization", ()),
        }
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
