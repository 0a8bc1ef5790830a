"""The model registry: one version per pipeline run, the champion and challenger aliases, and
the champion a warm start continues from.

Every trained model is registered; an alias says what became of it: ``champion`` is the
version served and warm-started from, ``challenger`` one that did not pass the gate (see
``dec_lib.mlops.champion_gate``). Aliases replace MLflow's deprecated stages.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow

from dec_lib.errors import DataError, DecError
from dec_lib.mlops.tracking import filter_literal, with_retries

__all__ = ["CHALLENGER", "CHAMPION", "DATA_FINGERPRINT_TAG", "Gate", "Registration",
           "WarmStart", "champion_version", "download_keras_model", "log_and_register",
           "warm_start_from_champion"]

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
DATA_FINGERPRINT_TAG = "data.fingerprint"
"""The version tag holding the fingerprint of the data the version was trained on: a warm start
on data with the same fingerprint has nothing to learn."""
_RUN_TAG = "mlflow_run_id"
"""The version tag naming the pipeline run's MLflow run: one version per run is kept by it."""


@dataclass
class Registration:
    """A registered version and the alias it was given.

    Attributes
    ----------
    model_name, version : str
        The version registered (or found already registered by a retried step).
    alias : str
        ``CHAMPION`` or ``CHALLENGER``.
    model_uri : str
        ``models:/<name>@<alias>``, what a user loads.
    run_id : str
        The MLflow run the version was logged in.
    """

    model_name: str
    version: str
    alias: str
    model_uri: str
    run_id: str


Gate = Callable[[Any | None], bool]
"""gate(current champion version or None) -> whether the new version becomes champion"""


def _first_version_is_champion(champion: Any | None) -> bool:
    return champion is None


def champion_version(model_name: str) -> Any | None:
    """The registered version that holds the ``champion`` alias.

    Parameters
    ----------
    model_name : str
        The registered model.

    Returns
    -------
    mlflow.entities.model_registry.ModelVersion or None
        None when the model or its champion does not exist yet.

    Raises
    ------
    TrackingError
        When the registry cannot be read (after retries).
    """
    from mlflow import MlflowClient

    def read() -> Any | None:
        try:
            return MlflowClient().get_model_version_by_alias(model_name, CHAMPION)
        except mlflow.exceptions.MlflowException as error:
            if "not found" in str(error).lower() or "RESOURCE_DOES_NOT_EXIST" in str(
                    getattr(error, "error_code", "")):
                return None
            raise

    return with_retries(read, f"read the champion of {model_name!r}")


def download_keras_model(model_name: str, version: str, dst: str | os.PathLike) -> Path:
    """The ``.keras`` file inside a registered version, downloaded.

    Parameters
    ----------
    model_name, version : str
        The registered version.
    dst : path-like
        The folder to download the version's files into.

    Returns
    -------
    Path
        The one ``.keras`` file under ``dst``.

    Raises
    ------
    DataError
        When the version holds no ``.keras`` file, or more than one.
    """
    local = Path(with_retries(lambda: mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{model_name}/{version}", dst_path=str(dst)),
        f"download {model_name} version {version}"))
    found = sorted(local.rglob("*.keras"))
    if len(found) != 1:
        raise DataError(f"models:/{model_name}/{version}",
                        f"expected one .keras model inside, found {len(found)}")
    return found[0]


