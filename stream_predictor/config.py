"""Every config key, declared once with its default, a one-line comment and, for numbers, its valid range `R(lo, hi)`.

`configs/*.yaml` hold only overrides of these defaults. `load_config` merges YAML files and dotted
`key=value` overrides; an unknown key, a value of the wrong type or a number out of its range is a `ConfigError`
that names the key, the value and what is allowed. A weights file's model section goes through the same checks.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml

from .errors import ConfigError
from .paths import data_dir

CONFIG_DIR = data_dir("configs")  # the shipped configs: the checkout's, or the installed data folder's


@dataclass(frozen=True, slots=True)
class R:
    """The valid range of a numeric key, both ends included (for a list, of each item)."""

    lo: float
    hi: float

    def check(self, value: float, key: str) -> None:
        if not self.lo <= value <= self.hi:  # NaN fails too
            raise ConfigError(f"config key '{key}' must be between {self.lo:g} and {self.hi:g}, got {value!r}")


@dataclass(slots=True)
class SourceConfig:
    spec: str = "ale:Pong"  # what to read: 0, video.mp4, rtsp://…, screen[:x,y,w,h], ale:Game, dir/, synthetic:…
    ring_size: Annotated[int, R(2, 4096)] = 32  # frames kept in the capture ring
    width: Annotated[int, R(0, 16384)] = 0  # camera/synthetic width to request (0: device default)
    height: Annotated[int, R(0, 16384)] = 0  # camera/synthetic height to request (0: device default)
    fps: Annotated[float, R(0, 1000)] = 0.0  # camera fps to request, or a cap for screen capture (0: no cap)
    seed: Annotated[int, R(0, 2**31 - 1)] = 0  # seed of generated sources (ale, synthetic)
    frameskip: Annotated[int, R(1, 64)] = 4  # ale: emulator frames per agent step
    sticky: Annotated[float, R(0, 1)] = 0.25  # ale: probability that the previous action repeats
    max_episode_steps: Annotated[int, R(1, 10**7)] = 16000  # ale: agent steps per episode (the Pong ROM freezes at 16,303)
    flicker: Annotated[float, R(0, 1)] = 0.0  # ale: probability that a frame is shown blank (Flickering Pong uses 0.5)
    delay: str = "0"  # ale: steps an action reaches the game late, K or a range LO-HI drawn per action
    repeat: Annotated[float, R(0, 1)] = 0.0  # ale: probability that a read shows the previous frame again
    drop: Annotated[float, R(0, 1)] = 0.0  # ale: probability that the game takes two steps before the next frame
    read_timeout_s: Annotated[float, R(0.01, 3600)] = 5.0  # live sources: a read that takes longer counts as a failure
    reconnect_max: Annotated[int, R(0, 10**6)] = 10  # live sources: reconnect attempts before giving up (0: never reconnect)
    reconnect_backoff_s: Annotated[float, R(0, 3600)] = 0.5  # live sources: first reconnect delay, doubled on each failure
    reconnect_backoff_max_s: Annotated[float, R(0, 3600)] = 5.0  # live sources: the delay stops doubling here


@dataclass(slots=True)
class ModelConfig:
    encoder: str = "nature_cnn"  # CNN from the encoder registry
    # torchvision encoders: start from torchvision's default (ImageNet) weights, whose preprocessing then replaces the
    # model's: RGB, their mean and std, and their 224x224 unless input_size is set to something other than its default
    pretrained: bool = False
    input_size: Annotated[list[int], R(8, 4096)] = field(default_factory=lambda: [84, 84])  # (h, w) after resizing
    grayscale: bool = True  # one luma channel instead of RGB
    crop: Annotated[list[int], R(0, 16384)] = field(default_factory=list)  # (x, y, w, h) in source pixels, before resizing; [] keeps all
    mean: Annotated[list[float], R(0, 1)] = field(default_factory=lambda: [0.5])  # per channel, after scaling to [0, 1]
    std: Annotated[list[float], R(1e-6, 1000)] = field(default_factory=lambda: [0.5])  # per channel, after scaling to [0, 1]
    feature_dim: Annotated[int, R(1, 8192)] = 512  # encoder output size (ignored by torchvision encoders, which keep theirs)
    temporal: Literal["lstm", "gru"] = "lstm"  # recurrent head
    hidden: Annotated[int, R(1, 8192)] = 256  # recurrent hidden size
    layers: Annotated[int, R(1, 16)] = 1  # recurrent layers
    dropout: Annotated[float, R(0, 0.99)] = 0.0  # dropout between recurrent layers (training only)
    classes: list[str] = field(default_factory=lambda: ["left", "straight", "right"])  # ordered class names
    # the class pressed on the previous tick (one-hot, none at an episode start) goes into the LSTM beside the frame's
    # features: the model sees what it did, and so how late its actions land (stateful models only)
    prev_action: bool = False


@dataclass(slots=True)
class PredictConfig:
    mode: Literal["auto", "stateful", "windowed"] = "auto"  # O(1) LSTM step per tick, LSTM over the last `window` features, or as trained
    window: Annotated[int, R(0, 4096)] = 0  # cached features used by windowed mode (0: the weights' train.seq_len, else 16)
    tick_hz: Annotated[float, R(0, 10000)] = 0.0  # fixed tick rate (0: one tick per new frame)
    ema: Annotated[float, R(0, 0.999)] = 0.0  # weight of the previous probabilities in an EMA (0: off)
    hysteresis: Annotated[float, R(0, 1)] = 0.0  # probability margin a new class needs to replace the current one (0: off)
    threads: Annotated[int, R(0, 1024)] = 1  # torch threads for inference; one is fastest when another core is busy
    device: str = "cpu"  # torch device for inference ("cuda" for a GPU)
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"  # float16: CUDA only; bfloat16: also CPUs (native with AVX512-BF16/AMX)
    graph: bool = True  # on CUDA, capture the whole tick as one CUDA graph and replay it
    fast_cpu: bool = True  # on the CPU, prepacked oneDNN weights with fused ReLU where the encoder allows (nature_cnn)
    # The CPU path of a stateful model: torch's engine, or its exported graph in onnxruntime (docs/serving.md); auto:
    # torch first, the graph exported in the background after `auto_after` ticks, then whichever of the two is faster,
    # timed on the stream's own ticks (torch alone, with a warning saying why, for a model the graph cannot run)
    backend: Literal["torch", "onnxruntime", "auto", "triton"] = "auto"  # triton: a Triton server runs it (below)
    auto_after: Annotated[int, R(0, 10**9)] = 100  # backend=auto: ticks before the graph is exported (short runs stay on torch)
    # backend=auto: torch in bfloat16 as a third contender (kept only if faster and agreeing >= 99.5% with float32):
    # native: where the CPU multiplies bfloat16 natively (AVX512-BF16, AMX); always: also emulated; never
    auto_bfloat16: Literal["native", "always", "never"] = "native"
    # backend=triton: a Triton Inference Server (`serve`, or your own) runs the tick; the client keeps each stream's
    # state, so any replica serves any tick and a restarted server loses only time (docs/serving.md)
    triton_url: str = "127.0.0.1:8001"  # the server's gRPC endpoint, HOST:PORT
    triton_model: str = ""  # the model's name in the server's repository ("": the one model it has ready)
    triton_version: str = ""  # the model's version ("": the server's choice, the newest)
    triton_timeout_s: Annotated[float, R(0.01, 3600)] = 5.0  # one request's deadline
    triton_retry_s: Annotated[float, R(0, 86400)] = 60.0  # how long one tick retries (backing off) while the server is away
    onnx_cache: str = ".cache/onnx"  # exported graphs for backend onnxruntime, by weights and frame size (made once)
    # recorded video in lockstep: frames encoded per CNN call (one batch), the LSTM then run over them; the ticks are
    # those of one frame at a time. Used only where it cannot change a decision (no live source, no sink that acts,
    # no fixed tick rate); 0 or 1: one frame per tick
    chunk: Annotated[int, R(0, 4096)] = 32
    max_gap_s: Annotated[float, R(0.001, 86400)] = 1.0  # a live source silent for longer resets the recurrent state
    print_every: Annotated[int, R(0, 10**9)] = 0  # print one tick line every so many ticks (0: none)


@dataclass(slots=True)
class RecordConfig:
    labeller: Literal["auto", "keyboard", "expert", "oracle"] = "auto"  # auto: expert for ale:, oracle for synthetic:, else keyboard
    keys: Literal["", "lsr3", "wasd9", "gestures"] = ""  # deprecated alias of keys.preset for labelling ("": keys.preset)
    segment_frames: Annotated[int, R(1, 10**6)] = 300  # frames per video segment: a crash loses at most the segment being written
    codec: str = "FFV1"  # fourcc of the .avi segments: FFV1 is lossless (training sees what inference sees); MJPG is smaller
    frames: Annotated[int, R(0, 10**12)] = 0  # stop after this many recorded frames (0: until the source ends or Ctrl-C)
    seconds: Annotated[float, R(0, 10**9)] = 0.0  # stop after this long (0: no limit)
    policy: str = ""  # weights of a model that plays while the expert labels (DAgger); empty: the expert plays
    countdown: Annotated[float, R(0, 600)] = 3.0  # live sources (camera, screen, stream): seconds to get ready, counted down on screen
    preview: bool = False  # a window showing what is recorded, with the label, the countdown and sink.mirror


@dataclass(slots=True)
class TrainConfig:
    mode: Literal["windowed", "stateful"] = "windowed"  # windows from zero state, or truncated BPTT with the state carried
    epochs: Annotated[int, R(1, 10**6)] = 10  # passes over the training data
    max_steps: Annotated[int, R(0, 10**12)] = 0  # stop after this many optimizer steps (0: no limit)
    batch_size: Annotated[int, R(1, 65536)] = 16  # windows (or parallel lanes in stateful mode) per step
    seq_len: Annotated[int, R(1, 65536)] = 16  # frames per window / per BPTT chunk
    burn_in: Annotated[int, R(0, 65536)] = 8  # stateful: frames after a mid-session lane start that carry no loss
    lr: Annotated[float, R(1e-12, 10)] = 1e-3  # peak AdamW learning rate (chosen in docs/training.md)
    weight_decay: Annotated[float, R(0, 10)] = 0.01  # AdamW weight decay
    warmup_steps: Annotated[int, R(0, 10**9)] = 50  # linear warm-up before the cosine decay
    grad_clip: Annotated[float, R(0, 10**6)] = 1.0  # max gradient norm (0: off)
    label_delay: Annotated[int, R(0, 10**6)] = 0  # predict the label k frames later (corrects for reaction time)
    stride: Annotated[int, R(1, 1000)] = 1  # use every stride-th frame (the model then expects a source at fps/stride)
    balance: Literal["none", "weighted"] = "weighted"  # class-weighted loss against imbalance
    augment: bool = True  # brightness/contrast jitter and small shifts, the same across a window
    mirror: list[str] = field(default_factory=list)  # label pairs swapped by a horizontal flip, e.g. [left:right]; [] never mirrors
    # Privileged targets (0: off): a head on the LSTM's output learns the game's recorded state (state.csv: Pong's
    # ball and paddles) and its change since the previous frame, with this weight beside the class loss. Training
    # only: the head is not in the weights, and the model's input stays the frames
    state_weight: Annotated[float, R(0, 1000)] = 0.0
    val_fraction: Annotated[float, R(0, 0.9)] = 0.2  # fraction of sessions held out for validation (by session, never by frame)
    windows_per_epoch: Annotated[int, R(0, 10**12)] = 0  # windowed: windows drawn per epoch (0: frames / seq_len)
    seed: Annotated[int, R(0, 2**31 - 1)] = 0  # seeds sampling, augmentation and initialisation
    init: str = ""  # start from these weights (e.g. the previous DAgger round) instead of random ones
    freeze_encoder: bool = False  # the CNN keeps its weights (e.g. pretrained ones): each frame is encoded once, cached
    feature_cache: bool = True  # with freeze_encoder: train on the cached features (false: encode every step; same result, slower)
    unfreeze_after: Annotated[int, R(0, 10**6)] = 0  # with freeze_encoder: epochs before the CNN trains too (0: never)
    encoder_lr_scale: Annotated[float, R(0, 1000)] = 0.1  # the CNN's learning rate, relative to lr, once unfrozen
    # a CNN with batch norm that trains: its statistics recomputed on this many training frames after each epoch (0: off)
    precise_bn: Annotated[int, R(0, 10**7)] = 2048
    device: str = "auto"  # auto: cuda if available, else cpu
    amp: bool = True  # mixed precision on CUDA
    cache_dir: str = ".cache/frames"  # preprocessed frames, keyed by session and preprocessing
    threads: Annotated[int, R(0, 1024)] = 0  # torch threads for training (0: torch's default)
    tensorboard: bool = True  # also log to OUT.tb/ for TensorBoard, when the tensorboard package is installed


@dataclass(slots=True)
class TuneConfig:
    """Reinforcement-learning fine-tuning (PPO + a KL anchor to the starting policy); see docs/tuning.md."""

    init: str = ""  # the cloned policy to start from and stay close to (required)
    # the model reads the class it played on the tick before (model.prev_action); an init without it is widened with
    # zero weights for it, so it starts deciding exactly as the init
    prev_action: bool = False
    envs: Annotated[int, R(1, 4096)] = 8  # games stepped together, one batched engine call per tick
    frames: Annotated[int, R(1, 10**12)] = 4_000_000  # frames the agent sees in all (one per agent step; ALE frames are frameskip x more)
    rollout: Annotated[int, R(1, 65536)] = 128  # steps per game between updates (also the BPTT length of the update)
    epochs: Annotated[int, R(1, 1000)] = 4  # passes over each rollout
    minibatches: Annotated[int, R(1, 4096)] = 4  # each pass splits the games into this many groups (whole sequences)
    lr: Annotated[float, R(1e-12, 10)] = 1e-4  # Adam learning rate, decayed linearly to 0
    gamma: Annotated[float, R(0, 1)] = 0.99  # discount
    gae_lambda: Annotated[float, R(0, 1)] = 0.95  # GAE lambda
    clip: Annotated[float, R(0.001, 10)] = 0.1  # PPO ratio clip
    vf_coef: Annotated[float, R(0, 1000)] = 0.5  # weight of the value loss
    ent_coef: Annotated[float, R(0, 1000)] = 0.01  # weight of the entropy bonus
    kl_coef: Annotated[float, R(0, 1000)] = 0.5  # weight of KL(policy || starting policy) at the start
    kl_half_life: Annotated[int, R(1, 10**12)] = 1_000_000  # frames over which that weight halves
    value_warmup: Annotated[int, R(0, 10**12)] = 100_000  # frames during which only the value head learns (the policy is left as cloned)
    max_grad_norm: Annotated[float, R(0, 10**6)] = 0.5  # gradient clipping
    encoder: Literal["frozen", "train"] = "frozen"  # frozen: the CNN runs once per frame, the update reuses its features
    seed: Annotated[int, R(0, 2**31 - 1)] = 100_000  # game i of process r starts at seed + 10,000·(r·envs + i); evaluation seeds stay below
    save_every: Annotated[int, R(1, 10**12)] = 250_000  # frames between snapshots kept for choosing (and checkpoints for --resume)
    threads: Annotated[int, R(1, 1024)] = 2  # torch threads
    tensorboard: bool = True  # also log to OUT.tb/ for TensorBoard, when the tensorboard package is installed


@dataclass(slots=True)
class KeysConfig:
    # key preset (keymaps.py), for pressing (the keys sink) and for labelling from the keyboard: left/straight/right
    # (arrows; A/D too when labelling), the 9 WASD combinations, gestures (keys 1-4; ←/→/c/h too), none (only keys.map)
    preset: Literal["lsr3", "wasd9", "gestures", "none"] = "lsr3"
    map: list[str] = field(default_factory=list)  # class:key+key entries over the preset, e.g. [up:up, stay:, down:down]
    backend: Literal["auto", "pynput", "xdotool", "xtest"] = "auto"  # auto: pynput, else xdotool on X11; xtest: python-xlib
    pause_key: str = "f9"  # toggles pause: of key presses in the keys sink, of recording with the keyboard labeller
    dry_run: bool = False  # print the presses and releases instead of pressing


@dataclass(frozen=True, slots=True)
class Trained:
    """How weights were trained, as their `trained` metadata says (a weights file's, or an exported graph's)."""

    mode: str = "stateful"  # stateful: BPTT, one frame per step; windowed: the last seq_len frames from zero state
    seq_len: int = 16

    @classmethod
    def of(cls, trained: dict) -> Trained:
        return cls(str(trained.get("mode", "stateful")), int(trained.get("seq_len") or 16))

    @property
    def single_frame(self) -> bool:
        """Trained on windows of one frame: it decides from each frame alone (its state reset at every frame)."""
        return self.mode == "windowed" and self.seq_len == 1

    @property
    def over_windows(self) -> bool:
        """Trained on windows of several frames: only the windowed mode decides as it was trained."""
        return self.mode == "windowed" and self.seq_len > 1


@dataclass(slots=True)
class ExpertConfig:
    """The Pong RAM expert's parameters (RAM units); recorded in each session's meta.yaml."""

    coast: Annotated[int, R(0, 200)] = 12  # how far a pressed paddle is taken to travel on after release when planning (docs/pong.md)
    residual: Annotated[int, R(0, 200)] = 3  # how far a released, still moving paddle travels on
    away: Annotated[float, R(0, 1)] = 0.25  # while the ball goes away, weight of its height against the middle
    dead_zone: Annotated[int, R(0, 200)] = 8  # errors smaller than this are left alone (one press moves the paddle ~22 from rest)
    # steps the expert looks ahead in a copy of the emulator before it decides (0: it decides from the RAM alone): each
    # action is tried, then the expert plays on until the first point; the action that wins soonest (or loses latest)
    # is kept, its own choice on a tie. A teacher for DAgger (docs/tuning.md); about 3 x this many steps per decision
    lookahead: Annotated[int, R(0, 10000)] = 0


@dataclass(slots=True)
class SinkConfig:
    host: str = "127.0.0.1"  # where udp:/tcp: sinks send or listen; localhost unless you mean otherwise
    video_fps: Annotated[float, R(0.1, 1000)] = 30.0  # frame rate written by the annotated video sink
    web_port: Annotated[int, R(0, 65535)] = 8765  # port of the `web` sink's page (`web:PORT` names another; 0 picks a free one)
    mirror: bool = False  # preview and web sinks show frames flipped left to right, as a mirror (a camera facing you)


@dataclass(slots=True)
class PlayConfig:
    weights: str = "weights/pong.safetensors"  # the agent's weights
    episodes: Annotated[int, R(1, 10**6)] = 1  # episodes to play
    seed: Annotated[int, R(0, 2**31 - 1)] = 1000  # first episode's seed (training data uses seeds below 1000)
    mode: Literal["fast", "realtime"] = "fast"  # fast: the game waits for each decision (deterministic); realtime: native pace
    video: str = ""  # write the annotated game to this video file ("": none)


@dataclass(slots=True)
class Config:
    replay: Literal["lockstep", "realtime"] = "lockstep"  # finite/generated sources: every frame in order, or paced with drops
    source: SourceConfig = field(default_factory=SourceConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)
    record: RecordConfig = field(default_factory=RecordConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    play: PlayConfig = field(default_factory=PlayConfig)
    expert: ExpertConfig = field(default_factory=ExpertConfig)
    keys: KeysConfig = field(default_factory=KeysConfig)
    sink: SinkConfig = field(default_factory=SinkConfig)


def _all_keys(cls: type, prefix: str = "") -> list[str]:
    keys = []
    for f in dataclasses.fields(cls):
        hint = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(hint):
            keys += _all_keys(hint, f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


RENAMED = {"record.max_frames": "record.frames", "record.pause_key": "keys.pause_key"}


def _unknown(key: str, prefix: str, here: typing.Iterable[str]) -> ConfigError:
    if prefix + key in RENAMED:
        return ConfigError(f"config key '{prefix}{key}' is now '{RENAMED[prefix + key]}'")
    close = [prefix + k for k in difflib.get_close_matches(key, list(here), n=3, cutoff=0.6)]
    close = close or difflib.get_close_matches(prefix + key, _all_keys(Config), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return ConfigError(f"unknown config key '{prefix}{key}'{hint}")


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check `value` against the annotation `hint`; ints widen to floats, nothing else converts."""
    origin = typing.get_origin(hint)
    if origin is Annotated:
        value = _coerce(value, hint.__origin__, key)
        for r in (m for m in hint.__metadata__ if isinstance(m, R)):
            for i, v in enumerate(value) if isinstance(value, list) else [(None, value)]:
                r.check(v, key if i is None else f"{key}[{i}]")
        return value
    if origin is Literal:
        if value not in typing.get_args(hint):
            choices = ", ".join(map(str, typing.get_args(hint)))
            raise ConfigError(f"config key '{key}' must be one of {choices}, got {value!r}")
        return value
    if origin is list:
        (item,) = typing.get_args(hint)
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"config key '{key}' must be a list of {item.__name__}, got {value!r}")
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads "1e-3" as a string
        except ValueError:
            pass
    if hint is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # `source.spec=0` names camera 0
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(f"config key '{key}' must be {hint.__name__}, got {value!r}")
    return value


