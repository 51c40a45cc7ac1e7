"""Baselines and a profile for ``bench_recommend``: the plain int8 top-k kernel on a bundle's
scoring matrix, the int8 graph called directly, and onnxruntime's per-node times.

The kernel is the least any int8 recommend() can cost on that matrix: an ONNX graph that is
only ``MatMul(user, table_out_t)`` then ``TopK``, quantized by the same onnxruntime dynamic
quantization (int8, one scale per item) as a bundle's graph, run by one thread on a fixed user
vector: no history, no user layers, no bias, no filters, no SQLite, no reasons.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import numpy as np


def _session(path: Path, profile: str | None = None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if profile:
        options.enable_profiling = True
        options.profile_file_prefix = profile
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def kernel_graph(table_out_t: np.ndarray, folder: Path) -> Path:
    """The int8 ``MatMul + TopK`` graph on ``table_out_t [d, N]``; returns its path."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dim, n_items = table_out_t.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["user", "table_out_t"], ["scores"], name="score_matmul"),
         helper.make_node("TopK", ["scores", "k"], ["top_scores", "top_items"], axis=1)],
        "kernel",
        [helper.make_tensor_value_info("user", TensorProto.FLOAT, [1, dim]),
         helper.make_tensor_value_info("k", TensorProto.INT64, [1])],
        [helper.make_tensor_value_info("top_scores", TensorProto.FLOAT, [1, "k"]),
         helper.make_tensor_value_info("top_items", TensorProto.INT64, [1, "k"])],
        [numpy_helper.from_array(np.ascontiguousarray(table_out_t, np.float32), "table_out_t")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    float_path, int8_path = folder / "kernel_float.onnx", folder / "kernel_int8.onnx"
    onnx.save_model(model, str(float_path))
    quantize_dynamic(str(float_path), str(int8_path), op_types_to_quantize=["MatMul"],
                     per_channel=True, reduce_range=True, weight_type=QuantType.QInt8)  # as bundles
    float_path.unlink()
    return int8_path


def timed_calls(call: Callable[[], Any], calls: int, warmup: int = 50) -> np.ndarray:
    """Milliseconds of ``calls`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        call()
    out = np.empty(calls)
    for n in range(calls):
        start = time.perf_counter_ns()
        call()
        out[n] = time.perf_counter_ns() - start
    return out / 1e6


def kernel_latencies(table_out_t: np.ndarray, folder: Path, calls: int, k: int = 10) -> np.ndarray:
    """Milliseconds per call of the plain int8 top-k kernel on ``table_out_t``."""
    session = _session(kernel_graph(table_out_t, folder))
    feed = {"user": np.random.default_rng(0).standard_normal((1, table_out_t.shape[0])).astype(np.float32),
            "k": np.array([k], np.int64)}
    return timed_calls(lambda: session.run(["top_scores", "top_items"], feed), calls)


def node_profile(model_path: Path, feed: dict[str, np.ndarray], outputs: list[str], calls: int,
                 folder: Path) -> list[tuple[str, float]]:
    """(node, mean microseconds per call) of one onnxruntime session over ``calls`` runs, most
    expensive first, from onnxruntime's own profiler (its kernel times; not the Python call)."""
    session = _session(model_path, profile=str(folder / "ort_profile"))
    for _ in range(calls):
        session.run(outputs, feed)
    trace = Path(session.end_profiling())
    totals: dict[str, float] = defaultdict(float)
    for event in json.loads(trace.read_text()):
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            op = event.get("args", {}).get("op_name", "?")
            totals[f"{event['name'][: -len('_kernel_time')]} ({op})"] += event["dur"]
    trace.unlink()
    return sorted(((name, us / calls) for name, us in totals.items()), key=lambda x: -x[1])
