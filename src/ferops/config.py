"""The one reader of params.yaml: parses it into frozen dataclasses and checks it.

Every other module takes these dataclasses (or plain arguments) and never opens
params.yaml itself, so a typo in a key fails here, once, with the key's name.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ferops.labels import CANONICAL

DEFAULT_PARAMS = Path("params.yaml")
SOURCE_KINDS = ("folder", "fer2013", "ferplus")
FACE_MODES = ("crop", "detect", "auto")
SPLITS = ("train", "val", "test")


class ConfigError(ValueError):
    """params.yaml is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class ClassesConfig:
    names: tuple[str, ...] = CANONICAL[:7]
    merge: dict[str, str] = field(default_factory=dict)
    others: str = "fail"


@dataclass(frozen=True)
class FacesConfig:
    size: int = 48
    margin: float = 0.15
    scale_factor: float = 1.1
    min_neighbors: int = 5
    min_face: int = 24
    detect_max_side: int = 640
    crop_max_side: int = 128
    max_pixels: int = 40_000_000


@dataclass(frozen=True)
class SourceConfig:
    name: str
    kind: str
    path: str
    faces: str = "auto"
    optional: bool = False
    votes: str | None = None


@dataclass(frozen=True)
class IngestConfig:
    sources: tuple[str, ...] = ("demo", "incoming")
    catalog: dict[str, SourceConfig] = field(default_factory=dict)
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    leakage: str = "keep_eval"
    protect_splits: tuple[str, ...] = ("test",)
    ferplus_min_share: float = 0.5

    def selected(self) -> list[SourceConfig]:
        """The configured sources, in the order they are read."""
        return [self.catalog[name] for name in self.sources]


@dataclass(frozen=True)
class ValidateConfig:
    required_splits: tuple[str, ...] = SPLITS
    min_per_class: int = 10
    min_side: int = 16
    min_std: float = 3.0
    mean_range: tuple[float, float] = (15.0, 240.0)
    mean_range_mostly: float = 0.99
    max_quarantine_fraction: float = 0.05
    max_imbalance: float = 20.0


@dataclass(frozen=True)
class AugmentConfig:
    multiplier: int = 2
    flip: float = 0.5
    rotate_deg: float = 10.0
    shift: float = 0.08
    zoom: float = 0.1
    brightness: float = 0.15
    contrast: float = 0.2
    cutout: float = 0.3
    cutout_frac: float = 0.25


@dataclass(frozen=True)
class EncodeConfig:
    class_weights: str = "balanced"
    max_class_weight: float = 10.0


@dataclass(frozen=True)
class TrainConfig:
    profile: str = "demo"
    arch: str = "vgg"
    widths: tuple[int, ...] = (32, 64, 128, 256)
    convs: int | tuple[int, ...] = 2  # per block, or one count for every block
    spatial_dropout_from: int = 0    # first block with spatial dropout (earlier ones: none)
    dense: int = 256
    dropout: float = 0.4
    epochs: int = 30
    # Training minutes (0: no limit). The run re-plans its epochs after each one so that it
    # ends, with the learning rate annealed, within this on whatever machine it runs (at most
    # `epochs`): this VM's speed varies by 20 % from hour to hour (ferops/lr.py).
    time_budget_min: float = 0.0
    batch_size: int = 128
    optimizer: str = "adamw"
    lr: float = 0.002
    weight_decay: float = 0.0001
    warmup_epochs: int = 1
    # Polyak averaging of the weights (0: off). Validation, model selection and the saved
    # model use the average; training steps use the raw weights. Off by default: with mixup 0.2
    # on the FER2013 cpu profile it lowered PublicTest 67.9 -> 66.9 % (README, Measured).
    ema_momentum: float = 0.0
    label_smoothing: float = 0.1
    patience: int = 10
    balance: str = "class_weights"   # class_weights | none
    aug_flip: bool = True
    aug_rotate_deg: float = 10.0
    aug_shift: float = 0.1
    aug_zoom: float = 0.1
    aug_erase: float = 0.5
    aug_mixup: float = 0.0           # mixup Beta(a, a) concentration (0: off)
    checkpoint_every: int = 100      # batches between crash-resume checkpoints (0: epoch ends only)
    # auto: float16 on GPUs, bfloat16 on CPUs with bf16 instructions (AVX512-BF16, AMX),
    # else float32 | on | off. Saved models are float32 either way.
    mixed_precision: str = "auto"
    max_train_images: int = 0        # 0: all; >0: a seeded subset (quick runs and tests)


