"""Does the agent's state carry the ball? (docs/tuning.md "What the state carries")

The agent plays Flickering Pong (`ale:Pong?flicker=0.5`); on every frame its LSTM state (h, c) and the game's RAM ball
position and velocity are kept. A linear read-out (ridge) from the state to each of the ball's x, y, vx, vy is fitted
on the blank frames of some games and scored (R²) on the blank frames of others. Beside it, the same read-out from the
CNN's features of the frame alone: all a model without memory has (on a blank frame, nothing).

    python docs/recipes/probe.py --weights weights/flickering_pong.safetensors [--games 6 --steps 2500] --json
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from stream_predictor import load_model
from stream_predictor.games.agents import action_table
from stream_predictor.sources.ale import AleGame

TARGETS = ("ball_x", "ball_y", "ball_vx", "ball_vy")


def play(model, seed: int, steps: int, flicker: float) -> dict[str, np.ndarray]:
    """One game (at most `steps` steps), the agent choosing by argmax: per frame the state, the frame's features,
    whether it was blank, and the ball's RAM x, y and their change since the last step."""
    game = AleGame("Pong", seed=seed, flicker=flicker)
    actions = action_table(game, model.classes)
    state, rows, prev, pressed = model.init_state(1), [], None, torch.tensor([-1])
    try:
        for _ in range(steps):
            frame = game.read()
            ram = game.ram()
            x, y = float(ram[49]), float(ram[54])
            feats = model.encode(model.preprocess(frame.image)[None])
            logits, state = model.step_features(feats, state, torch.tensor([frame.first]), pressed)  # model.prev_action
            pressed = logits.argmax(-1)
            game.act(actions[int(pressed)])
            vx, vy = (x - prev[0], y - prev[1]) if prev is not None and y and prev[1] else (np.nan, np.nan)
            prev = (x, y)
            rows.append((torch.cat([state[0][-1, 0], state[1][-1, 0]]).numpy(), feats[0].numpy(),
                         not frame.image.any(), y != 0, (x, y, vx, vy)))
    finally:
        game.close()
    s, f, blank, ball, t = zip(*rows)
    return {"state": np.stack(s), "features": np.stack(f), "blank": np.array(blank), "ball": np.array(ball),
            "target": np.array(t, np.float64)}


def ridge_r2(x_train, y_train, x_test, y_test, lam: float = 1.0) -> float:
    """R² on the test rows of a ridge read-out fitted on the training rows (inputs standardised on the training rows)."""
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-6
    a, b = (x_train - mu) / sd, (x_test - mu) / sd
    a, b = np.c_[a, np.ones(len(a))], np.c_[b, np.ones(len(b))]
    w = np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ y_train)
    residual = ((b @ w - y_test) ** 2).sum()
    return float(1 - residual / ((y_test - y_test.mean()) ** 2).sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default="weights/flickering_pong.safetensors")
    ap.add_argument("--games", type=int, default=6, help="games to fit on; as many again (other seeds) to score on")
    ap.add_argument("--steps", type=int, default=2500, help="steps per game")
    ap.add_argument("--flicker", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=4100, help="fit on seeds SEED.., score on SEED+100..")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = load_model(args.weights).eval()
    with torch.inference_mode():
        sets = [[play(model, seed + g, args.steps, args.flicker) for g in range(args.games)]
                for seed in (args.seed, args.seed + 100)]
    fit, score = ({k: np.concatenate([g[k] for g in games]) for k in games[0]} for games in sets)
    out = {"weights": args.weights, "flicker": args.flicker, "fit_seeds": f"{args.seed}-{args.seed + args.games - 1}",
           "score_seeds": f"{args.seed + 100}-{args.seed + 99 + args.games}"}
    for frames in ("blank", "visible"):
        pick = [(d["blank"] if frames == "blank" else ~d["blank"]) & d["ball"] for d in (fit, score)]
        for source in ("state", "features"):
            for i, name in enumerate(TARGETS):
                ok = [p & ~np.isnan(d["target"][:, i]) for p, d in zip(pick, (fit, score))]
                r2 = ridge_r2(fit[source][ok[0]], fit["target"][ok[0], i], score[source][ok[1]], score["target"][ok[1], i])
                out[f"{frames}/{source}/{name}"] = round(r2, 3)
        out[f"{frames}/frames_scored"] = int(pick[1].sum())
    print(json.dumps(out) if args.json else "\n".join(f"{k}: {v}" for k, v in out.items()))


if __name__ == "__main__":
    main()
