"""Every hyper-parameter in one typed place: each setting's type, default, doc and constraint.

The CLI, the pipeline parameters and the components all read from ``RunConfig``; nothing else in
the project holds a training literal. Keys are dotted (``pretrain.epochs``) in ``--set``, in
config files and in the names of the parameters logged to MLflow, so a user sees one vocabulary.
A ``RunConfig`` is converted and validated once, when it is built; validation, the comments of
``config show`` and the README's table all come from the declarations below.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dec_lib.config.constraints import Constraint, Interval, ListOf, OneOf, Text, setting
from dec_lib.config.convert import convert
from dec_lib.errors import ConfigError, short_repr

__all__ = [
    "COMBINES",
    "INIT_METHODS",
    "OPTIMIZERS",
    "PRECISIONS",
    "PROMOTION_CRITERIA",
    "SCHEDULES",
    "AutoencoderConfig",
    "DECConfig",
    "DataConfig",
    "InitConfig",
    "PretrainConfig",
    "RegistryConfig",
    "RunConfig",
    "Setting",
    "declared_settings",
    "flatten",
    "nest",
    "typed_assignments",
]

OPTIMIZERS = ("sgd", "adam")
"""Pretraining optimizers: SGD with momentum (as published) or Adam."""
SCHEDULES = ("constant", "cosine")
"""Pretraining learning-rate schedules: constant (as published), or a cosine decay to 0."""
INIT_METHODS = ("kmeans", "umap")
"""Cluster initialisations: K-Means on the embedding, or UMAP + Gaussian mixture (N2D)."""
PRECISIONS = ("float32", "bfloat16", "auto")
"""Compute precisions; ``auto`` is bfloat16 where the hardware computes it natively."""
COMBINES = ("mean", "medoid")
"""How a run's members become one model: the mean of their q, or the chosen member alone."""
PROMOTION_CRITERIA = ("auto", "acc", "silhouette")
"""How a new version is compared with the champion; ``auto`` is acc when there are labels."""

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
MAX_MEMBERS = 9
MAX_PATH = 4096

_LEARNING_RATE = Interval(0, 100, closed="right")  # 0 trains nothing
_MOMENTUM = Interval(0, 1, closed="left")  # 1 never forgets a gradient
_FRACTION = Interval(0, 1)


@dataclass
class DataConfig:
    """Where the images come from and how many of them are used."""

    dataset: str = setting(
        "mnist", """`mnist`, a path, or an `s3://`, `gs://` or `https://` URI of: a `.npz` with
        `x` (optional `y`), a directory of IDX files, or a directory of PNG images.""",
        Text(MAX_PATH, names="'mnist' or a path"))
    n_samples: int | None = setting(
        None, "Random subset of this many images (none: all of them).", Interval(1, MAX_COUNT))


@dataclass
class AutoencoderConfig:
    """The autoencoder's shape: the encoder's layers, mirrored by the decoder."""

    hidden_dims: list[int] = setting(  # noqa: RUF009 (setting() is a field(), list copied)
        [500, 500, 2000], "Units of the encoder's hidden layers; the decoder mirrors them.",
        ListOf(Interval(1, MAX_LAYERS), Interval(1, MAX_UNITS), noun="layer", unit="units"))
    embedding_dim: int = setting(
        10, "Dimensions of the embedding the clusters are found in.", Interval(1, MAX_UNITS))


