"""The demo's loop: capture a frame, ask the worker for faces, compose, show or record, handle keys.

    from stylegan_edge.runtime import Generator
    from stylegan_edge.runtime.demo import DemoConfig, open_source, run_demo
    stats = run_demo(Generator("faces64.sgbundle"), open_source("synthetic"),
                     DemoConfig(mode="pip", out=Path("demo.mp4"), max_frames=300))

The loop waits for the generator once, for the very first frame (so the output starts with an
overlay); after that it only ever takes the newest finished result.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..generator import NOISE_MODES, ArgumentError, class_from_text, class_index, style_layers
from ..images import output_path
from .errors import DemoError, OutputError
from .faces import DetectorConfig, FaceDetector, FaceTracker
from .hud import KEY_HELP, RateMeter, draw_panel
from .overlay import paste_face, paste_pip, pixelate
from .sources import FrameSource
from .walker import Walker, coprime_stride
from .worker import GenerationWorker, GenRequest, GenResult

MODES = ("pip", "replace-faces")
MIX_GROUPS = ("coarse", "middle", "fine")
MAX_FACES = 16


@dataclass(frozen=True)
class DemoConfig:
    mode: str = "pip"
    seeds: tuple[int, ...] = tuple(range(16))  # the walk's keyframes
    psi: float | None = None  # None: the model's default
    seconds_per_seed: float = 2.0
    curve: str = "catmull-rom"
    pip_size: int = 256
    pip_corner: str = "bottom-right"  # the HUD is top-left, the key list bottom-left
    fps: float | None = None  # output video rate (None: the source's), and the pace of non-live sources
    noise: str = "const"
    mix_seed: int = 1000  # faces take styles from seeds mix_seed, mix_seed + 1, ... when mixing is on
    out: Path | None = None
    max_frames: int | None = None  # None: until the source ends, q, or Ctrl-C
    realtime: bool = True  # pace video files, images and synthetic frames at fps, like a camera
    hud: bool = True
    show_keys: bool = False  # the key list (only a window has keys)
    snapshot_dir: Path = Path(".")
    noise_seed: int = 0
    psi_step: float = 0.1
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    face_enlarge: float = 1.8  # generated image size / detected box size
    first_result_timeout: float = 120.0  # seconds to wait for the first face (engine warm-up)
    # A class-conditional model's first class (index or name; None: class 0); the c key cycles it.
    label: int | str | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise DemoError(f"--mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.noise not in NOISE_MODES:
            raise DemoError(f"--noise must be one of {', '.join(NOISE_MODES)}, got {self.noise!r}")
        if not self.seeds:
            raise DemoError("--seeds gave no seeds for the walk")
        if not self.seconds_per_seed > 0:
            raise DemoError(f"--seconds-per-seed must be > 0, got {self.seconds_per_seed}")
        if self.fps is not None and not 0 < self.fps <= 240:
            raise DemoError(f"--fps must be in (0, 240], got {self.fps}")
        if self.pip_size < 16:
            raise DemoError(f"--size must be at least 16 pixels, got {self.pip_size}")
        if self.max_frames is not None and self.max_frames < 1:
            raise DemoError(f"--max-frames must be >= 1, got {self.max_frames}")


@dataclass(frozen=True)
class Settings:
    """What the keys change while the demo runs."""

    psi: float
    noise: str
    mixing: frozenset[str] = frozenset()
    paused: bool = False
    direction: str | None = None  # an attribute direction of the bundle's directions.npz
    strength: float = 0.0  # how far along it, on every style layer
    label: int | None = None  # the class of a class-conditional model (None: unconditional)


@dataclass(frozen=True)
class DemoStats:
    frames: int
    seconds: float
    camera_fps: float  # frames through the loop per second
    generations: int  # generator calls finished
    generation_fps: float
    latency_ms: float  # mean request-to-result time of the generator
    overlays_shown: int  # distinct generator results that reached an output frame
    out: Path | None
    note: str  # e.g. the writer fell back to MJPG
    stopped: str  # max-frames | source-ended | quit | interrupted
    snapshots: tuple[Path, ...] = ()


# --- keys -----------------------------------------------------------------------------------------
KEY_QUIT = (ord("q"), ord("Q"), 27)
KEY_PSI_UP = (ord("+"), ord("="))
KEY_PSI_DOWN = (ord("-"), ord("_"))
KEY_MIX = {ord("1"): "coarse", ord("2"): "middle", ord("3"): "fine"}
KEY_DIRECTION = (ord("d"), ord("D"))
KEY_STRENGTH = {ord("]"): 0.5, ord("["): -0.5}
KEY_CLASS = (ord("c"), ord("C"))
MAX_STRENGTH = 5.0


def apply_key(key: int, settings: Settings, mix_available: Sequence[str] = MIX_GROUPS, psi_step: float = 0.1,
              directions: Sequence[str] = (), classes: Sequence[str] = ()) -> tuple[Settings, str | None, str]:
    """One key press -> (new settings, action 'quit' | 'snapshot' | None, message for the HUD).
    classes: a class-conditional model's class names, which the c key cycles through."""
    if key < 0:
        return settings, None, ""
    key &= 0xFF
    if key in KEY_QUIT:
        return settings, "quit", ""
    if key in KEY_PSI_UP or key in KEY_PSI_DOWN:
        step = psi_step if key in KEY_PSI_UP else -psi_step
        psi = round(min(2.0, max(-2.0, settings.psi + step)), 4)
        return dataclasses.replace(settings, psi=psi), None, f"truncation psi {psi:.2f}"
    if key in (ord("n"), ord("N")):
        noise = NOISE_MODES[(NOISE_MODES.index(settings.noise) + 1) % len(NOISE_MODES)]
        return dataclasses.replace(settings, noise=noise), None, f"noise {noise}"
    if key in KEY_MIX:
        group = KEY_MIX[key]
        if group not in mix_available:
            return settings, None, f"no {group} layers in this model"
        mixing = settings.mixing ^ {group}
        return dataclasses.replace(settings, mixing=frozenset(mixing)), None, \
            f"{group} styles {'from the second seed' if group in mixing else 'off'}"
    if key in KEY_DIRECTION:
        if not directions:
            return settings, None, "no directions.npz in this bundle (stylegan metrics --ls --directions-out)"
        cycle = [None, *directions]
        nxt = cycle[(cycle.index(settings.direction) + 1) % len(cycle)] if settings.direction in cycle else None
        return dataclasses.replace(settings, direction=nxt), None, f"direction {nxt or 'off'}"
    if key in KEY_STRENGTH:
        if settings.direction is None:
            return settings, None, "choose a direction first (d)"
        strength = round(min(MAX_STRENGTH, max(-MAX_STRENGTH, settings.strength + KEY_STRENGTH[key])), 4)
        return dataclasses.replace(settings, strength=strength), None, f"{settings.direction} {strength:+.1f}"
    if key in KEY_CLASS:
        if not classes:
            return settings, None, "this model has no classes (not class-conditional)"
        label = ((settings.label if settings.label is not None else -1) + 1) % len(classes)
        return dataclasses.replace(settings, label=label), None, f"class {label} {classes[label]}"
    if key == ord(" "):
        paused = not settings.paused
        return dataclasses.replace(settings, paused=paused), None, "walk paused" if paused else "walk resumed"
    if key in (ord("s"), ord("S")):
        return settings, "snapshot", ""
    return settings, None, ""