@dataclass(frozen=True)
class EvaluateConfig:
    flip_tta: bool = True   # also report test accuracy with horizontal-flip TTA (labelled)


@dataclass(frozen=True)
class RegistryConfig:
    model_name: str = "ferops-emotion"
    metric: str = "accuracy"        # accuracy | macro_f1: what promotion compares
    margin: float = 0.002           # the challenger must beat the champion by at least this
    floor: float = 0.3              # and score at least this, on the current test set
    experiment: str = "ferops"


@dataclass(frozen=True)
class ServingConfig:
    host: str = "127.0.0.1"
    port: int = 3000
    bento_model: str = "ferops-emotion"  # BentoML model store name the champion is exported to
    workers: int = 1                  # server processes (each holds one copy of the model)
    model_threads: int = 0            # TensorFlow threads per model call (0: all cores)
    access_log: bool = False          # BentoML's per-request access log (costs throughput)
    max_crops: int = 64               # face crops per /classify request
    max_faces: int = 20               # faces reported per /analyze request (largest first)
    detect_max_side: int = 480        # /analyze detects on photos downscaled to this side
    max_body_mb: float = 8.0          # larger request bodies get 413
    body_timeout_s: float = 10.0      # a body not fully received by then gets 408
    analyze_threads: int = 2          # photos decoded at once (bounds /analyze memory)
    analyze_queue: int = 8            # photos waiting for a decode thread; more get 503
    batch_max_size: int = 128         # adaptive batching: most crops in one model call
    batch_max_latency_ms: int = 1000  # queue deadline: past it the service sheds load with 503
    reload_poll_s: float = 10.0       # how often the service looks for a new champion (0: off)
    api_key_env: str = "FEROPS_API_KEY"  # auth is on when this environment variable is set
    record_stats: bool = False        # opt-in: log prediction statistics (never images)
    stats_path: str = "artifacts/monitoring/predictions.jsonl"


@dataclass(frozen=True)
class CameraConfig:
    service_url: str = "http://127.0.0.1:3000"
    drop_folder: str = "data/incoming"   # labeled faces go to <drop_folder>/<label>/
    timeout_s: float = 2.0               # per HTTP request
    max_inflight: int = 4                # classify requests in flight at once
    detect_every: int = 1                # run the face detector on every n-th frame
    detect_max_side: int = 320           # frames are downscaled to this for detection (speed)
    scale_factor: float = 1.15           # Haar pyramid step for live video (coarser = faster)
    consent_file: str = "~/.config/ferops/labeling-consent"


@dataclass(frozen=True)
class PipelinesConfig:
    retrain_cron: str = "0 3 * * 0"      # scheduled retraining (cron, UTC)
    min_new_faces: int = 20              # new labeled faces that trigger a retraining run
    watch_interval_s: int = 60           # how often the watcher looks at the drop folder
    drift_window: int = 500              # recent predictions compared with the reference
    drift_threshold: float = 0.2         # total-variation distance of label distributions
    confidence_drop: float = 0.15        # alert when mean confidence falls this much
    drift_action: str = "alert"          # alert | retrain


