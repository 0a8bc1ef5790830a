"""The DEC pipeline: six steps wired by typed artifacts, with placement decided here alone.

``build_pipeline`` returns the KFP pipeline for a configuration (its parameter defaults) and a
set of images; the same object is compiled for a cluster and run by ``kfp.local``.
"""


from dataclasses import dataclass

from kfp import dsl, kubernetes
from kfp.dsl import Artifact

from components import dec_train, evaluate, ingest, kmeans_init, pretrain, register
from components.images import CPU_IMAGE, GPU_IMAGE
from dec_lib.config import RunConfig, preset
from dec_lib.tracking import DEFAULT_EXPERIMENT

PIPELINE_NAME = "dec-pipeline"
DEFAULT_MODEL_NAME = "dec-mnist"


@dataclass(frozen=True)
class Resources:
    cpu: str
    memory: str
    cpu_limit: str
    memory_limit: str


# Sized for the full 70,000 MNIST digits (220 MB as float32) with room to spare.
RESOURCES = {
    "ingest": Resources("1", "2G", "2", "4G"),
    "pretrain": Resources("4", "8G", "8", "16G"),
    "kmeans_init": Resources("2", "4G", "4", "8G"),
    "dec_train": Resources("4", "8G", "8", "16G"),
    "evaluate": Resources("2", "4G", "4", "8G"),
    "register": Resources("1", "2G", "2", "4G"),
}


@dataclass(frozen=True)
class Placement:
    """Images and the GPU node pool the pretraining step is sent to."""

    image: str = CPU_IMAGE
    gpu_image: str = GPU_IMAGE
    accelerator: str = "nvidia.com/gpu"
    gpu_toleration_key: str = "nvidia.com/gpu"


def _place(task: dsl.PipelineTask, step: str, image: str) -> dsl.PipelineTask:
    r = RESOURCES[step]
    return (task.set_container_image(image).set_display_name(step)
            .set_cpu_request(r.cpu).set_memory_request(r.memory)
            .set_cpu_limit(r.cpu_limit).set_memory_limit(r.memory_limit))


def build_pipeline(config: "RunConfig | None" = None, placement: "Placement | None" = None,
                   model_name: str = DEFAULT_MODEL_NAME):
    """The pipeline whose parameter defaults are ``config`` (the ``default`` preset if None)."""
    c = config or preset("default")
    p = placement or Placement()
    sections = _sections(c)

    @dsl.pipeline(name=PIPELINE_NAME,
                  description="Deep Embedded Clustering: pretrain, initialise clusters, DEC, "
                              "evaluate, register in MLflow.")
    def dec_pipeline(
        seed: int = c.seed,
        data: dict = sections["data"],
        autoencoder: dict = sections["autoencoder"],
        pretrain_config: dict = sections["pretrain"],
        init: dict = sections["init"],
        dec: dict = sections["dec"],
        model_name: str = model_name,
        tracking_uri: str = "",
        experiment: str = DEFAULT_EXPERIMENT,
        checkpoint_root: str = "",
    ) -> Artifact:
        run = {"run_key": dsl.PIPELINE_JOB_NAME_PLACEHOLDER, "tracking_uri": tracking_uri,
               "experiment": experiment}

        ingested = _place(ingest(data=data, seed=seed, **run), "ingest", p.image)
        trained_ae = _place(pretrain(dataset=ingested.outputs["dataset"],
                                     autoencoder=autoencoder, pretrain=pretrain_config,
                                     seed=seed, checkpoint_root=checkpoint_root, **run),
                            "pretrain", p.gpu_image)
        trained_ae.set_accelerator_type(p.accelerator).set_accelerator_limit(1)
        kubernetes.add_toleration(trained_ae, key=p.gpu_toleration_key, operator="Exists",
                                  effect="NoSchedule")
        centres = _place(kmeans_init(dataset=ingested.outputs["dataset"],
                                     autoencoder=trained_ae.outputs["model"], init=init,
                                     dec=dec, seed=seed, **run), "kmeans_init", p.image)
        clustered = _place(dec_train(dataset=ingested.outputs["dataset"],
                                     autoencoder=trained_ae.outputs["model"],
                                     centres=centres.outputs["centres"], dec=dec, seed=seed,
                                     **run), "dec_train", p.image)
        scored = _place(evaluate(dataset=ingested.outputs["dataset"],
                                 model=clustered.outputs["model"], **run), "evaluate", p.image)
        registered = _place(register(model=clustered.outputs["model"],
                                     report=scored.outputs["report"], model_name=model_name,
                                     **run), "register", p.image)
        for task in (ingested, trained_ae, centres, clustered, scored, registered):
            # Every step logs to this run's MLflow run, which a cache hit would skip.
            task.set_caching_options(False)
        for task in (trained_ae, clustered):
            task.set_retry(num_retries=2, backoff_duration="60s", backoff_factor=2)
        return registered.outputs["registered"]

    return dec_pipeline


def pipeline_arguments(config: RunConfig, **extra) -> dict:
    """The pipeline's parameters for ``config``, as ``run`` and ``submit`` pass them."""
    sections = _sections(config)
    return {
        "seed": config.seed,
        "data": sections["data"],
        "autoencoder": sections["autoencoder"],
        "pretrain_config": sections["pretrain"],
        "init": sections["init"],
        "dec": sections["dec"],
        **extra,
    }


def _sections(config: "RunConfig") -> dict:
    """Config sections as KFP struct parameters, which cannot hold nulls (absent means None)."""
    return {name: {k: v for k, v in values.items() if v is not None}
            for name, values in config.to_dict().items() if isinstance(values, dict)}
