"""MultiPredictor: K sources (several cameras, several game instances), one engine call per tick for all of them.

Each source has its own capture thread and ring; the inference loop waits until every open stream has
a new frame, copies the K frames into the engine's batch buffer (on CUDA: one graph replay) and yields
the K ticks. Each stream keeps its own recurrent state, exactly as if it ran alone. A stream that ends
keeps its slot (its last frame is fed again, its result is not reported) until all have ended.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from ..config import Config
from ..errors import UserError
from ..model.stream_model import StreamModel
from ..sources import Source, open_source
from .agent import resolve_mode
from .backends import model_engine
from .capture import CaptureThread
from .tick import Tick


class MultiPredictor:
    """`with MultiPredictor(model, ["cam:0", "cam:1"]) as mp: for ticks in mp: …` — `ticks[i]` is stream i's Tick or None."""

    def __init__(self, model: StreamModel, sources: Sequence[str | Source], replay: str = "lockstep", ring_size: int = 8,
                 config: Config | None = None, max_frames: int = 0) -> None:
        if not sources:
            raise UserError("MultiPredictor needs at least one source")
        self.cfg = config or Config()
        self.model = model.eval()
        self.sources = [open_source(s, self.cfg.source) if isinstance(s, str) else s for s in sources]
        self.captures = [CaptureThread.configured(s, self.cfg.source, ring_size, replay, max_frames) for s in self.sources]
        p = self.cfg.predict
        mode, window = resolve_mode(model, p)
        self.engine = model_engine(self.model, p, len(self.sources), mode, window)  # as a lone Predictor's, for K streams

    def __enter__(self) -> MultiPredictor:
        if self.cfg.predict.threads > 0:
            torch.set_num_threads(self.cfg.predict.threads)
        for cap in self.captures:
            cap.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for cap in self.captures:
            cap.close()

    def __iter__(self) -> Iterator[list[Tick | None]]:
        k = len(self.captures)
        feeds = [cap.frames() for cap in self.captures]  # each ends (or raises the capture error) with its stream
        batch: np.ndarray | None = None
        with torch.inference_mode():
            while True:
                got = [next(feed, None) if feed is not None else None for feed in feeds]
                feeds = [feed if f is not None else None for feed, f in zip(feeds, got)]
                if all(f is None for f in got):
                    break
                for i, f in enumerate(got):
                    if f is None:
                        continue  # an ended stream keeps its last frame in the batch
                    if batch is None:
                        batch = np.zeros((k, *f.image.shape), np.uint8)
                    if f.image.shape != batch.shape[1:]:
                        raise UserError(f"stream {i} ({self.sources[i].name}) has frames of {f.image.shape}, the others "
                                        f"{batch.shape[1:]}: batched streams need one frame size")
                    batch[i] = f.image
                    self.captures[i].ring.release()
                probs, classes = self.engine(batch, [f is not None and f.first for f in got])
                now = time.monotonic()
                yield [None if f is None else
                       Tick(f.seq, f.t_capture, now, (now - f.t_capture) * 1000.0, int(classes[i]),
                            self.model.classes[int(classes[i])], probs[i].tolist(), f.skipped, False, f.first)
                       for i, f in enumerate(got)]
