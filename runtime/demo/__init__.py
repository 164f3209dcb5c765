"""The real-time OpenCV demo: generated faces over a camera, with no PyTorch (it runs on a Jetson).

    from stylegan_edge.runtime import Generator
    from stylegan_edge.runtime.demo import DemoConfig, open_source, run_demo

    stats = run_demo(Generator("faces64.sgbundle"), open_source("synthetic"),
                     DemoConfig(mode="replace-faces", out=Path("demo.mp4"), max_frames=300))

Modules: `sources` (camera, GStreamer, video, image, synthetic frames), `walker` (the walk through
W), `worker` (the generation thread), `faces` (Haar detection and tracking), `overlay`
(picture-in-picture, blended face replacement), `hud`, `app` (the loop, keys, video writer).
Needs OpenCV 4.x (`pip install 'stylegan-edge[demo]'`): 5.0 dropped the Haar cascades.
"""

from .app import DemoApp, DemoConfig, DemoStats, Settings, VideoOut, Window, apply_key, display_problem, run_demo
from .errors import DemoError, DetectorUnavailable, OutputError, SourceError
from .faces import DetectorConfig, FaceDetector, FaceTracker
from .sources import FrameSource, SyntheticSource, open_source, parse_size
from .walker import Walker
from .worker import GenerationWorker, GenRequest, GenResult

__all__ = [
    "DemoApp", "DemoConfig", "DemoError", "DemoStats", "DetectorConfig", "DetectorUnavailable", "FaceDetector",
    "FaceTracker", "FrameSource", "GenRequest", "GenResult", "GenerationWorker", "OutputError", "Settings",
    "SourceError", "SyntheticSource", "VideoOut", "Walker", "Window", "apply_key", "display_problem", "open_source",
    "parse_size", "run_demo",
]
