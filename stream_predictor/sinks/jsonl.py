"""JSON lines (a file or stdout) and CSV rows. Files are written in whole lines: a full disk ends the run with one
error and leaves a file that still parses (see `files.LineFile`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO

from ..files import LineFile
from ..runtime.tick import Sink, Tick


class JsonlSink(Sink):
    """One JSON object per tick. `path` of None or '-' writes to stdout. Flushed every `flush_every` ticks and on close."""

    def __init__(self, path: str | Path | None = None, flush_every: int = 1) -> None:
        self._own = path not in (None, "-")
        self._f: LineFile | IO[str] = LineFile(path) if self._own else sys.stdout
        self._flush_every, self._n = max(1, flush_every), 0

    def __call__(self, tick: Tick) -> None:
        self._f.write(json.dumps(tick.to_json()) + "\n")
        self._n += 1
        if self._n % self._flush_every == 0:
            self._f.flush()

    def close(self) -> None:
        if self._own:
            self._f.close()
        else:
            self._f.flush()


class CsvSink(Sink):
    """One row per tick: seq, times, latency, class and one probability column per class."""

    def __init__(self, path: str | Path, classes: list[str], flush_every: int = 64) -> None:
        import csv

        self._f = LineFile(path)
        self._w = csv.writer(self._f)
        self._w.writerow(["seq", "t_capture", "t_decision", "latency_ms", "class_id", "class", "skipped", "stale",
                          *(f"p_{c}" for c in classes)])
        self._flush_every, self._n = max(1, flush_every), 0

    def __call__(self, tick: Tick) -> None:
        j = tick.to_json()
        self._w.writerow([j["seq"], j["t_capture"], j["t_decision"], j["latency_ms"], j["class_id"], j["class"], j["skipped"],
                          int(j["stale"]), *j["probs"]])
        self._n += 1
        if self._n % self._flush_every == 0:
            self._f.flush()

    def close(self) -> None:
        self._f.close()