@dataclass
class PretrainConfig:
    """Pretraining of the autoencoder on reconstruction."""

    epochs: int = setting(
        300, "Passes over the data while pretraining.", Interval(0, MAX_EPOCHS))
    min_steps: int = setting(
        0, """At least this many optimizer steps: small data sets get more epochs (0: epochs as
        set; the `default` preset's 10,000 leaves MNIST's 40 epochs unchanged).""",
        Interval(0, MAX_STEPS))
    batch_size: int = setting(256, "Images per pretraining step.", Interval(1, MAX_BATCH))
    optimizer: str = setting(
        "sgd", "`sgd` (with momentum, as published) or `adam`.", OneOf(OPTIMIZERS))
    learning_rate: float = setting(1.0, "Pretraining learning rate.", _LEARNING_RATE)
    schedule: str = setting(
        "constant", """`constant`, or `cosine`: the learning rate falls from `learning_rate` to
        0 along a half cosine over all pretraining steps. On MNIST, cosine reached a lower
        loss but a worse clustering (BENCHMARKS.md).""", OneOf(SCHEDULES))
    momentum: float = setting(0.9, "Momentum of `sgd` (`adam` ignores it).", _MOMENTUM)
    checkpoint_every: int = setting(
        5, "Epochs between resumable checkpoints (0: none).", Interval(0, MAX_EPOCHS))
    checkpoint_min_seconds: float = setting(
        0.0, """Least time between two checkpoints, in seconds: on a small data set a checkpoint
        costs as much as many short epochs (the `default` preset: 30).""", Interval(0, 86_400))
    augment_shift: int = setting(
        0, """Random shifts of up to this many pixels during pretraining (2-D images; 0: none;
        at most 1/8 of the images' smaller side).""", Interval(0, 64))
    augment_rotation: float = setting(
        0.0, """Random rotations of up to this many degrees either way during pretraining,
        after the shift (2-D images; 0: none).""", Interval(0, 180))
    precision: str = setting(
        "float32", """`float32`, `bfloat16` (mixed: float32 weights) or `auto`: bfloat16 where
        the hardware computes it natively (AVX-512 BF16 or AMX CPUs, Ampere or later GPUs);
        models are saved in float32 either way.""", OneOf(PRECISIONS))


@dataclass
class InitConfig:
    """How the cluster centres are initialised on the pretrained embedding."""

    method: str = setting(
        "kmeans", """`kmeans` on the embedding (published), or `umap`: UMAP + Gaussian mixture on
        the embedding (N2D).""", OneOf(INIT_METHODS))
    n_init: int = setting(
        20, "Restarts of K-Means (or of the Gaussian mixture).", Interval(1, 1_000))
    max_iter: int = setting(
        300, "Iterations of each K-Means (or Gaussian mixture) restart.", Interval(1, MAX_STEPS))
    umap_neighbors: int = setting(
        20, "UMAP's neighbourhood size, in points.", Interval(2, 10_000))
    umap_components: int = setting(
        0, "Dimensions UMAP maps to (0: the number of clusters).", Interval(0, MAX_UNITS))
    umap_fit_samples: int = setting(
        0, """UMAP learns its map from a random subset of this many embeddings and maps all of
        them through it; the Gaussian mixture is fitted on that subset's map (0: all of them).""",
        Interval(0, MAX_COUNT))
    umap_epochs: int = setting(
        0, """Epochs of UMAP's layout optimisation (0: fewer as the data grow, 50 at 70,000
        points and UMAP's own 500 up to 7,000). The layout is most of UMAP's time, and the
        mixture needs only its clusters, which settle early.""", Interval(0, 10_000))
    mixture_components: int = setting(
        0, """Gaussian mixture components fitted on UMAP's map (0: `dec.n_clusters`). With more,
        the components that UMAP's neighbour graph connects most are joined until
        `dec.n_clusters` remain, which can rejoin a large class the mixture cut in two. 15
        for 10 clusters helped on two of five data sets and lost on two, where it joined
        classes that touch (BENCHMARKS.md, "More mixture components"); many more let one
        cluster absorb the rest.""", Interval(0, 1_000))


