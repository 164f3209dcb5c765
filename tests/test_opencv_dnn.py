"""Every graph a bundle ships is read by other people's software too: OpenCV's DNN module loads
the FP32 and FP16 synthesis graphs and the mapping at a fixed batch and agrees with onnxruntime.
(OpenCV's importer ignores Shape's start/end and refuses two-axis Unsqueeze, and misread nodes
that share an initializer: the graphs avoid all three.)"""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnxruntime as ort
import pytest

cv2 = pytest.importorskip("cv2", reason="OpenCV's DNN module comes with the demo extra (pip install '.[demo]')")

BATCH = 2


def _feeds(bundle, rng):
    meta = json.loads((bundle / "meta.json").read_text())
    feeds = {"z": rng.standard_normal((BATCH, meta["z_dim"])).astype(np.float32)}
    for layer in meta["layers"]:
        feeds[layer["w_input"]] = rng.standard_normal((BATCH, meta["w_dim"])).astype(np.float32)
        r = layer["resolution"]
        feeds[layer["noise_input"]] = rng.standard_normal((BATCH, 1, r, r)).astype(np.float32)
    return feeds


def _run_both(path, feeds):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    ref = sess.run(None, {n: feeds[n] for n in names})[0]
    net = cv2.dnn.readNetFromONNX(str(path))
    for n in names:
        net.setInput(feeds[n], n)
    return net.forward(), ref


@pytest.fixture(scope="module")
def fp16_bundle(tiny_bundle, tmp_path_factory):
    from stylegan_edge.calibration.fp16_analysis import Fp16Thresholds
    from stylegan_edge.calibration.pipeline import PipelineSettings, prepare_precisions

    out = tmp_path_factory.mktemp("opencv") / "tiny.sgbundle"
    shutil.copytree(tiny_bundle, out)
    settings = PipelineSettings(fp16=Fp16Thresholds(analysis_samples=4), holdout_samples=2, cache=False)
    prepare_precisions(out, ["fp16"], samples=8, settings=settings)
    return out


@pytest.mark.parametrize("name", ["mapping.onnx", "synthesis.onnx"])
def test_opencv_runs_the_fp32_graphs_like_onnxruntime(tiny_bundle, name):
    out, ref = _run_both(tiny_bundle / name, _feeds(tiny_bundle, np.random.default_rng(11)))
    assert out.shape == ref.shape and np.isfinite(out).all()
    assert np.abs(out - ref).max() <= 1e-4 * max(1.0, float(np.abs(ref).max()))


def test_opencv_runs_the_fp16_graph_like_onnxruntime(fp16_bundle):
    out, ref = _run_both(fp16_bundle / "synthesis.fp16.onnx", _feeds(fp16_bundle, np.random.default_rng(12)))
    assert out.shape == ref.shape and np.isfinite(out).all()
    # Both read the same FP16 weights; OpenCV's CPU path computes in FP32 where onnxruntime casts
    # around the FP16 nodes, so they agree far more closely than FP16 agrees with FP32 (faces64:
    # 6e-5).
    assert np.abs(out - ref).max() <= 1e-3 * max(1.0, float(np.abs(ref).max()))


def test_opencv_runs_an_untrained_preset_whose_constants_coincide(tmp_path):
    """Random-weight presets (benchmarks) have equal constants that the optimiser would merge."""
    import torch

    from stylegan_edge.export.onnx_export import export_bundle
    from stylegan_edge.training.networks import Generator

    from .conftest import TINY

    torch.manual_seed(0)
    bundle = export_bundle(Generator(TINY), tmp_path / "fresh.sgbundle")
    out, ref = _run_both(bundle / "synthesis.onnx", _feeds(bundle, np.random.default_rng(13)))
    assert np.abs(out - ref).max() <= 1e-4 * max(1.0, float(np.abs(ref).max()))
