"""PyTorch generator -> ONNX bundle (mapping.onnx, synthesis.onnx, meta.json, noise_const.npz).

Every style layer's w and noise image is a graph input, so truncation, mixing, per-layer edits
and the noise mode are runtime choices. The bundle is written into a temporary directory beside
its destination and renamed into place only once every file has passed `onnx.checker` (full
check), shape inference and a numerical comparison against PyTorch on fresh random inputs: a
half-written bundle never appears under the final name.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxscript.optimizer
import torch

from stylegan_edge.runtime.backends.onnxruntime import open_session
from stylegan_edge.runtime.bundle import (
    BUNDLE_FORMAT,
    BUNDLE_FORMAT_VERSION,
    LABEL_INPUT,
    LATENT_INPUT,
    noise_input,
    w_input,
)
from stylegan_edge.runtime.errors import StyleganError
from stylegan_edge.runtime.files import file_record
from stylegan_edge.runtime.version import tool_version
from stylegan_edge.training.config import ModelConfig
from stylegan_edge.training.flops import model_gflops
from stylegan_edge.training.networks import Generator

from .inference_graph import GraphOptions, InferenceMapping, synthesis_module

# Operators a bundle may contain: standard ONNX only, nothing random, no runtime-computed
# convolution weights. Export fails if the graph strays outside this set.
ALLOWED_OPS = frozenset({
    "Add", "Mul", "Sub", "Div", "Conv", "Gemm", "MatMul", "LeakyRelu", "InstanceNormalization",
    "DepthToSpace", "Slice", "Expand", "Shape", "Gather", "Concat", "Reshape", "Unsqueeze", "Squeeze",
    "ReduceMean", "Sqrt", "Reciprocal", "Pow", "Resize", "Constant", "ConvTranspose", "Transpose",
    "Cast", "Identity", "Max", "Min",
})
RANDOM_OPS = frozenset({
    "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli",
})


class ExportError(StyleganError, RuntimeError):
    """Export failed; the message is one line."""


# Opset 17 is the newest that every supported reader takes as meant: TensorRT 8.6 (JetPack 6.0)
# documents operators up to opset 17, and opset 18 moved the reduction axes to an input that its
# parser ignores. Opset 18 is kept for readers that want it.
SUPPORTED_OPSETS = (17, 18)
NATIVE_OPSET = 18  # what torch.onnx's dynamo exporter writes without converting


@dataclass(frozen=True)
class ExportConfig:
    opset: int = 17
    graph: str = "inference"  # "inference": sub-pixel upsampling, folded constants; "reference": as trained
    options: GraphOptions = GraphOptions()  # spelling of the inference graph, chosen by measurement
    verify_batch: int = 2
    tolerance: float = 1e-4  # max abs error of ONNX vs PyTorch at export time


def _export_module(module: torch.nn.Module, args: tuple[torch.Tensor, ...], names: list[str], output: str,
                   path: Path, opset: int) -> None:
    batch = torch.export.Dim("batch", min=1, max=4096)
    # torch.export wants the dynamic shapes shaped like forward's parameters: one tuple for a
    # `*inputs` parameter (the synthesis graph), one entry per named one (the mapping's z and c).
    per_input = tuple({0: batch} for _ in names)
    varargs = any(p.kind is inspect.Parameter.VAR_POSITIONAL
                  for p in inspect.signature(module.forward).parameters.values())
    # The exporter is chatty (progress lines, deprecation and axis-renaming warnings); the CLI
    # reports its own steps instead.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        previous = logging.getLogger("torch").level
        logging.getLogger("torch").setLevel(logging.ERROR)
        try:
            # Exported at the exporter's native opset, so that every node still carries the module
            # scope it is named after; converted to the requested opset afterwards.
            program = torch.onnx.export(
                module, args, None, input_names=names, output_names=[output], opset_version=NATIVE_OPSET,
                dynamo=True, optimize=True, verbose=False,
                dynamic_shapes=(per_input,) if varargs else per_input,
            )
        finally:
            logging.getLogger("torch").setLevel(previous)
    model = program.model_proto
    if getattr(module, "fold_all_constants", False):
        # The graph as trained computes its weights from parameters at run time (equalised-learning-
        # rate gains, the fused upsampling kernel); the optimiser folds only small tensors by default.
        # Folded here so that every convolution reads a constant weight, as parsers want.
        model = onnxscript.optimizer.optimize(model, input_size_limit=1 << 62, output_size_limit=1 << 62)
    merge_chained_slices(model)
    name_nodes_by_module(model)
    unshare_initializers(model)
    if opset != default_opset(model):
        try:
            model = onnx.version_converter.convert_version(model, opset)
        except Exception as e:  # the converter raises bare RuntimeErrors from C++
            raise ExportError(f"{path.name}: cannot be written at opset {opset}: {str(e).splitlines()[0]}") from None
        if default_opset(model) != opset:
            raise ExportError(f"{path.name}: cannot be written at opset {opset}")
        _drop_default_noop_with_empty_axes(model)
    # The dynamo exporter names the batch axis after the first input it met; give it one name.
    for value in list(model.graph.input) + list(model.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_value")
        dim.dim_param = "batch"
    onnx.save(model, os.fspath(path))


def _drop_default_noop_with_empty_axes(model: onnx.ModelProto) -> None:
    """onnx's version converter moves a reduction's axes from input to attribute when it goes
    below opset 18 but leaves `noop_with_empty_axes`, which the older reductions do not have (the
    checker refuses it). At its default, 0, dropping it changes nothing."""
    for node in model.graph.node:
        if node.op_type.startswith("Reduce"):
            keep = [a for a in node.attribute if not (a.name == "noop_with_empty_axes" and a.i == 0)]
            if len(keep) != len(node.attribute):
                del node.attribute[:]
                node.attribute.extend(keep)


def merge_chained_slices(model: onnx.ModelProto) -> int:
    """Fold Slice -> Slice on different axes (how `x[:, :, 1:-1, 1:-1]` exports) into one Slice:
    the sub-pixel crop then copies the high-resolution map once instead of twice."""
    g = model.graph
    consts = {i.name: onnx.numpy_helper.to_array(i) for i in g.initializer}
    consumers: dict[str, int] = {}
    for node in g.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1

    def params(node: onnx.NodeProto) -> list[np.ndarray] | None:
        if node.op_type != "Slice" or len(node.input) < 4 or not all(i in consts for i in node.input[1:]):
            return None
        starts, ends, axes = (consts[i] for i in node.input[1:4])
        steps = consts[node.input[4]] if len(node.input) > 4 else np.ones_like(starts)
        return [starts, ends, axes, steps]

    producer = {o: n for n in g.node for o in n.output}
    merged = 0
    for node in list(g.node):
        first = producer.get(node.input[0]) if node.op_type == "Slice" else None
        p1, p2 = (params(first), params(node)) if first is not None else (None, None)
        if p1 is None or p2 is None or consumers.get(first.output[0]) != 1 or set(p1[2]) & set(p2[2]):
            continue
        names = []
        for key, a, b in zip(("starts", "ends", "axes", "steps"), p1, p2):
            name = f"{node.output[0]}_{key}"
            g.initializer.append(onnx.numpy_helper.from_array(np.concatenate([a, b]).astype(np.int64), name))
            names.append(name)
        node.ClearField("input")
        node.input.extend([first.input[0], *names])
        g.node.remove(first)
        keep = [v for v in g.value_info if v.name != first.output[0]]
        del g.value_info[:]
        g.value_info.extend(keep)
        merged += 1
    return merged


def unshare_initializers(model: onnx.ModelProto) -> int:
    """Give every node its own copy of an initializer that several nodes read. The optimiser merges
    equal constants (in an untrained model a style bias of ones and an instance norm's scale),
    and OpenCV's importer then misreads the nodes that share one."""
    g = model.graph
    by_name = {i.name: i for i in g.initializer}
    seen: set[str] = set()
    copies = 0
    for node in g.node:
        for j, name in enumerate(node.input):
            if name not in by_name:
                continue
            if name not in seen:
                seen.add(name)
                continue
            copy = onnx.TensorProto()
            copy.CopyFrom(by_name[name])
            copy.name = f"{name}.{node.name or copies}"
            if copy.name in by_name:  # the node reads the same initializer more than once
                copy.name = f"{copy.name}.{copies}"
            by_name[copy.name] = copy
            g.initializer.append(copy)
            node.input[j] = copy.name
            copies += 1
    return copies


def name_nodes_by_module(model: onnx.ModelProto) -> None:
    """Name every node after the module it came from (`layers.5/InstanceNormalization`,
    `layers.5/Conv_1`), so precision plans, TensorRT layer names and profiles read as the model."""
    seen: dict[str, int] = {}
    scope_of: dict[str, str] = {}  # tensor -> scope of the node that produced it
    for node in model.graph.node:
        meta = {p.key: p.value for p in node.metadata_props}
        raw = meta.get("pkg.torch.onnx.name_scopes")
        try:
            scopes = [s for s in json.loads(raw.replace("'", '"'))[1:-1] if s] if raw else []
        except json.JSONDecodeError:
            scopes = []
        if raw is not None:
            scope = scopes[-1] if scopes else "graph"
        else:  # written by a graph pass: it belongs where its input came from
            scope = next((scope_of[i] for i in node.input if i in scope_of), "graph")
        scope_of.update((o, scope) for o in node.output)
        base = f"{scope}/{node.op_type}"
        k = seen.get(base, 0)
        seen[base] = k + 1
        node.name = base if k == 0 else f"{base}_{k}"


def default_opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


_PASS_THROUGH = ("Cast", "Identity")
_EPS_NORMS = ("InstanceNormalization", "LayerNormalization", "BatchNormalization")


def normalisations_without_epsilon(model: onnx.ModelProto) -> list[str]:
    """Nodes that divide by a norm with no positive constant added first (a lost epsilon turns a
    zero input into NaN). A Sqrt must read an Add of a positive constant; a Reciprocal or Div
    must read such an Add or a checked Sqrt; normalisation operators need epsilon > 0."""
    g = model.graph
    consts = {i.name: onnx.numpy_helper.to_array(i) for i in g.initializer}
    for node in g.node:
        if node.op_type == "Constant" and node.attribute:
            consts[node.output[0]] = onnx.numpy_helper.to_array(node.attribute[0].t)
    producer = {o: n for n in g.node for o in n.output}

    def source(name: str) -> onnx.NodeProto | None:
        node = producer.get(name)
        while node is not None and node.op_type in _PASS_THROUGH:
            node = producer.get(node.input[0])
        return node

    def adds_positive_constant(node: onnx.NodeProto | None) -> bool:
        return node is not None and node.op_type == "Add" and any(
            i in consts and consts[i].size > 0 and float(np.min(consts[i])) > 0 for i in node.input)

    bad = []
    for node in g.node:
        if node.op_type == "Sqrt":
            ok = adds_positive_constant(source(node.input[0]))
        elif node.op_type in ("Reciprocal", "Div"):
            divisor = node.input[0] if node.op_type == "Reciprocal" else node.input[1]
            if divisor in consts:
                continue
            src = source(divisor)
            ok = adds_positive_constant(src) or (src is not None and src.op_type == "Sqrt")
        elif node.op_type in _EPS_NORMS:
            eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)  # the operators' default
            ok = eps > 0
        else:
            continue
        if not ok:
            bad.append(node.name or node.op_type)
    return bad


