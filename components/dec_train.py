from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def dec_train(dataset: Input[Dataset], autoencoder: Input[Model], centres: Input[Model],
              dec: dict, seed: int, run_key: str, tracking_uri: str, experiment: str,
              model: Output[Model]):
    """Self-train encoder and centres on KL(p || q) until the labels settle."""
    from dec_lib.steps import TrackingContext
    from dec_lib.steps import dec_train as run_dec_train

    meta = run_dec_train(dataset.path, autoencoder.path, centres.path, dec, seed, model.path,
                         TrackingContext(run_key, tracking_uri, experiment),
                         data_unchanged=bool(autoencoder.metadata.get("data_unchanged")))
    model.metadata.update({**meta, "format": "keras", "role": "dec"})
