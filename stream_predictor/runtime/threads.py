"""Torch's thread count, set for a piece of work and put back after it: the one place the package changes it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """`with torch_threads(1): …` runs torch's CPU kernels on `n` threads inside, as before outside (0: unchanged; torch
    is not imported then)."""
    if n <= 0:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
