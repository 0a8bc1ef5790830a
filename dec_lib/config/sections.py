"""Every hyper-parameter in one typed place, with named presets.

The CLI, the pipeline parameters and the components all read from ``RunConfig``; nothing else in
the project holds a training literal. Keys are dotted (``pretrain.epochs``) in ``--set``, in
config files and in the names of the parameters logged to MLflow, so a user sees one vocabulary.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dec_lib.errors import ConfigError, short_repr

PRECISIONS = ("float32", "bfloat16", "auto")

# Upper bounds: far above any real run, low enough that a typo (an extra 000) or a hostile value
# is refused in milliseconds instead of allocating or looping for days.
MAX_SEED = 2**32 - 1
MAX_COUNT = 10**9
MAX_LAYERS = 16
MAX_UNITS = 100_000
MAX_EPOCHS = 100_000
MAX_STEPS = 100_000_000
MAX_BATCH = 1_000_000
MAX_CLUSTERS = 100_000


@dataclass
class DataConfig:
    dataset: str = "mnist"
    """``mnist``, a path, or an ``s3://``, ``gs://`` or ``https://`` URI of: a ``.npz`` with
    ``x`` (optional ``y``), a directory of IDX files, or a directory of PNG images."""
    n_samples: int | None = None
    """Random subset of this many images (None: all of them)."""


@dataclass
class AutoencoderConfig:
    hidden_dims: list[int] = field(default_factory=lambda: [500, 500, 2000])
    embedding_dim: int = 10


@dataclass
class PretrainConfig:
    epochs: int = 300
    min_steps: int = 0
    """At least this many optimizer steps: small data sets get more epochs (0: epochs as set)."""
    batch_size: int = 256
    optimizer: str = "sgd"
    """``sgd`` (with momentum, as published) or ``adam``."""
    learning_rate: float = 1.0
    momentum: float = 0.9
    checkpoint_every: int = 5
    checkpoint_min_seconds: float = 0.0
    """...and at least this long apart: a checkpoint costs as much as many short epochs."""
    """Epochs between resumable checkpoints (0: none)."""
    augment_shift: int = 0
    """Random shifts of up to this many pixels during pretraining (2-D images; 0: none)."""
    precision: str = "float32"
    """``float32``, ``bfloat16`` (mixed: float32 weights) or ``auto`` (bfloat16 where native)."""


@dataclass
class InitConfig:
    method: str = "kmeans"
    """``kmeans`` on the embedding (published), or ``umap``: UMAP + Gaussian mixture (N2D)."""
    n_init: int = 20
    """Restarts of K-Means (or of the Gaussian mixture)."""
    max_iter: int = 300
    umap_neighbors: int = 20
    umap_components: int = 0
    """Dimensions UMAP maps to (0: the number of clusters)."""


@dataclass
class DECConfig:
    n_clusters: int = 10
    alpha: float = 1.0
    """Degrees of freedom of the Student's t kernel."""
    maxiter: int = 8000
    update_interval: int = 140
    """Iterations between recomputing the target distribution."""
    tol: float = 0.001
    """Stop when fewer than this fraction of labels change between two updates."""
    batch_size: int = 256
    learning_rate: float = 0.01
    momentum: float = 0.9
    warmup_iterations: int = 0
    """Iterations trained towards the initial assignment before self-training (see init)."""
    precision: str = "float32"
    """As ``pretrain.precision``; the clustering layer always computes in float32."""


@dataclass
class RegistryConfig:
    warm_start: bool = False
    """Retraining mode: start from the registered ``champion`` (its encoder and centres) instead
    of pretraining and initialising; when the data's fingerprint equals the one the champion was
    trained on, nothing is trained or registered."""
    promotion_criterion: str = "auto"
    """How a new version is compared with the champion on the current data: ``acc`` (needs
    labels), ``silhouette`` (label-free), or ``auto``: acc when the data has labels."""
    promotion_tolerance: float = 0.005
    """The new version becomes champion unless its score is lower than the champion's by more
    than this; otherwise it is registered as challenger."""
    max_champion_drop: float = 0.1
    """When the champion scores more than this below its own score at registration on the
    current data, the data has changed for the worse (corrupted, or drifted far): the new
    version, fitted to it, stays challenger for a person to review (1: never hold)."""


