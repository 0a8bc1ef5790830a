from kfp import dsl
from kfp.dsl import Dataset, Output

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def ingest(data: dict, seed: int, run_key: str, tracking_uri: str, experiment: str,
           dataset: Output[Dataset], n_clusters: int = 0):
    """Load and validate the images once (and that they can form ``n_clusters`` clusters);
    every later step reads this one file."""
    from dec_lib.steps import TrackingContext
    from dec_lib.steps import ingest as run_ingest

    meta = run_ingest(data, seed, dataset.path, TrackingContext(run_key, tracking_uri, experiment),
                      n_clusters=n_clusters)
    dataset.metadata.update(meta)
