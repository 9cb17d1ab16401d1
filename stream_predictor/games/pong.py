"""Scripted experts that read a game's RAM, for recording demonstrations and labelling DAgger data.

Pong (`ALE/Pong-v5`, frameskip 4, sticky actions 0.25). RAM: player paddle y = ram[51], ball x =
ram[49], ball y = ram[54] (0: no ball in play). Actions: 0 NOOP, 2 RIGHT (paddle up), 3 LEFT
(paddle down). In RAM units the paddle's centre is level with the ball when ball_y = paddle_y + 6,
and the player's paddle sits at ball_x ≈ 188.

A plain tracker loses here: the paddle keeps moving for a while after a key is released, and the
ball is far ahead of where it is aimed. This expert predicts where the ball will cross the paddle's
column (bouncing off the walls) and steers the place where the paddle would come to rest if released
now to it, leaving errors smaller than one press alone. Its parameters are `config.ExpertConfig`
(`expert.*` keys); `docs/pong.md` has how they were chosen.
"""

from __future__ import annotations

import math

import numpy as np

from ..config import ExpertConfig

PONG_CLASSES = ["up", "stay", "down"]
PONG_ACTIONS = {"up": 2, "stay": 0, "down": 3}
PADDLE_X = 188  # ball x (RAM) at the player's paddle
BALL_TOP, BALL_BOTTOM = 46, 206  # ball y (RAM) range between the walls
CENTRE_OFFSET = 6  # ball_y - paddle_y when the ball meets the paddle's centre


def _reflect(y: float) -> float:
    span = BALL_BOTTOM - BALL_TOP
    y = (y - BALL_TOP) % (2 * span)
    return BALL_TOP + (y if y <= span else 2 * span - y)


def pong_state(ram: np.ndarray) -> dict[str, float]:
    """Where the ball and both paddles are (RAM units; the ball's nan while none is in play): privileged training targets."""
    ball = bool(ram[54])
    return {"ball_x": float(ram[49]) if ball else math.nan, "ball_y": float(ram[54]) if ball else math.nan,
            "player_y": float(ram[51]), "enemy_y": float(ram[50])}


def pong_expert(ram: np.ndarray, memory: dict, params: ExpertConfig) -> str:
    """One decision for the right-hand (green) paddle. `memory` carries the previous step's positions and
    `last`, the action taken last step (set by whoever acted)."""
    bx, by, py = int(ram[49]), int(ram[54]), int(ram[51])
    prev = memory.get("prev")
    memory["prev"] = (bx, by, py)
    vx = vy = pv = 0
    if prev is not None:
        pbx, pby, ppy = prev
        if by and pby:
            vx, vy = bx - pbx, by - pby
        pv = py - ppy
    if by == 0:
        target = (BALL_TOP + BALL_BOTTOM) / 2  # no ball: wait in the middle
    elif vx > 0:
        target = _reflect(by + vy * (PADDLE_X - bx) / vx)  # where it will cross our column
    else:
        target = params.away * by + (1 - params.away) * (BALL_TOP + BALL_BOTTOM) / 2  # going away: partly follow it, stay central
    # Where the paddle comes to rest if no key is pressed from now on: a key pressed last step still
    # carries it about `coast` further; once released, only the last few units remain.
    pressed = memory.get("last") in ("up", "down") and abs(pv) >= 4
    stop = py + np.sign(pv) * (params.coast if pressed else (params.residual if abs(pv) >= 4 else 0))
    error = (target - CENTRE_OFFSET) - stop
    action = "down" if error > params.dead_zone else "up" if error < -params.dead_zone else "stay"
    memory["last"] = action
    return action
