"""The one reader of params.yaml: validates it into frozen pydantic models.

Every other module takes these models (or plain arguments) and never opens params.yaml
itself. The models carry no defaults: every value comes from params.yaml, so a change to a
default is a change to params.yaml, which DVC sees. Each rule sits on the field it checks,
and an unknown, missing or inconsistent key fails at once with its full path
(`train.lr: Input should be greater than 0`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ferops.labels import CANONICAL

DEFAULT_PARAMS = Path("params.yaml")
# The project's own params.yaml, next to src/ (also inside a built Bento): the defaults
# for a tool started outside the project folder.
PROJECT_PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"
SPLITS = ("train", "val", "test")
Split = Literal["train", "val", "test"]


def _known_label(name: str) -> str:
    if name not in CANONICAL:
        raise ValueError(f"unknown label '{name}'; labels are {list(CANONICAL)}")
    return name


Label = Annotated[str, AfterValidator(_known_label)]

PosInt = Annotated[int, Field(ge=1)]
NonNegInt = Annotated[int, Field(ge=0)]
PosFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]


def _yaml_switch(value: Any) -> Any:
    """YAML 1.1 reads a bare on/off (also in `dvc exp run -S key=off`) as true/false."""
    return ("on" if value else "off") if isinstance(value, bool) else value


class ConfigError(ValueError):
    """params.yaml is missing, malformed or inconsistent."""


def _key_problem(key: str, message: str) -> ValueError:
    """A rule across keys, reported under the key it names (`train.convs: ...`)."""
    return ValueError(f"{key}: {message}")


class Section(BaseModel):
    """A params.yaml section: immutable, no unknown keys, no defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def replace(self, **changes: Any):
        """A validated copy with some values changed (dataclasses.replace, checked)."""
        return type(self).model_validate({**self.model_dump(), **changes})


class ClassesConfig(Section):
    names: tuple[Label, ...] = Field(min_length=2)
    merge: dict[Label, Label]
    others: Literal["fail", "drop"]

    @model_validator(mode="after")
    def _consistent(self):
        if len(set(self.names)) != len(self.names):
            raise _key_problem("names", f"must be distinct, got {list(self.names)}")
        if any(target not in self.names for target in self.merge.values()):
            raise _key_problem("merge", "must map onto labels listed in names")
        return self


Detector = Literal["blazeface", "haar"]


class BlazeFaceConfig(Section):
    range: Literal["short", "full", "both"]
    # The short-range model's input, long side: a multiple of its coarsest stride (16).
    short_input_side: int = Field(ge=128, le=1024, multiple_of=16)
    # When the short-range model finds no face, it looks again on this larger input (0: no
    # second look): small faces cost time only in frames where nothing was found.
    retry_input_side: int = Field(ge=0, le=1024, multiple_of=16)
    retry_min_score: float = Field(gt=0, lt=1)  # that second look's detection confidence
    min_score: float = Field(gt=0, lt=1)
    nms_iou: float = Field(gt=0, lt=1)
    threads: int = Field(ge=1, le=64)  # LiteRT threads per detector call

    @model_validator(mode="after")
    def _retry_is_larger(self):
        if self.retry_input_side and self.retry_input_side <= self.short_input_side:
            raise ValueError(f"retry_input_side ({self.retry_input_side}) must be 0 or larger "
                             f"than short_input_side ({self.short_input_side})")
        if self.retry_input_side and self.range != "short":
            raise ValueError("retry_input_side needs range: short (the full-range model "
                             "takes only its own 192 px input)")
        return self


class HaarConfig(Section):
    scale_factor: float = Field(gt=1)
    min_neighbors: NonNegInt


class CropGeometry(Section):
    """Crop square: side = scale * box side, centre = box centre + (dx, dy) * box side."""
    scale: PosFloat
    dx: float = Field(ge=-1, le=1)
    dy: float = Field(ge=-1, le=1)


class FacesConfig(Section):
    size: PosInt
    detector: Detector
    blazeface: BlazeFaceConfig
    haar: HaarConfig
    crop: dict[Detector, CropGeometry]
    align: bool
    min_face: PosInt
    detect_max_side: PosInt
    crop_max_side: PosInt
    max_pixels: PosInt

    @model_validator(mode="after")
    def _geometry_for_each_detector(self):
        missing = sorted(set(Detector.__args__) - set(self.crop))
        if missing:
            raise _key_problem("crop", f"needs a geometry for every detector, missing {missing}")
        return self


class SourceConfig(Section):
    """One catalog entry. Its last three keys are optional per entry (params.yaml says so)."""

    name: str
    kind: Literal["folder", "fer2013", "ferplus"]
    path: str
    faces: Literal["crop", "detect", "auto"] = "auto"
    optional: bool = False
    votes: str | None = None

    @model_validator(mode="after")
    def _votes(self):
        if self.kind == "ferplus" and not self.votes:
            raise _key_problem("votes", "kind ferplus needs 'votes'")
        return self


