"""A real Triton Inference Server (the `nvidia-pytriton` wheel's binary, python backend) serving the exported tick:
`predict.backend=triton` decides as the in-process model does, keeps concurrent streams apart, survives the server
being killed and restarted mid-stream, and says in one line what is wrong with bad input. Each test starts its own
server on free loopback ports (`serve --prepare` has made the server's environment; .ci/run does)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("tritonclient.grpc")

from stream_predictor import load_config  # noqa: E402
from stream_predictor.model import load_model  # noqa: E402
from stream_predictor.runtime.multi import MultiPredictor  # noqa: E402
from stream_predictor.runtime.predictor import Predictor  # noqa: E402
from stream_predictor.sources.base import Frame, Source  # noqa: E402
from stream_predictor.tools.bench import _pong_clip  # noqa: E402
from stream_predictor.tools.triton import write_repository  # noqa: E402
from stream_predictor.tools.triton_server import DEFAULT_ENV, TritonServer, _server_dir, free_port  # noqa: E402

from conftest import ROOT, decode_all, prev_action_model, sigint_default  # noqa: E402
from test_export import Frames  # noqa: E402

PONG = ROOT / "weights" / "pong.safetensors"
pytestmark = pytest.mark.slow


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "run.py", *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout)


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> Path:
    if _server_dir(DEFAULT_ENV) is None:
        if os.environ.get("CI"):
            pytest.fail(f"no Triton server in {DEFAULT_ENV}; .ci/run prepares it with `run.py serve --prepare`")
        pytest.skip(f"no Triton server in {DEFAULT_ENV} (python run.py serve --prepare)")
    repo = tmp_path_factory.mktemp("triton") / "repo"
    write_repository(load_model(PONG), repo, "pong", (210, 160), max_batch_size=16)
    return repo


@pytest.fixture(scope="module")
def server(repository):
    with TritonServer(repository, grpc_port=0, http_port=0) as s:
        yield s


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return _pong_clip(tmp_path_factory.mktemp("clip") / "pong.avi", 240)


def triton_config(url: str, *more: str):
    return load_config(overrides=["predict.backend=triton", f"predict.triton_url={url}", "predict.triton_timeout_s=10",
                                  *more])


def probs_of(model, source, cfg) -> np.ndarray:
    with torch.inference_mode(), Predictor.from_config(model, cfg, source) as p:
        ticks = list(p)
        summary = p.summary()
    return np.array([t.probs for t in ticks]), summary


def test_one_stream_over_a_real_clip_decides_as_the_model_in_process(server, clip):
    model = load_model(PONG)
    here, _ = probs_of(model, str(clip), load_config(overrides=["predict.backend=torch"]))
    there, summary = probs_of(model, str(clip), triton_config(server.grpc_url))
    assert len(there) == len(here) == 240
    same = np.mean(here.argmax(1) == there.argmax(1))
    delta = np.abs(np.log(np.maximum(here, 1e-6)) - np.log(np.maximum(there, 1e-6))).max()
    print(f"classes equal {100 * same:.2f}%, max |Δ log p| {delta:.2g}")
    assert same >= 0.999 and delta < 1e-3
    assert "triton server" in summary["engine"] and summary["server_errors"] == 0 and summary["server_reconnects"] == 0


def test_a_model_that_reads_its_previous_action_is_served_the_class_pressed(repository, clip):
    """`prev` goes to the server with each tick: what the client's agent pressed on the one before (after smoothing),
    so the served model decides as the in-process one does, hysteresis included."""
    model = prev_action_model(scale=3.0)
    repo = repository.parent / "prev"
    write_repository(model, repo, "pong_prev", (210, 160), max_batch_size=16)
    here, _ = probs_of(model, str(clip), load_config(overrides=["predict.backend=torch", "predict.hysteresis=0.3"]))
    with TritonServer(repo, grpc_port=0, http_port=0) as s:
        there, summary = probs_of(model, str(clip), triton_config(s.grpc_url, "predict.hysteresis=0.3"))
    np.testing.assert_allclose(there, here, atol=1e-4)
    assert "reads the previous action" in summary["engine"] and "pong_prev" in summary["engine"]


@pytest.mark.parametrize("streams", [4, 16])
def test_concurrent_client_streams_each_equal_their_lone_run(server, clip, streams):
    """K Predictors in K threads, one server, requests batched together by its dynamic batcher: each stream's
    probabilities equal that stream alone in process, resets mid-way included."""
    model, frames = load_model(PONG), list(decode_all(clip))
    runs = {i: (frames[7 * i: 7 * i + 80], {0, 20 + 3 * i}) for i in range(streams)}
    got: dict[int, np.ndarray] = {}

    def client(i: int) -> None:
        got[i] = probs_of(model, Frames(*runs[i]), triton_config(server.grpc_url))[0]

    threads = [threading.Thread(target=client, args=(i,)) for i in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    torch_cfg = load_config(overrides=["predict.backend=torch", "predict.chunk=0"])
    for i, run in runs.items():
        want = probs_of(model, Frames(*run), torch_cfg)[0]
        np.testing.assert_allclose(got[i], want, atol=1e-4, err_msg=f"stream {i}")


def test_k_streams_in_one_request(server, clip):
    """MultiPredictor over the server: one request carries all four streams each tick; each equals its lone run."""
    model, frames = load_model(PONG), list(decode_all(clip))
    runs = [(frames[20 * i: 20 * i + 60], {0, 30}) for i in range(4)]
    with torch.inference_mode(), MultiPredictor(model, [Frames(*r) for r in runs],
                                                config=triton_config(server.grpc_url)) as mp:
        ticks = list(mp)
    assert "triton" in mp.engine.path["device"]
    for i, run in enumerate(runs):
        want = probs_of(model, Frames(*run), load_config(overrides=["predict.backend=torch", "predict.chunk=0"]))[0]
        np.testing.assert_allclose(np.array([t[i].probs for t in ticks if t[i] is not None]), want, atol=1e-4)


def test_the_client_survives_the_server_killed_and_restarted_mid_stream(repository, clip):
    """SIGKILL at tick 80, back 1.5 s later on the same ports: the file in lockstep waits, loses no frame, and decides
    every frame as without the outage; the summary counts the errors and the reconnect."""
    model = load_model(PONG)
    want, _ = probs_of(model, str(clip), load_config(overrides=["predict.backend=torch"]))
    with TritonServer(repository, grpc_port=free_port(), http_port=free_port()) as server:
        def outage(tick) -> None:
            if tick.seq == 80:
                server.kill()
                threading.Timer(1.5, server.start).start()

        cfg = triton_config(server.grpc_url, "predict.triton_timeout_s=2")
        with torch.inference_mode(), Predictor.from_config(model, cfg, str(clip), sinks=[outage]) as p:
            got = np.array([t.probs for t in p])
            summary = p.summary()
        assert server.alive()
    assert len(got) == 240 and summary["frames"] == 240 and summary["skipped"] == 0
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert summary["server_reconnects"] >= 1 and summary["server_errors"] >= 1, summary


class LivePong(Source):
    """A live source: real Pong frames at 30 fps, never waiting for the reader (the ring drops what is not read)."""

    live = True

    def __init__(self, frames: np.ndarray, seconds: float) -> None:
        super().__init__()
        self.name, self.fps, self.images, self.n = "live pong", 30.0, frames, int(seconds * 30)

    def read(self, out=None) -> Frame | None:
        if self._seq >= self.n:
            return None
        time.sleep(1 / 30)
        return self._frame(self.images[self._seq % len(self.images)])


def test_a_live_source_keeps_capturing_while_the_server_is_away(repository, clip):
    """The server SIGKILLed at the 30th tick and back 1.5 s later: the capture thread went on (frames were dropped, not
    queued), ticks resume, and the first decision after the silence starts the stream's memory afresh."""
    model, frames = load_model(PONG), decode_all(clip)
    with TritonServer(repository, grpc_port=free_port(), http_port=free_port()) as server:
        def outage(tick) -> None:
            if tick.seq == 30:
                server.kill()
                threading.Timer(1.5, server.start).start()

        cfg = triton_config(server.grpc_url, "predict.triton_timeout_s=2", "predict.max_gap_s=0.5")
        with torch.inference_mode(), Predictor.from_config(model, cfg, LivePong(frames, 5.0), sinks=[outage]) as p:
            ticks = list(p)
            summary = p.summary()
    seqs = [t.seq for t in ticks]
    assert seqs[-1] >= 140 and summary["skipped"] > 20, summary  # captured on through the outage, the backlog dropped
    jump = next(i for i in range(1, len(seqs)) if seqs[i] - seqs[i - 1] > 20)
    assert ticks[jump].first and summary["resets"] >= 2  # the gap starts the memory afresh
    assert summary["server_reconnects"] >= 1 and summary["server_errors"] >= 1


