from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components.images import GPU_IMAGE


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def pretrain(dataset: Input[Dataset], autoencoder: dict, pretrain: dict, seed: int,
             checkpoint_root: str, registry: dict, model_name: str, run_key: str,
             tracking_uri: str, experiment: str, model: Output[Model]):
    """Train the autoencoder on reconstruction (resuming a checkpoint of the same work), or
    hand on the registered champion when retraining warm-starts."""
    from dec_lib.steps import TrackingContext
    from dec_lib.steps import pretrain as run_pretrain

    meta = run_pretrain(dataset.path, autoencoder, pretrain, seed, model.path,
                        TrackingContext(run_key, tracking_uri, experiment),
                        checkpoint_root=checkpoint_root, registry=registry,
                        model_name=model_name,
                        data_fingerprint=dataset.metadata.get("fingerprint", ""))
    model.metadata.update({**meta, "format": "keras", "role": "autoencoder"})