class IngestConfig(Section):
    sources: tuple[str, ...]
    catalog: dict[str, SourceConfig]
    val_fraction: float = Field(ge=0, lt=1)
    test_fraction: float = Field(ge=0, lt=1)
    leakage: Literal["keep_eval", "fail"]
    protect_splits: tuple[Split, ...]
    ferplus_min_share: Fraction

    @field_validator("catalog", mode="before")
    @classmethod
    def _named(cls, catalog: Any) -> Any:
        """Each entry learns its name from its key."""
        if isinstance(catalog, dict):
            return {name: {**spec, "name": name} if isinstance(spec, dict) else spec
                    for name, spec in catalog.items()}
        return catalog

    @model_validator(mode="after")
    def _known_sources(self):
        missing = [s for s in self.sources if s not in self.catalog]
        if missing:
            raise _key_problem("sources", f"{missing} not in ingest.catalog "
                                          f"({', '.join(self.catalog)})")
        return self

    def selected(self) -> list[SourceConfig]:
        """The configured sources, in the order they are read."""
        return [self.catalog[name] for name in self.sources]


class ValidateConfig(Section):
    required_splits: tuple[Split, ...]
    min_per_class: NonNegInt
    min_side: PosInt
    min_std: NonNegFloat
    mean_range: tuple[float, float]
    mean_range_mostly: Fraction
    max_quarantine_fraction: Fraction
    max_imbalance: float = Field(ge=1)


class AugmentConfig(Section):
    multiplier: PosInt
    flip: Fraction
    rotate_deg: NonNegFloat
    shift: NonNegFloat
    zoom: NonNegFloat
    brightness: NonNegFloat
    contrast: NonNegFloat
    cutout: Fraction
    cutout_frac: Fraction


class EncodeConfig(Section):
    class_weights: Literal["balanced", "none"]
    # 1.0 = no weighting above the average
    max_class_weight: float = Field(ge=1)


class TrainConfig(Section):
    """The resolved training recipe: train_defaults <- train_profiles[profile] <- train."""

    profile: str
    arch: Literal["vgg", "resnet"]
    widths: tuple[PosInt, ...] = Field(min_length=1)
    convs: PosInt | tuple[PosInt, ...]  # per block, or one count for every block
    spatial_dropout_from: NonNegInt
    dense: NonNegInt
    dropout: float = Field(ge=0, lt=1)
    epochs: PosInt
    time_budget_min: NonNegFloat
    batch_size: PosInt
    optimizer: Literal["adamw", "sgd"]
    lr: PosFloat
    weight_decay: NonNegFloat
    warmup_epochs: NonNegInt
    ema_momentum: float = Field(ge=0, lt=1)
    label_smoothing: float = Field(ge=0, lt=1)
    soft_labels: bool
    flip_average: bool
    patience: PosInt
    balance: Literal["class_weights", "none"]
    aug_flip: bool
    aug_rotate_deg: NonNegFloat
    aug_shift: NonNegFloat
    aug_zoom: NonNegFloat
    aug_erase: Fraction
    aug_mixup: NonNegFloat
    aug_blur: Fraction
    aug_light: Fraction
    aug_noise: NonNegFloat
    aug_jpeg: Fraction
    checkpoint_every: NonNegInt
    mixed_precision: Annotated[Literal["auto", "on", "off"], BeforeValidator(_yaml_switch)]
    max_train_images: NonNegInt

    @model_validator(mode="after")
    def _convs_per_block(self):
        if isinstance(self.convs, tuple) and len(self.convs) != len(self.widths):
            raise _key_problem("convs", "must be one count, or one count per entry of widths")
        return self


class EvaluateConfig(Section):
    flip_tta: bool


class RegistryConfig(Section):
    """The registry and the promotion gate (ferops/promotion.py applies it)."""

    model_name: str = Field(min_length=1)
    metric: Literal["accuracy", "macro_f1"]
    rule: Literal["margin", "paired"]
    margin: NonNegFloat
    alpha: float = Field(gt=0, lt=1)
    floor: Fraction
    max_macro_f1_drop: Fraction
    max_class_recall_drop: Fraction | None
    experiment: str = Field(min_length=1)