def checked_option(cls: type, key: str, value: Any, name: str) -> Any:
    """`value` for the key `key` of config section `cls`, checked (type and range) as the config checks it; `name` is
    what the error calls it. A key the section does not declare passes unchanged."""
    hints = typing.get_type_hints(cls, include_extras=True)
    if key not in hints:
        return value
    try:
        return _coerce(value, hints[key], key)
    except ConfigError as e:
        raise ConfigError(str(e).replace(f"config key '{key}'", name, 1)) from None


def _merge(obj: Any, data: dict, prefix: str = "") -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"config section '{prefix.rstrip('.') or '<top>'}' must be a mapping, got {data!r}")
    hints = typing.get_type_hints(type(obj), include_extras=True)
    for key, value in data.items():
        if key not in hints:
            raise _unknown(str(key), prefix, hints)
        if dataclasses.is_dataclass(hints[key]):
            _merge(getattr(obj, key), value, f"{prefix}{key}.")
        else:
            setattr(obj, key, _coerce(value, hints[key], prefix + key))


def _parse_override(text: str) -> dict:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {text!r} is not key=value")
    if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", key.strip()):
        raise ConfigError(f"override key {key!r} is not a dotted config name such as model.hidden")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {key!r}: the value {raw!r} is not valid YAML ({str(e).splitlines()[0]})") from None
    for part in reversed(key.strip().split(".")):
        value = {part: value}
    return value


def resolve_config_path(path: str | Path) -> Path:
    """A path as given, or a name in configs/ (`pong` → configs/pong.yaml)."""
    p = Path(path)
    for candidate in (p, CONFIG_DIR / p, CONFIG_DIR / f"{p}.yaml"):
        if candidate.is_file():
            return candidate
    raise ConfigError(f"config file not found: {path}")


def load_config(path: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> Config:
    """Defaults, then the YAML file at `path` (or a name in configs/), then `key=value` overrides."""
    cfg = Config()
    if path is not None:
        file = resolve_config_path(path)
        try:
            data = yaml.safe_load(file.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{file}: not valid YAML ({str(e).splitlines()[0]})") from None
        _merge(cfg, data)
    for text in overrides:
        _merge(cfg, _parse_override(text))
    return cfg


def config_from_dict(cls: type, data: dict, prefix: str = "") -> Any:
    """Build one config section (e.g. ModelConfig from a checkpoint's metadata), checking every key."""
    obj = cls()
    _merge(obj, data, prefix)
    return obj


def to_dict(obj: Any) -> dict:
    return dataclasses.asdict(obj)