@dataclass(frozen=True)
class Params:
    seed: int = 42
    classes: ClassesConfig = field(default_factory=ClassesConfig)
    faces: FacesConfig = field(default_factory=FacesConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    validate: ValidateConfig = field(default_factory=ValidateConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    encode: EncodeConfig = field(default_factory=EncodeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    serving: ServingConfig = field(default_factory=ServingConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    pipelines: PipelinesConfig = field(default_factory=PipelinesConfig)


def load_params(path: str | Path = DEFAULT_PARAMS) -> Params:
    """Read and check params.yaml; raise ConfigError naming the offending key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} not found (run from the project root or pass --params)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    return parse_params(raw)


def parse_params(raw: dict[str, Any]) -> Params:
    """Build Params from a parsed YAML mapping (unknown keys are errors, not ignored)."""
    if not isinstance(raw, dict):
        raise ConfigError("params must be a mapping at the top level")
    sections = {
        "classes": ClassesConfig, "faces": FacesConfig, "validate": ValidateConfig,
        "augment": AugmentConfig, "encode": EncodeConfig, "evaluate": EvaluateConfig,
        "registry": RegistryConfig, "serving": ServingConfig, "camera": CameraConfig,
        "pipelines": PipelinesConfig,
    }
    _reject_unknown(raw, {"seed", "ingest", "train", "train_profiles", *sections}, "params")
    built = {name: _build(cls, raw.get(name) or {}, name) for name, cls in sections.items()}
    params = Params(seed=int(raw.get("seed", 42)), ingest=_build_ingest(raw.get("ingest") or {}),
                    train=_build_train(raw.get("train") or {}, raw.get("train_profiles") or {}),
                    **built)
    _check(params)
    return params


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a mapping")
    names = {f.name: f for f in dataclasses.fields(cls)}
    _reject_unknown(values, set(names), where)
    kwargs = {}
    for key, value in values.items():
        default = names[key].default
        # YAML lists become tuples so the dataclasses stay hashable and immutable.
        if isinstance(value, list):
            value = tuple(value)
        elif isinstance(default, float) and isinstance(value, int):
            value = float(value)
        kwargs[key] = value
    return cls(**kwargs)


def _build_ingest(values: dict[str, Any]) -> IngestConfig:
    values = dict(values)
    catalog = {}
    for name, spec in (values.pop("catalog", None) or {}).items():
        if not isinstance(spec, dict):
            raise ConfigError(f"ingest.catalog.{name} must be a mapping")
        catalog[name] = _build(SourceConfig, {"name": name, **spec}, f"ingest.catalog.{name}")
    config = _build(IngestConfig, values, "ingest")
    return dataclasses.replace(config, catalog=catalog)


def _build_train(values: dict[str, Any], profiles: dict[str, Any]) -> TrainConfig:
    """train_profiles[train.profile] under the explicit train keys (explicit keys win)."""
    name = values.get("profile", TrainConfig.profile)
    values = _yaml_switch(values, "mixed_precision")
    profiles = {k: _yaml_switch(v or {}, "mixed_precision") for k, v in profiles.items()}
    if not profiles and "profile" not in values:
        return _build(TrainConfig, values, "train")  # no presets at all: plain defaults
    if name not in profiles:
        raise ConfigError(f"train.profile '{name}' is not in train_profiles "
                          f"({', '.join(profiles) or 'none defined'})")
    return _build(TrainConfig, {**(profiles[name] or {}), **values, "profile": name},
                  f"train_profiles.{name} / train")


def _yaml_switch(values: dict[str, Any], key: str) -> dict[str, Any]:
    """YAML 1.1 reads a bare on/off (also in `dvc exp run -S key=off`) as true/false."""
    if isinstance(values.get(key), bool):
        return {**values, key: "on" if values[key] else "off"}
    return values


def _reject_unknown(values: dict[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) in {where}: {', '.join(unknown)} "
                          f"(known: {', '.join(sorted(known))})")


def _check(p: Params) -> None:
    names = p.classes.names
    bad = [n for n in (*names, *p.classes.merge, *p.classes.merge.values()) if n not in CANONICAL]
    if bad:
        raise ConfigError(f"classes: unknown label(s) {bad}; labels are {list(CANONICAL)}")
    if len(set(names)) != len(names) or len(names) < 2:
        raise ConfigError(f"classes.names needs at least two distinct labels, got {list(names)}")
    if any(target not in names for target in p.classes.merge.values()):
        raise ConfigError("classes.merge must map onto labels listed in classes.names")
    if p.classes.others not in ("fail", "drop"):
        raise ConfigError("classes.others must be 'fail' or 'drop'")
    missing = [s for s in p.ingest.sources if s not in p.ingest.catalog]
    if missing:
        raise ConfigError(f"ingest.sources names {missing}, not in ingest.catalog "
                          f"({', '.join(p.ingest.catalog)})")
    for src in p.ingest.catalog.values():
        if src.kind not in SOURCE_KINDS:
            raise ConfigError(f"ingest.catalog.{src.name}.kind must be one of {SOURCE_KINDS}")
        if src.faces not in FACE_MODES:
            raise ConfigError(f"ingest.catalog.{src.name}.faces must be one of {FACE_MODES}")
        if src.kind == "ferplus" and not src.votes:
            raise ConfigError(f"ingest.catalog.{src.name}: kind ferplus needs 'votes'")
    if p.ingest.leakage not in ("keep_eval", "fail"):
        raise ConfigError("ingest.leakage must be 'keep_eval' or 'fail'")
    if any(s not in SPLITS for s in p.ingest.protect_splits):
        raise ConfigError(f"ingest.protect_splits must be among {SPLITS}")
    if not 0 <= p.ingest.val_fraction < 1 or not 0 <= p.ingest.test_fraction < 1:
        raise ConfigError("ingest.val_fraction and ingest.test_fraction must be in [0, 1)")
    if p.augment.multiplier < 1:
        raise ConfigError("augment.multiplier must be >= 1")
    if p.encode.class_weights not in ("balanced", "none"):
        raise ConfigError("encode.class_weights must be 'balanced' or 'none'")
    if not p.encode.max_class_weight >= 1.0:
        raise ConfigError("encode.max_class_weight must be at least 1.0 (1.0 = no weighting "
                          f"above the average), got {p.encode.max_class_weight}")
    if p.train.aug_mixup < 0:
        raise ConfigError(f"train.aug_mixup must be >= 0 (0: off), got {p.train.aug_mixup}")
    if not 0.0 <= p.train.ema_momentum < 1.0:
        raise ConfigError(f"train.ema_momentum must be in [0, 1) (0: off), got "
                          f"{p.train.ema_momentum}")
    if p.train.arch not in ("vgg", "resnet") or p.train.optimizer not in ("adamw", "sgd"):
        raise ConfigError("train.arch must be vgg|resnet and train.optimizer adamw|sgd")
    if p.registry.metric not in ("accuracy", "macro_f1"):
        raise ConfigError("registry.metric must be 'accuracy' or 'macro_f1'")
    if p.train.balance not in ("class_weights", "none"):
        raise ConfigError("train.balance must be 'class_weights' or 'none'")
    convs = p.train.convs if isinstance(p.train.convs, tuple) else (p.train.convs,)
    if any(not isinstance(c, int) or c < 1 for c in convs) or (
            isinstance(p.train.convs, tuple) and len(convs) != len(p.train.widths)):
        raise ConfigError("train.convs must be a count >= 1, or one count per entry of "
                          "train.widths")
    if p.train.time_budget_min < 0:
        raise ConfigError(f"train.time_budget_min must be >= 0 (0: no limit), got "
                          f"{p.train.time_budget_min}")
    if p.train.mixed_precision not in ("auto", "on", "off"):
        raise ConfigError(f"train.mixed_precision must be auto, on or off, got "
                          f"{p.train.mixed_precision!r}")
    if p.pipelines.drift_action not in ("alert", "retrain"):
        raise ConfigError("pipelines.drift_action must be 'alert' or 'retrain'")
    if min(p.serving.max_crops, p.serving.max_faces, p.serving.batch_max_size,
           p.serving.analyze_threads) < 1 or p.serving.analyze_queue < 0:
        raise ConfigError("serving.max_crops, max_faces, batch_max_size and analyze_threads "
                          "must be >= 1, serving.analyze_queue >= 0")
    if not p.serving.body_timeout_s > 0:
        raise ConfigError("serving.body_timeout_s must be > 0")
    if any(s not in SPLITS for s in p.validate.required_splits):
        raise ConfigError(f"validate.required_splits must be among {SPLITS}")
