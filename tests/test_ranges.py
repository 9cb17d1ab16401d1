"""Numbers out of range are bad input too: every numeric config key declares its range, and any value outside it, on the
command line or in a weights file's metadata, is one `error:` line and exit code 2 before anything is allocated."""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from typing import Annotated

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import save_file

from stream_predictor.cli import main
from stream_predictor.config import Config, ModelConfig, R, to_dict
from stream_predictor.model import build_model, save_model


def numeric_keys(cls: type = Config, prefix: str = "") -> list[tuple[str, type, R | None]]:
    """(dotted key, int or float, its declared range) for every numeric key, lists of numbers included."""
    out = []
    for f in dataclasses.fields(cls):
        hint = typing.get_type_hints(cls, include_extras=True)[f.name]
        if dataclasses.is_dataclass(hint):
            out += numeric_keys(hint, f"{prefix}{f.name}.")
            continue
        ranges = [m for m in getattr(hint, "__metadata__", ()) if isinstance(m, R)]
        base = hint.__origin__ if typing.get_origin(hint) is Annotated else hint
        item = typing.get_args(base)[0] if typing.get_origin(base) is list else base
        if item in (int, float):
            out.append((prefix + f.name, item, ranges[0] if ranges else None, typing.get_origin(base) is list))
    return out


KEYS = numeric_keys()


def test_every_numeric_key_declares_its_range():
    assert len(KEYS) > 60
    assert [key for key, _, r, _ in KEYS if r is None] == []
    defaults = Config()
    for key, _, r, is_list in KEYS:  # every default lies in its own range
        section, name = key.split(".")
        value = getattr(getattr(defaults, section), name)
        for v in value if is_list else [value]:
            assert r.lo <= v <= r.hi, (key, v, r)


def outside(kind: type, r: R) -> st.SearchStrategy:
    if kind is int:
        return st.one_of(st.integers(max_value=math.ceil(r.lo) - 1), st.integers(min_value=math.floor(r.hi) + 1))
    return st.one_of(st.floats(max_value=r.lo, exclude_max=True), st.floats(min_value=r.hi, exclude_min=True),
                     st.just(math.nan))


def one_error(capsys, argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("error:"), (argv, code, err)
    return err


@pytest.mark.parametrize("key, kind, r, is_list", KEYS, ids=[k[0] for k in KEYS])
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_an_out_of_range_value_is_one_line_and_exit_2(key, kind, r, is_list, data, capsys):
    bad = data.draw(outside(kind, r))
    value = repr(bad) if not is_list else f"[{r.lo!r}, {bad!r}]" if kind is float else f"[{int(r.lo)}, {bad}]"
    err = one_error(capsys, ["predict", "--source", "synthetic:bounce?frames=20", f"{key}={value}"])
    assert f"'{key}" in err and f"between {r.lo:g} and {r.hi:g}" in err


def weights_saying(tmp_path, **model_config) -> str:
    """A weights file whose metadata claims `model_config` over a tiny model's real tensors."""
    model = build_model(ModelConfig(input_size=[48, 48], hidden=8, feature_dim=16))
    path = tmp_path / "w.safetensors"
    save_model(model, path)
    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = f.metadata()
    meta["model_config"] = json.dumps({**to_dict(model.cfg), **model_config})
    save_file(tensors, str(path), metadata=meta)
    return str(path)


@pytest.mark.parametrize("claim, words", [
    ({"hidden": -5}, "'model.hidden' must be between 1 and 8192, got -5"),
    ({"hidden": 2_000_000_000}, "'model.hidden' must be between 1 and 8192, got 2000000000"),
    ({"layers": 0}, "'model.layers' must be between 1 and 16"),
    ({"hidden": 8192, "layers": 4}, "would have 1,",  # in range key by key, too big together: the count is named
     ),
])
def test_a_weights_file_whose_metadata_is_out_of_range_is_refused_before_allocating(tmp_path, capsys, claim, words):
    path = weights_saying(tmp_path, **claim)
    err = one_error(capsys, ["predict", "--weights", path, "--source", "synthetic:bounce?frames=20"])
    assert path in err and words in err