@dataclass
class RunConfig:
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    init: InitConfig = field(default_factory=InitConfig)
    dec: DECConfig = field(default_factory=DECConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)

    SECTIONS: typing.ClassVar[tuple[str, ...]] = (
        "data", "autoencoder", "pretrain", "init", "dec", "registry",
    )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunConfig:
        return _from_dict(cls, values, prefix="").validate()

    def flat(self) -> dict[str, Any]:
        """Dotted keys to values, as logged to MLflow and shown by ``config show``."""
        return flatten(self.to_dict())

    def with_overrides(self, assignments: list[str] | dict[str, Any]) -> RunConfig:
        """Return a copy with ``KEY=VALUE`` assignments applied, typed by the field they set."""
        items = (
            list(assignments.items())
            if isinstance(assignments, dict)
            else [_split_assignment(a) for a in assignments]
        )
        values = self.to_dict()
        for key, raw in items:
            *path, name = key.split(".")
            owner: Any = RunConfig
            target = values
            for part in path:
                if part not in self.SECTIONS or owner is not RunConfig:
                    raise ConfigError(key, "unknown key; known keys: " + ", ".join(self.flat()))
                owner = typing.get_type_hints(owner)[part]
                target = target[part]
            hint = typing.get_type_hints(owner).get(name)
            if hint is None or name == "SECTIONS" or dataclasses.is_dataclass(hint):
                raise ConfigError(key, "unknown key; known keys: " + ", ".join(self.flat()))
            target[name] = _coerce(key, raw, hint)
        return RunConfig.from_dict(values)

    def validate(self) -> RunConfig:
        """Refuse impossible settings before anything is trained."""
        def within(value: float, low: float, high: float) -> tuple[bool, str]:
            return low <= value <= high, f"must be in [{low:,}, {high:,}]"

        a, p, i, d, r = self.autoencoder, self.pretrain, self.init, self.dec, self.registry
        checks: list[tuple[str, bool, str]] = [
            # numpy's and TensorFlow's seeds are unsigned 32-bit: a larger one crashed training.
            ("seed", *within(self.seed, 0, MAX_SEED)),
            ("data.n_samples", self.data.n_samples is None
             or 1 <= self.data.n_samples <= MAX_COUNT, f"must be in [1, {MAX_COUNT:,}] or none"),
            ("data.dataset", bool(self.data.dataset.strip()), "must name 'mnist' or a path"),
            ("data.dataset", len(self.data.dataset) <= 4096, "must be at most 4096 characters"),
            ("autoencoder.hidden_dims", 1 <= len(a.hidden_dims) <= MAX_LAYERS,
             f"needs 1 to {MAX_LAYERS} layers"),
            ("autoencoder.hidden_dims", all(1 <= n <= MAX_UNITS for n in a.hidden_dims),
             f"every layer needs 1 to {MAX_UNITS:,} units"),
            ("autoencoder.embedding_dim", *within(a.embedding_dim, 1, MAX_UNITS)),
            ("pretrain.epochs", *within(p.epochs, 0, MAX_EPOCHS)),
            ("pretrain.min_steps", *within(p.min_steps, 0, MAX_STEPS)),
            ("pretrain.batch_size", *within(p.batch_size, 1, MAX_BATCH)),
            ("pretrain.optimizer", p.optimizer in ("sgd", "adam"), "must be 'sgd' or 'adam'"),
            ("pretrain.learning_rate", 0 < p.learning_rate <= 100, "must be in (0, 100]"),
            ("pretrain.momentum", 0 <= p.momentum < 1, "must be in [0, 1)"),
            ("pretrain.checkpoint_every", *within(p.checkpoint_every, 0, MAX_EPOCHS)),
            ("pretrain.checkpoint_min_seconds", *within(p.checkpoint_min_seconds, 0, 86_400)),
            ("pretrain.augment_shift", *within(p.augment_shift, 0, 64)),
            ("pretrain.precision", p.precision in PRECISIONS,
             "must be " + ", ".join(map(repr, PRECISIONS))),
            ("init.method", i.method in ("kmeans", "umap"), "must be 'kmeans' or 'umap'"),
            ("init.umap_neighbors", *within(i.umap_neighbors, 2, 10_000)),
            ("init.umap_components", *within(i.umap_components, 0, MAX_UNITS)),
            ("init.n_init", *within(i.n_init, 1, 1_000)),
            ("init.max_iter", *within(i.max_iter, 1, MAX_STEPS)),
            # One cluster is no clustering: DEC's target distribution is then constant.
            ("dec.n_clusters", *within(d.n_clusters, 2, MAX_CLUSTERS)),
            ("dec.alpha", 0 < d.alpha <= 1_000, "must be in (0, 1000]"),
            ("dec.maxiter", *within(d.maxiter, 0, MAX_STEPS)),
            ("dec.update_interval", *within(d.update_interval, 1, MAX_STEPS)),
            ("dec.tol", 0 <= d.tol <= 1, "must be in [0, 1]"),
            ("dec.batch_size", *within(d.batch_size, 1, MAX_BATCH)),
            ("dec.learning_rate", 0 < d.learning_rate <= 100, "must be in (0, 100]"),
            ("dec.momentum", 0 <= d.momentum < 1, "must be in [0, 1)"),
            ("dec.warmup_iterations", *within(d.warmup_iterations, 0, MAX_STEPS)),
            ("dec.precision", d.precision in PRECISIONS,
             "must be " + ", ".join(map(repr, PRECISIONS))),
            ("registry.promotion_criterion",
             r.promotion_criterion in ("auto", "acc", "silhouette"),
             "must be 'auto', 'acc' or 'silhouette'"),
            ("registry.promotion_tolerance", 0 <= r.promotion_tolerance <= 1,
             "must be in [0, 1]"),
            ("registry.max_champion_drop", 0 <= self.registry.max_champion_drop <= 1,
             "must be in [0, 1]"),
        ]
        for key, ok, problem in checks:
            if not ok:
                raise ConfigError(key, f"{problem} (got {short_repr(self.flat()[key])})")
        if self.data.n_samples is not None and self.dec.n_clusters > self.data.n_samples:
            raise ConfigError(
                "dec.n_clusters",
                f"{self.dec.n_clusters} clusters cannot be formed from "
                f"data.n_samples={self.data.n_samples} images",
            )
        return self


