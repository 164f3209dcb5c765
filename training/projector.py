"""Projection: find the latent (W or W+, optionally the noise maps) that reproduces an image.

The optimisation follows the facts of NVlabs/stylegan2 `projector.py` (commit bf0fe0b, read for
its schedule and constants, not copied): Adam from the average w; a learning rate that ramps up
over the first 5% of the steps and down along a half cosine over the last 25%; Gaussian noise
added to the latent, with a standard deviation of 5% of W's spread that falls quadratically to
zero at 75% of the steps (an early exploration that keeps Adam out of the first local minimum);
when the noise maps are optimised too, a penalty of 1e5 times the squared one-pixel
autocorrelations (horizontal and vertical) of every noise map and of its 2x2-average-pooled
versions down to 8x8, and the maps renormalised to zero mean and unit variance after every step,
so they cannot carry the image themselves.

The image loss is either a perceptual distance (VGG16 features whose weights the user supplies as
safetensors, see docs/projection.md for why not ONNX) or, by default, a pixel + Laplacian-pyramid
loss that needs no pretrained weights. Everything is PyTorch: projection needs gradients through
the generator, so it runs from a checkpoint, never from an ONNX bundle alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from stylegan_edge.runtime.errors import StyleganError

from .networks import Generator

SPACES = ("w", "w+")


class ProjectionError(StyleganError, ValueError):
    """Bad projection input (an unreadable target, a bundle without its checkpoint, a feature
    file that does not fit); the message is one line naming the file or option."""


@dataclass(frozen=True)
class ProjectConfig:
    """The optimisation's settings; the defaults are NVlabs/stylegan2's projector's, except the
    number of steps (its 1000 is more than a 64 px model needs)."""

    steps: int = 500
    space: str = "w"
    optimize_noise: bool = False
    initial_lr: float = 0.1
    lr_rampup: float = 0.05  # share of the steps
    lr_rampdown: float = 0.25  # share of the steps
    initial_noise_factor: float = 0.05  # latent noise std at step 0, as a share of W's spread
    noise_ramp: float = 0.75  # share of the steps after which no latent noise is added
    noise_reg_weight: float = 1e5
    w_std_samples: int = 10000
    seed: int = 0
    frame_every: int = 0  # call on_frame every this many steps (0: never)
    # W+ only: after the W run of `steps`, this many more steps (None: steps // 2) on one w per
    # layer, from the best w, with the learning-rate schedule restarted and no latent noise. Started from w_avg, W+
    # does worse than W here: Adam moves every layer's w at the same rate whatever the size of its
    # gradient, so the layers that barely affect the image drift at random (measured in
    # docs/projection.md). Starting from the W optimum also makes W+ at least as good as W.
    refine_steps: int | None = None
    refine_lr: float | None = None  # None: initial_lr (the same schedule, restarted)

    @property
    def total_steps(self) -> int:
        if self.space != "w+":
            return self.steps
        return self.steps + (self.steps // 2 if self.refine_steps is None else self.refine_steps)

    def __post_init__(self) -> None:
        if self.space not in SPACES:
            raise ProjectionError(f"--space must be one of {', '.join(SPACES)}, got {self.space!r}")
        if self.steps < 1:
            raise ProjectionError(f"--steps must be >= 1, got {self.steps}")
        if self.refine_steps is not None and self.refine_steps < 0:
            raise ProjectionError(f"refine_steps must be >= 0, got {self.refine_steps}")
        if self.frame_every < 0:
            raise ProjectionError(f"frame_every must be >= 0, got {self.frame_every}")


# --- schedules -----------------------------------------------------------------------------------
def learning_rate(step: int, cfg: ProjectConfig) -> float:
    """Linear ramp-up over `lr_rampup` of the run, half-cosine ramp-down over `lr_rampdown`."""
    t = step / cfg.steps
    down = min(1.0, (1.0 - t) / cfg.lr_rampdown)
    ramp = (0.5 - 0.5 * math.cos(down * math.pi)) * min(1.0, t / cfg.lr_rampup)
    return cfg.initial_lr * ramp


def latent_noise_std(step: int, cfg: ProjectConfig, w_std: float) -> float:
    t = step / cfg.steps
    return w_std * cfg.initial_noise_factor * max(0.0, 1.0 - t / cfg.noise_ramp) ** 2


@torch.no_grad()
def w_spread(G: Generator, samples: int = 10000, seed: int = 123) -> float:
    """W's spread as NVlabs/stylegan2 measures it: the root mean squared distance of mapped
    samples from their mean (over all w dimensions together, not per dimension)."""
    gen = torch.Generator().manual_seed(seed)
    dev = G.w_avg.device
    ws = torch.cat([
        G.mapping(torch.randn(n, G.cfg.z_dim, generator=gen).to(dev))
        for n in [1000] * (samples // 1000) + ([samples % 1000] if samples % 1000 else [])
    ])
    return float((ws - ws.mean(0)).square().sum(1).mean().sqrt())


# --- noise regularisation ------------------------------------------------------------------------
def noise_autocorrelations(noise: torch.Tensor, min_size: int = 8) -> list[torch.Tensor]:
    """The one-pixel horizontal and vertical autocorrelations (circular, mean of v * shifted v)
    of a noise map [B, 1, H, W] and of its 2x2 average-pooled versions, down to `min_size`.
    Each is ~0 for white noise and ~its variance for a smooth map."""
    out = []
    v = noise
    while True:
        out.append((v * v.roll(1, dims=3)).mean())
        out.append((v * v.roll(1, dims=2)).mean())
        if v.shape[-1] <= min_size or v.shape[-1] % 2:
            return out
        v = F.avg_pool2d(v, 2)


def noise_regularization(noises: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sum of the squared autocorrelations of every noise map's pyramid."""
    terms = [a.square() for n in noises for a in noise_autocorrelations(n)]
    return torch.stack(terms).sum() if terms else torch.zeros(())


