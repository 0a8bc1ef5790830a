"""Named configurations: the published recipe and the project's tuned settings.

A preset is written as the settings it changes from the fields' defaults (which are the
published recipe), so a reader sees at a glance what makes each one different.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from dec_lib.config.sections import RunConfig, nest, typed_assignments
from dec_lib.errors import ConfigError

__all__ = ["PRESETS", "Preset", "preset", "preset_settings"]


@dataclass(frozen=True)
class Preset:
    """A named configuration: why it exists, and the settings it changes.

    Parameters
    ----------
    doc : str
        What the preset is for.
    settings : mapping
        Dotted keys to the values that differ from the fields' defaults.
    """

    doc: str
    settings: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "settings", MappingProxyType(dict(self.settings)))


_DEFAULT = {
    "pretrain.epochs": 40, "pretrain.min_steps": 10_000, "pretrain.optimizer": "adam",
    "pretrain.learning_rate": 1e-3, "pretrain.precision": "auto",
    "pretrain.checkpoint_min_seconds": 30.0,
    "init.method": "umap", "init.n_init": 4,
    "dec.maxiter": 2800, "dec.warmup_iterations": 1400, "dec.learning_rate": 0.03,
    "dec.augment_shift": 2, "dec.precision": "auto",
}

PRESETS: Mapping[str, Preset] = MappingProxyType({
    "seed": Preset("The published recipe, kept faithful so that it can be compared against."),
    "default": Preset(
        """Full MNIST in 4-6 minutes on a 2-core CPU, at N2D's accuracy. Adam pretraining
        converges in a fraction of the recipe's 300 SGD epochs; the manifold initialisation
        (UMAP + GMM on the embedding, as in N2D) and a warm-up towards it replace K-Means, which
        is what lifts accuracy. Self-training runs at a learning rate of 0.03, at which the
        warm-up reaches its initialisation (at the recipe's 0.01 it stops short of it), on
        batches shifted by up to 2 pixels (DEC-DA). UMAP's layout runs 50 epochs at 70,000
        images (``init.umap_epochs=0``). Measurements in BENCHMARKS.md.""",
        _DEFAULT),
    "best": Preset(
        """The most accurate preset, and the slowest: 21-40 minutes on 2 cores, about one
        member's time on a cluster, where each member pretrains in a pod of its own. ``default``
        plus random shifts of up to 2 pixels while pretraining, and 120 epochs
        instead of 40: the autoencoder learns an embedding that does not hinge on exact pixel
        positions (as in DEC-DA, Guo et al. 2018), which the manifold initialisation then
        separates better; on MNIST, 120 epochs beat 60 on each of five seeds. Three members,
        served as the mean of their soft assignments (``combine=mean``): a member whose
        pretraining merged part of one class into another is outvoted, and on MNIST the mean
        scored above the member the others agree with on every seed measured (BENCHMARKS.md).
        Needs KFP backend 2.14 or later; set members=1 for older ones.""",
        {**_DEFAULT, "pretrain.epochs": 120, "pretrain.augment_shift": 2, "members": 3}),
    "quick": Preset(
        "A smoke test of the default's code path: a small subset and a few epochs.",
        {"data.n_samples": 2000,
         "pretrain.epochs": 60, "pretrain.optimizer": "adam", "pretrain.learning_rate": 1e-3,
         "pretrain.checkpoint_every": 10, "pretrain.precision": "auto",
         "init.method": "umap", "init.n_init": 2,
         "dec.maxiter": 400, "dec.update_interval": 40, "dec.warmup_iterations": 80,
         "dec.learning_rate": 0.03, "dec.augment_shift": 2, "dec.precision": "auto"}),
})
"""Every preset by name; ``preset(name)`` builds one."""


def preset(name: str = "default",
           overrides: Sequence[str] | Mapping[str, Any] = ()) -> RunConfig:
    """The named preset as a validated ``RunConfig``, with ``overrides`` applied.

    Parameters
    ----------
    name : str, default="default"
        One of ``PRESETS``.
    overrides : sequence of str or mapping, optional
        ``--set``-style ``KEY=VALUE`` text or dotted keys to parsed values, applied over the
        preset in the same build (as ``RunConfig.with_overrides`` would, without building the
        preset alone first).

    Returns
    -------
    RunConfig
        A new configuration each time: changing it leaves the preset alone.

    Raises
    ------
    ConfigError
        For an unknown name, listing the known ones, or an override that is refused.
    """
    assigned = typed_assignments(overrides if isinstance(overrides, Mapping) else list(overrides))
    return RunConfig.from_dict(nest({**preset_settings(name), **assigned}))


def preset_settings(name: str) -> Mapping[str, Any]:
    """The settings the named preset changes, as dotted keys, for merging before a build.

    Parameters
    ----------
    name : str
        One of ``PRESETS``.

    Returns
    -------
    mapping
        Dotted keys to values.

    Raises
    ------
    ConfigError
        For an unknown name, listing the known ones.
    """
    try:
        return PRESETS[name].settings
    except KeyError:
        raise ConfigError("preset", f"unknown preset {name!r}; known: "
                          + ", ".join(PRESETS)) from None
