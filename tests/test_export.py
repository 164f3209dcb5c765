"""Export: the bundle's files, its graph policy, and exactness against PyTorch."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from stylegan_edge.export.inference_graph import (
    GraphOptions,
    InferenceSynthesis,
    ReferenceSynthesis,
    interleave_kernel,
    subpixel_kernel,
)
from stylegan_edge.export.onnx_export import ExportError, export_bundle, normalisations_without_epsilon
from stylegan_edge.runtime.files import sha256_file
from stylegan_edge.training.config import PRESETS

from .conftest import TINY, randomized_generator


def _session(path):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _random_synthesis_inputs(cfg, batch, seed):
    g = torch.Generator().manual_seed(seed)
    ws = [torch.randn(batch, cfg.w_dim, generator=g) for _ in range(cfg.num_layers)]
    noise = [torch.randn(batch, 1, r, r, generator=g) for r in map(cfg.layer_resolution, range(cfg.num_layers))]
    return ws, noise


def _feeds(ws, noise):
    feeds = {f"w_{i:02d}": w.numpy() for i, w in enumerate(ws)}
    return feeds | {f"noise_{i:02d}": n.numpy() for i, n in enumerate(noise)}


def test_bundle_has_the_designed_files(tiny_bundle):
    names = {p.name for p in tiny_bundle.iterdir()}
    assert {"mapping.onnx", "synthesis.onnx", "meta.json", "noise_const.npz"} <= names
    assert not any(n.endswith(".tmp") for n in names)


def test_graphs_pass_the_full_checker_and_strict_shape_inference(tiny_bundle):
    for name in ("mapping.onnx", "synthesis.onnx"):
        onnx.checker.check_model(str(tiny_bundle / name), full_check=True)
        onnx.shape_inference.infer_shapes(onnx.load(str(tiny_bundle / name)), strict_mode=True)


def test_synthesis_inputs_are_one_w_and_one_noise_per_layer_with_a_dynamic_batch(tiny_bundle):
    model = onnx.load(str(tiny_bundle / "synthesis.onnx"))
    inputs = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    L = TINY.num_layers
    assert inputs == {
        **{f"w_{i:02d}": ["batch", TINY.w_dim] for i in range(L)},
        **{f"noise_{i:02d}": ["batch", 1, TINY.layer_resolution(i), TINY.layer_resolution(i)] for i in range(L)},
    }
    out = model.graph.output[0]
    assert out.name == "image"
    assert [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == ["batch", 3, 32, 32]


def test_graphs_use_only_standard_deterministic_operators_listed_in_meta(tiny_bundle):
    meta = json.loads((tiny_bundle / "meta.json").read_text())
    for name in ("mapping.onnx", "synthesis.onnx"):
        model = onnx.load(str(tiny_bundle / name))
        ops = sorted({n.op_type for n in model.graph.node})
        assert ops == meta["operators"][name]
        assert all(n.domain in ("", "ai.onnx") for n in model.graph.node)
        assert not any(op.startswith("Random") for op in ops)
        assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17


def test_synthesis_keeps_the_real_instance_norm_and_interleaves_with_a_constant_copy(tiny_bundle):
    model = onnx.load(str(tiny_bundle / "synthesis.onnx"))
    nodes = model.graph.node
    ops = {n.op_type for n in nodes}
    assert "InstanceNormalization" in ops
    assert {"ReduceMean", "Resize", "DepthToSpace", "Slice"}.isdisjoint(ops)
    # The only transposed convolutions are the sub-pixel interleaves (one per upsampling layer):
    # grouped, stride 2, a 0/1 kernel with one 1 per input channel, pads doing the crop.
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    interleaves = [n for n in nodes if n.op_type == "ConvTranspose"]
    assert len(interleaves) == TINY.log2_res - 2
    for node in interleaves:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        kernel = inits[node.input[1]]
        assert attrs["strides"] == [2, 2] and attrs["pads"] == [1, 1, 1, 1]
        assert kernel.shape == (4 * attrs["group"], 1, 2, 2)
        assert set(np.unique(kernel)) == {0.0, 1.0} and (kernel.sum(axis=(1, 2, 3)) == 1).all()


def test_interleave_forms_are_the_same_arithmetic(tiny_fused_cfg):
    """The ConvTranspose interleave copies values exactly like DepthToSpace + crop."""
    x = torch.randn(2, 4 * 3, 5, 5)
    F = torch.nn.functional
    ref = F.pixel_shuffle(x, 2)[:, :, 1:-1, 1:-1]
    out = F.conv_transpose2d(x, interleave_kernel(3), stride=2, padding=1, groups=3)
    assert torch.equal(out, ref)
    G = randomized_generator(tiny_fused_cfg, seed=7)
    ws, noise = _random_synthesis_inputs(tiny_fused_cfg, 2, seed=8)
    with torch.no_grad():
        a = InferenceSynthesis(G.synthesis, GraphOptions(interleave="convtranspose"))(*ws, *noise)
        b = InferenceSynthesis(G.synthesis, GraphOptions(interleave="depthtospace"))(*ws, *noise)
    assert torch.equal(a, b)


def test_nodes_are_named_after_the_layer_they_compute(tiny_bundle):
    names = [n.name for n in onnx.load(str(tiny_bundle / "synthesis.onnx")).graph.node]
    assert len(set(names)) == len(names)
    assert "layers.5/InstanceNormalization" in names and "layers.2/ConvTranspose" in names


def test_meta_describes_the_model(tiny_bundle, tiny_G):
    meta = json.loads((tiny_bundle / "meta.json").read_text())
    assert meta["format_version"] == 2 and meta["num_layers"] == TINY.num_layers
    assert [layer["resolution"] for layer in meta["layers"]] == [4, 4, 8, 8, 16, 16, 32, 32]
    assert np.allclose(meta["w_avg"], tiny_G.w_avg.numpy(), atol=1e-7)
    assert meta["truncation"] == {"psi": 0.7, "cutoff": None}
    assert meta["opset"] >= 17 and meta["gflop_per_image"]["total"] > 0


@pytest.mark.parametrize("batch", [1, 5])
def test_onnxruntime_matches_pytorch_on_fresh_random_inputs(tiny_bundle, tiny_G, batch):
    ws, noise = _random_synthesis_inputs(TINY, batch, seed=100 + batch)
    with torch.no_grad():
        ref = tiny_G.synthesis.run_layers(ws, noise).numpy()
        z = torch.randn(batch, TINY.z_dim)
        w_ref = tiny_G.mapping(z).numpy()
    out = _session(tiny_bundle / "synthesis.onnx").run(None, _feeds(ws, noise))[0]
    assert np.abs(out - ref).max() <= 1e-4
    w = _session(tiny_bundle / "mapping.onnx").run(None, {"z": z.numpy()})[0]
    assert np.abs(w - w_ref).max() <= 1e-5


def test_subpixel_kernel_equals_nearest_upsampling_then_3x3_convolution():
    w = torch.randn(4, 3, 3, 3)
    x = torch.randn(2, 3, 5, 5)
    F = torch.nn.functional
    ref = F.conv2d(F.interpolate(x, scale_factor=2.0, mode="nearest"), w, padding=1)
    sub = F.pixel_shuffle(F.conv2d(x, subpixel_kernel(w), padding=1), 2)[:, :, 1:-1, 1:-1]
    assert (sub - ref).abs().max() < 1e-5


def test_inference_graph_equals_the_training_graph_including_the_fused_path(tiny_fused_cfg):
    G = randomized_generator(tiny_fused_cfg, seed=5)
    ws, noise = _random_synthesis_inputs(tiny_fused_cfg, 2, seed=6)
    with torch.no_grad():
        ref = ReferenceSynthesis(G.synthesis)(*ws, *noise)
        out = InferenceSynthesis(G.synthesis)(*ws, *noise)
    assert (out - ref).abs().max() / ref.abs().max() < 1e-5


@pytest.mark.slow
def test_export_is_exact_at_256_px_on_the_edge_preset(tmp_path):
    cfg = PRESETS["edge256"]
    G = randomized_generator(cfg, seed=2)
    with torch.no_grad():  # scale the output to images in [-1, 1], where the 1e-4 bound is stated
        G.synthesis.rgb_bias.zero_()
        ws, noise = _random_synthesis_inputs(cfg, 2, seed=0)
        G.synthesis.to_rgb.weight.div_(G.synthesis.run_layers(ws, noise).abs().max())
    bundle = export_bundle(G, tmp_path / "edge.sgbundle")
    for batch in (1, 3):
        ws, noise = _random_synthesis_inputs(cfg, batch, seed=batch)
        with torch.no_grad():
            ref = G.synthesis.run_layers(ws, noise).numpy()
        out = _session(bundle / "synthesis.onnx").run(None, _feeds(ws, noise))[0]
        assert 0.2 < np.abs(ref).max() < 1.5
        assert np.abs(out - ref).max() <= 1e-4


def test_a_failed_export_leaves_no_bundle_and_no_temporary(tmp_path, monkeypatch):
    import stylegan_edge.export.onnx_export as ex

    def broken(module, args, names, output, path, opset):
        path.write_bytes(b"half an onnx file")
        raise ExportError("simulated failure")

    monkeypatch.setattr(ex, "_export_module", broken)
    with pytest.raises(ExportError):
        export_bundle(randomized_generator(TINY), tmp_path / "x.sgbundle")
    assert list(tmp_path.iterdir()) == []


def test_export_refuses_to_replace_a_folder_that_is_not_a_bundle(tmp_path):
    (tmp_path / "important").mkdir()
    (tmp_path / "important" / "notes.txt").write_text("keep me")
    with pytest.raises(ExportError, match="not a bundle"):
        export_bundle(randomized_generator(TINY), tmp_path / "important")
    assert (tmp_path / "important" / "notes.txt").read_text() == "keep me"


def test_meta_records_each_file_by_hash_and_size(tiny_bundle):
    files = json.loads((tiny_bundle / "meta.json").read_text())["files"]
    assert set(files) == {"mapping.onnx", "synthesis.onnx", "noise_const.npz"}
    for name, record in files.items():
        assert record == {"sha256": sha256_file(tiny_bundle / name), "bytes": (tiny_bundle / name).stat().st_size}


def test_graphs_are_opset_17_with_no_reduction_and_no_ranged_shape(tiny_bundle):
    """TensorRT 8.6 reads operators up to opset 17, ignores an opset-18 ReduceMean's axes input and
    Shape's start/end; OpenCV's importer ignores the latter too."""
    for name in ("mapping.onnx", "synthesis.onnx"):
        model = onnx.load(str(tiny_bundle / name))
        assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]
        ops = {n.op_type for n in model.graph.node}
        assert not ops & {"ReduceMean", "Shape", "Expand"}, (name, ops)


@pytest.mark.parametrize("name", ["mapping.onnx", "synthesis.onnx"])
def test_every_normalisation_in_the_bundle_keeps_a_positive_epsilon(tiny_bundle, name):
    model = onnx.load(str(tiny_bundle / name))
    assert normalisations_without_epsilon(model) == []
    if name == "mapping.onnx":  # the pixel norm: sum of squares + n * eps -> Sqrt
        assert any(n.op_type == "Sqrt" for n in model.graph.node)


def test_the_epsilon_walk_finds_a_norm_whose_epsilon_was_dropped():
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])
    nodes = [helper.make_node("Mul", ["x", "x"], ["sq"]), helper.make_node("ReduceMean", ["sq"], ["m"], axes=[1]),
             helper.make_node("Sqrt", ["m"], ["r"], name="lost"), helper.make_node("Div", ["x", "r"], ["y"])]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    assert normalisations_without_epsilon(model) == ["lost"]  # the Div reads that Sqrt: reported once


def test_mapping_of_edge_latents_matches_pytorch(tiny_bundle, tiny_G):
    """z = 0 gave NaN when the pixel norm's epsilon was lost; tiny and huge z stress the same path."""
    g = torch.Generator().manual_seed(41)
    d = torch.randn(1, TINY.z_dim, generator=g)
    z = torch.cat([torch.zeros(1, TINY.z_dim), d * 1e-20, d * 1e-3, d * 1e12, d * 1e15])
    with torch.no_grad():
        ref = tiny_G.mapping(z).numpy()
    w = _session(tiny_bundle / "mapping.onnx").run(None, {"z": z.numpy()})[0]
    assert np.isfinite(w).all()
    assert np.abs(w - ref).max() <= 1e-5 * max(1.0, float(np.abs(ref).max()))


