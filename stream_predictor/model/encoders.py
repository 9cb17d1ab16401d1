"""Frame encoders: a plain registry dict from name to a builder.

Each builder takes (in_channels, input_size (h, w), feature_dim) and returns (module, out_dim); the
module maps float (B, C, h, w) to (B, out_dim).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from contextlib import redirect_stdout
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import ConfigError, UserError

log = logging.getLogger(__name__)


def _flat_dim(body: nn.Sequential, in_channels: int, size: tuple[int, int]) -> int:
    """The flattened output size of a stack of convolutions (and shape-keeping layers), by arithmetic: no forward pass,
    so that counting a config's parameters on the meta device stays instant."""
    c, (h, w) = in_channels, size
    for layer in body:
        if isinstance(layer, nn.Conv2d):
            (kh, kw), (sh, sw), (ph, pw), (dh, dw) = layer.kernel_size, layer.stride, layer.padding, layer.dilation
            h, w, c = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1, layer.out_channels
        if h < 1 or w < 1:
            raise ConfigError(f"model.input_size {list(size)} is too small for this encoder (a convolution's output is empty)")
    return c * h * w


def alexnet(in_channels: int, size: tuple[int, int], feature_dim: int) -> tuple[nn.Module, int]:
    """The classic AlexNet stack (conv 96/11/4 … 256/3, max-pools and LRN), pooled to a vector for small inputs."""
    body = nn.Sequential(
        nn.Conv2d(in_channels, 96, 11, stride=4, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2), nn.LocalResponseNorm(5),
        nn.Conv2d(96, 256, 5, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2), nn.LocalResponseNorm(5),
        nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 384, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, ceil_mode=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )
    return nn.Sequential(body, nn.Linear(256, feature_dim), nn.ReLU(inplace=True)), feature_dim


def nature_cnn(in_channels: int, size: tuple[int, int], feature_dim: int) -> tuple[nn.Module, int]:
    """The DQN encoder (Mnih et al. 2015): 32/8/4 → 64/4/2 → 64/3/1 → fc, built for 84×84."""
    body = nn.Sequential(
        nn.Conv2d(in_channels, 32, 8, stride=4), nn.ReLU(inplace=True),
        nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(inplace=True),
        nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(inplace=True),
        nn.Flatten(),
    )
    return nn.Sequential(body, nn.Linear(_flat_dim(body, in_channels, size), feature_dim), nn.ReLU(inplace=True)), feature_dim


def _stem(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    if conv.in_channels == in_channels:
        return conv
    return nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=conv.bias is not None)


def resnet18(in_channels: int, size: tuple[int, int], feature_dim: int) -> tuple[nn.Module, int]:
    import torchvision

    net = torchvision.models.resnet18(weights=None)
    net.conv1 = _stem(net.conv1, in_channels)
    out = net.fc.in_features
    net.fc = nn.Identity()
    return net, out


def mobilenet_v3_small(in_channels: int, size: tuple[int, int], feature_dim: int) -> tuple[nn.Module, int]:
    import torchvision

    net = torchvision.models.mobilenet_v3_small(weights=None)
    net.features[0][0] = _stem(net.features[0][0], in_channels)
    out = net.classifier[0].in_features
    net.classifier = nn.Identity()
    return net, out


def efficientnet_b0(in_channels: int, size: tuple[int, int], feature_dim: int) -> tuple[nn.Module, int]:
    import torchvision

    net = torchvision.models.efficientnet_b0(weights=None)
    net.features[0][0] = _stem(net.features[0][0], in_channels)
    out = net.classifier[1].in_features
    net.classifier = nn.Identity()
    return net, out


ENCODERS: dict[str, Callable[[int, tuple[int, int], int], tuple[nn.Module, int]]] = {
    "alexnet": alexnet,
    "nature_cnn": nature_cnn,
    "resnet18": resnet18,
    "mobilenet_v3_small": mobilenet_v3_small,
    "efficientnet_b0": efficientnet_b0,
}


def build_encoder(name: str, in_channels: int, size: tuple[int, int], feature_dim: int) -> tuple[nn.Module, int]:
    if name not in ENCODERS:
        raise ConfigError(f"config key 'model.encoder': unknown encoder '{name}'; known: {', '.join(ENCODERS)}")
    try:
        encoder, dim = ENCODERS[name](in_channels, size, feature_dim)
        if torch.get_default_device().type != "meta":  # counting parameters only: no forward pass
            with torch.no_grad():
                encoder.eval()(torch.zeros(1, in_channels, *size))
    except RuntimeError as e:
        raise ConfigError(f"model.input_size {list(size)} is too small for encoder '{name}' ({str(e).splitlines()[0]})") from None
    return encoder, dim


# --- pretrained torchvision weights ------------------------------------------------------------------------
HEADS = {"resnet18": "fc.", "mobilenet_v3_small": "classifier.", "efficientnet_b0": "classifier."}  # dropped: ours follow


def pretrained_weights(name: str):
    """torchvision's default weights for an encoder of ours (a `WeightsEnum` member, e.g. ResNet18_Weights.IMAGENET1K_V1)."""
    if name not in HEADS:
        raise ConfigError(f"model.pretrained=true needs a torchvision encoder ({', '.join(HEADS)}), not '{name}'")
    import torchvision

    return torchvision.models.get_model_weights(name).DEFAULT


def pretrained_config(cfg: ModelConfig) -> ModelConfig:
    """The model config with the pretrained weights' preprocessing: RGB, their mean and std, and their input size
    unless `model.input_size` was set to something other than its default. Unchanged without `model.pretrained`."""
    if not cfg.pretrained:
        return cfg
    t = pretrained_weights(cfg.encoder).transforms()
    size = list(cfg.input_size) if cfg.input_size != ModelConfig().input_size else [t.crop_size[0], t.crop_size[0]]
    return replace(cfg, grayscale=False, mean=[float(m) for m in t.mean], std=[float(v) for v in t.std], input_size=size)


def load_pretrained(encoder: nn.Module, name: str) -> str:
    """Load torchvision's default weights for `name` into our `encoder` (its classifier dropped), through torchvision's
    own weights API: the file comes from $TORCH_HOME/hub/checkpoints/, downloaded there the first time. Returns the
    weights' name."""
    weights = pretrained_weights(name)
    file = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name
    try:
        with redirect_stdout(sys.stderr):  # torch.hub announces downloads on stdout, where our JSON goes
            state = weights.get_state_dict(progress=False, check_hash=True)
    except OSError as e:  # URLError, a refused connection, a full disk
        raise UserError(f"model.pretrained: cannot download {weights} ({getattr(e, 'reason', e)}); without internet, "
                        f"put {weights.url} at {file}, or use model.pretrained=false") from None
    except Exception as e:  # a truncated or foreign file where the weights should be
        raise UserError(f"model.pretrained: cannot read {file} ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                        f"delete it to download again, or use model.pretrained=false") from None
    head = HEADS[name]
    missing, unexpected = encoder.load_state_dict({k: v for k, v in state.items() if not k.startswith(head)}, strict=False)
    if missing or unexpected:
        raise UserError(f"model.pretrained: {file} does not fit {name}: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return str(weights)
