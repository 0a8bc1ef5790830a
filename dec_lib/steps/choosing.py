"""The steps of a run with several members: plan them, then combine them into one model.

A member is a whole pretraining, initialisation and self-training from a seed of its own. Some
pretraining draws merge part of one class into another, and nothing later in the same member
repairs it (BENCHMARKS.md, "`best`'s tail"); another member rarely makes the same merge, so the
member whose clusters agree best with the others' is chosen (``dec_lib.model.agreement``).
With ``combine=mean`` every member is kept, in one model whose q is the mean of the members',
their clusters numbered as the chosen member's; with ``combine=medoid`` the chosen member alone.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from dec_lib import names
from dec_lib.config.sections import MAX_SEED
from dec_lib.data.datasets import read_dataset
from dec_lib.errors import ConfigError, DecError
from dec_lib.mlops import tracking
from dec_lib.steps.common import (
    TrackingContext,
    begin,
    config_from_sections,
    finite,
    log,
    user_errors_exit,
)

MEMBER_SEED_STRIDE = 1000
"""Member i's seed is the run's seed + i times this (modulo 2**32): member 0 is the run itself."""


def member_seed(seed: int, index: int) -> int:
    """The seed of member ``index`` of a run seeded ``seed``."""
    return (seed + MEMBER_SEED_STRIDE * index) % (MAX_SEED + 1)


@user_errors_exit
def plan_members(seed: int, members: int, ctx: TrackingContext,
                 combine: str = "mean") -> list[dict[str, Any]]:
    """Each member's seed and the key of its MLflow run, in member order.

    The pipeline's MLflow run is created here, before the members start side by side: each
    member's run is nested in it, and members creating it at once could make two. ``combine``
    is checked here too, so that a bad value given at submission stops the run before any
    member trains.

    Parameters
    ----------
    seed : int
        The run's seed.
    members : int
        How many members (the ``members`` setting).
    ctx : TrackingContext
        The pipeline's run; each member's run is keyed under its key.
    combine : str, default "mean"
        The ``combine`` setting, which ``choose_member`` applies after the members.

    Returns
    -------
    list of dict
        ``{"index", "seed", "run_key"}`` per member, for the pipeline's loop over members.
    """
    begin(names.PLAN_MEMBERS, tensorflow=False)
    config = config_from_sections(seed, members=members, combine=combine)
    if config.members < 2:  # only the DAG of several members has this step
        raise ConfigError("members", f"{config.members} member in a pipeline compiled for "
                          "several: compile the pipeline with members=1 instead (it has no "
                          "loop over members)")
    plan = [{"index": i, "seed": member_seed(config.seed, i),
             "run_key": tracking.member_run_key(ctx.run_key, i)} for i in range(config.members)]
    with ctx.step(names.PLAN_MEMBERS):
        tracking.log_params({"seed": config.seed, "members": config.members,
                             "combine": config.combine})
    log.info("plan_members: %d members, seeds %s", len(plan), [m["seed"] for m in plan])
    return plan


@user_errors_exit
def choose_member(dataset_path: str, plan: list[dict[str, Any]], models: list[tuple[str, dict]],
                  autoencoders: list[tuple[str, dict]], out_model: str, out_autoencoder: str,
                  ctx: TrackingContext, combine: str = "mean") -> dict[str, Any]:
    """Combine the members around the one whose clusters agree best with the others'.

    The chosen member's autoencoder is copied to the outputs, and its MLflow record
    (pretraining, initialisation and self-training) is adopted into the pipeline's run, with the
    choice beside it (``members.*``). The model output is the mean of all the members
    (``combine=mean``, ``dec_model.mean_of_members``) or the chosen member's DEC model
    (``combine=medoid``).

    Parameters
    ----------
    dataset_path : str
        The ingested data, on which every member's clusters are compared.
    plan : list of dict
        ``plan_members``' output: the members' seeds in member order, which the choice and its
        records keep whatever order the models are collected in.
    models, autoencoders : list of (str, dict)
        Each member's DEC model and pretrained autoencoder: path and artifact metadata, which
        carries the member's ``seed``.
    out_model, out_autoencoder : str
        Where the combined model and the chosen member's autoencoder go.
    ctx : TrackingContext
        The pipeline's run.
    combine : str, default "mean"
        The ``combine`` setting.

    Returns
    -------
    dict
        The model's metadata: the chosen member's, with the choice (``member``,
        ``member_seed``, ``agreement``) and ``combine``.
    """
    begin(names.CHOOSE_MEMBER)
    from dec_lib.model.agreement import agreement_medoid, aligned_order
    from dec_lib.model.dec_model import (
        cluster_labels,
        clustering_layer,
        mean_of_members,
        soft_assignments,
    )
    from dec_lib.model.saving import load_model, save_model

    combine = config_from_sections(combine=combine).combine
    seeds = [int(member["seed"]) for member in plan]
    model_by_seed = {int(meta.get("seed", -1)): (path, meta) for path, meta in models}
    autoencoder_by_seed = {int(meta.get("seed", -1)): path for path, meta in autoencoders}
    if (len(seeds) < 2 or sorted(model_by_seed) != sorted(seeds)
            or sorted(autoencoder_by_seed) != sorted(seeds) or len(models) != len(seeds)):
        raise DecError(f"expected a model and an autoencoder for each of the "
                       f"members seeded {seeds}; got models seeded "
                       f"{sorted(int(m.get('seed', -1)) for _, m in models)} and autoencoders "
                       f"seeded {sorted(int(m.get('seed', -1)) for _, m in autoencoders)}")
    models = [model_by_seed[seed] for seed in seeds]
    with ctx.step(names.CHOOSE_MEMBER):
        dataset = read_dataset(dataset_path)
        trained = [load_model(str(Path(path) / "dec.keras")) for path, _ in models]
        labelings = [cluster_labels(soft_assignments(model, dataset.x)) for model in trained]
        choice = agreement_medoid(labelings)
        chosen_path, chosen_meta = models[choice.index]
        tracking.adopt("chosen_member", chosen_meta.get("tracking"))
        tracking.log_params({"members.seeds": ",".join(map(str, seeds)),
                             "members.chosen_seed": seeds[choice.index]})
        tracking.log_metrics({"members.count": len(models),
                              "members.chosen": choice.index,
                              **{f"members.agreement.{i}": float(a)
                                 for i, a in enumerate(choice.agreement)}})
        shutil.copytree(chosen_path, out_model)
        if combine == "mean":
            n_clusters = clustering_layer(trained[choice.index]).n_clusters
            orders = [aligned_order(labelings[choice.index], labels, n_clusters)
                      for labels in labelings]
            save_model(mean_of_members(trained, orders), Path(out_model) / "dec.keras")
        shutil.copytree(autoencoder_by_seed[seeds[choice.index]], out_autoencoder)
        log.info("choose_member: member %d (seed %d) agrees best with the others: mean ARI %s; "
                 "%s", choice.index, seeds[choice.index],
                 ", ".join(f"{a:.4f}" for a in choice.agreement),
                 f"the model is the mean of all {len(models)}, numbered as it"
                 if combine == "mean" else "the model is that member's")
    meta = {k: v for k, v in chosen_meta.items() if k != "tracking"}
    return finite({**meta, "member": choice.index, "member_seed": seeds[choice.index],
                   "agreement": [round(float(a), 6) for a in choice.agreement],
                   "combine": combine})