def log_and_register(
    model_path: str | os.PathLike,
    *,
    mapping: dict[int, int],
    image_shape: tuple[int, ...],
    model_name: str,
    metrics: dict[str, float],
    run_id: str,
    work_dir: str | os.PathLike,
    tags: dict[str, str] | None = None,
    gate: Gate = _first_version_is_champion,
) -> Registration:
    """Log the pyfunc into the active run, register a version, and alias it by ``gate``.

    The version is registered whatever the gate says, so no trained model is lost; the gate only
    decides whether it takes the ``champion`` alias or arrives as ``challenger``. A retried step
    (its pod preempted after registering) finds the version its run registered and registers
    nothing again.

    Parameters
    ----------
    model_path : path-like
        The DEC model's ``.keras`` file.
    mapping : dict of int to int
        Cluster to label, as the served model answers it.
    image_shape : tuple of int
        The shape of one image.
    model_name : str
        The registered model.
    metrics : dict of str to float
        Recorded as version tags (4 decimals) and in the model's files.
    run_id : str
        The pipeline run's MLflow run (the active one); tags the version.
    work_dir : path-like
        Scratch space for the files logged with the model.
    tags : dict of str to str, optional
        More version tags (the data's fingerprint, the drift reference).
    gate : callable, optional
        ``gate(champion version or None) -> bool``; by default the first version of a name
        becomes champion and later ones challengers.

    Returns
    -------
    Registration
    """
    from mlflow import MlflowClient

    from dec_lib.mlops.serving import log_pyfunc

    client = MlflowClient()
    earlier = _versions_of_run(client, model_name, run_id,
                               f"look for this run's version of {model_name!r}")
    if earlier:
        # Search results carry no aliases; the version itself does.
        version = with_retries(lambda: client.get_model_version(model_name,
                                                                earlier[0].version),
                               f"read {model_name} version {earlier[0].version}")
        log.info("%s version %s already holds this run's model (a retried step); not "
                 "registering it again", model_name, version.version)
        if version.aliases:
            alias = CHAMPION if CHAMPION in version.aliases else version.aliases[0]
            return Registration(model_name=model_name, version=str(version.version),
                                alias=alias, model_uri=f"models:/{model_name}@{alias}",
                                run_id=run_id)
    else:
        model_info = log_pyfunc(model_path, mapping=mapping, image_shape=image_shape,
                                metrics=metrics, work_dir=Path(work_dir))
        version = with_retries(lambda: mlflow.register_model(
            model_info.model_uri, model_name,
            tags={_RUN_TAG: run_id, **{k: f"{v:.4f}" for k, v in metrics.items()},
                  **(tags or {})},
        ), f"register {model_name!r}")
        version = _one_version_per_run(client, model_name, run_id, version)

    alias = CHAMPION if gate(champion_version(model_name)) else CHALLENGER
    with_retries(lambda: client.set_registered_model_alias(model_name, alias, version.version),
                 f"set alias {alias!r}", upsert=True)
    log.info("registered %s version %s as %s", model_name, version.version, alias)
    return Registration(model_name=model_name, version=str(version.version), alias=alias,
                        model_uri=f"models:/{model_name}@{alias}", run_id=run_id)


def _versions_of_run(client: Any, model_name: str, run_id: str, what: str) -> list[Any]:
    """The versions of ``model_name`` tagged with MLflow run ``run_id``."""
    return with_retries(lambda: client.search_model_versions(
        f"name={filter_literal(model_name, 'model_name')} and tags.{_RUN_TAG}='{run_id}'"),
        what)


def _one_version_per_run(client: Any, model_name: str, run_id: str, version: Any) -> Any:
    """Keep one version of this run's model when a lost answer made MLflow create two.

    MLflow's HTTP layer resends a create request whose answer was lost; the server may have
    registered the first. The oldest version tagged with the run stays, the others go.
    """
    mine = _versions_of_run(client, model_name, run_id,
                            f"look for duplicate versions of {model_name!r}")
    if len(mine) <= 1:
        return version
    keep, *extra = sorted(mine, key=lambda v: int(v.version))
    for duplicate in extra:
        log.warning("%s version %s duplicates version %s of the same run (a resent request); "
                    "deleting it", model_name, duplicate.version, keep.version)
        with_retries(lambda d=duplicate: client.delete_model_version(model_name, d.version),
                     f"delete duplicate version {duplicate.version}")
    return keep


@dataclass(frozen=True)
class WarmStart:
    """The champion a warm start continues from.

    Attributes
    ----------
    version : str
        The champion's version.
    model_file : Path
        Its downloaded ``.keras`` file (a DEC model: encoder and clustering layer).
    data_unchanged : bool
        The champion was trained on data with this fingerprint: nothing needs training.
    """

    version: str
    model_file: Path
    data_unchanged: bool


def warm_start_from_champion(model_name: str, data_fingerprint: str,
                             dst: str | os.PathLike) -> WarmStart | None:
    """The registered champion to continue from instead of pretraining, downloaded.

    Parameters
    ----------
    model_name : str
        The registered model whose champion is wanted.
    data_fingerprint : str
        The fingerprint of the data about to be trained on, compared with the champion's
        ``DATA_FINGERPRINT_TAG``.
    dst : path-like
        The folder to download the champion's files into.

    Returns
    -------
    WarmStart or None
        None when the model has no champion yet: the caller pretrains from scratch.

    Raises
    ------
    DecError
        When ``model_name`` is empty: a warm start needs to know which model to start from.
    """
    if not model_name:
        raise DecError("registry.warm_start needs the registered model's name")
    champion = champion_version(model_name)
    if champion is None:
        return None
    unchanged = (champion.tags or {}).get(DATA_FINGERPRINT_TAG) == data_fingerprint
    return WarmStart(version=str(champion.version),
                     model_file=download_keras_model(model_name, champion.version, dst),
                     data_unchanged=unchanged)