# --- display and video ----------------------------------------------------------------------------
def display_problem() -> str | None:
    """Why a window cannot open here (None: it can)."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display (DISPLAY is unset)"
    ui = cv2.currentUIFramework() if hasattr(cv2, "currentUIFramework") else ""
    if not ui and "GUI:                           NONE" in cv2.getBuildInformation():
        return "this OpenCV has no GUI (opencv-python-headless): pip install opencv-python for a window"
    return None


class Window:
    """A cv2 window; `show` returns the key pressed (-1: none)."""

    def __init__(self, title: str = "stylegan demo") -> None:
        self.title = title
        cv2.namedWindow(title, cv2.WINDOW_AUTOSIZE)

    def show(self, frame: np.ndarray) -> int:
        cv2.imshow(self.title, frame)
        key = cv2.waitKey(1)
        # Closing the window with the mouse counts as quitting.
        if cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
            return 27
        return key

    def close(self) -> None:
        cv2.destroyWindow(self.title)
        cv2.waitKey(1)


class VideoOut:
    """cv2.VideoWriter opened on the first frame: mp4v in .mp4, MJPG in .avi (the fallback when this
    OpenCV's FFmpeg cannot write mp4v)."""

    def __init__(self, path: Path, fps: float) -> None:
        self.requested = Path(path)
        self.path = self.requested
        self.fps = fps
        self.note = ""
        self.frames = 0
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None

    @staticmethod
    def _partial(path: Path) -> Path:
        # The video is recorded under a hidden name beside the final one (same folder, so the rename
        # is atomic; same extension, from which OpenCV picks the container) and renamed on close:
        # a crash or a full disk never leaves a truncated video under the name asked for.
        return path.with_name(f".{path.stem}.{os.getpid()}.partial{path.suffix}")

    def _open(self, size: tuple[int, int]) -> None:
        try:
            self.requested.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot write video {self.requested}: {e.strerror or e}") from None
        tries = [(self.requested, "MJPG" if self.requested.suffix.lower() == ".avi" else "mp4v")]
        if tries[0][1] != "MJPG":
            tries.append((self.requested.with_suffix(".avi"), "MJPG"))
        for path, fourcc in tries:
            writer = cv2.VideoWriter(str(self._partial(path)), cv2.VideoWriter_fourcc(*fourcc), self.fps, size)
            if writer.isOpened():
                self._writer, self._size, self.path = writer, size, path
                if path != self.requested:
                    self.note = f"this OpenCV cannot write mp4v to {self.requested.name}; wrote MJPG to {path}"
                return
            writer.release()
        raise OutputError(f"cannot write video {self.requested}: OpenCV has no working mp4v or MJPG encoder here")

    def write(self, frame: np.ndarray) -> None:
        size = (frame.shape[1], frame.shape[0])
        if self._writer is None:
            self._open(size)
        if size != self._size:  # VideoWriter drops frames of another size without a word
            frame = cv2.resize(frame, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(frame)
        self.frames += 1

    def close(self) -> None:
        """Finish the file and move it to its final name (one OutputError line if that fails)."""
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        tmp = self._partial(self.path)
        try:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise OutputError(f"cannot write video {self.path}: {e.strerror or e}") from None


def _direction_names(generator: Any) -> tuple[str, ...]:
    """The attribute directions a bundle ships (`directions.npz`), for the `d` key; none otherwise."""
    from ..directions import DIRECTIONS_FILE, load_directions

    source = Path(str(getattr(generator, "source", "")))
    if not (source / DIRECTIONS_FILE).is_file() or not hasattr(generator, "edit"):
        return ()
    return tuple(load_directions(source).names)


# --- the loop -------------------------------------------------------------------------------------
class DemoApp:
    """One demo run over a generator (anything with Generator's map / broadcast / truncate / mix /
    synthesize) and a frame source."""

    def __init__(self, generator: Any, source: FrameSource, config: DemoConfig, window: Window | None = None,
                 on_frame: Callable[[int, np.ndarray], None] | None = None) -> None:
        self.g = generator
        self.source = source
        self.config = config
        self.window = window
        self.on_frame = on_frame
        meta = generator.meta
        psi = config.psi if config.psi is not None else meta.truncation_psi
        conditional = getattr(meta, "label_size", 0) > 0
        self.classes: tuple[str, ...] = tuple(meta.label_names) if conditional else ()
        self.settings = Settings(psi=float(psi), noise=config.noise, label=_first_class(config.label, self.classes))
        self.mix_available = tuple(grp for grp in MIX_GROUPS if _has_layers(grp, meta.layer_resolutions))
        seeds = list(config.seeds)
        self.seeds = seeds
        self.stride = coprime_stride(len(seeds))
        # Per class, every keyframe and second seed is mapped once (on the class's first use): the
        # walk and the mixing are then numpy only, and the c key costs one mapping call per class.
        self._mapped: dict[int | None, tuple[Walker, np.ndarray]] = {}
        self.walker, self.mix_w = self._mapped_for(self.settings.label)
        self.directions = _direction_names(generator)
        self.detector = FaceDetector(config.detector) if config.mode == "replace-faces" else None
        self.tracker = FaceTracker(max_tracks=MAX_FACES)
        self.camera_rate = RateMeter()
        self._message = ("", 0.0)
        self._faces: dict[int, np.ndarray] = {}
        self._last_seq = 0
        self._shown: set[int] = set()
        self.snapshots: list[Path] = []

    # --- styles ---------------------------------------------------------------------------------
    def _map(self, seeds: Sequence[int], label: int | None) -> np.ndarray:
        g = self.g
        z = g.z_from_seeds(list(seeds))
        return g.map(z) if label is None else g.map(z, g.labels_to_c(len(z), label=label))

    def _mapped_for(self, label: int | None) -> tuple[Walker, np.ndarray]:
        if label not in self._mapped:
            c = self.config
            walker = Walker(self._map(self.seeds, label), c.seconds_per_seed, c.curve)
            n_mix = 1 if c.mode == "pip" else MAX_FACES
            self._mapped[label] = (walker, self._map([c.mix_seed + k for k in range(n_mix)], label))
        return self._mapped[label]

    def styles_for(self, t: float, keys: Sequence[int]) -> np.ndarray:
        """W+ styles [len(keys), L, w_dim] at walk time t: face k walks the loop k*stride keyframes
        ahead (a different face per key, the same one for the same key), truncated, then mixed.
        A class-conditional model walks the same seeds mapped with the current class."""
        g, s = self.g, self.settings
        self.walker, self.mix_w = self._mapped_for(s.label)
        w = np.stack([self.walker.at_offset(t, k * self.stride) for k in keys])
        ws = g.truncate(g.broadcast(w), s.psi)
        if s.mixing:
            src = g.truncate(g.broadcast(self.mix_w[[k % len(self.mix_w) for k in keys]]), s.psi)
            for group in MIX_GROUPS:
                if group in s.mixing:
                    ws = g.mix(ws, src, group)
        if s.direction is not None and s.strength:
            ws = g.edit(ws, s.direction, s.strength, layers=f"0-{g.num_layers - 1}")
        return np.ascontiguousarray(ws, dtype=np.float32)

    # --- HUD ------------------------------------------------------------------------------------
    def _flash(self, text: str, now: float) -> None:
        if text:
            self._message = (text, now + 2.0)

    def _hud(self, frame: np.ndarray, worker: GenerationWorker, walk_t: float, faces: int, now: float) -> None:
        s = self.settings
        lat = worker.latency.value
        lines = [
            f"camera {self.camera_rate.rate:5.1f} fps  gen {worker.rate.rate:5.1f} fps  "
            f"latency {lat * 1000:4.0f} ms" if lat is not None else f"camera {self.camera_rate.rate:5.1f} fps  gen -",
            f"psi {s.psi:+.2f}  noise {s.noise}  mix {'+'.join(g for g in MIX_GROUPS if g in s.mixing) or 'off'}"
            + (f"  {s.direction} {s.strength:+.1f}" if s.direction else "") + ("  PAUSED" if s.paused else ""),
        ]
        if s.label is not None:
            lines.append(f"class {self.classes[s.label]} ({s.label + 1}/{len(self.classes)})")
        if self.config.mode == "pip":
            i, j, u = self.walker.segment(walk_t)
            lines.append(f"walk seed {self.seeds[i]} -> {self.seeds[j]}  {u * 100:3.0f}%")
        else:
            lines.append(f"faces {faces}")
        describe = getattr(self.g, "describe", None)
        if describe is not None:
            d = describe()
            lines.append(f"{d.get('backend', '?')} {d.get('device', '')} {d.get('precision', '')}".strip())
        text, until = self._message
        if text and now < until:
            lines.append(text)
        draw_panel(frame, lines, "top-left")
        if self.config.show_keys:
            draw_panel(frame, KEY_HELP, "bottom-left", color=(200, 230, 255))

    # --- per-frame work -------------------------------------------------------------------------
    def _take_result(self, result: GenResult | None) -> GenResult | None:
        if result is not None and result.seq != self._last_seq:
            self._last_seq = result.seq
            self._faces.update(result.by_key())
        return result

    def _compose(self, frame: np.ndarray, index: int, walk_t: float, worker: GenerationWorker, first: bool) -> int:
        """Request faces for this frame and draw the newest finished ones; returns the face count."""
        c = self.config
        if c.mode == "pip":
            keys: tuple[int, ...] = (0,)
        else:
            if index % max(1, c.detector.every) == 0:
                tracks = self.tracker.update(self.detector.detect(frame))
            else:
                tracks = self.tracker.coast()
            keys = tuple(t.id for t in tracks)
            # Forget faces of tracks that ended, so a new face under a reused id starts fresh.
            self._faces = {k: v for k, v in self._faces.items() if k in keys}
        if keys:
            worker.submit(GenRequest(self.styles_for(walk_t, keys), keys, self.settings.noise))
            if first:
                worker.wait_for_result(c.first_result_timeout)
        result = self._take_result(worker.latest())
        used = False
        if c.mode == "pip":
            face = self._faces.get(0)
            if face is not None:
                paste_pip(frame, face, c.pip_size, c.pip_corner)
                used = True
        else:
            for t in tracks:
                face = self._faces.get(t.id)
                if face is not None:
                    paste_face(frame, face, tuple(t.box), enlarge=c.face_enlarge)
                    used = True
                else:
                    pixelate(frame, tuple(t.box))  # never show a real face while its fake is on the way
        if used and result is not None:
            self._shown.add(result.seq)
        return len(keys)

    def _snapshot(self, frame: np.ndarray, index: int) -> Path:
        folder = self.config.snapshot_dir
        path = folder / f"stylegan-demo-{time.strftime('%Y%m%d-%H%M%S')}-{index:06d}.png"
        ok, png = cv2.imencode(".png", frame)
        if not ok:
            raise OutputError(f"cannot write snapshot {path}: OpenCV could not encode it")
        try:
            with output_path(path) as tmp:  # all or nothing, like every other output
                tmp.write_bytes(png.tobytes())
        except OSError as e:
            raise OutputError(f"cannot write snapshot {path}: {e.strerror or e}") from None
        self.snapshots.append(path)
        return path

    def run(self) -> DemoStats:
        c, src = self.config, self.source
        out_fps = c.fps or src.fps
        pace = 0.0 if src.live or not c.realtime else 1.0 / (c.fps or src.fps)
        video = VideoOut(c.out, out_fps) if c.out else None
        frames, stopped = 0, "source-ended"
        walk_t, last_media_t = 0.0, 0.0
        worker = GenerationWorker(self.g, c.noise_seed)
        start = time.perf_counter()
        schedule = start
        try:
            # Warm the engine up outside the loop: the first call allocates and tunes.
            self.g.synthesize(self.styles_for(0.0, (0,)), noise=self.settings.noise, bgr=True)
            start = schedule = time.perf_counter()
            while True:
                frame = src.read()
                if frame is None:
                    stopped = "source-ended"
                    break
                now = time.perf_counter()
                self.camera_rate.tick(now)
                media_t = (now - start) if src.live else frames / src.fps
                if not self.settings.paused:
                    walk_t += media_t - last_media_t
                last_media_t = media_t
                faces = self._compose(frame, frames, walk_t, worker, first=frames == 0)
                if c.hud:
                    self._hud(frame, worker, walk_t, faces, now)
                if video is not None:
                    video.write(frame)
                if self.on_frame is not None:
                    self.on_frame(frames, frame)
                frames += 1
                if self.window is not None:
                    key = self.window.show(frame)
                    self.settings, action, message = apply_key(key, self.settings, self.mix_available, c.psi_step,
                                                               self.directions, self.classes)
                    self._flash(message, now)
                    if action == "quit":
                        stopped = "quit"
                        break
                    if action == "snapshot":
                        self._flash(f"saved {self._snapshot(frame, frames).name}", now)
                if c.max_frames is not None and frames >= c.max_frames:
                    stopped = "max-frames"
                    break
                if pace:
                    schedule += pace
                    delay = schedule - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    elif delay < -0.25:  # far behind (a slow machine): do not rush to catch up
                        schedule = time.perf_counter()
        except KeyboardInterrupt:
            stopped = "interrupted"
        finally:
            seconds = time.perf_counter() - start
            generations = worker.completed  # not the call still running, which close() waits for
            worker.close()
            if video is not None:
                video.close()
            if self.window is not None:
                self.window.close()
        worker.raise_if_failed()
        return DemoStats(
            frames=frames, seconds=seconds, camera_fps=frames / seconds if seconds > 0 else 0.0,
            generations=generations, generation_fps=generations / seconds if seconds > 0 else 0.0,
            latency_ms=1000.0 * worker.mean_latency, overlays_shown=len(self._shown),
            out=video.path if video is not None else None, note=video.note if video is not None else "",
            stopped=stopped, snapshots=tuple(self.snapshots),
        )


def _first_class(label: int | str | None, classes: Sequence[str]) -> int | None:
    """The demo's starting class: `label` by name or index, class 0 when none is given; None for
    an unconditional model (which must not be given one)."""
    if not classes:
        if label is not None:
            raise DemoError(f"--class {label}: this model is not class-conditional (it has no classes)")
        return None
    if label is None:
        return 0
    try:
        return class_from_text(label, classes) if isinstance(label, str) else class_index(label, classes, "--class")
    except ArgumentError as e:
        raise DemoError(str(e)) from None


def _has_layers(group: str, layer_resolutions: Sequence[int]) -> bool:
    try:
        style_layers(group, layer_resolutions)
    except ValueError:
        return False
    return True


def run_demo(generator: Any, source: FrameSource, config: DemoConfig, window: Window | None = None,
             on_frame: Callable[[int, np.ndarray], None] | None = None) -> DemoStats:
    """Run the demo until the source ends, max_frames, q/Esc, or Ctrl-C; closes the source."""
    try:
        return DemoApp(generator, source, config, window, on_frame).run()
    finally:
        source.close()


__all__ = [
    "DemoApp", "DemoConfig", "DemoStats", "MODES", "Settings", "VideoOut", "Window", "apply_key",
    "display_problem", "run_demo",
]
