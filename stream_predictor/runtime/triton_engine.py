"""`predict.backend=triton`: a Triton Inference Server runs the tick; this client keeps each stream's state.

Every tick sends the K streams' new frames (uint8, as captured), their resets and their LSTM state in one gRPC request
to a model written by `export --format triton` (explicit state), and takes the probabilities and the new state back.
With the state held here, any server replica can serve any tick, and a server that restarts loses nothing but time:
a request that fails for want of a server is retried with backoff (on a new connection) for up to
`predict.triton_retry_s`, so a file in lockstep waits rather than losing a frame, and a live source goes on capturing
(the Predictor marks the silent gap as a reset). `counters` says how often that happened.
"""

from __future__ import annotations

import json
import logging
import time

import numpy as np

from ..config import PredictConfig
from ..errors import UserError

log = logging.getLogger(__name__)

REFUSED = ("StatusCode.INVALID_ARGUMENT", "StatusCode.UNIMPLEMENTED", "StatusCode.PERMISSION_DENIED")


def _grpc():
    try:
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException
    except ImportError:
        raise UserError("predict.backend=triton needs tritonclient: pip install 'tritonclient[grpc]' "
                        "(or the package's extra: pip install -e '.[triton]')") from None
    return grpcclient, InferenceServerException


def _message(e: Exception) -> str:
    return str(e).splitlines()[0][:200] if str(e) else type(e).__name__


