"""The one preprocessing path: BGR uint8 (B, H, W, 3) → crop → grayscale/RGB → resize → round → normalize → float (B, C, h, w).

It is written in torch so that the same code runs on the CPU and, inside the captured graph, on a
GPU. Its settings live in ModelConfig and so travel inside every weights file: training, replay and
live inference cannot disagree about it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# ITU-R BT.601 luma, the weights cv2.COLOR_BGR2GRAY uses, in B, G, R order, in thousandths: on whole pixel values the
# weighted sum is a whole number below 2^24, exact in float32 in any order, so every runtime (torch, an exported ONNX
# graph) gets the same luma, and rounds the same way after resizing.
LUMA_BGR = (114, 587, 299)


class Preprocess(nn.Module):
    def __init__(self, input_size: list[int], grayscale: bool, crop: list[int], mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.size = (int(input_size[0]), int(input_size[1]))  # (h, w)
        self.grayscale = grayscale
        self.crop = tuple(crop) if crop else None  # (x, y, w, h)
        self.channels = 1 if grayscale else 3
        mean = mean * self.channels if len(mean) == 1 else mean
        std = std * self.channels if len(std) == 1 else std
        # Derived from config, so not saved in the state dict.
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def to_pixels(self, frames: torch.Tensor) -> torch.Tensor:
        """BGR uint8 (B, H, W, 3) → (B, C, h, w) float holding whole pixel values 0..255.

        Rounding to whole pixels makes this stage exactly cacheable as uint8: the training cache
        stores it, and live inference computes the same values.
        """
        if self.crop is not None:
            x, y, w, h = self.crop
            frames = frames[:, y : y + h, x : x + w]
        if self.grayscale:  # three whole-number products summed: exact, in any order; on the channels-last frame
            f = frames.float()
            x = f[..., 0].mul(LUMA_BGR[0]).add_(f[..., 1], alpha=LUMA_BGR[1]).add_(f[..., 2], alpha=LUMA_BGR[2])
            x = x.div_(1000.0).unsqueeze(1)  # (B, 1, H, W)
        else:
            x = frames.permute(0, 3, 1, 2).float().flip(1)  # (B, 3, H, W); BGR → RGB, the order torchvision backbones expect
        if tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", antialias=True, align_corners=False)
        return x.round_().clamp_(0, 255)

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) pixel values 0..255 (uint8 or float) → float32 normalized with mean and std."""
        return (pixels.float() / 255.0 - self.mean) / self.std

    def view(self, image: np.ndarray) -> np.ndarray:
        """One BGR uint8 (H, W, 3) frame as the model sees it: (h, w, 3) BGR uint8 after crop, grayscale and resize."""
        with torch.inference_mode():
            pixels = self.to_pixels(torch.from_numpy(np.ascontiguousarray(image))[None])[0].to(torch.uint8)
        out = pixels.permute(1, 2, 0).numpy()
        return np.repeat(out, 3, axis=2) if self.grayscale else np.ascontiguousarray(out[:, :, ::-1])

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """BGR uint8 (B, H, W, 3) → float32 (B, C, h, w)."""
        return self.normalize(self.to_pixels(frames))


def as_uint8_tensor(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(H, W, 3) or (T, H, W, 3) uint8 array or tensor → uint8 tensor (T, H, W, 3), without copying when possible."""
    t = torch.from_numpy(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
    if t.dtype != torch.uint8 or t.shape[-1] != 3 or t.dim() not in (3, 4):
        raise ValueError(f"expected BGR uint8 frames (H, W, 3) or (T, H, W, 3), got {tuple(t.shape)} {t.dtype}")
    return t[None] if t.dim() == 3 else t