@torch.no_grad()
def normalize_noise_(noises: Sequence[torch.Tensor]) -> None:
    """Each map to zero mean, unit variance, in place (what the synthesis network was trained on)."""
    for n in noises:
        n.sub_(n.mean()).div_(n.square().mean().sqrt().clamp_min(1e-8))


# --- image losses --------------------------------------------------------------------------------
_BINOMIAL5 = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def _blur5(x: torch.Tensor) -> torch.Tensor:
    c = x.shape[1]
    k = (_BINOMIAL5[:, None] * _BINOMIAL5[None, :]).to(x).expand(c, 1, 5, 5)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), k, groups=c)


def laplacian_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """Band-pass images (finest first) and the low-pass residual last; they sum back to x when
    each is upsampled the same way (Burt and Adelson's pyramid with a 5-tap binomial filter)."""
    bands = []
    for _ in range(levels - 1):
        if min(x.shape[-2:]) < 8:
            break
        low = F.avg_pool2d(_blur5(x), 2)
        up = F.interpolate(low, scale_factor=2.0, mode="bilinear", align_corners=False)
        bands.append(x - up)
        x = low
    bands.append(x)
    return bands


class PyramidLoss(nn.Module):
    """The default image loss, needing no pretrained weights: pixel MSE plus the mean absolute
    difference of every Laplacian-pyramid level (finest to a 4-8 px low-pass), each level weighted
    equally per pixel (Bojanowski et al.'s Lap1, normalised by pixel count). The coarse levels
    give the layout (pose, head shape, background) as much say as the fine ones, so the
    optimiser fixes them first instead of chasing edges; L1 keeps a few misaligned details from
    dominating; the MSE term is what PSNR measures. Images in [-1, 1]; returns one loss per image."""

    def __init__(self, levels: int = 5, pixel_weight: float = 1.0) -> None:
        super().__init__()
        self.levels = levels
        self.pixel_weight = pixel_weight

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = self.pixel_weight * (x - target).square().flatten(1).mean(1)
        for a, b in zip(laplacian_pyramid(x, self.levels), laplacian_pyramid(target, self.levels)):
            loss = loss + (a - b).abs().flatten(1).mean(1)
        return loss