class TritonEngine:
    """K streams, one inference request per tick. frames: (K, H, W, 3) BGR uint8 of the size the model was exported for."""

    chunked = False
    measured_ms: dict[str, float] = {}  # noqa: RUF012 - read only

    def __init__(self, cfg: PredictConfig, streams: int = 1, classes: list[str] | None = None) -> None:
        self.grpc, self.error_type = _grpc()
        self.cfg, self.streams, self.url = cfg, streams, cfg.triton_url
        self.counters = {"server_reconnects": 0, "server_errors": 0}
        self.client = self._client()
        why = "it is not live"
        try:
            if self.client.is_server_live(client_timeout=cfg.triton_timeout_s):
                why = ""
        except self.error_type as e:
            why = _message(e)
        if why:
            raise UserError(f"no Triton server answers at {self.url} ({why}); start one with `stream-predictor serve "
                            "--repository DIR`, or set predict.triton_url")
        self.model = self._model_name()
        config = self.client.get_model_config(self.model, cfg.triton_version, as_json=True,
                                              client_timeout=cfg.triton_timeout_s)["config"]
        self._read_config(config, classes)
        self.path = {"device": f"triton server {self.url}",
                     "backend": f"triton model {self.model}" + (f" v{cfg.triton_version}" if cfg.triton_version else ""),
                     "temporal": "stateful (state kept by the client)" +
                                 (", reads the previous action" if self.prev_action else "")}

    def _client(self):
        return self.grpc.InferenceServerClient(self.url)

    def _model_name(self) -> str:
        """`predict.triton_model`, checked ready on the server; or the one model the server has ready."""
        index = self.client.get_model_repository_index(as_json=True, client_timeout=self.cfg.triton_timeout_s)
        ready = sorted(m["name"] for m in index.get("models", []) if m.get("state") == "READY")
        name = self.cfg.triton_model
        if not name and len(ready) == 1:
            return ready[0]
        if not name:
            raise UserError(f"the Triton server at {self.url} has {len(ready)} models ready ({', '.join(ready) or 'none'}): "
                            "name one with predict.triton_model")
        if name not in ready:
            raise UserError(f"the Triton server at {self.url} has no model '{name}' ready (ready: {', '.join(ready) or 'none'})")
        return name

    def _read_config(self, config: dict, classes: list[str] | None) -> None:
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        inputs = {i["name"]: i for i in config.get("input", [])}
        if "frames" not in inputs or "h" not in inputs:
            raise UserError(f"model '{self.model}' on {self.url} does not take frames and state (h, c): predict.backend="
                            "triton needs a model written by `export --format triton` (its state kept by the client)")
        self.size = tuple(int(d) for d in inputs["frames"]["dims"][:2])  # (h, w)
        self.names = [n for n in ("h", "c") if n in inputs]
        self.prev_action = "prev" in inputs  # the model reads the class pressed on the previous tick
        dims = [int(d) for d in inputs["h"]["dims"]]  # (layers, hidden)
        self.state = [np.zeros((self.streams, *dims), np.float32) for _ in self.names]
        self.classes = json.loads(params["classes"]) if "classes" in params else classes
        if classes is not None and self.classes != classes:
            raise UserError(f"model '{self.model}' on {self.url} decides {self.classes}, the weights given {classes}")
        self.trained = json.loads(params.get("trained") or "{}")
        max_batch = int(config.get("max_batch_size", 0))
        if self.streams > max_batch:
            raise UserError(f"model '{self.model}' on {self.url} takes at most {max_batch} streams per request, not "
                            f"{self.streams}: export it with --max-batch {self.streams}")

    def reset(self) -> None:
        for s in self.state:
            s[:] = 0.0

    def get_state(self) -> list[np.ndarray]:
        """The recurrent state as (L, K, H) float32 arrays, h then c (as the other engines hold it)."""
        return [s.transpose(1, 0, 2).copy() for s in self.state]

    def set_state(self, state: list[np.ndarray]) -> None:
        self.state = [np.ascontiguousarray(np.asarray(s, np.float32).transpose(1, 0, 2)) for s in state]

    def __call__(self, frames: np.ndarray, first: np.ndarray | list[bool] | None = None,
                 prev: np.ndarray | list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        frames = np.ascontiguousarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.shape[1:3] != self.size:
            raise UserError(f"model '{self.model}' on {self.url} was exported for {self.size[1]}x{self.size[0]} frames "
                            f"and the source gives {frames.shape[2]}x{frames.shape[1]}; export it again with "
                            f"--frame-size {frames.shape[2]}x{frames.shape[1]}")
        first = np.zeros(len(frames), bool) if first is None else np.asarray(first, bool)
        feeds = {"frames": frames, "first": first.reshape(-1, 1), **dict(zip(self.names, self.state))}
        if self.prev_action:
            feeds["prev"] = (np.full(len(frames), -1, np.int64) if prev is None else np.asarray(prev, np.int64)).reshape(-1, 1)
        inputs = []
        for name, value in feeds.items():
            kind = {"frames": "UINT8", "first": "BOOL", "prev": "INT64"}.get(name, "FP32")
            tensor = self.grpc.InferInput(name, list(value.shape), kind)
            tensor.set_data_from_numpy(value)
            inputs.append(tensor)
        outputs = [self.grpc.InferRequestedOutput(n) for n in ("probs", *(f"{n}_out" for n in self.names))]
        result = self._infer(inputs, outputs)
        probs = result.as_numpy("probs")
        self.state = [result.as_numpy(f"{n}_out") for n in self.names]
        return probs, probs.argmax(-1)

    def _infer(self, inputs: list, outputs: list):
        """One request, retried with backoff on a new connection while the server is away (up to triton_retry_s)."""
        deadline, wait, failed = time.monotonic() + self.cfg.triton_retry_s, 0.05, False
        while True:
            try:
                result = self.client.infer(self.model, inputs, model_version=self.cfg.triton_version, outputs=outputs,
                                           client_timeout=self.cfg.triton_timeout_s)
            except self.error_type as e:
                if e.status() in REFUSED:
                    raise UserError(f"the Triton server at {self.url} refused the request: {_message(e)}") from None
                self.counters["server_errors"] += 1
                if time.monotonic() > deadline:
                    raise UserError(f"the Triton server at {self.url} has not answered for {self.cfg.triton_retry_s:g} s "
                                    f"(predict.triton_retry_s); last: {_message(e)}") from None
                if not failed:
                    log.warning("the Triton server at %s did not answer (%s): retrying", self.url, _message(e))
                failed = True
                time.sleep(wait)  # backing off from a server that is away; the capture thread goes on meanwhile
                wait = min(2 * wait, 1.0)
                self.client.close()
                self.client = self._client()
                continue
            if failed:
                self.counters["server_reconnects"] += 1
                log.warning("the Triton server at %s answers again", self.url)
            return result