def _check_onnx(path: Path) -> list[str]:
    """Full checker, strict shape inference and the operator policy; returns the op types."""
    try:
        onnx.checker.check_model(os.fspath(path), full_check=True)
        onnx.shape_inference.infer_shapes(onnx.load(os.fspath(path)), check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ExportError(f"{path.name} fails the ONNX checker: {str(e).splitlines()[0]}") from None
    model = onnx.load(os.fspath(path))
    lost = normalisations_without_epsilon(model)
    if lost:
        raise ExportError(f"{path.name}: normalisation without a positive epsilon at {', '.join(lost)}")
    ops = sorted({n.op_type for n in model.graph.node})
    bad = [op for op in ops if op in RANDOM_OPS or op not in ALLOWED_OPS]
    if bad:
        raise ExportError(f"{path.name} contains operators outside the bundle policy: {', '.join(bad)}")
    for node in model.graph.node:
        if node.op_type in ("Conv", "ConvTranspose") and len(node.input) > 1:
            if not any(i.name == node.input[1] for i in model.graph.initializer):
                raise ExportError(f"{path.name}: convolution {node.name} has weights computed at run time")
    return ops


def _synthesis_inputs(cfg: ModelConfig, batch: int, gen: torch.Generator) -> tuple[list[str], list[torch.Tensor]]:
    n = cfg.num_layers
    names = [w_input(i) for i in range(n)]
    tensors = [torch.randn(batch, cfg.w_dim, generator=gen) for _ in range(n)]
    if cfg.use_noise:
        names += [noise_input(i) for i in range(n)]
        tensors += [torch.randn(batch, 1, r, r, generator=gen) for r in map(cfg.layer_resolution, range(n))]
    return names, tensors


def _max_error(path: Path, names: list[str], tensors: list[torch.Tensor], reference: torch.Tensor) -> float:
    """Largest absolute difference from PyTorch, NaN where either side is not finite (so that it
    never passes a `<=` test)."""
    sess = open_session(path)
    out = sess.run(None, {k: v.numpy() for k, v in zip(names, tensors)})[0]
    ref = reference.numpy()
    if not (np.isfinite(out).all() and np.isfinite(ref).all()):
        return float("nan")
    return float(np.abs(out - ref).max())


def edge_latents(z_dim: int, gen: torch.Generator) -> torch.Tensor:
    """z at the edges of the input space: zero, a tiny norm, a huge norm (|z| up to 1e15 keeps the
    sum of squares finite in FP32)."""
    direction = torch.randn(1, z_dim, generator=gen)
    return torch.cat([torch.zeros(1, z_dim), direction * 1e-20, direction * 1e15])


def verification_labels(batch: int, label_size: int, gen: torch.Generator) -> torch.Tensor:
    """Labels c [batch, label_size] for checking a conditional mapping: random one-hot rows and
    random mixtures (non-negative, summing to one) in turn, so both uses of the input are compared."""
    classes = torch.randint(0, label_size, (batch,), generator=gen)
    c = torch.nn.functional.one_hot(classes, label_size).float()
    mix = torch.rand(batch, label_size, generator=gen)
    mix = mix / mix.sum(dim=1, keepdim=True)
    c[1::2] = mix[1::2]
    return c


def _mapping_inputs(mc: ModelConfig, z: torch.Tensor, gen: torch.Generator) -> tuple[list[str], list[torch.Tensor]]:
    if not mc.label_size:
        return [LATENT_INPUT], [z]
    return [LATENT_INPUT, LABEL_INPUT], [z, verification_labels(len(z), mc.label_size, gen)]


def _non_finite_tensor(G: Generator) -> str | None:
    for name, t in list(G.named_parameters()) + list(G.named_buffers()):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return name
    return None


def model_meta(G: Generator) -> dict[str, Any]:
    """The bundle metadata that describes the model itself (shapes, styles, w_avg, defaults)."""
    mc = G.cfg
    meta: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_FORMAT_VERSION,
        "tool_version": tool_version(),
        "resolution": mc.resolution,
        "img_channels": mc.img_channels,
        "z_dim": mc.z_dim,
        "w_dim": mc.w_dim,
        "num_layers": mc.num_layers,
        "use_noise": mc.use_noise,
        "layers": [
            {"index": i, "resolution": mc.layer_resolution(i), "channels": mc.layer_channels(i),
             "w_input": w_input(i), "noise_input": noise_input(i) if mc.use_noise else None}
            for i in range(mc.num_layers)
        ],
        "w_avg": [round(float(v), 8) for v in G.w_avg.tolist()],
        "truncation": {"psi": mc.truncation_psi, "cutoff": mc.truncation_cutoff},
        "opset": 0,
        "gflop_per_image": model_gflops(mc),
        "model_config": mc.to_dict(),
    }
    if mc.label_size:  # only for conditional models: an unconditional meta.json is as before labels
        meta["label_size"] = mc.label_size
        meta["label_names"] = list(mc.label_names) or [str(i) for i in range(mc.label_size)]
    return meta