# VGG16's convolutional part (torchvision's `vgg16().features`): channels per conv, "M" a 2x2 max pool.
VGG16_LAYOUT: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512,
)
# The ReLU outputs LPIPS compares: relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 (conv indices 1, 3, 6, 9, 12).
VGG16_TAPS = (1, 3, 6, 9, 12)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGG16Features(nn.Module):
    """VGG16's convolutions up to relu5_3, returning the five LPIPS taps. Tensor names match
    torchvision's `vgg16().features` state dict (`features.0.weight`, `features.2.weight`, ...)
    so its weights load as they are."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for item in VGG16_LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c_in, int(item), 3, padding=1), nn.ReLU()]
                c_in = int(item)
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps, conv = [], -1
        for layer in self.features:
            x = layer(x)
            if isinstance(layer, nn.Conv2d):
                conv += 1
            elif isinstance(layer, nn.ReLU) and conv in VGG16_TAPS:
                taps.append(x)
        return taps


class PerceptualLoss(nn.Module):
    """LPIPS-style distance on VGG16 features: each tap's channel vectors scaled to unit length,
    squared differences weighted per channel (LPIPS's learned `lin` weights when the file has
    them, else all ones: the "baseline" VGG distance of Zhang et al. 2018), averaged over pixels,
    summed over taps. Images in [-1, 1] are taken to [0, 1], normalised with ImageNet's mean and
    std (what torchvision's weights expect), and resized to 224 px when smaller (VGG's filters
    see little in a 64 px face) or area-averaged to 256 px when larger (as stylegan2 does)."""

    def __init__(self, vgg: VGG16Features, lin: Sequence[torch.Tensor] | None = None) -> None:
        super().__init__()
        self.vgg = vgg.eval().requires_grad_(False)
        weights = lin if lin is not None else [torch.ones(c) for c in (64, 128, 256, 512, 512)]
        for i, w in enumerate(weights):
            self.register_buffer(f"lin{i}", w.reshape(1, -1, 1, 1).float())
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        size = x.shape[-1]
        if size < 224:
            x = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)
        elif size > 256:
            x = F.adaptive_avg_pool2d(x, (256, 256))
        return ((x + 1) / 2 - self.mean) / self.std

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        fx, ft = self.vgg(self._prepare(x)), self.vgg(self._prepare(target))
        loss = torch.zeros(x.shape[0], device=x.device)
        for i, (a, b) in enumerate(zip(fx, ft)):
            a = a / (a.square().sum(1, keepdim=True).sqrt() + 1e-10)
            b = b / (b.square().sum(1, keepdim=True).sqrt() + 1e-10)
            loss = loss + (getattr(self, f"lin{i}") * (a - b).square()).sum(1).mean((1, 2))
        return loss


def load_perceptual(path: str | Path, device: str | torch.device = "cpu") -> PerceptualLoss:
    """A PerceptualLoss from a safetensors file of VGG16 feature weights (torchvision names,
    `features.N.weight/bias`; optional `lin.0.weight` ... `lin.4.weight` from LPIPS)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if path.suffix.lower() == ".onnx":
        raise ProjectionError(
            f"{path}: projection needs gradients through the feature model, which onnxruntime cannot give; "
            "give VGG16 weights as .safetensors (docs/projection.md says how to make them)"
        )
    if not path.is_file():
        raise ProjectionError(f"{path}: no such perceptual feature file")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ProjectionError(f"{path}: not a readable safetensors file ({str(e).splitlines()[0]})") from None
    vgg = VGG16Features()
    expected = vgg.state_dict()
    state = {k: v for k, v in tensors.items() if k.startswith("features.")}
    missing = sorted(set(expected) - set(state))
    if missing:
        raise ProjectionError(f"{path}: not VGG16 feature weights (missing {missing[0]}, {len(missing)} in all)")
    for k, v in expected.items():
        if state[k].shape != v.shape:
            raise ProjectionError(f"{path}: {k} has shape {list(state[k].shape)}, VGG16 needs {list(v.shape)}")
        if not bool(torch.isfinite(state[k]).all()):
            raise ProjectionError(f"{path}: {k} holds NaN or infinite values")
    vgg.load_state_dict({k: state[k].float() for k in expected})
    lin = None
    if any(k.startswith("lin.") for k in tensors):
        lin = []
        for i, c in enumerate((64, 128, 256, 512, 512)):
            w = tensors.get(f"lin.{i}.weight")
            if w is None or w.numel() != c:
                raise ProjectionError(f"{path}: lin.{i}.weight must hold {c} channel weights")
            lin.append(w.reshape(-1))
    return PerceptualLoss(vgg, lin).to(device)


