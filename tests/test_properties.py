"""Property-based tests (hypothesis): config parsing, source-spec parsing, labels parsing and the ring's invariants."""

import string
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_predictor.config import load_config
from stream_predictor.errors import ConfigError, SourceError, UserError
from stream_predictor.runtime.ring import FrameRing
from stream_predictor.session import SessionWriter, load_session
from stream_predictor.sources import parse_spec
from stream_predictor.sources.base import Frame

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
printable = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


# --- config ----------------------------------------------------------------------------------------------


@SETTINGS
@given(st.integers(2, 4096), st.floats(0, 0.9375, width=32), st.booleans())
def test_typed_overrides_round_trip(n, x, flag):
    """Values in range come back as written (out-of-range ones: tests/test_ranges.py)."""
    cfg = load_config(None, [f"source.ring_size={n}", f"predict.ema={x!r}", f"keys.dry_run={str(flag).lower()}"])
    assert cfg.source.ring_size == n and cfg.predict.ema == pytest.approx(x) and cfg.keys.dry_run is flag


@SETTINGS
@given(printable)
def test_any_override_text_is_a_config_or_a_config_error(text):
    try:
        load_config(None, [text])
    except ConfigError as e:
        assert "\n" not in str(e).strip()  # one line
    # anything else (TypeError, AttributeError, a YAML exception…) fails the test


@SETTINGS
@given(st.from_regex(r"[a-z]{1,12}(\.[a-z_]{1,12}){0,2}", fullmatch=True), st.integers())
def test_unknown_keys_are_named(key, value):
    try:
        load_config(None, [f"{key}={value}"])
    except ConfigError as e:
        assert key.split(".")[0] in str(e) or "must be" in str(e) or "section" in str(e)


@SETTINGS
@given(st.lists(st.sampled_from(["left:right", "up:down", "a:b"]), max_size=4))
def test_list_values_round_trip(items):
    cfg = load_config(None, [f"train.mirror=[{', '.join(items)}]"])
    assert cfg.train.mirror == items


# --- source specs ---------------------------------------------------------------------------------------


@SETTINGS
@given(printable)
def test_any_spec_parses_or_is_a_source_error(text):
    try:
        spec = parse_spec(text)
    except SourceError as e:
        assert "\n" not in str(e)
    else:
        assert spec.kind in {"camera", "video", "stream", "screen", "window", "ale", "synthetic", "images", "session"}


@SETTINGS
@given(st.integers(1, 4000), st.integers(1, 4000), st.integers(0, 10**6), st.sampled_from(["bounce", "bars", "noise"]))
def test_synthetic_options_round_trip(w, h, frames, pattern):
    spec = parse_spec(f"synthetic:{pattern}?width={w}&height={h}&frames={frames}")
    assert (spec.kind, spec.target, spec.options) == ("synthetic", pattern, {"width": w, "height": h, "frames": frames})


@SETTINGS
@given(st.tuples(*[st.integers(0, 9999)] * 4), st.integers(0, 8))
def test_screen_regions_and_monitors(box, monitor):
    spec = parse_spec("screen:{},{},{},{}?monitor={}".format(*box, monitor))
    assert spec.kind == "screen" and spec.target == ",".join(map(str, box)) and spec.options == {"monitor": monitor}


@SETTINGS
@given(st.integers(0, 63))
def test_cameras_by_index_and_device(n):
    assert parse_spec(str(n)).target == parse_spec(f"/dev/video{n}").target == str(n)


@SETTINGS
@given(st.text(string.ascii_lowercase, min_size=1, max_size=8).filter(lambda k: k not in {"seed", "frameskip", "sticky",
                                                                                          "max_episode_steps", "sync",
                                                                                          "flicker", "delay", "repeat",
                                                                                          "drop"}))
def test_unknown_source_options_are_refused(key):
    with pytest.raises(SourceError, match=f"unknown option '{key}'"):
        parse_spec(f"ale:Pong?{key}=1")


# --- labels ---------------------------------------------------------------------------------------------

CLASSES = ["left", "straight", "right"]
FRAMES = 12


@pytest.fixture(scope="module")
def session_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("labels") / "s"
    with SessionWriter(d, CLASSES, 30.0, "test", segment_frames=FRAMES) as w:
        for i in range(FRAMES):
            w.add(np.full((8, 8, 3), i * 10, np.uint8), "left")
    return d


@SETTINGS
@given(st.lists(st.sampled_from(CLASSES), min_size=FRAMES, max_size=FRAMES))
def test_valid_labels_are_read_back_exactly(session_dir, labels):
    (session_dir / "labels.csv").write_text("frame,label\n" + "".join(f"{i},{c}\n" for i, c in enumerate(labels)))
    assert [CLASSES[i] for i in load_session(session_dir).labels] == labels


@SETTINGS
@given(st.lists(st.tuples(st.integers(-2, FRAMES + 2), st.sampled_from([*CLASSES, "jump", "", "LEFT"])), max_size=FRAMES + 3))
def test_any_labels_file_loads_exactly_or_is_refused_with_one_line(session_dir, rows):
    (session_dir / "labels.csv").write_text("frame,label\n" + "".join(f"{i},{c}\n" for i, c in rows))
    valid = [i for i, _ in rows] == list(range(len(rows))) and all(c in CLASSES for _, c in rows) and len(rows) == FRAMES
    try:
        session = load_session(session_dir)
    except UserError as e:
        assert not valid and "\n" not in str(e)
    else:
        assert valid and [CLASSES[i] for i in session.labels] == [c for _, c in rows]


# --- ring -----------------------------------------------------------------------------------------------


@SETTINGS
@given(st.integers(2, 8), st.booleans(), st.lists(st.one_of(st.integers(1, 12), st.just("read"), st.just("release")), max_size=60))
def test_ring_invariants_under_any_interleaving(size, lossless, ops):
    """Each frame is handed over at most once and in order; handed + skipped accounts for every frame written before it;
    a lossless ring never skips; the pinned frame's pixels never change while it is held."""
    ring = FrameRing(size, lossless=lossless)
    written, last, handed, held = 0, -1, [], None
    for op in ops:
        if isinstance(op, int):
            for _ in range(op):
                if lossless and not ring.wait_space(0):
                    break
                ring.write(Frame(written, float(written), np.full((2, 2, 3), written % 256, np.uint8)))
                written += 1
                if held is not None:
                    assert int(held[1][0, 0, 0]) == held[0] % 256  # still the pixels it was handed out with
        elif op == "read":
            held = None  # asking for the next frame gives the held one back, whether or not a new one comes
            f = ring.wait_newer(last, 0)
            if f is not None:
                assert f.seq > last and f.skipped == f.seq - last - 1
                handed.append(f.seq)
                last, held = f.seq, (f.seq, f.image)
        else:
            ring.release()
            held = None
    assert handed == sorted(set(handed))
    if handed:
        assert len(handed) + ring.skipped == handed[-1] + 1
    if lossless:
        assert ring.skipped == 0 and handed == list(range(len(handed)))
    while (f := ring.wait_newer(last, 0)) is not None:
        last = f.seq
    assert last == written - 1 or written == 0  # the newest frame is always still there to be read