def test_synthesis_of_the_average_w_without_noise_matches_pytorch(tiny_bundle, tiny_G):
    L = TINY.num_layers
    ws = [tiny_G.w_avg.view(1, -1).clone() for _ in range(L)]
    noise = [torch.zeros(1, 1, r, r) for r in map(TINY.layer_resolution, range(L))]
    with torch.no_grad():
        ref = tiny_G.synthesis.run_layers(ws, noise).numpy()
    out = _session(tiny_bundle / "synthesis.onnx").run(None, _feeds(ws, noise))[0]
    assert np.isfinite(out).all() and np.abs(out - ref).max() <= 1e-4


def test_export_refuses_a_generator_with_nan_weights(tmp_path):
    G = randomized_generator(TINY)
    with torch.no_grad():
        G.synthesis.layers[3].epilogue.bias[0] = float("nan")
    with pytest.raises(ExportError, match="NaN"):
        export_bundle(G, tmp_path / "x.sgbundle")
    assert list(tmp_path.iterdir()) == []


def test_a_non_finite_export_error_fails_the_parity_check(tmp_path, monkeypatch):
    import stylegan_edge.export.onnx_export as ex

    monkeypatch.setattr(ex, "_max_error", lambda *a: float("nan"))
    with pytest.raises(ExportError, match="differs from PyTorch by nan"):
        export_bundle(randomized_generator(TINY), tmp_path / "x.sgbundle")
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_during_export_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    import errno

    import stylegan_edge.export.onnx_export as ex

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ex.np, "savez", full)
    with pytest.raises(ExportError, match="cannot write the bundle .*No space left on device"):
        export_bundle(randomized_generator(TINY), tmp_path / "x.sgbundle")
    assert list(tmp_path.iterdir()) == []


def test_the_export_command_names_a_full_disk_in_one_line(tiny_checkpoint, tmp_path):
    script = (
        "import errno, resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))\n"
        "from stylegan_edge.cli.export_cmd import main\n"
        f"sys.argv = ['stylegan-export', {str(tiny_checkpoint)!r}, '--out', {str(tmp_path / 'x.sgbundle')!r}]\n"
        "main()\n"
    )
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "File too large" in errors[0], r.stderr
    assert not (tmp_path / "x.sgbundle").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_table1_baseline_exports_as_trained_with_constant_convolution_weights(tmp_path):
    """Configuration A (no styles, pixel norm, no blur) exports only with --graph reference; its
    run-time-computed weights are folded so every convolution reads an initializer."""
    import dataclasses

    from stylegan_edge.export.onnx_export import ExportConfig

    cfg = dataclasses.replace(TINY, use_styles=False, use_pixel_norm=True, use_instance_norm=False, use_blur=False,
                              fused_up_min_res=16)
    G = randomized_generator(cfg)
    out = export_bundle(G, tmp_path / "a.sgbundle", ExportConfig(graph="reference"))
    model = onnx.load(out / "synthesis.onnx")
    inits = {i.name for i in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose")]
    assert any(n.op_type == "ConvTranspose" for n in convs)
    assert all(n.input[1] in inits for n in convs)