def _preset_seed() -> RunConfig:
    """The published recipe, kept faithful so that it can be compared against."""
    return RunConfig()


def _preset_default() -> RunConfig:
    """Full MNIST in about six minutes on a 2-core CPU, well above the published recipe.

    Adam pretraining converges in a fraction of the recipe's 300 SGD epochs; the manifold
    initialisation (UMAP + GMM on the embedding, as in N2D) and a warm-up towards it replace
    K-Means, which is what lifts accuracy (measurements in BENCHMARKS.md).
    """
    return RunConfig(
        pretrain=PretrainConfig(epochs=40, min_steps=10_000, optimizer="adam",
                                learning_rate=1e-3, precision="auto",
                                checkpoint_min_seconds=30.0),
        init=InitConfig(method="umap", n_init=4),
        dec=DECConfig(maxiter=2800, warmup_iterations=1400, precision="auto"),
    )


def _preset_best() -> RunConfig:
    """The most accurate preset, at about 1.5 times the default's time.

    ``default`` plus random shifts of up to 2 pixels while pretraining, and 60 epochs instead of
    40: the autoencoder learns an embedding that does not hinge on exact pixel positions (as in
    DEC-DA, Guo et al. 2018), which the manifold initialisation then separates better.
    """
    config = _preset_default()
    config.pretrain.epochs = 60
    config.pretrain.augment_shift = 2
    return config


