"""Classifying video frames as they come: the engine behind the Live page's camera preview.

A camera delivers 10-30 frames a second, so each frame must cost less than a picture on the Predict page,
yet give the same answer (the same class, the same calibrated probability, the same "not sure" and
"unfamiliar"). Three things make it cheaper, none of which changes the answer:
- the frame arrives as a numpy array and is resized once, straight into the network's input (no file
  decoding, no EXIF handling, no second copy);
- the network runs in channels-last memory layout (1.6x faster on CPU, see core/device.py) under
  torch.inference_mode, on its own copy, so the Predict page's model and Grad-CAM are left as they are;
- the thread that classifies uses fewer CPU threads than torch's default (see live_threads).

Measured by bench/live_fps.py (bench/results/live_fps.json).
"""
from __future__ import annotations

import copy
import os
import threading
import time
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from transfer_core.inference import novelty
from transfer_core.inference.gradcam import Explanation, explain
from transfer_core.inference.predict import (
    Answer,
    LoadedModel,
    answers_from,
    check_threshold,
)


def live_threads() -> int:
    """CPU threads for classifying frames: half the cores this process may use, at least one.

    While the preview runs, the same machine also decodes and encodes the video and serves the page. A
    torch thread that has to wait for a busy core holds up all the others at each layer: on this shared
    2-core machine, 2 threads classified 1.7 frames/s and 1 thread 57 (bench/results/live_fps.json)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores // 2, torch.get_num_threads()))


_this_thread = threading.local()


def limit_this_thread(threads: int) -> None:
    """Let only the calling thread use `threads` CPU threads, leaving every other thread as it was.

    torch.set_num_threads sets the calling thread's own OpenMP team size, but also the default that
    threads started later take. A training run started during the preview must not be slowed down, so the
    default is put back at once from a short-lived thread (which changes only its own team besides)."""
    if getattr(_this_thread, "threads", None) == threads:
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    if before != threads:
        restore = threading.Thread(target=torch.set_num_threads, args=(before,), name="restore-torch-threads")
        restore.start()
        restore.join()
    _this_thread.threads = threads


def frame_tensor(model: LoadedModel, frame: np.ndarray) -> torch.Tensor:
    """An RGB frame (H x W x 3 uint8) -> the normalised 1 x 3 x crop x crop input, channels-last.

    The same pixels as Predict feeds the network for the same picture (the run's resize of the shorter
    side, with its interpolation, then the centre crop): the live answer must not differ from Predict's."""
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"a frame must be an H x W x 3 array of uint8 RGB values, not {frame.shape} {frame.dtype}")
    prep = model.prep
    square = prep.resized_square(Image.fromarray(frame))
    off = (square.shape[0] - prep.crop) // 2
    pixels = torch.from_numpy(square[off:off + prep.crop, off:off + prep.crop])
    # H x W x 3 viewed as 1 x 3 x H x W is already channels-last in memory: no copy before normalising.
    return prep.normalize(pixels.permute(2, 0, 1).unsqueeze(0))


@dataclass(frozen=True)
class FrameResult:
    answer: Answer  # as predict.answer gives it: label (a class, "not sure" or "unfamiliar"), confidence, top
    seconds: float  # time to classify this frame, preprocessing included


class LiveClassifier:
    """A loaded run, ready to classify frames one by one. Safe to share between streams (each call only
    reads the network), so one copy serves every open camera of the same model."""

    def __init__(self, model: LoadedModel, threads: int | None = None):
        self.model = model
        self.threads = threads or live_threads()
        self.net = copy.deepcopy(model.net).to(memory_format=torch.channels_last).eval()

    @property
    def classes(self) -> list[str]:
        return self.model.classes

    def classify(self, frame: np.ndarray, threshold: float = 0.0, k: int = 3) -> FrameResult:
        """The answer for one RGB frame; "not sure" when the calibrated top probability is below threshold."""
        check_threshold(threshold)
        start = time.perf_counter()
        limit_this_thread(self.threads)
        with torch.inference_mode():
            x = frame_tensor(self.model, frame).to(self.model.device)
            features, seen = novelty.looks(self.net, x, self.model.novelty.score.mid if self.model.novelty else 0)
            logits = self.net.head(features).float().cpu()
            answer = answers_from(self.model, logits, seen.float().cpu(), threshold=threshold, k=k)[0]
        return FrameResult(answer, time.perf_counter() - start)

    def explain(self, frame: np.ndarray) -> Explanation:
        """Grad-CAM for one frame (where the model looked), on the run's own network: slower than classify,
        for one frame on request."""
        return explain(self.model, Image.fromarray(frame))