# --- targets -------------------------------------------------------------------------------------
def load_target(path: str | Path, resolution: int, channels: int = 3) -> np.ndarray:
    """An image file as the model sees it: centre-cropped to a square, resized to `resolution`
    (Lanczos), uint8 [R, R, C]."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ProjectionError(f"{path}: no such image file")
    try:
        with Image.open(path) as im:
            im = im.convert("L" if channels == 1 else "RGB")
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ProjectionError(f"{path}: not a readable image ({str(e).splitlines()[0]})") from None
    w, h = im.size
    s = min(w, h)
    im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    if s != resolution:
        im = im.resize((resolution, resolution), Image.LANCZOS)
    arr = np.asarray(im, dtype=np.uint8)
    return arr[..., None] if arr.ndim == 2 else arr


def image_to_tensor(image: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 [R, R, C] -> float [1, C, R, R] in [-1, 1]."""
    x = torch.from_numpy(np.array(image, dtype=np.float32)).float().permute(2, 0, 1)[None]
    return (x / 127.5 - 1.0).to(device)


# --- the optimisation ----------------------------------------------------------------------------
@dataclass
class ProjectionResult:
    """The best latent found (lowest image loss of any step; the one that made `image`)."""

    ws: torch.Tensor  # [1, L, w_dim], W+ (the one w repeated for space "w")
    noise: list[torch.Tensor]  # one [1, 1, r, r] map per layer (empty for a model without noise)
    image: torch.Tensor  # [1, C, R, R], the generator's output for ws and noise
    loss: float  # its image loss
    best_step: int
    steps_done: int
    interrupted: bool
    space: str
    losses: list[float] = field(default_factory=list)  # the image loss of every step

    @property
    def w(self) -> torch.Tensor | None:
        """The single w [1, w_dim] of a W projection (None for W+)."""
        return self.ws[:, 0] if self.space == "w" else None


