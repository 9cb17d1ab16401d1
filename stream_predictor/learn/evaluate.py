"""Evaluate weights on held-out sessions through the real streaming path, and offline.

Each session is replayed through the Predictor in lockstep (capture thread → ring → inference
thread), in the mode the weights were trained for. The offline computation of the same decisions
(`offline.offline_logits`) is reported beside it; for the trained mode the two must agree.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from ..config import Config
from ..errors import UserError
from ..model import StreamModel
from ..runtime.agent import resolve_mode
from ..runtime.backends import model_agent
from ..runtime.predictor import Predictor
from ..session import aligned_targets, load_session
from ..sources.session import SessionSource
from .data import load_data
from .metrics import confusion, plot_confusion, scores
from .offline import offline_logits


def evaluate(model: StreamModel, dirs: list[str], cfg: Config, png: str | Path | None = None, progress: bool = False) -> dict:
    mode, window = resolve_mode(model, cfg.predict)
    delay, stride = int(model.trained.get("label_delay", 0)), int(model.trained.get("stride", 1))
    k = len(model.classes)
    cm_stream, cm_offline = np.zeros((k, k), np.int64), np.zeros((k, k), np.int64)
    per_session, agree, total, warm_right, warm_total = [], 0, 0, 0, 0
    for d in dirs:
        session = load_session(d)
        if session.classes != model.classes:
            raise UserError(f"{d} has classes {session.classes}; the model has {model.classes}")
        n, targets, firsts = aligned_targets(session, delay, stride)
        # Streaming: the real threads, one tick per (strided) frame, deciding without smoothing (as offline does).
        agent = model_agent(model, replace(cfg.predict, backend="torch", ema=0.0, hysteresis=0.0), mode, window)
        with Predictor(agent, SessionSource(d, stride=stride, frames=n), replay="lockstep", ring_size=cfg.source.ring_size,
                       threads=cfg.predict.threads, config=cfg) as p:
            stream_pred = np.array([t.class_id for t in p], np.int64)
        if len(stream_pred) != len(targets):
            raise UserError(f"{d}: the Predictor gave {len(stream_pred)} ticks for {len(targets)} frames")
        # Offline: the same decisions computed in batches (a model reading its previous action reads the stream's).
        data = load_data([d], model.preproc, cfg.train.cache_dir, delay, stride, progress)
        prev = np.where(firsts, -1, np.concatenate([[-1], stream_pred[:-1]])) if model.cfg.prev_action else None
        offline_pred = offline_logits(model, data.pixels[0], mode, window, data.firsts[0], prev=prev).argmax(-1).cpu().numpy()
        c = confusion(targets, stream_pred, k)
        cm_stream += c
        cm_offline += confusion(targets, offline_pred, k)
        agree += int((stream_pred == offline_pred).sum())
        total += len(targets)
        warm = frames_since_start(firsts) >= window - 1  # the decision saw a whole window (stateful: as much history)
        warm_right += int((stream_pred[warm] == targets[warm]).sum())
        warm_total += int(warm.sum())
        per_session.append({"session": str(d), "frames": len(targets), "accuracy": scores(c, model.classes)["accuracy"]})
    result = scores(cm_stream, model.classes)
    result.update(mode=mode, window=window if mode == "windowed" else None, frames=total,
                  offline_accuracy=scores(cm_offline, model.classes)["accuracy"],
                  stream_offline_agreement=agree / max(total, 1), sessions=per_session,
                  accuracy_after_warmup=warm_right / max(warm_total, 1))
    if png:
        plot_confusion(cm_stream, model.classes, png, title=f"eval ({mode}, streaming)")
        result["confusion_png"] = str(png)
    return result


def frames_since_start(firsts: np.ndarray) -> np.ndarray:
    """(N,) how many frames each frame is past the last episode start at or before it (0 at a start)."""
    idx = np.arange(len(firsts))
    return idx - np.maximum.accumulate(np.where(firsts, idx, 0))
