"""The served model: a pyfunc that takes images and answers cluster, label and confidence.

Users load it with ``mlflow.pyfunc.load_model("models:/dec-mnist@champion")`` or serve it with
``mlflow models serve``; it needs no Kubeflow and no knowledge of how it was trained. Which
version is served, and under which alias, is the registry's business
(``dec_lib.mlops.registry``).
"""

from __future__ import annotations

import json
import os
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

import dec_lib
from dec_lib.errors import DataError

__all__ = ["INFO_ARTIFACT", "MODEL_ARTIFACT", "OUTPUT_COLUMNS", "DECPyfuncModel", "log_pyfunc",
           "pip_requirements", "signature", "to_image_batch"]

MODEL_ARTIFACT = "dec_model"
INFO_ARTIFACT = "model_info"
OUTPUT_COLUMNS: dict[str, str] = {"cluster": "long", "label": "long", "confidence": "double"}
"""The pyfunc's answer, column by column in order, with each column's MLflow type: the frame
``DECPyfuncModel.predict`` returns and the signature's outputs are both built from it."""
_NUMPY_TYPES = {"long": np.int64, "double": np.float64}


def to_image_batch(model_input: Any, n_features: int) -> np.ndarray:
    """The images of one request as float32 pixels in [0, 1], one row per image.

    Clients hold images in many layouts, and MLflow's servers hand them on in others (JSON
    arrives as nested lists, a V2 tensor of objects as a 1-D object array): each is accepted
    here, once, so the model itself sees one layout.

    Parameters
    ----------
    model_input : array-like, DataFrame or dict
        N×H×W, N×H×W×1 or N×D images, uint8 (0-255) or float (0-1); a dict with a single
        entry holding them; a DataFrame of pixels or of per-image lists.
    n_features : int
        The pixels per image the model takes.

    Returns
    -------
    numpy.ndarray
        float32 of shape (N, ``n_features``).

    Raises
    ------
    DataError
        On an empty batch, non-numeric values, NaN, values out of range or the wrong number of
        pixels; the message says which.
    """
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
    """Images in; a frame of ``cluster``, ``label`` (-1 where no mapping) and ``confidence`` out.

    MLflow pickles this class by reference, as ``dec_lib.mlops.serving.DECPyfuncModel``, and
    each registered version carries its own copy of ``dec_lib`` to import it from (see
    ``log_pyfunc``): moving or renaming the class breaks no version already registered, but it
    must stay importable under the name the new versions record.
    """

    def load_context(self, context: Any) -> None:
        """Load the Keras model and the cluster-to-label mapping from the version's artifacts.

        Parameters
        ----------
        context : mlflow.pyfunc.PythonModelContext
            Holds the local paths of ``MODEL_ARTIFACT`` and ``INFO_ARTIFACT``.
        """
        from dec_lib.model.saving import load_model

        self.model = load_model(context.artifacts[MODEL_ARTIFACT])
        info = json.loads(Path(context.artifacts[INFO_ARTIFACT]).read_text())
        self.mapping = {int(k): int(v) for k, v in info.get("mapping", {}).items()}
        self.n_features = int(self.model.input_shape[-1])

    # No type hints: MLflow reads predict's hints to validate and convert the input, which
    # would fight the many layouts ``to_image_batch`` accepts.
    def predict(self, context, model_input, params=None):
        """Each image's cluster, its mapped label and the model's confidence in the cluster.

        Parameters
        ----------
        context : mlflow.pyfunc.PythonModelContext or None
            Unused; MLflow passes it.
        model_input : array-like, DataFrame or dict
            Images in any layout ``to_image_batch`` accepts.
        params : dict, optional
            Unused; MLflow passes it.

        Returns
        -------
        pandas.DataFrame
            One row per image, with the columns of ``OUTPUT_COLUMNS``.

        Raises
        ------
        mlflow.exceptions.MlflowException
            With ``INVALID_PARAMETER_VALUE`` for images ``to_image_batch`` refuses, so that a
            server answers 400 with our message rather than 500.
        """
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
        columns = {
            "cluster": clusters,
            "label": [self.mapping.get(int(c), -1) for c in clusters],
            "confidence": q.max(axis=1),
        }
        return pd.DataFrame({name: np.asarray(columns[name], dtype=_NUMPY_TYPES[kind])
                             for name, kind in OUTPUT_COLUMNS.items()})


