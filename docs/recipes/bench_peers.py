"""API level, a game frame in → a class out, one stream, one thread: our agent (torch engine, and the exported graph
in onnxruntime) against sb3-contrib's RecurrentPPO.predict with the same network shape (NatureCNN 512 + LSTM 256).

The peer stays out of the package's dependencies; this script needs it installed:
    pip install sb3-contrib
    python docs/recipes/bench_peers.py [--frames 300] [--repeats 5]

sb3 takes observations already reduced to 84x84 gray (its Atari wrappers do that outside the policy); here cv2 does it
(cvtColor + INTER_AREA resize, faster than our in-model preprocessing), and that time counts on its side. Same 300 real
Pong frames for all, interleaved repeats, medians; the CPU model is printed with the figures.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--weights", default="weights/pong.safetensors")
    args = ap.parse_args()
    try:
        import gymnasium as gym
        from sb3_contrib import RecurrentPPO
    except ImportError:
        raise SystemExit("error: this comparison needs sb3-contrib: pip install sb3-contrib") from None
    from stream_predictor import load_config, load_model
    from stream_predictor.config import PredictConfig
    from stream_predictor.model.export import export_onnx
    from stream_predictor.runtime.agent import ModelAgent
    from stream_predictor.runtime.onnx_engine import graph_agent
    from stream_predictor.sources import open_source
    from stream_predictor.tools.bench import machine

    torch.set_num_threads(1)
    src = open_source("ale:Pong?seed=5", load_config().source)
    frames = [src.read().image.copy() for _ in range(args.frames)]
    src.close()
    model = load_model(args.weights)
    ours = ModelAgent.torch(model)
    tmp = tempfile.mkdtemp()
    graph, _ = export_onnx(model, Path(tmp) / "step.onnx", frames[0].shape[:2])
    ours_onnx = graph_agent(graph, PredictConfig(threads=1))

    class Screen(gym.Env):  # only its spaces are used: the policy is built for them
        observation_space = gym.spaces.Box(0, 255, (84, 84, 1), np.uint8)
        action_space = gym.spaces.Discrete(3)

    sb3 = RecurrentPPO("CnnLstmPolicy", Screen(), policy_kwargs={"lstm_hidden_size": 256, "n_lstm_layers": 1},
                       device="cpu", n_steps=16, batch_size=16)
    sb3_state = [None]

    def peer(image: np.ndarray, first: bool) -> int:
        obs = cv2.resize(cv2.cvtColor(image[34:194], cv2.COLOR_BGR2GRAY), (84, 84), interpolation=cv2.INTER_AREA)[..., None]
        action, sb3_state[0] = sb3.predict(obs, state=sb3_state[0], episode_start=np.array([first]), deterministic=True)
        return int(action)

    contenders = {
        "ours, torch engine (ModelAgent.decide)": lambda image, first: ours.decide(image, first).class_id,
        "ours, exported graph in onnxruntime (graph_agent(...).decide)": lambda image, first: ours_onnx.decide(image, first).class_id,
        "sb3-contrib RecurrentPPO.predict (+ cv2 preprocessing)": peer,
    }
    times: dict[str, list[float]] = {name: [] for name in contenders}
    with torch.inference_mode():
        for _ in range(args.repeats):
            for name, fn in contenders.items():
                t0 = time.perf_counter()
                for i, image in enumerate(frames):
                    fn(image, i == 0)
                times[name].append((time.perf_counter() - t0) / len(frames) * 1000)
    print(", ".join(f"{k}: {v}" for k, v in machine().items()) + ", 1 thread")
    peer_ms = statistics.median(times["sb3-contrib RecurrentPPO.predict (+ cv2 preprocessing)"])
    for name, values in times.items():
        ms = statistics.median(values)
        print(f"{name:58s} {ms:6.3f} ms per frame   sb3 / this = {peer_ms / ms:4.2f}x")


if __name__ == "__main__":
    main()
