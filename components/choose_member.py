from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def choose_member(dataset: Input[Dataset], plan: list, models: Input[list[Model]],
                  autoencoders: Input[list[Model]], combine: str, run_key: str,
                  tracking_uri: str, experiment: str, model: Output[Model],
                  autoencoder: Output[Model]):
    """Combine the members (their mean, or the one the others agree with best; no labels)."""
    from dec_lib.steps import TrackingContext
    from dec_lib.steps import choose_member as run_choose_member

    meta = run_choose_member(dataset.path, plan, [(m.path, dict(m.metadata)) for m in models],
                             [(a.path, dict(a.metadata)) for a in autoencoders], model.path,
                             autoencoder.path, TrackingContext(run_key, tracking_uri, experiment),
                             combine=combine)
    model.metadata.update({**meta, "format": "keras", "role": "dec"})
    autoencoder.metadata.update({"seed": meta["member_seed"], "format": "keras",
                                 "role": "autoencoder"})
