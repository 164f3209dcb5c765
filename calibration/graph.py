"""Small ONNX / onnxruntime helpers shared by the calibration modules."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from google.protobuf.message import DecodeError

from stylegan_edge.runtime.backends.onnxruntime import open_session, quiet_session_options
from stylegan_edge.runtime.files import atomic_path

from .data import CalibrationData
from .errors import CalibrationError

NORM_OP = "InstanceNormalization"


def load_model(path: str | Path) -> onnx.ModelProto:
    try:
        return onnx.load(os.fspath(path))
    except (OSError, DecodeError) as e:
        raise CalibrationError(f"{path}: cannot read the ONNX model ({e})") from None


def nodes_of_type(model: onnx.ModelProto, op_type: str) -> list[str]:
    return [n.name for n in model.graph.node if n.op_type == op_type]


def session(model: str | Path | onnx.ModelProto, threads: int | None = None, optimization: str = "all",
            optimized_path: str | Path | None = None, profile_prefix: str | None = None) -> ort.InferenceSession:
    """An onnxruntime CPU session (quiet); a ModelProto is passed as bytes."""
    so = quiet_session_options()
    if threads:
        so.intra_op_num_threads = threads
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = {
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    }[optimization]
    if optimized_path is not None:
        so.optimized_model_filepath = os.fspath(optimized_path)
    if profile_prefix is not None:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    return open_session(model.SerializeToString() if isinstance(model, onnx.ModelProto) else model, so)


def run_images(sess: ort.InferenceSession, data: CalibrationData, batch_size: int = 8,
               limit: int | None = None) -> np.ndarray:
    """The `image` output for the first `limit` samples, float32 [N, C, R, R]."""
    names = [i.name for i in sess.get_inputs()]
    out = [sess.run(["image"], {k: b[k] for k in names})[0] for b in data.batches(batch_size, limit)]
    return np.concatenate(out).astype(np.float32, copy=False)


def initializer_names(model: onnx.ModelProto) -> set[str]:
    return {i.name for i in model.graph.initializer}


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    counts: dict[str, int] = {}
    for n in model.graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return dict(sorted(counts.items()))


def save_model(model: onnx.ModelProto, path: str | Path) -> Path:
    """Check and write a model, atomically (written beside, then renamed)."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            onnx.save(model, os.fspath(tmp))
            onnx.checker.check_model(os.fspath(tmp), full_check=True)
    except onnx.checker.ValidationError as e:
        raise CalibrationError(f"{path.name} fails the ONNX checker: {str(e).splitlines()[0]}") from None
    except OSError as e:
        raise CalibrationError(f"{path}: cannot write ({e.strerror or e})") from None
    return path


def value_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every value (inputs, outputs, initializers, inferred intermediates)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type
             for v in [*inferred.graph.input, *inferred.graph.output, *inferred.graph.value_info]}
    types.update({i.name: i.data_type for i in model.graph.initializer})
    return types


def unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
