"""Is there a person, and is the whole person in the photo? MediaPipe's pose model (its weights ship inside the
`mediapipe` wheel: nothing is downloaded) finds 33 body keypoints, or none when the photo shows no person."""

from __future__ import annotations

import atexit
import os
import threading
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..errors import LookalikeError
from .quiet import filter_native_logs

NOSE, HEELS_AND_TOES = 0, (29, 30, 31, 32)
VISIBLE = 0.5
MAX_SIDE = 512


@dataclass
class Person:
    head: bool                              # the face is in the photo
    feet: bool                              # heels or toes are in the photo
    box: tuple[int, int, int, int]          # extent of the visible keypoints, photo pixels

    @property
    def full_shot(self) -> bool:
        return self.head and self.feet


# protobuf warns from Python on every inference that MediaPipe uses a deprecated call
warnings.filterwarnings("ignore", message="SymbolDatabase.GetPrototype", category=UserWarning)


class PersonDetector:
    def __init__(self):
        os.environ.setdefault("GLOG_minloglevel", "2")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        try:
            import mediapipe as mp
        except ImportError:
            raise LookalikeError("shop the look needs the look extra: pip install 'lookalike[look]' (mediapipe)") from None
        filter_native_logs()             # its C++ code logs to the terminal on every run (see lookalike.look.quiet)
        self._pose = mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1, min_detection_confidence=0.5)
        self._lock = threading.Lock()  # a MediaPipe graph runs one image at a time
        atexit.register(self.close)      # its graph writes its notes when it stops, too

    def close(self) -> None:
        with self._lock:
            if self._pose is not None:
                self._pose.close()
                self._pose = None

    def detect(self, image: Image.Image) -> Person | None:
        small = image.copy()
        small.thumbnail((MAX_SIDE, MAX_SIDE))
        with self._lock:
            result = self._pose.process(np.asarray(small))
        if not result.pose_landmarks:
            return None
        marks = result.pose_landmarks.landmark

        def seen(i):
            m = marks[i]
            return m.visibility > VISIBLE and 0 <= m.x <= 1 and 0 <= m.y <= 1

        points = [(m.x, m.y) for i, m in enumerate(marks) if seen(i)]
        if not points:
            return None
        xs, ys = zip(*points)
        w, h = image.size
        box = (int(min(xs) * w), int(min(ys) * h), int(max(xs) * w), int(max(ys) * h))
        return Person(seen(NOSE), any(seen(i) for i in HEELS_AND_TOES), box)