@dataclass
class DECConfig:
    """Self-training of the clusters (DEC proper)."""

    n_clusters: int = setting(
        10, "Number of clusters; at most `data.n_samples`.",
        # One cluster is no clustering: DEC's target distribution is then constant.
        Interval(2, MAX_CLUSTERS))
    alpha: float = setting(
        1.0, "Degrees of freedom of the Student's t kernel.", Interval(0, 1_000, closed="right"))
    maxiter: int = setting(
        8000, "Most self-training iterations (one batch each).", Interval(0, MAX_STEPS))
    update_interval: int = setting(
        140, "Iterations between recomputing the target distribution.", Interval(1, MAX_STEPS))
    tol: float = setting(
        0.001, "Stop when fewer than this fraction of labels change between two updates.",
        _FRACTION)
    batch_size: int = setting(256, "Images per self-training step.", Interval(1, MAX_BATCH))
    learning_rate: float = setting(0.01, "Learning rate of self-training's SGD.", _LEARNING_RATE)
    momentum: float = setting(0.9, "Momentum of self-training's SGD.", _MOMENTUM)
    warmup_iterations: int = setting(
        0, """Iterations trained towards the initial assignment before self-training takes over
        (see `init.method`).""", Interval(0, MAX_STEPS))
    augment_shift: int = setting(
        0, """Random shifts of up to this many pixels of each training batch (2-D images; 0:
        none; at most 1/8 of the images' smaller side); targets come from the unshifted images
        (DEC-DA).""", Interval(0, 64))
    augment_rotation: float = setting(
        0.0, """Random rotations of up to this many degrees either way of each training batch,
        after the shift (2-D images; 0: none); targets come from the unrotated images.""",
        Interval(0, 180))
    reconstruction_weight: float = setting(
        0.0, """Weight of the autoencoder's reconstruction loss kept beside the clustering
        loss, which keeps the embedding's local structure (IDEC; 0: DEC's loss alone).""",
        Interval(0, 1_000))
    precision: str = setting(
        "float32", "As `pretrain.precision`; the clustering layer always computes in float32.",
        OneOf(PRECISIONS))


@dataclass
class RegistryConfig:
    """Retraining and promotion in the model registry."""

    warm_start: bool = setting(
        False, """Retraining mode (`--retrain`): start from the registered `champion` (its
        encoder and centres) instead of pretraining and initialising; when the data's
        fingerprint equals the one the champion was trained on, nothing is trained or
        registered.""", None)
    promotion_criterion: str = setting(
        "auto", """How a new version is compared with the champion on the current data: `acc`
        (needs labels), `silhouette` (label-free), or `auto`: acc when the data has labels.""",
        OneOf(PROMOTION_CRITERIA))
    promotion_tolerance: float = setting(
        0.005, """The new version becomes champion unless its score is lower than the champion's
        by more than this; otherwise it is registered as challenger.""", _FRACTION)
    max_champion_drop: float = setting(
        0.1, """When the champion scores more than this below its own score at registration on
        the current data, the data has changed for the worse (corrupted, or drifted far): the
        new version, fitted to it, stays challenger for a person to review (1: never hold).""",
        _FRACTION)