class ServingConfig(Section):
    host: str
    port: int = Field(ge=0, le=65535)
    bento_model: str = Field(min_length=1)
    workers: PosInt
    model_threads: NonNegInt
    access_log: bool
    max_crops: PosInt
    max_faces: PosInt
    detect_max_side: PosInt
    max_body_mb: PosFloat
    body_timeout_s: PosFloat
    analyze_threads: PosInt
    analyze_queue: NonNegInt
    batch_max_size: PosInt
    batch_max_latency_ms: PosInt
    reload_poll_s: NonNegFloat
    swap_grace_s: PosFloat
    api_key_env: str = Field(min_length=1)
    abstain_below: Fraction | None
    record_stats: bool
    stats_path: str
    ui: bool
    labeling: bool
    label_per_minute: PosInt


class CameraConfig(Section):
    service_url: str
    drop_folder: str
    timeout_s: PosFloat
    max_inflight: PosInt
    detect_every: PosInt
    detect_max_side: PosInt
    scale_factor: float = Field(gt=1)
    blazeface_range: Literal["short", "full", "both"]
    detector_threads: int = Field(ge=1, le=64)
    consent_file: str


class PipelinesConfig(Section):
    retrain_cron: str
    min_new_faces: PosInt
    watch_interval_s: PosInt
    drift_window: PosInt
    drift_threshold: Fraction
    confidence_drop: Fraction
    drift_action: Literal["alert", "retrain"]
    push_data: bool
    rejected_folder: str = Field(min_length=1)
    heartbeat_s: int = Field(ge=30)   # Prefect refuses flow-run heartbeats under 30 s


class Params(Section):
    seed: int
    classes: ClassesConfig
    faces: FacesConfig
    ingest: IngestConfig
    validate_: ValidateConfig = Field(alias="validate")
    augment: AugmentConfig
    encode: EncodeConfig
    train: TrainConfig
    evaluate: EvaluateConfig
    registry: RegistryConfig
    serving: ServingConfig
    camera: CameraConfig
    pipelines: PipelinesConfig

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @property
    def validate(self) -> ValidateConfig:  # type: ignore[override]
        # `validate` is a BaseModel method name, so the field is stored as validate_.
        return self.validate_


def default_params_path() -> Path:
    """params.yaml in the working folder, else the project's own."""
    return DEFAULT_PARAMS if DEFAULT_PARAMS.is_file() else PROJECT_PARAMS


def load_params(path: str | Path | None = None) -> Params:
    """Read and check params.yaml; raise ConfigError naming the offending key."""
    path = Path(path) if path is not None else default_params_path()
    if not path.is_file():
        raise ConfigError(f"{path} not found (run from the project root or pass --params)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    try:
        return parse_params(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def parse_params(raw: dict[str, Any]) -> Params:
    """Build Params from a parsed YAML mapping (unknown or missing keys are errors)."""
    if not isinstance(raw, dict):
        raise ConfigError("params must be a mapping at the top level")
    raw = dict(raw)
    train = resolve_train(raw.pop("train", None), raw.pop("train_profiles", None),
                          raw.pop("train_defaults", None))
    try:
        return Params.model_validate({**raw, "train": train})
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def resolve_train(train: Any, profiles: Any, defaults: Any) -> dict[str, Any]:
    """train_defaults, then train_profiles[train.profile] over them, then the train keys."""
    for where, value in (("train", train), ("train_profiles", profiles),
                         ("train_defaults", defaults)):
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping")
    name = train.get("profile")
    if name not in profiles:
        raise ConfigError(f"train.profile '{name}' is not in train_profiles "
                          f"({', '.join(profiles) or 'none defined'})")
    for other, keys in profiles.items():  # every profile, not only the one in use
        unknown = sorted(set(keys or {}) - set(defaults))
        if unknown:  # named here, with its profile, rather than as a train.* key
            raise ConfigError(f"train_profiles.{other}: unknown key(s) {', '.join(unknown)} "
                              f"(known: the keys of train_defaults)")
    return {**defaults, **(profiles[name] or {}), **train, "profile": name}


def _describe(exc: ValidationError) -> str:
    """The first few errors, each with its key path, in one short message."""
    lines = []
    for err in exc.errors()[:5]:
        path = ".".join(str(p) for p in err["loc"] if not str(p).startswith(("function-",
                                                                                "tagged-")))
        path = path.replace("validate_", "validate")
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key (a typo?)"
        key = re.match(r"(\w+): ", message)
        if key and err["type"] == "value_error" and path:  # a rule across keys names one
            path, message = f"{path}.{key.group(1)}", message[key.end():]
        value = err.get("input")
        if err["type"] not in ("missing", "extra_forbidden") \
                and isinstance(value, str | int | float) \
                and len(repr(value)) <= 60 and repr(value) not in message:
            message += f", got {value!r}"
        lines.append(f"{path or 'params'}: {message}")
    more = exc.error_count() - len(lines)
    return "; ".join(lines) + (f" (and {more} more)" if more > 0 else "")
