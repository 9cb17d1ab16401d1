"""Weights files: safetensors tensors + the ModelConfig (classes and preprocessing included) as metadata.

Nothing in such a file can execute: safetensors holds raw tensors and a JSON header, and a file that
is not one (a pickle `.pt`, random bytes, a truncated download) is refused before anything is built.
Tensors named `aux.*` (the value head of a fine-tuned policy) travel in the same file and are ignored
at inference; `load_aux` reads them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..config import ModelConfig, config_from_dict, to_dict
from ..errors import ConfigError, UserError
from ..files import atomic_path
from ..paths import shipped
from .stream_model import StreamModel

FORMAT = "stream_predictor/1"
AUX = "aux."


TRAINING_ONLY = "state_head."  # a head that only training has (train.state_weight): never in the weights


def save_model(model: StreamModel, path: str | Path, extra: dict[str, str] | None = None,
               aux: dict[str, torch.Tensor] | None = None) -> Path:
    """Write weights + config. `extra` adds string metadata (e.g. training metrics); `aux` tensors ride along as `aux.*`."""
    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()
               if not k.startswith(TRAINING_ONLY)}
    tensors.update({AUX + k: v.detach().cpu().contiguous() for k, v in (aux or {}).items()})
    metadata = {"format": FORMAT, "model_config": json.dumps(to_dict(model.cfg)), **(extra or {})}
    if model.trained:
        metadata["trained"] = json.dumps(model.trained)
    with atomic_path(path) as tmp:  # a reader never sees half a file
        save_file(tensors, str(tmp), metadata=metadata)
        tmp.chmod(0o644)
    return path


def read_metadata(path: str | Path) -> dict[str, str]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no such weights file: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"{path} is not a safetensors weights file ({str(e).splitlines()[0]}); "
                        "pickle checkpoints are refused") from None
    if meta.get("format") != FORMAT:
        raise UserError(f"{path} is a safetensors file but not stream_predictor weights (format {meta.get('format')!r})")
    return meta


def load_model(path: str | Path, device: str | torch.device = "cpu") -> StreamModel:
    """Rebuild the model from the file's own config and load its weights (strict), in eval mode. A relative
    `weights/…` path that is not here is looked up in the shipped weights (paths.py)."""
    path = shipped(path)
    meta = read_metadata(path)
    try:
        cfg = config_from_dict(ModelConfig, json.loads(meta["model_config"]), "model.")
    except (KeyError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: model config in the metadata is missing or unreadable ({e})") from None
    except ConfigError as e:
        raise UserError(f"{path}: {e}") from None
    try:
        model = StreamModel(cfg)  # the parameter count is checked before anything is allocated
    except ConfigError as e:
        raise UserError(f"{path}: {e}") from None
    expected = model.state_dict()
    tensors = _tensors(path, lambda k: not k.startswith(AUX))
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [f"{k} {tuple(tensors[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
             if k in tensors and tensors[k].shape != v.shape]
    if missing or unexpected or wrong:
        parts = [f"missing {len(missing)} ({', '.join(missing[:3])})" if missing else "",
                 f"unexpected {len(unexpected)} ({', '.join(unexpected[:3])})" if unexpected else "",
                 f"shape mismatch: {'; '.join(wrong[:3])}" if wrong else ""]
        raise UserError(f"{path} does not match its model ({cfg.encoder}): " + ", ".join(p for p in parts if p))
    model.load_state_dict(tensors, strict=True)
    model.trained = json.loads(meta.get("trained", "{}"))
    return model.to(device).eval()


def load_aux(path: str | Path) -> dict[str, torch.Tensor]:
    """The `aux.*` tensors of a weights file (without the prefix); empty if it has none."""
    read_metadata(path)
    return {k.removeprefix(AUX): v for k, v in _tensors(path, lambda k: k.startswith(AUX)).items()}


def weights_digest(module: torch.nn.Module, *also: object) -> str:
    """A hash of a module's weights and buffers (and of `also`, as JSON): what is cached under it (a frozen encoder's
    features, an exported graph) is stale once any of them changes."""
    h = hashlib.sha1(json.dumps(also).encode())
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _tensors(path: str | Path, keep) -> dict[str, torch.Tensor]:
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys() if keep(k)}
    except (SafetensorError, OSError) as e:
        raise UserError(f"{path}: cannot read tensors ({str(e).splitlines()[0]})") from None