class _Run:
    """State shared by the stages of one projection: the best latent so far, the step count."""

    def __init__(self, G: Generator, target: torch.Tensor,
                 loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], cfg: ProjectConfig,
                 progress: Callable[[int, float], None] | None,
                 on_frame: Callable[[int, torch.Tensor], None] | None) -> None:
        self.G, self.target, self.loss_fn, self.cfg = G, target, loss_fn, cfg
        self.progress, self.on_frame = progress, on_frame
        self.const = G.synthesis.make_noise(1, "const")
        self.best: tuple[float, int, torch.Tensor, list[torch.Tensor]] | None = None
        self.losses: list[float] = []
        self.step = 0

    def synth(self, ws: torch.Tensor, maps: Sequence[torch.Tensor]) -> torch.Tensor:
        it = iter(maps)
        full = [next(it) if n is not None else None for n in self.const]
        return self.G.synthesis.run_layers(list(ws.unbind(1)), full)

    def stage(self, latent: torch.Tensor, noise: list[torch.Tensor], steps: int, initial_lr: float,
              noise_factor: float, w_std: float, gen: torch.Generator) -> None:
        """Adam on `latent` ([1, 1 or L, w_dim]) and, when optimised, the noise maps, for `steps`
        steps of the ramped learning-rate schedule; records every step's loss and the best latent."""
        cfg = self.cfg
        sched = ProjectConfig(steps=steps, initial_lr=initial_lr, initial_noise_factor=noise_factor,
                              lr_rampup=cfg.lr_rampup, lr_rampdown=cfg.lr_rampdown, noise_ramp=cfg.noise_ramp)
        L = self.G.num_layers
        params = [latent] + (noise if cfg.optimize_noise else [])
        opt = torch.optim.Adam(params, lr=initial_lr, betas=(0.9, 0.999), eps=1e-8)
        for i in range(steps):
            for group in opt.param_groups:
                group["lr"] = learning_rate(i, sched)
            jitter = torch.randn(latent.shape, generator=gen, device=latent.device) * latent_noise_std(i, sched, w_std)
            ws = (latent + jitter).expand(1, L, -1)
            image = self.synth(ws, noise)
            dist = self.loss_fn(image, self.target).sum()
            loss = dist
            if cfg.optimize_noise and noise:
                loss = loss + cfg.noise_reg_weight * noise_regularization(noise)
            value = float(dist.detach())
            self.losses.append(value)
            if self.best is None or value < self.best[0]:
                # The latent that made this image, before the update changes it.
                self.best = (value, self.step, ws.detach().clone(), [n.detach().clone() for n in noise])
            if self.on_frame is not None and cfg.frame_every and self.step % cfg.frame_every == 0:
                self.on_frame(self.step, image.detach())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if cfg.optimize_noise and noise:
                normalize_noise_(noise)
            self.step += 1
            if self.progress is not None:
                self.progress(self.step, value)


def project(
    G: Generator,
    target: torch.Tensor,
    cfg: ProjectConfig,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    progress: Callable[[int, float], None] | None = None,
    on_frame: Callable[[int, torch.Tensor], None] | None = None,
    w_std: float | None = None,
) -> ProjectionResult:
    """Optimise a latent so that G reproduces `target` ([1, C, R, R] in [-1, 1]).

    Space "w": `cfg.steps` steps on one w, starting at w_avg. Space "w+": the same W run, then
    `cfg.total_steps - cfg.steps` more on one w per layer starting from the best w (see
    ProjectConfig.refine_steps for why). `progress(step, loss)` after every step;
    `on_frame(step, image)` every `cfg.frame_every` steps and once at the end. Ctrl-C
    (KeyboardInterrupt) ends the run early and returns the best latent so far, `interrupted` set."""
    res = G.cfg.resolution
    if target.ndim != 4 or target.shape[0] != 1 or tuple(target.shape[1:]) != (G.cfg.img_channels, res, res):
        raise ProjectionError(
            f"target must be [1, {G.cfg.img_channels}, {res}, {res}], got {list(target.shape)}"
        )
    G = G.eval().requires_grad_(False)
    dev = G.w_avg.device
    run = _Run(G, target.to(dev), loss_fn if loss_fn is not None else PyramidLoss(), cfg, progress, on_frame)
    if w_std is None:
        w_std = w_spread(G, cfg.w_std_samples)
    gen = torch.Generator(device=dev).manual_seed(cfg.seed)
    # The model's fixed noise maps: a standard-normal draw like stylegan2's initialisation, and
    # what the runtime's noise="const" uses, so --no-noise reproduces exactly on a bundle.
    noise = [n.detach().clone().requires_grad_(cfg.optimize_noise) for n in run.const if n is not None]
    interrupted = False
    try:
        latent = G.w_avg.detach().clone().float().reshape(1, 1, -1).requires_grad_(True)
        run.stage(latent, noise, cfg.steps, cfg.initial_lr, cfg.initial_noise_factor, w_std, gen)
        if cfg.space == "w+" and cfg.total_steps > cfg.steps:
            assert run.best is not None
            _, _, ws_best, noise_best = run.best
            latent = ws_best.clone().requires_grad_(True)
            noise = [n.clone().requires_grad_(cfg.optimize_noise) for n in noise_best]
            run.stage(latent, noise, cfg.total_steps - cfg.steps,
                      cfg.initial_lr if cfg.refine_lr is None else cfg.refine_lr, 0.0, w_std, gen)
    except KeyboardInterrupt:
        interrupted = True
    if run.best is None:  # interrupted before the first loss: the starting point is the best there is
        with torch.no_grad():
            ws0 = G.w_avg.detach().float().reshape(1, 1, -1).expand(1, G.num_layers, -1).clone()
            noise0 = [n.detach().clone() for n in noise]
            run.best = (float(run.loss_fn(run.synth(ws0, noise0), run.target).sum()), 0, ws0, noise0)
    value, best_step, ws_best, noise_best = run.best
    with torch.no_grad():
        image = run.synth(ws_best, noise_best)
    if on_frame is not None and cfg.frame_every:
        on_frame(run.step, image)
    return ProjectionResult(
        ws=ws_best, noise=noise_best, image=image, loss=value, best_step=best_step, steps_done=run.step,
        interrupted=interrupted, space=cfg.space, losses=run.losses,
    )


