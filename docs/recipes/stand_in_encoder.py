"""Write the encoder of our weights file as torchvision's pretrained-weights file, where `model.pretrained=true` looks.

Model hubs are out of reach here, so docs/webcam.md's figures start from an encoder we trained on other synthetic
data (the pose task of synthetic:gestures) instead of ImageNet weights. Placed under torchvision's file name in
$TORCH_HOME/hub/checkpoints/, it is loaded through the very path that loads the real ImageNet file on a machine with
internet. torchvision's classifier (unused by us) stays at its random initialisation.

Usage: python docs/recipes/stand_in_encoder.py WEIGHTS   (writes $TORCH_HOME/hub/checkpoints/<torchvision's name>)
"""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision

from stream_predictor import load_model
from stream_predictor.model.encoders import HEADS, pretrained_weights


def main(weights: str) -> Path:
    model = load_model(weights)
    name = model.cfg.encoder
    net = torchvision.models.get_model(name, weights=None)
    missing, unexpected = net.load_state_dict(model.encoder.state_dict(), strict=False)
    assert not unexpected and all(k.startswith(HEADS[name]) for k in missing), (missing, unexpected)
    url = pretrained_weights(name).url
    out = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), out)  # torchvision's own file format, read back with weights_only=True
    print(f"{weights} ({name} encoder) -> {out}")
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[-1])
    main(sys.argv[1])