def _preset_quick() -> RunConfig:
    """A smoke test of the default's code path: a small subset and a few epochs."""
    return RunConfig(
        data=DataConfig(n_samples=2000),
        pretrain=PretrainConfig(epochs=60, optimizer="adam", learning_rate=1e-3,
                                checkpoint_every=10, precision="auto"),
        init=InitConfig(method="umap", n_init=2),
        dec=DECConfig(maxiter=400, update_interval=40, warmup_iterations=80, precision="auto"),
    )


PRESETS: dict[str, typing.Callable[[], RunConfig]] = {
    "seed": _preset_seed,
    "default": _preset_default,
    "best": _preset_best,
    "quick": _preset_quick,
}


def preset(name: str = "default") -> RunConfig:
    try:
        return PRESETS[name]().validate()
    except KeyError:
        raise ConfigError("preset", f"unknown preset {name!r}; known: "
                          + ", ".join(PRESETS)) from None


def _split_assignment(assignment: str) -> tuple[str, str]:
    key, sep, value = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(assignment, "expected KEY=VALUE, e.g. pretrain.epochs=50")
    return key.strip(), value.strip()


_NONE_WORDS = {"none", "null", "~", ""}
_TRUE_WORDS = {"true", "yes", "on", "1"}
_FALSE_WORDS = {"false", "no", "off", "0"}


def _coerce(key: str, raw: Any, hint: Any) -> Any:
    """Convert ``raw`` (a string from the command line, or a parsed config value) to ``hint``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if raw is None or (isinstance(raw, str) and raw.lower() in _NONE_WORDS):
            return None
        return _coerce(key, raw, args[0])
    if origin is list:
        (item,) = typing.get_args(hint)
        if isinstance(raw, str):
            raw = [part for part in raw.strip("[]").split(",") if part.strip()]
        if not isinstance(raw, list | tuple):
            raise ConfigError(key, f"expected a list, got {short_repr(raw)}")
        return [_coerce(key, part, item) for part in raw]
    try:
        if hint is bool:
            if isinstance(raw, bool):
                return raw
            word = str(raw).lower()
            if word in _TRUE_WORDS | _FALSE_WORDS:
                return word in _TRUE_WORDS
            raise ValueError(raw)
        if hint is int:
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError(raw)
            return int(str(raw).strip()) if isinstance(raw, str) else int(raw)
        if hint is float:
            if isinstance(raw, bool):
                raise ValueError(raw)
            value = float(raw)
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError(raw)
            return value
        if hint is str:
            if not isinstance(raw, str | int | float):
                raise ValueError(raw)
            return str(raw)
    except (TypeError, ValueError):
        raise ConfigError(key, f"cannot read {short_repr(raw)} as {_type_name(hint)}") from None
    raise ConfigError(key, f"unsupported type {hint!r}")


def _type_name(hint: Any) -> str:
    return {int: "an integer", float: "a number", bool: "true/false", str: "text"}.get(
        hint, str(hint)
    )


def _from_dict(cls: type, values: Any, prefix: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(prefix.rstrip(".") or "config",
                          f"expected a mapping, got {short_repr(values)}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(prefix + unknown[0], "unknown key; known keys: "
                          + ", ".join(prefix + n for n in sorted(names)))
    kwargs = {}
    for name, value in values.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _from_dict(hint, value, prefix=f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(prefix + name, value, hint)
    return cls(**kwargs)


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested sections to dotted keys: ``{"dec": {"tol": 0.1}}`` to ``{"dec.tol": 0.1}``."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat
