"""The formulas of PPO fine-tuning, small enough to read in one sitting and tested against hand-worked cases.

Shapes: T steps × K games, time first. `dones[t]` is true when the episode ended with step t (the
next frame starts a new one), so nothing is bootstrapped across it.

Written here rather than taken from a library: the ones that have them (torchrl, stable-baselines3 /
sb3-contrib) bring a framework with its own environment, rollout and recurrent-state handling, and
ours are the runtime's; what is left is a dozen lines.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gae(rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor, last_value: torch.Tensor,
        gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimates and the value targets (returns), both (T, K).

    delta_t = r_t + gamma·V_{t+1}·(1 - done_t) - V_t;  A_t = delta_t + gamma·lam·(1 - done_t)·A_{t+1};  R_t = A_t + V_t.
    `last_value` (K,) is V of the frame after the rollout.
    """
    steps = rewards.shape[0]
    adv = torch.zeros_like(rewards)
    running = torch.zeros_like(last_value)
    for t in reversed(range(steps)):
        next_value = last_value if t == steps - 1 else values[t + 1]
        live = 1.0 - dones[t].to(rewards.dtype)
        delta = rewards[t] + gamma * next_value * live - values[t]
        running = delta + gamma * lam * live * running
        adv[t] = running
    return adv, adv + values


def clipped_policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, clip: float) -> torch.Tensor:
    """PPO's clipped surrogate, to minimise: mean of -min(ratio·A, clip(ratio, 1 ± clip)·A)."""
    ratio = torch.exp(logp - old_logp)
    return -torch.min(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv).mean()


def kl_divergence(logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
    """KL(pi || pi_ref) per row, exact over the classes: sum_a pi(a)·(log pi(a) - log pi_ref(a))."""
    logp, ref = F.log_softmax(logits, -1), F.log_softmax(ref_logits, -1)
    return (logp.exp() * (logp - ref)).sum(-1)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    logp = F.log_softmax(logits, -1)
    return -(logp.exp() * logp).sum(-1)


def kl_weight(coef: float, half_life: int, frames: int) -> float:
    """The KL anchor's weight after `frames`: it halves every `half_life` frames (VPT decays it too)."""
    return coef * 0.5 ** (frames / half_life) if half_life > 0 else coef
