from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def register(dataset: Input[Dataset], model: Input[Model], report: Input[Artifact],
             model_name: str, registry: dict, run_key: str, tracking_uri: str, experiment: str,
             registered: Output[Artifact]):
    """Log the pyfunc model to MLflow, register a version, and let the champion gate alias it."""
    import os

    from dec_lib.steps import TrackingContext
    from dec_lib.steps import register as run_register

    os.makedirs(registered.path, exist_ok=True)
    meta = run_register(model.path, report.path, model_name, registered.path,
                        TrackingContext(run_key, tracking_uri, experiment),
                        dataset_path=dataset.path, registry=registry,
                        data_unchanged=bool(model.metadata.get("data_unchanged")))
    registered.metadata.update(meta)