def test_serve_starts_a_real_server_and_stops_on_sigterm(repository):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "run.py", "serve", "--repository", str(repository), "--grpc-port", str(port),
                             "--http-port", "0"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=sigint_default)
    try:
        line = proc.stdout.readline()
        assert f"grpc 127.0.0.1:{port}" in line and "serving pong" in line and "Triton 2." in line, proc.stderr.read()
        import tritonclient.grpc as grpcclient

        assert grpcclient.InferenceServerClient(f"127.0.0.1:{port}").is_model_ready("pong")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        with pytest.raises(Exception):  # noqa: B017 - the server is gone: any connection error
            grpcclient.InferenceServerClient(f"127.0.0.1:{port}").is_server_live(client_timeout=2)
    finally:
        proc.kill()


def _one_error_line(r: subprocess.CompletedProcess, *words: str) -> None:
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and lines[-1].startswith("error:") and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert all(w in lines[-1] for w in words), lines[-1]


def test_bad_input_is_one_line(server, clip, tmp_path):
    base = ["predict", "--weights", str(PONG), "--source", str(clip), "predict.backend=triton"]
    _one_error_line(cli(*base, f"predict.triton_url=127.0.0.1:{free_port()}", "predict.triton_timeout_s=2"),
                    "no Triton server answers")
    _one_error_line(cli(*base, f"predict.triton_url={server.grpc_url}", "predict.triton_model=nope"), "no model 'nope'")
    _one_error_line(cli(*base[:-2], "synthetic:bounce?frames=20", base[-1], f"predict.triton_url={server.grpc_url}"),
                    "exported for 160x210", "--frame-size")
    _one_error_line(cli("serve", "--repository", str(tmp_path / "none")), "no model repository")
    _one_error_line(cli("serve", "--repository", str(server.repository), "--env", str(tmp_path)), "serve --prepare")
    _one_error_line(cli("export", "--weights", str(PONG), "--format", "triton", "--triton-state", "implicit",
                        "--out", str(tmp_path / "r")), "python backend does not implement implicit state")
    assert json.loads(cli("export", "--weights", str(PONG), "--format", "triton", "--triton-backend", "onnxruntime",
                          "--triton-state", "implicit", "--out", str(tmp_path / "r"), "--json").stdout.splitlines()[-1])


def test_bench_triton_load_measures_the_server_beside_in_process():
    from stream_predictor.tools.bench_serving import triton_load

    rows = triton_load(PONG, streams=(1, 2), fps=15.0, seconds=1.0)
    assert [(r["path"].split()[0], r["streams"]) for r in rows] == [("triton", 1), ("in", 1), ("triton", 2), ("in", 2)]
    assert all(r["ticks"] == 15 * r["streams"] and 0 < r["p50_ms"] <= r["p99_ms"] for r in rows)
    assert rows[0]["p50_vs_in_process"] > 0