def reconstruction_metrics(image: torch.Tensor, target: torch.Tensor) -> tuple[float, float]:
    """PSNR (dB) and SSIM of a reconstruction against its target, both [1, C, R, R] in [-1, 1]."""
    from stylegan_edge.calibration.metrics import psnr, ssim

    x = image.detach().cpu().double().numpy()
    t = target.detach().cpu().double().numpy()
    return float(psnr(x, t)[0]), float(ssim(x, t)[0])


def save_latent(path: str | Path, result: ProjectionResult) -> Path:
    """The latent as .npz: `ws` [1, L, w_dim] (what the runtime's `synthesize` takes), `w`
    [1, w_dim] for a W projection, and `noise_00` ... [1, 1, r, r] (the bundle's input names;
    pass them in layer order as `noise=`), written all or nothing."""
    from stylegan_edge.runtime.images import output_path

    arrays: dict[str, np.ndarray] = {"ws": result.ws.detach().cpu().float().numpy()}
    if result.w is not None:
        arrays["w"] = result.w.detach().cpu().float().numpy()
    for i, n in enumerate(result.noise):
        arrays[f"noise_{i:02d}"] = n.detach().cpu().float().numpy()
    arrays["space"] = np.array(result.space)
    with output_path(path, suffix=".tmp.npz") as tmp:
        np.savez(tmp, **arrays)
    return Path(path)


# --- which checkpoint -----------------------------------------------------------------------------
def checkpoint_for_model(model: str | Path, checkpoint: str | Path | None = None) -> Path:
    """The checkpoint to project with: `model` itself when it is a checkpoint file; for a bundle,
    `checkpoint` when given, else the file its meta.json `source.checkpoint` names when it lies
    beside the bundle (and its SHA-256 matches the recorded one)."""
    model = Path(model)
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        if not checkpoint.is_file():
            raise ProjectionError(f"{checkpoint}: no such checkpoint file")
        return checkpoint
    if model.is_file():
        return model
    if not model.exists():
        raise ProjectionError(f"{model}: no such checkpoint or bundle")
    from stylegan_edge.runtime.bundle import read_meta
    from stylegan_edge.runtime.files import sha256_file

    meta = read_meta(model / "meta.json")
    source = meta.raw.get("source")
    name = source.get("checkpoint") if isinstance(source, dict) else None
    need = "projection needs the PyTorch checkpoint (gradients through the generator): pass --checkpoint FILE"
    if not isinstance(name, str) or not name or Path(name).name != name:
        raise ProjectionError(f"{model}: the bundle records no source checkpoint; {need}")
    for candidate in (model.parent / name, model / name):
        if candidate.is_file():
            expected = source.get("sha256")
            if isinstance(expected, str) and sha256_file(candidate) != expected:
                raise ProjectionError(
                    f"{candidate}: not the checkpoint {model.name} was exported from (SHA-256 differs); {need}"
                )
            return candidate
    raise ProjectionError(f"{model}: its source checkpoint {name} is not beside it; {need}")
