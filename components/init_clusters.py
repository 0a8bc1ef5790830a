from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def init_clusters(dataset: Input[Dataset], autoencoder: Input[Model], init: dict, dec: dict,
                  seed: int, run_key: str, tracking_uri: str, experiment: str,
                  centres: Output[Model]):
    """Initial clusters on the pretrained embedding (K-Means, or UMAP + GMM) and their centres."""
    from dec_lib.steps import TrackingContext
    from dec_lib.steps import init_clusters as run_init_clusters

    # ingest and pretrain may be cache hits: their MLflow records travel in the metadata.
    upstream = {"ingest": dataset.metadata.get("tracking"),
                "pretrain": autoencoder.metadata.get("tracking")}
    meta = run_init_clusters(dataset.path, autoencoder.path, init, dec, seed, centres.path,
                             TrackingContext(run_key, tracking_uri, experiment),
                             upstream=upstream,
                             data_unchanged=bool(autoencoder.metadata.get("data_unchanged")))
    centres.metadata.update({**meta, "format": "npz (centres, labels)", "role": "centres"})
