from pathlib import Path

import pytest
import yaml

from ferops.config import ConfigError, load_params, parse_params
from tests.conftest import PROJECT


def test_project_params_load_and_select_sources():
    params = load_params(PROJECT / "params.yaml")
    assert params.classes.names[:3] == ("angry", "disgust", "fear")
    assert [s.name for s in params.ingest.selected()] == list(params.ingest.sources)
    assert params.faces.size == 48


def test_unknown_key_is_named():
    raw = yaml.safe_load((PROJECT / "params.yaml").read_text())
    raw["augment"]["flipp"] = 0.5
    with pytest.raises(ConfigError, match="flipp"):
        parse_params(raw)


@pytest.mark.parametrize("patch, message", [
    ({"classes": {"names": ["happy", "joyful"]}}, "unknown label"),
    ({"classes": {"names": ["happy", "sad"], "merge": {"angry": "fear"}}}, "merge"),
    ({"ingest": {"sources": ["nope"]}}, "not in ingest.catalog"),
    ({"augment": {"multiplier": 0}}, "multiplier"),
    ({"encode": {"max_class_weight": 0.5}}, "max_class_weight"),
    ({"train": {"time_budget_min": -5}}, "time_budget_min"),
])
def test_inconsistent_params_fail_clearly(patch, message):
    raw = yaml.safe_load((PROJECT / "params.yaml").read_text())
    for section, values in patch.items():
        raw[section] = {**raw[section], **values}
    with pytest.raises(ConfigError, match=message):
        parse_params(raw)


@pytest.mark.parametrize("blazeface, message", [
    ({"retry_input_side": 256}, "must be 0 or larger than short_input_side"),
    ({"retry_input_side": 200}, "multiple of 16"),
    ({"retry_input_side": 448, "range": "both"}, "needs range: short"),
    ({"threads": 0}, "threads"),
])
def test_the_second_look_must_be_a_larger_short_range_input(blazeface, message):
    raw = yaml.safe_load((PROJECT / "params.yaml").read_text())
    raw["faces"]["blazeface"] = {**raw["faces"]["blazeface"], "short_input_side": 256,
                                 **blazeface}
    with pytest.raises(ConfigError, match=message):
        parse_params(raw)


def test_missing_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "params.yaml")


def test_train_profile_is_merged_under_explicit_keys():
    raw = yaml.safe_load((PROJECT / "params.yaml").read_text())
    raw["train"] = {"profile": "cpu", "epochs": 3}
    train = parse_params(raw).train
    assert train.profile == "cpu" and train.epochs == 3
    assert train.widths == tuple(raw["train_profiles"]["cpu"]["widths"])
    raw["train"] = {"profile": "tpu"}
    with pytest.raises(ConfigError, match="train.profile 'tpu'"):
        parse_params(raw)


def test_serving_camera_and_pipelines_sections():
    p = load_params(PROJECT / "params.yaml")
    assert p.serving.max_crops >= 1 and p.serving.record_stats is False  # opt-in only
    assert p.camera.drop_folder == "data/incoming" and p.camera.detect_max_side > 0
    assert p.pipelines.min_new_faces >= 1 and p.pipelines.drift_action in ("alert", "retrain")
    raw = yaml.safe_load((PROJECT / "params.yaml").read_text())
    raw["pipelines"]["drift_action"] = "panic"
    with pytest.raises(ConfigError, match="drift_action"):
        parse_params(raw)
    raw["pipelines"]["drift_action"] = "alert"
    raw["serving"]["max_crops"] = 0
    with pytest.raises(ConfigError, match="max_crops"):
        parse_params(raw)


@pytest.mark.parametrize("convs, ok", [
    (2, True), ([1, 2, 2, 2], True), ([1, 2], False), ([1, 0, 2, 2], False), (0, False)])
def test_conv_counts_are_one_per_block_or_one_for_all(convs, ok):
    raw = yaml.safe_load((PROJECT / "params.yaml").read_text())
    raw["train"] = {"profile": "cpu", "convs": convs}  # cpu: four widths
    if ok:
        assert parse_params(raw).train.convs == (tuple(convs) if isinstance(convs, list)
                                                 else convs)
    else:
        with pytest.raises(ConfigError, match="train.convs"):
            parse_params(raw)