@dataclass
class RunConfig:
    """Every setting of a run: the seed and one section per phase.

    Building one (``RunConfig(...)``, ``from_dict``, ``with_overrides``, ``preset``, a file)
    converts each value to its declared type and refuses impossible settings, once; code handed
    a ``RunConfig`` need not check it again. Call ``validate`` only after changing one in place.

    Raises
    ------
    ConfigError
        Naming the first setting at fault, what it must be, and the value given.
    """

    seed: int = setting(
        0, """Random seed for every step (subset, initialisation, training): seeds Python, NumPy
        and TensorFlow, with deterministic kernels: one seed, one model on the same CPU kind and
        software (README, "Reproducibility").""",
        # numpy's and TensorFlow's seeds are unsigned 32-bit: a larger one crashed training.
        Interval(0, MAX_SEED))
    members: int = setting(
        1, """Independent members (pretraining, initialisation, self-training) a pipeline run
        trains side by side, then combines (``combine``) around the one whose clusters agree
        best with the others' (mean adjusted Rand index, no labels). Member 0 has the run's
        seed, member i the seed + 1000 i. Three outvote a member whose pretraining merged part
        of one class into another (BENCHMARKS.md). More than 1 needs KFP backend 2.14 or
        later.""",
        Interval(1, MAX_MEMBERS))
    combine: str = setting(
        "mean", """How several members become the one model evaluated and registered: ``mean``
        serves them all as one model whose soft assignment is the mean of theirs, clusters
        numbered as the chosen member's (Hungarian matching, no labels); ``medoid`` keeps the
        chosen member alone, at a third of the serving cost with three members. Unused with
        members=1.""",
        OneOf(COMBINES))
    data: DataConfig = field(default_factory=DataConfig)
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    init: InitConfig = field(default_factory=InitConfig)
    dec: DECConfig = field(default_factory=DECConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)

    SECTIONS: typing.ClassVar[tuple[str, ...]]
    """The names of the sections, in order (set below from the fields)."""

    def __post_init__(self) -> None:
        self.validate()

    def to_dict(self) -> dict[str, Any]:
        """Nested sections of plain values, the shape ``from_dict`` and config files take."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """``to_dict`` as JSON with sorted keys: equal configurations give equal text."""
        return json.dumps(self.to_dict(), sort_keys=True)

    def flat(self) -> dict[str, Any]:
        """Dotted keys to values, as logged to MLflow and shown by ``config show``."""
        return flatten(self.to_dict())

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RunConfig:
        """A validated configuration from nested values; missing keys keep their defaults.

        Parameters
        ----------
        values : mapping
            Shaped like ``to_dict()``, with values as parsed (JSON, YAML, TOML): KFP hands
            integers over as floats (40.0), which are accepted where integral.

        Returns
        -------
        RunConfig

        Raises
        ------
        ConfigError
            For an unknown key, a section that is not a mapping, a value of the wrong type or an
            impossible setting, naming the dotted key.
        """
        if not isinstance(values, Mapping):
            raise ConfigError("config", f"expected a mapping, got {short_repr(values)}")
        _refuse_unknown(values, [f.name for f in dataclasses.fields(cls)], prefix="")
        kwargs = dict(values)
        for section in cls.SECTIONS:
            if section in values:
                kwargs[section] = _section_from_dict(section, values[section])
        return cls(**kwargs)

    def with_overrides(self, assignments: list[str] | Mapping[str, Any]) -> RunConfig:
        """A validated copy with ``assignments`` applied; later ones win.

        Parameters
        ----------
        assignments : list of str or mapping
            ``KEY=VALUE`` text as given to ``--set`` (the value is read by the field's type), or
            dotted keys to values already parsed.

        Returns
        -------
        RunConfig
            A new configuration; ``self`` is left alone.

        Raises
        ------
        ConfigError
            For a malformed assignment, an unknown key, an unreadable value or an impossible
            setting, naming the key.
        """
        return RunConfig.from_dict(nest({**self.flat(), **typed_assignments(assignments)}))

    def validate(self) -> RunConfig:
        """Convert each setting to its declared type and refuse impossible ones.

        Building a configuration already does this; call it again only after changing one in
        place (as a user of ``DEC`` might).

        Returns
        -------
        RunConfig
            ``self``, each value of its declared type (an integral 40.0 given for an integer
            becomes 40).

        Raises
        ------
        ConfigError
            Naming the first setting at fault, what it must be, and (briefly) the value.
        """
        for item in declared_settings():
            owner = self if item.section is None else getattr(self, item.section)
            value = convert(item.key, getattr(owner, item.name), item.hint)
            setattr(owner, item.name, value)
            problem = (None if value is None or item.constraint is None
                       else item.constraint.problem(value))
            if problem:
                none = " or none" if item.optional else ""
                raise ConfigError(item.key, f"{problem}{none} (got {short_repr(value)})")
        if self.data.n_samples is not None and self.dec.n_clusters > self.data.n_samples:
            raise ConfigError(
                "dec.n_clusters",
                f"{self.dec.n_clusters} clusters cannot be formed from "
                f"data.n_samples={self.data.n_samples} images",
            )
        if 0 < self.init.umap_fit_samples < self.dec.n_clusters:
            raise ConfigError(
                "init.umap_fit_samples",
                f"a mixture of dec.n_clusters={self.dec.n_clusters} components cannot be fitted "
                f"on {self.init.umap_fit_samples} points; use 0 or at least {self.dec.n_clusters}")
        if 0 < self.init.mixture_components < self.dec.n_clusters:
            raise ConfigError(
                "init.mixture_components",
                f"{self.init.mixture_components} mixture components cannot make "
                f"dec.n_clusters={self.dec.n_clusters} clusters; use 0 or at least "
                f"{self.dec.n_clusters}")
        if self.members > 1 and self.registry.warm_start:
            raise ConfigError("members", f"{self.members} members cannot warm-start: retraining "
                              "continues the one champion, so every member would be the same; "
                              "set members=1 with registry.warm_start")
        return self


RunConfig.SECTIONS = tuple(
    name for name, hint in typing.get_type_hints(RunConfig).items()
    if dataclasses.is_dataclass(hint))


@dataclass(frozen=True)
class Setting:
    """One declared setting, as validation, ``config show`` and the README's table see it.

    Parameters
    ----------
    key : str
        The dotted key (``pretrain.epochs``; ``seed`` has no section).
    section : str or None
        The section holding it, None for a top-level setting.
    name : str
        The field's name in its section.
    hint : type
        The declared type.
    default : object
        The field's default (that of the ``seed`` preset, the published recipe).
    doc : str
        What it does, in Markdown.
    constraint : Constraint or None
        The values allowed; None where the type alone says (true/false).
    """

    key: str
    section: str | None
    name: str
    hint: Any
    default: Any
    doc: str
    constraint: Constraint | None

    @property
    def optional(self) -> bool:
        """Whether the setting may be none (its type is ``X | None``)."""
        return type(None) in typing.get_args(self.hint)

    def allowed(self) -> str:
        """The values accepted, in words: ``[1, 1,000,000,000] or none``."""
        text = "true or false" if self.constraint is None else self.constraint.describe()
        return f"{text} or none" if self.optional else text


@functools.cache
def declared_settings() -> tuple[Setting, ...]:
    """Every setting of ``RunConfig`` in declaration order, with its type, doc and constraint.

    Returns
    -------
    tuple of Setting
        ``seed`` first, then each section's fields in order.
    """
    found: list[Setting] = []
    owners: list[tuple[str | None, type]] = [(None, RunConfig)]
    hints = typing.get_type_hints(RunConfig)
    owners += [(name, hints[name]) for name in RunConfig.SECTIONS]
    for section, cls in owners:
        cls_hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if "doc" not in f.metadata:  # a section, declared by its own fields
                continue
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default
            found.append(Setting(
                key=f.name if section is None else f"{section}.{f.name}", section=section,
                name=f.name, hint=cls_hints[f.name], default=default, doc=f.metadata["doc"],
                constraint=f.metadata["constraint"]))
    return tuple(found)


@functools.cache
def _settings_by_key() -> dict[str, Setting]:
    return {item.key: item for item in declared_settings()}


def typed_assignments(assignments: list[str] | Mapping[str, Any]) -> dict[str, Any]:
    """Dotted keys to values of their declared types, from ``KEY=VALUE`` text or a mapping.

    Parameters
    ----------
    assignments : list of str or mapping
        ``--set`` text (read by the field's type) or dotted keys to values already parsed.

    Returns
    -------
    dict
        Each key to its converted value; a key assigned twice keeps the later value.

    Raises
    ------
    ConfigError
        For a malformed assignment, an unknown key or a value that cannot be converted.
    """
    from_text = not isinstance(assignments, Mapping)
    items = (list(assignments.items()) if isinstance(assignments, Mapping)
             else [_split_assignment(a) for a in assignments])
    known = _settings_by_key()
    typed: dict[str, Any] = {}
    for key, value in items:
        if key not in known:
            raise ConfigError(key, "unknown key; known keys: " + ", ".join(known))
        typed[key] = convert(key, value, known[key].hint, from_text=from_text)
    return typed


def _split_assignment(assignment: str) -> tuple[str, str]:
    key, sep, value = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(assignment, "expected KEY=VALUE, e.g. pretrain.epochs=50")
    return key.strip(), value.strip()


def _refuse_unknown(values: Mapping[str, Any], names: list[str], prefix: str) -> None:
    unknown = sorted(str(k) for k in set(values) - set(names))
    if unknown:
        raise ConfigError(prefix + unknown[0], "unknown key; known keys: "
                          + ", ".join(prefix + n for n in sorted(names)))


def _section_from_dict(section: str, values: Any) -> Any:
    """The section's dataclass from its values as given; ``RunConfig`` converts and checks them."""
    if not isinstance(values, Mapping):
        raise ConfigError(section, f"expected a mapping, got {short_repr(values)}")
    cls = typing.get_type_hints(RunConfig)[section]
    _refuse_unknown(values, [f.name for f in dataclasses.fields(cls)], prefix=f"{section}.")
    return cls(**values)


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested sections to dotted keys: ``{"dec": {"tol": 0.1}}`` to ``{"dec.tol": 0.1}``."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted keys to nested sections, the inverse of ``flatten``: ``{"dec": {"tol": 0.1}}``."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        section, dot, name = key.partition(".")
        if dot:
            nested.setdefault(section, {})[name] = value
        else:
            nested[key] = value
    return nested