def build_meta(G: Generator, cfg: ExportConfig, source: dict[str, Any], ops: dict[str, list[str]],
               errors: dict[str, float]) -> dict[str, Any]:
    meta = model_meta(G)
    meta.update({
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "opset": cfg.opset,
        "graph_form": cfg.graph,
        "graph_options": dataclasses.asdict(cfg.options) if cfg.graph == "inference" else None,
        "operators": ops,
        "export_max_abs_error": errors,
        "source": source,
    })
    return meta


def export_bundle(
    G: Generator, out: str | Path, cfg: ExportConfig | None = None, source: dict[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Write a bundle directory for generator `G` at `out`, replacing any bundle there."""
    cfg = cfg or ExportConfig()
    log = log or (lambda msg: None)
    out = Path(out)
    if G.cfg.progressive and G.lod > 0:
        raise ExportError(
            f"the generator is mid-growth (lod {G.lod:g}: progressive training has not reached {G.cfg.resolution} px); "
            "train to the end of its schedule or export the final model (a bundle holds a finished network; the "
            "checkpoint itself still generates in PyTorch: stylegan generate CHECKPOINT)"
        )
    if cfg.graph == "inference" and (not G.cfg.use_styles or not G.cfg.use_blur or G.cfg.use_pixel_norm
                                     or not G.cfg.use_instance_norm):
        # The folded graph has a blur, instance norm and style in every layer (Table 1's A-B lack them).
        raise ExportError("this model has Table 1 ablation switches (no styles, no blur or pixel norm) that the "
                          "inference graph does not fold; export it with --graph reference")
    if out.exists() and not (out / "meta.json").is_file():
        raise ExportError(f"{out} exists and is not a bundle; refusing to replace it")
    if out.parent.exists() and not out.parent.is_dir():
        raise ExportError(f"cannot write to {out.parent}: it is a file, not a folder")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as e:
        raise ExportError(f"cannot write to {out.parent}: {e.strerror or e}") from None
    G = G.eval().cpu()
    mc = G.cfg
    bad = _non_finite_tensor(G)
    if bad is not None:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ExportError(f"the generator's {bad} holds NaN or infinite values; refusing to export it")
    gen = torch.Generator().manual_seed(12345)
    try:
        t0 = time.perf_counter()
        z = torch.randn(cfg.verify_batch, mc.z_dim, generator=gen)
        mapping = InferenceMapping(G.mapping).eval()
        m_names, m_tensors = _mapping_inputs(mc, z, gen)
        _export_module(mapping, tuple(m_tensors), m_names, "w", tmp / "mapping.onnx", cfg.opset)
        log(f"mapping.onnx: exported in {time.perf_counter() - t0:.1f}s")

        t0 = time.perf_counter()
        names, tensors = _synthesis_inputs(mc, cfg.verify_batch, gen)
        synthesis = synthesis_module(G.synthesis, cfg.graph, cfg.options)
        _export_module(synthesis, tuple(tensors), names, "image", tmp / "synthesis.onnx", cfg.opset)
        log(f"synthesis.onnx: exported in {time.perf_counter() - t0:.1f}s ({cfg.graph} graph)")

        ops = {name: _check_onnx(tmp / name) for name in ("mapping.onnx", "synthesis.onnx")}
        log("checker and shape inference: passed")

        # Verify on fresh inputs (not the ones traced with) against the model as trained, and at
        # the edges: z = 0, tiny and huge z; w = w_avg in every layer with all-zero noise. A
        # conditional mapping gets one-hot and mixed labels, and at z = 0 an all-zero label too
        # (the pixel norm then divides a zero vector: only its epsilon keeps w finite).
        with torch.no_grad():
            z = torch.cat([torch.randn(cfg.verify_batch + 1, mc.z_dim, generator=gen), edge_latents(mc.z_dim, gen)])
            m_names, m_tensors = _mapping_inputs(mc, z, gen)
            if mc.label_size:
                m_tensors[1][cfg.verify_batch + 1] = 0.0  # the z = 0 row of edge_latents
            names, tensors = _synthesis_inputs(mc, cfg.verify_batch + 1, gen)
            n = mc.num_layers
            tensors[:n] = [torch.cat([t, G.w_avg.view(1, -1)]) for t in tensors[:n]]
            tensors[n:] = [torch.cat([t, torch.zeros_like(t[:1])]) for t in tensors[n:]]
            w_ref = G.mapping(*m_tensors)
            img_ref = G.synthesis.run_layers(tensors[:n], tensors[n:] if mc.use_noise else [None] * n)
        errors = {
            "mapping.onnx": _max_error(tmp / "mapping.onnx", m_names, m_tensors, w_ref),
            "synthesis.onnx": _max_error(tmp / "synthesis.onnx", names, tensors, img_ref),
        }
        for name, ref in (("mapping.onnx", w_ref), ("synthesis.onnx", img_ref)):
            allowed = cfg.tolerance * max(1.0, float(ref.abs().max()))
            if not errors[name] <= allowed:  # also true for NaN
                raise ExportError(f"{name} differs from PyTorch by {errors[name]:.2e} (tolerance {allowed:.1e}; "
                                  "fresh random inputs and inputs at the edges)")
        log(f"onnxruntime vs PyTorch on fresh and edge inputs: max abs error {max(errors.values()):.1e}")

        files = ["mapping.onnx", "synthesis.onnx"]
        if mc.use_noise:
            consts = G.synthesis.make_noise(1, "const")
            np.savez(tmp / "noise_const.npz", **{noise_input(i): t.numpy() for i, t in enumerate(consts)})
            files.append("noise_const.npz")
        meta = build_meta(G, cfg, source or {}, ops, errors)
        meta["files"] = {name: file_record(tmp / name) for name in files}  # checked when the bundle is opened
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        _replace_dir(tmp, out)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ExportError(f"cannot write the bundle {out}: {e.strerror or e}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _replace_dir(src: Path, dst: Path) -> None:
    """Move a finished directory into place; an old bundle there is removed only afterwards."""
    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        os.replace(dst, old)
    os.replace(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
