"""The generation thread: takes the newest request, synthesises its faces, publishes the result.

The capture loop never waits for it. Requests go through a one-slot queue that drops the stale
request when a newer one arrives, and the finished result sits in a one-slot mailbox that the
loop reads without blocking, so a slow generator lowers the overlay's rate, not the camera's.
onnxruntime and TensorRT release the GIL while they run, so the two threads really overlap.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .hud import Ema, RateMeter


@dataclass(frozen=True)
class GenRequest:
    ws: np.ndarray  # [N, L, w_dim] W+ styles, truncated and mixed
    keys: tuple[int, ...]  # what each face is for (0 in PiP, the track ids in replace-faces)
    noise: str = "const"
    submitted: float = 0.0  # time.perf_counter() at submission


@dataclass(frozen=True)
class GenResult:
    images: np.ndarray  # [N, R, R, 3] uint8 BGR
    keys: tuple[int, ...]
    seq: int  # 1, 2, ... in order of completion
    latency: float  # seconds from submission to result
    finished: float

    def by_key(self) -> dict[int, np.ndarray]:
        return dict(zip(self.keys, self.images))


class GenerationWorker:
    """A daemon thread around `generator.synthesize`; use as a context manager or call close()."""

    def __init__(self, generator: Any, noise_seed: int = 0) -> None:
        self.generator = generator
        self._requests: queue.Queue[GenRequest | None] = queue.Queue(maxsize=1)
        self._lock = threading.Lock()
        self._latest: GenResult | None = None
        self._error: BaseException | None = None
        self._rng = np.random.default_rng(noise_seed)
        self.rate = RateMeter()
        self.latency = Ema(0.1)
        self.completed = 0
        self._latency_sum = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="stylegan-demo-generator", daemon=True)
        self._thread.start()

    # --- main thread ------------------------------------------------------------------------
    def submit(self, request: GenRequest) -> None:
        """Hand over the newest request; a request still waiting is dropped (it is stale)."""
        self.raise_if_failed()
        if request.submitted == 0.0:
            request = GenRequest(request.ws, request.keys, request.noise, time.perf_counter())
        self._put_replacing(request)

    def _put_replacing(self, item: GenRequest | None) -> None:
        """Queue `item`, dropping whatever still waits in the one-slot queue."""
        while True:
            try:
                self._requests.put_nowait(item)
                return
            except queue.Full:
                try:
                    self._requests.get_nowait()
                except queue.Empty:
                    pass

    def latest(self) -> GenResult | None:
        """The most recent finished result (never blocks)."""
        self.raise_if_failed()
        with self._lock:
            return self._latest

    @property
    def mean_latency(self) -> float:
        """Mean seconds from request to result over the run."""
        with self._lock:
            return self._latency_sum / self.completed if self.completed else 0.0

    def wait_for_result(self, timeout: float) -> GenResult | None:
        """Block until a first result exists (start-up warm-up only)."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            result = self.latest()
            if result is not None:
                return result
            time.sleep(0.002)
        return self.latest()

    def raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        self._stop.set()
        self._put_replacing(None)
        self._thread.join(timeout=30)

    def __enter__(self) -> GenerationWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- worker thread ----------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            request = self._requests.get()
            if request is None:
                return
            try:
                images = self.generator.synthesize(request.ws, noise=request.noise, rng=self._rng, bgr=True)
            except BaseException as e:  # surfaced in the main thread on its next call
                self._error = e
                return
            now = time.perf_counter()
            self.rate.tick(now)
            self.latency.update(now - request.submitted)
            with self._lock:
                self.completed += 1
                self._latency_sum += now - request.submitted
                self._latest = GenResult(np.asarray(images), request.keys, self.completed, now - request.submitted,
                                         now)
