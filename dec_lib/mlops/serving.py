"""The registered model: a pyfunc that takes images and answers cluster, label and confidence.

Users load it with ``mlflow.pyfunc.load_model("models:/dec-mnist@champion")`` or serve it with
``mlflow models serve``; it needs no Kubeflow and no knowledge of how it was trained.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from dec_lib.errors import DataError

log = logging.getLogger(__name__)

MODEL_ARTIFACT = "dec_model"
INFO_ARTIFACT = "model_info"
CHAMPION = "champion"
CHALLENGER = "challenger"
OUTPUT_COLUMNS = ("cluster", "label", "confidence")


def to_image_batch(model_input: Any, n_features: int) -> np.ndarray:
    """Accept N×H×W, N×H×W×1 or N×D images, uint8 (0-255) or float (0-1), as array or frame."""
    from dec_lib.data.validation import check_images

    if isinstance(model_input, pd.DataFrame):
        model_input = model_input.to_numpy()
    elif isinstance(model_input, dict) and len(model_input) == 1:
        model_input = next(iter(model_input.values()))
    array = np.asarray(model_input)
    if array.size == 0:
        raise DataError("model input", "no images in the batch")
    if array.dtype == object:
        # JSON and object-typed tensors arrive as nested Python numbers: let NumPy infer a
        # numeric dtype, and refuse anything that is not one (strings included).
        try:
            array = np.asarray(array.tolist())
        except ValueError as error:
            raise DataError("model input", f"images must be a regular numeric array: "
                            f"{error}") from None
        if array.dtype.kind not in "biuf":
            raise DataError("model input", f"images must be numeric, got {array.dtype} values")
    x = check_images(array, source="model input")
    if x.shape[1] != n_features:
        raise DataError("model input", f"each image must have {n_features} pixels, got "
                        f"{x.shape[1]} (shape {tuple(array.shape[1:])})")
    return x


class DECPyfuncModel(mlflow.pyfunc.PythonModel):
    """Images in; a frame of ``cluster``, ``label`` (-1 where no mapping) and ``confidence`` out."""

    def load_context(self, context):
        from dec_lib.model.saving import load_model

        self.model = load_model(context.artifacts[MODEL_ARTIFACT])
        info = json.loads(Path(context.artifacts[INFO_ARTIFACT]).read_text())
        self.mapping = {int(k): int(v) for k, v in info.get("mapping", {}).items()}
        self.n_features = int(self.model.input_shape[-1])

    def predict(self, context, model_input, params=None):
        from dec_lib.model.dec_model import cluster_labels, soft_assignments

        try:
            x = to_image_batch(model_input, self.n_features)
        except DataError as error:
            # An MlflowException keeps our message at the top of the server's 400 answer.
            from mlflow.exceptions import MlflowException
            from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

            raise MlflowException(str(error), error_code=INVALID_PARAMETER_VALUE) from error
        q = soft_assignments(self.model, x)
        clusters = cluster_labels(q)
        return pd.DataFrame({
            "cluster": clusters.astype(np.int64),
            "label": np.array([self.mapping.get(int(c), -1) for c in clusters], dtype=np.int64),
            "confidence": q.max(axis=1).astype(np.float64),
        })


def _signature():
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    # One tensor spec cannot say "N×28×28 or N×784, uint8 or float", and MLflow enforces
    # shape and dtype exactly, so the input is declared as a batch of anything; the model
    # checks shape, range and dtype itself and names what is wrong.
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(object), (-1,), name="images")]),
        outputs=Schema([ColSpec("long", "cluster"), ColSpec("long", "label"),
                        ColSpec("double", "confidence")]),
    )


def _pip_requirements() -> list[str]:
    wanted = ["mlflow", "tensorflow-cpu", "keras", "numpy", "pandas", "scikit-learn", "scipy"]
    found = []
    for name in wanted:
        try:
            found.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return found


@dataclass
class Registration:
    model_name: str
    version: str
    alias: str
    model_uri: str
    run_id: str


def champion_version(model_name: str) -> Any | None:
    """The registered version that holds the ``champion`` alias, or None."""
    from mlflow import MlflowClient

    from dec_lib.mlops.tracking import with_retries

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
    """The .keras file inside registered version ``version``, downloaded under ``dst``."""
    from dec_lib.mlops.tracking import with_retries

    local = Path(with_retries(lambda: mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{model_name}/{version}", dst_path=str(dst)),
        f"download {model_name} version {version}"))
    found = sorted(local.rglob("*.keras"))
    if len(found) != 1:
        raise DataError(f"models:/{model_name}/{version}",
                        f"expected one .keras model inside, found {len(found)}")
    return found[0]


Gate = Callable[[Any | None], bool]
"""gate(current champion version or None) -> whether the new version becomes champion"""


def _default_gate(champion: Any | None) -> bool:
    return champion is None


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
    gate: Gate = _default_gate,
) -> Registration:
    """Log the pyfunc into the active run, register a version, and alias it by ``gate``.

    The version is registered whatever the gate says, so no trained model is lost; the gate only
    decides whether it takes the ``champion`` alias or arrives as ``challenger``. Without a gate,
    the first version of a name becomes champion and later ones challengers.
    """
    from mlflow import MlflowClient

    from dec_lib.mlops.tracking import filter_literal, with_retries

    client = MlflowClient()
    # A retried step (its pod preempted after registering) must not register twice: the
    # version tagged with this pipeline run's MLflow run is the one.
    earlier = with_retries(lambda: client.search_model_versions(
        f"name={filter_literal(model_name, 'model_name')} and tags.mlflow_run_id='{run_id}'"),
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
        version = _log_and_register_version(model_path, mapping=mapping,
                                            image_shape=image_shape, model_name=model_name,
                                            metrics=metrics, run_id=run_id,
                                            work_dir=Path(work_dir), tags=tags)
        version = _one_version_per_run(client, model_name, run_id, version)

    alias = CHAMPION if gate(champion_version(model_name)) else CHALLENGER
    with_retries(lambda: client.set_registered_model_alias(model_name, alias, version.version),
                 f"set alias {alias!r}")
    log.info("registered %s version %s as %s", model_name, version.version, alias)
    return Registration(model_name=model_name, version=str(version.version), alias=alias,
                        model_uri=f"models:/{model_name}@{alias}", run_id=run_id)


def _one_version_per_run(client, model_name: str, run_id: str, version: Any) -> Any:
    """Keep one version of this run's model when a lost answer made MLflow create two.

    MLflow's HTTP layer resends a create request whose answer was lost; the server may have
    registered the first. The oldest version tagged with the run stays, the others go.
    """
    from dec_lib.mlops.tracking import filter_literal, with_retries

    mine = with_retries(lambda: client.search_model_versions(
        f"name={filter_literal(model_name, 'model_name')} and tags.mlflow_run_id='{run_id}'"),
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


def _log_and_register_version(model_path, *, mapping, image_shape, model_name, metrics,
                              run_id, work_dir: Path, tags) -> Any:
    from dec_lib.mlops.tracking import with_retries

    work_dir.mkdir(parents=True, exist_ok=True)
    info_path = work_dir / "model_info.json"
    info_path.write_text(json.dumps({
        "mapping": {str(k): v for k, v in mapping.items()},
        "image_shape": list(image_shape),
        "metrics": metrics,
    }))
    example = np.zeros((2, *image_shape), dtype=np.uint8)
    code_path = str(Path(__file__).resolve().parent)
    model_info = with_retries(lambda: mlflow.pyfunc.log_model(
        name="model",
        python_model=DECPyfuncModel(),
        artifacts={MODEL_ARTIFACT: str(model_path), INFO_ARTIFACT: str(info_path)},
        signature=_signature(),
        input_example=example,
        code_paths=[code_path],
        pip_requirements=_pip_requirements(),
    ), "log the model")
    version = with_retries(lambda: mlflow.register_model(
        model_info.model_uri, model_name,
        tags={"mlflow_run_id": run_id, **{k: f"{v:.4f}" for k, v in metrics.items()},
              **(tags or {})},
    ), f"register {model_name!r}")
    return version