def test_bare_on_off_for_mixed_precision_is_read_as_the_word():
    """YAML reads `mixed_precision: off` (and `dvc exp run -S ...=off`) as false."""
    raw = yaml.safe_load((PROJECT / "params.yaml").read_text())
    raw["train"] = yaml.safe_load("{profile: cpu, mixed_precision: off}")
    assert raw["train"]["mixed_precision"] is False
    assert parse_params(raw).train.mixed_precision == "off"
    raw["train"] = {"profile": "demo"}
    raw["train_profiles"]["demo"] = {**raw["train_profiles"]["demo"], "mixed_precision": True}
    assert parse_params(raw).train.mixed_precision == "on"
    raw["train"] = {"profile": "demo", "mixed_precision": "fp8"}
    with pytest.raises(ConfigError, match="'fp8'"):
        parse_params(raw)


def test_the_models_carry_no_defaults_so_params_yaml_holds_every_value():
    """A default in code would change the model without DVC seeing it (issue 18)."""
    from pydantic import BaseModel

    from ferops import config
    sections = [c for c in vars(config).values() if isinstance(c, type)
                and issubclass(c, config.Section) and c is not config.Section]
    assert len(sections) >= 13
    # A catalog entry's optional keys (faces, optional, votes) are per-entry options, named
    # in params.yaml's comments; nothing else may have a default.
    allowed = {("SourceConfig", "faces"), ("SourceConfig", "optional"),
               ("SourceConfig", "votes")}
    defaults = {(c.__name__, name) for c in sections
                for name, f in c.model_fields.items() if not f.is_required()}
    assert defaults == allowed
    with pytest.raises(Exception, match="Field required"):
        config.Params()
    assert issubclass(config.Params, BaseModel)


def test_every_training_key_is_in_train_defaults():
    from ferops.config import TrainConfig
    raw = yaml.safe_load((PROJECT / "params.yaml").read_text())
    assert set(raw["train_defaults"]) == set(TrainConfig.model_fields) - {"profile"}
    del raw["train_defaults"]["warmup_epochs"]
    with pytest.raises(ConfigError, match=r"train\.warmup_epochs: Field required"):
        parse_params(raw)


def test_a_profile_key_that_does_not_exist_is_named_with_its_profile():
    raw = yaml.safe_load((PROJECT / "params.yaml").read_text())
    raw["train_profiles"]["cpu"]["lr_decay"] = 0.5
    with pytest.raises(ConfigError, match=r"train_profiles\.cpu: unknown key\(s\) lr_decay"):
        parse_params(raw)


@pytest.mark.parametrize("section, key, value, message", [
    ("faces", "min_face", "wide", r"faces\.min_face: Input should be a valid integer"),
    ("serving", "port", 70000, r"serving\.port: Input should be less than or equal to 65535"),
    ("ingest", "leakage", "ignore", r"ingest\.leakage: Input should be 'keep_eval' or 'fail'"),
    ("validate", "required_splits", ["train", "dev"], r"validate\.required_splits\.1"),
])
def test_errors_name_the_full_key_path(section, key, value, message):
    raw = yaml.safe_load((PROJECT / "params.yaml").read_text())
    raw[section][key] = value
    with pytest.raises(ConfigError, match=message):
        parse_params(raw)


def test_a_missing_key_and_a_catalog_rule_are_named(tmp_path: Path):
    raw = yaml.safe_load((PROJECT / "params.yaml").read_text())
    del raw["serving"]["body_timeout_s"]
    raw["ingest"]["catalog"]["ferplus"].pop("votes")
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as err:
        load_params(path)
    text = str(err.value)
    assert str(path) in text and "ingest.catalog.ferplus.votes: kind ferplus needs" in text
    assert "serving.body_timeout_s: Field required" in text


def test_replace_validates_the_copy():
    faces = load_params(PROJECT / "params.yaml").faces
    assert faces.replace(min_face=30).min_face == 30 and faces.min_face == 24
    with pytest.raises(Exception, match="greater than 1"):
        faces.haar.replace(scale_factor=0.9)
    with pytest.raises(Exception, match="detector"):
        faces.replace(detector="mtcnn")
