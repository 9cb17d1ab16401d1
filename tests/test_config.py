import pytest

from stream_predictor.config import Config, load_config
from stream_predictor.errors import ConfigError


def test_defaults_and_overrides():
    cfg = load_config(overrides=["model.hidden=128", "predict.mode=windowed", "source.fps=30", "model.input_size=[64, 48]"])
    assert isinstance(cfg, Config)
    assert cfg.model.hidden == 128
    assert cfg.predict.mode == "windowed"
    assert cfg.source.fps == 30.0 and isinstance(cfg.source.fps, float)  # int widens to float
    assert cfg.model.input_size == [64, 48]
    assert load_config().model.hidden == 256  # defaults are not shared between configs


def test_yaml_file_then_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model:\n  hidden: 32\n  classes: [a, b]\nreplay: realtime\n")
    cfg = load_config(f, ["model.hidden=64"])
    assert (cfg.model.hidden, cfg.model.classes, cfg.replay) == (64, ["a", "b"], "realtime")


def test_named_config_in_configs_dir():
    assert load_config("default").predict.print_every > 0


@pytest.mark.parametrize("override, words", [
    ("model.hiden=3", ["model.hiden", "model.hidden"]),
    ("modle.hidden=3", ["modle", "did you mean model"]),
    ("model.hidden=abc", ["model.hidden", "int"]),
    ("model.hidden=true", ["model.hidden", "int"]),
    ("predict.mode=fast", ["predict.mode", "stateful", "windowed"]),
    ("model.input_size=84", ["model.input_size", "list"]),
    ("model.classes=[[1], b]", ["model.classes[0]", "str"]),
    ("model.grayscale=3", ["model.grayscale", "bool"]),
    ("model", ["not key=value"]),
])
def test_errors_name_the_key(override, words):
    with pytest.raises(ConfigError) as e:
        load_config(overrides=[override])
    for w in words:
        assert w in str(e.value)


def test_bad_yaml_and_missing_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(f)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    f.write_text("model: 3\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(f)


def test_yaml_tags_are_not_executed(tmp_path):
    f = tmp_path / "evil.yaml"
    f.write_text("model: !!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(ConfigError):
        load_config(f)
    assert not (tmp_path / "pwned").exists()