def signature() -> Any:
    """The model signature MLflow records: a batch of images in, ``OUTPUT_COLUMNS`` out.

    Returns
    -------
    mlflow.models.ModelSignature
    """
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    # One tensor spec cannot say "N×28×28 or N×784, uint8 or float", and MLflow enforces
    # shape and dtype exactly, so the input is declared as a batch of anything; the model
    # checks shape, range and dtype itself and names what is wrong.
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(object), (-1,), name="images")]),
        outputs=Schema([ColSpec(kind, name) for name, kind in OUTPUT_COLUMNS.items()]),
    )


def pip_requirements() -> list[str]:
    """The packages the pyfunc needs, pinned to the versions installed here.

    ``mlflow models serve`` and MLServer build or check their environment from these; pinning
    what trained the model keeps the served model loading the file the same way. Packages not
    installed (``tensorflow-cpu`` on a GPU image) are left out.

    Returns
    -------
    list of str
        ``name==version`` lines.
    """
    wanted = ["mlflow", "tensorflow-cpu", "keras", "numpy", "pandas", "scikit-learn", "scipy"]
    found = []
    for name in wanted:
        try:
            found.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return found


def log_pyfunc(model_path: str | os.PathLike, *, mapping: dict[int, int],
               image_shape: tuple[int, ...], metrics: dict[str, float],
               work_dir: Path) -> Any:
    """Log the DEC model as a pyfunc into the active MLflow run, ready to register.

    The logged model holds the ``.keras`` file, a ``model_info.json`` (mapping, image shape,
    metrics) and a copy of the whole ``dec_lib`` package as MLflow code: MLflow puts that copy
    first on ``sys.path`` when it loads the model, so ``dec_lib.mlops.serving`` (the module the
    pickled class names) is importable wherever the model is loaded, installed or not.

    Parameters
    ----------
    model_path : path-like
        The DEC model's ``.keras`` file.
    mapping : dict of int to int
        Cluster to label, as ``predict`` answers it.
    image_shape : tuple of int
        The shape of one image, for the input example.
    metrics : dict of str to float
        Recorded beside the mapping, for a reader of the version's files.
    work_dir : Path
        Where ``model_info.json`` is written before it is logged.

    Returns
    -------
    mlflow.models.model.ModelInfo
    """
    from dec_lib.mlops.tracking import with_retries

    work_dir.mkdir(parents=True, exist_ok=True)
    info_path = work_dir / "model_info.json"
    info_path.write_text(json.dumps({
        "mapping": {str(k): v for k, v in mapping.items()},
        "image_shape": list(image_shape),
        "metrics": metrics,
    }))
    example = np.zeros((2, *image_shape), dtype=np.uint8)
    # The package root, not this module's folder: MLflow copies a folder into the model's
    # ``code/`` and puts ``code/`` on the path, so a copy of ``mlops/`` would import as a
    # top-level ``mlops`` and the pickled ``dec_lib.mlops.serving`` would not be found.
    code_path = str(Path(dec_lib.__file__).resolve().parent)
    return with_retries(lambda: mlflow.pyfunc.log_model(
        name="model",
        python_model=DECPyfuncModel(),
        artifacts={MODEL_ARTIFACT: str(model_path), INFO_ARTIFACT: str(info_path)},
        signature=signature(),
        input_example=example,
        code_paths=[code_path],
        pip_requirements=pip_requirements(),
    ), "log the model")
