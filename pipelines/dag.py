"""The DEC pipeline: six steps wired by typed artifacts, with placement decided here alone.

With ``members`` > 1, pretraining, initialisation and self-training run once per member in a
``dsl.ParallelFor`` between two more steps: ``plan_members`` before, ``choose_member`` after, which
hands one model to evaluation and registration: the members' mean, numbered as the member the
others agree with best (``combine=mean``), or that member alone (``combine=medoid``).

``build_pipeline`` returns the KFP pipeline for a configuration (its parameter defaults) and a
``Placement`` (images, GPU nodes, the MLflow Secret, a checkpoint volume); the same object is
compiled for a cluster and run by ``kfp.local``, which ignores the Kubernetes settings.
"""

import inspect
import re
from dataclasses import dataclass

from kfp import dsl, kubernetes
from kfp.dsl import Artifact

from components import (
    choose_member,
    dec_train,
    evaluate,
    ingest,
    init_clusters,
    plan_members,
    pretrain,
    register,
)
from components.images import CPU_IMAGE, GPU_IMAGE
from dec_lib import names
from dec_lib.config import RunConfig, preset
from dec_lib.errors import ConfigError
from dec_lib.runtime.devices import CPU_FALLBACK_ENV, GPUS_ENV
from pipelines.backends import BACKENDS, DEFAULT_BACKEND, Backend

PIPELINE_NAME = "dec-pipeline"
MEMBER_PARAMETERS = ("members", "combine")
"""The pipeline parameters of the DAG with a loop over members, absent from the one without."""


@dataclass(frozen=True)
class Resources:
    cpu: str
    memory: str
    cpu_limit: str
    memory_limit: str


# Sized for the full 70,000 MNIST digits (220 MB as float32) with room to spare.
RESOURCES = {
    names.INGEST: Resources("1", "2G", "2", "4G"),
    names.PRETRAIN: Resources("4", "8G", "8", "16G"),
    names.INIT_CLUSTERS: Resources("2", "4G", "4", "8G"),
    names.DEC_TRAIN: Resources("4", "8G", "8", "16G"),
    names.EVALUATE: Resources("2", "4G", "4", "8G"),
    names.REGISTER: Resources("1", "2G", "2", "4G"),
    names.PLAN_MEMBERS: Resources("1", "1G", "1", "2G"),
    # Loads every member's DEC model and the data, like evaluate.
    names.CHOOSE_MEMBER: Resources("2", "4G", "4", "8G"),
}


CHECKPOINT_MOUNT = "/mnt/dec-checkpoints"
"""Where ``--checkpoint-pvc`` is mounted on the pretraining pod, and then ``checkpoint_root``."""
DEFAULT_MLFLOW_SECRET = "mlflow-credentials"
MLFLOW_SECRET_KEYS = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME",
                      "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")
"""Keys read from the MLflow Secret, each into the environment variable of the same name."""
DATA_MOUNT = "/mnt/dec-data"
"""Where ``--data-pvc`` is mounted on the ingest pod; ``data.dataset`` then points inside it."""
DEFAULT_DATA_SECRET = "dec-data-credentials"
DATA_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                    "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "FSSPEC_GCS")
"""Keys read from the data Secret by ingest: boto's standard variables for ``s3://`` (with
``AWS_ENDPOINT_URL`` for MinIO and other S3-compatible stores) and fsspec's ``FSSPEC_GCS``
(``{"token": <service-account JSON>}``) for ``gs://`` where Workload Identity is not used."""
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN = re.compile(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*")
_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_LABEL_KEY = re.compile(rf"({_DNS_SUBDOMAIN.pattern}/)?{_LABEL_NAME}")
_LABEL_VALUE = re.compile(_LABEL_NAME)


def _check_label_key(key: str, what: str) -> str:
    if not _LABEL_KEY.fullmatch(key) or len(key.partition("/")[0]) > 253:
        raise ValueError(f"{what} {key!r} is not a Kubernetes label key "
                         "([prefix/]name, e.g. cloud.google.com/gke-accelerator)")
    return key


def _check_label_value(value: str, what: str) -> str:
    if not _LABEL_VALUE.fullmatch(value):
        raise ValueError(f"{what} {value!r} is not a Kubernetes label value (at most 63 "
                         "letters, digits, '-', '_' or '.', starting and ending alphanumeric)")
    return value


def parse_node_selector(text: str) -> tuple[str, str]:
    """``KEY=VALUE``, e.g. ``cloud.google.com/gke-accelerator=nvidia-h100-80gb``."""
    key, equals, value = text.partition("=")
    if not equals:
        raise ValueError(f"{text!r} is not KEY=VALUE "
                         "(e.g. cloud.google.com/gke-accelerator=nvidia-h100-80gb)")
    return _check_label_key(key, "key"), _check_label_value(value, "value")


@dataclass(frozen=True)
class Toleration:
    """A toleration of a node taint: ``Equal`` when it names a value, else ``Exists``.

    Without an effect it tolerates every effect of taints with that key (Kubernetes' meaning).
    """

    key: str
    value: str | None = None
    effect: str | None = None

    def __post_init__(self):
        _check_label_key(self.key, "key")
        if self.value is not None:
            _check_label_value(self.value, "value")
        if self.effect is not None and self.effect not in TAINT_EFFECTS:
            raise ValueError(f"effect {self.effect!r} is not one of {', '.join(TAINT_EFFECTS)}")

    @property
    def operator(self) -> str:
        return "Exists" if self.value is None else "Equal"

    @classmethod
    def parse(cls, text: str) -> "Toleration":
        """``KEY[=VALUE][:EFFECT]``, e.g. ``nvidia.com/gpu:NoSchedule`` or ``pool=gpu``."""
        rest, colon, effect = text.rpartition(":") if ":" in text else (text, "", "")
        key, equals, value = rest.partition("=")
        if colon and not effect:
            raise ValueError(f"{text!r} ends in ':' without an effect "
                             f"({', '.join(TAINT_EFFECTS)})")
        if equals and not value:
            raise ValueError(f"{text!r} has '=' without a value (leave out '=' to tolerate "
                             "any value)")
        return cls(key, value if equals else None, effect if colon else None)


DEFAULT_GPU_TOLERATION = Toleration("nvidia.com/gpu", effect="NoSchedule")


@dataclass(frozen=True)
class Placement:
    """Where the steps run on a cluster: images, the GPU node pool, Secret and volume.

    Pretraining always goes to a GPU node (``gpus`` of them; more than one trains with
    ``tf.distribute.MirroredStrategy``), DEC training too with ``dec_on_gpu`` (on one GPU: its
    loop is single-device). ``gpu_tolerations`` replace the default toleration of NVIDIA's
    taint. A GPU step where TensorFlow sees no GPU fails at once (a missing driver library would
    otherwise make TensorFlow train on the CPU, silently and many times slower), unless
    ``allow_cpu_fallback``. Every step reads MLflow's URI and credentials from the optional Secret
    ``mlflow_secret``. With ``checkpoint_pvc``, pretraining checkpoints go to that volume, so a
    retried pod resumes; without it a retry starts pretraining over. Ingest alone reads the
    optional Secret ``data_secret`` (object-store credentials) and, with ``data_pvc``, has that
    volume mounted at ``DATA_MOUNT``. ``local`` is for kfp.local's runners, which give no GPU:
    no step is told to expect one.
    """

    image: str = CPU_IMAGE
    gpu_image: str = GPU_IMAGE
    accelerator: str = "nvidia.com/gpu"
    gpus: int = 1
    gpu_node_selector: tuple[str, str] | None = None
    gpu_tolerations: tuple[Toleration, ...] = (DEFAULT_GPU_TOLERATION,)
    dec_on_gpu: bool = False
    mlflow_secret: str = DEFAULT_MLFLOW_SECRET
    checkpoint_pvc: str | None = None
    allow_cpu_fallback: bool = False
    local: bool = False
    data_secret: str = DEFAULT_DATA_SECRET
    data_pvc: str | None = None

    def __post_init__(self):
        if isinstance(self.gpus, bool) or not isinstance(self.gpus, int) or self.gpus < 1:
            raise ConfigError("gpus", f"must be a whole number of at least 1, got {self.gpus!r}")
        if self.gpu_node_selector is not None:
            try:
                _check_label_key(self.gpu_node_selector[0], "key")
                _check_label_value(self.gpu_node_selector[1], "value")
            except ValueError as error:
                raise ConfigError("gpu_node_selector", str(error)) from None
        for name in ("mlflow_secret", "checkpoint_pvc", "data_secret", "data_pvc"):
            try:
                if getattr(self, name) is not None:
                    check_resource_name(getattr(self, name))
            except ValueError as error:
                raise ConfigError(name, str(error)) from None

    @property
    def checkpoint_root(self) -> str:
        """The pipeline's default ``checkpoint_root``: the mounted volume, or none."""
        return CHECKPOINT_MOUNT if self.checkpoint_pvc else ""


def check_resource_name(name: str) -> str:
    """``name`` if it can name a Secret or a PersistentVolumeClaim (a DNS subdomain)."""
    if len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
        raise ValueError(f"{name!r} is not a Kubernetes resource name (lower-case letters, "
                         "digits, '-' and '.', starting and ending alphanumeric)")
    return name


def parse_data_pvc(text: str) -> tuple[str, str]:
    """``NAME[:SUBPATH]``: the claim holding the data, and the data's path inside it.

    Returns the claim's name and the path ``data.dataset`` takes on the ingest pod.
    """
    name, _, subpath = text.partition(":")
    check_resource_name(name)
    parts = [part for part in subpath.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"{text!r}: the path inside the volume may not contain '..'")
    return name, "/".join([DATA_MOUNT, *parts])


def reads_changing_data(dataset: str, placement: "Placement") -> bool:
    """Whether ingest reads data that can change under the same name: a URI or a volume.

    Such an ingest is never cached: KFP keys its cache on the parameters, the URI's text, so a
    cached ingest would hand on the first download after the objects had changed.
    """
    from dec_lib.data.remote import is_remote

    return placement.data_pvc is not None or is_remote(dataset)


def needs_data_secret(dataset: str, backend: Backend) -> bool:
    """Whether ingest gets the object-store Secret: always where Secrets may be missing
    (the data set can be changed when the run is submitted), else only for a URI."""
    from dec_lib.data.remote import is_remote

    return backend.optional_secret or is_remote(dataset)


def _on_gpu(task: dsl.PipelineTask, p: Placement, gpus: int, check: bool = True) -> None:
    task.set_accelerator_type(p.accelerator).set_accelerator_limit(gpus)
    if check:  # the step checks that TensorFlow sees them (dec_lib.runtime.devices) before any data
        task.set_env_variable(GPUS_ENV, str(gpus))
        if p.allow_cpu_fallback:
            task.set_env_variable(CPU_FALLBACK_ENV, "1")
    if p.gpu_node_selector is not None:
        kubernetes.add_node_selector(task, *p.gpu_node_selector)
    for toleration in p.gpu_tolerations:
        kubernetes.add_toleration(task, key=toleration.key, operator=toleration.operator,
                                  value=toleration.value, effect=toleration.effect)


def _place(task: dsl.PipelineTask, step: str, image: str) -> dsl.PipelineTask:
    r = RESOURCES[step]
    return (task.set_container_image(image).set_display_name(step)
            .set_cpu_request(r.cpu).set_memory_request(r.memory)
            .set_cpu_limit(r.cpu_limit).set_memory_limit(r.memory_limit))


def build_pipeline(config: "RunConfig | None" = None, placement: "Placement | None" = None,
                   model_name: str = names.DEFAULT_MODEL_NAME, cache: bool = True,
                   backend: Backend = BACKENDS[DEFAULT_BACKEND]):
    """The pipeline whose parameter defaults are ``config`` (the ``default`` preset if None).

    ``placement`` None means the local runners: ``Placement(local=True)``, where no step is
    told to expect a GPU, since kfp.local gives none. On a cluster, GPU steps fail at once
    without their GPUs unless the placement allows CPU fallback. ``backend`` is
    the oldest KFP backend the package must run on (``pipelines.backends``); it decides the run
    key every uncached step gets, a key unique to each run, recurring runs included.

    With ``cache``, ingest and pretraining are cacheable by their inputs: a rerun with the same
    data settings and pretraining configuration reuses their outputs. They then log to MLflow
    runs of their own (a cache hit runs nothing), which ``init_clusters`` adopts into the
    pipeline's run. A cached ingest does not see a file that changed under the same path, so
    scheduled retraining compiles with ``cache=False``; a warm start (``registry.warm_start``)
    depends on the registry, so its pretraining is never cached. Nothing else is cached: every
    later step logs to the pipeline's MLflow run, and registration must always happen. An
    ingest that reads a URI or a volume is never cached (see `reads_changing_data`).

    With ``config.members`` > 1 the DAG has the loop over members (the module's docstring) and
    the pipeline ``members`` and ``combine`` parameters, so both can change at submission; with
    1 it has none of them. The loop needs a backend that collects artifacts
    (``Backend.collected_artifacts``).
    """
    c = config or preset("default")
    p = placement or Placement(local=True)
    if c.members > 1 and not backend.collected_artifacts:
        raise ConfigError("members", f"{c.members} members need a KFP backend that collects "
                          "artifacts from a loop (2.14 and later: --kfp-backend 2.15); "
                          f"--kfp-backend {backend.version} is for {backend.covers}: set "
                          "members=1")
    check_gpus = not p.local
    sections = _sections(c)

    def steps(seed, data, autoencoder, pretrain_config, init, dec, registry, model_name,
              tracking_uri, experiment, checkpoint_root, n_clusters, members=None,
              combine=None):
        # The run's id, not its display name: recurring runs have none, and names repeat.
        run = {"run_key": backend.run_key, "tracking_uri": tracking_uri,
               "experiment": experiment}

        cache_ingest = cache and not reads_changing_data(c.data.dataset, p)
        cache_pretrain = cache and not c.registry.warm_start
        # A cacheable step gets no run key: a key unique to the run would defeat the cache.
        # Ingest checks the images against dec.n_clusters, passed again as a number: KFP cannot
        # index the dec struct. A cacheable ingest gets neither: a new count would miss its
        # cache and so pretraining's; init_clusters checks the count then, after a pretraining
        # that the corrected run takes from the cache.
        ingested = _place(ingest(data=data, seed=seed,
                                 n_clusters=0 if cache_ingest else n_clusters,
                                 **{**run, "run_key": "" if cache_ingest
                                    else run["run_key"]}),
                          names.INGEST, p.image)
        # Object-store credentials reach ingest alone, from the cluster, never the package.
        # Where the backend has no optional Secrets, a missing one stops the pod: there it is
        # attached only when ingest reads an object store.
        if needs_data_secret(c.data.dataset, backend):
            kubernetes.use_secret_as_env(ingested, secret_name=p.data_secret,
                                         secret_key_to_env={k: k for k in DATA_SECRET_KEYS},
                                         optional=True)
        if p.data_pvc:
            kubernetes.mount_pvc(ingested, pvc_name=p.data_pvc, mount_path=DATA_MOUNT)

        def member_steps(member_seed, member_run):
            trained_ae = _place(pretrain(dataset=ingested.outputs["dataset"],
                                         autoencoder=autoencoder, pretrain=pretrain_config,
                                         seed=member_seed, checkpoint_root=checkpoint_root,
                                         registry=registry, model_name=model_name,
                                         **{**member_run, "run_key": "" if cache_pretrain
                                            else member_run["run_key"]}),
                                names.PRETRAIN, p.gpu_image)
            _on_gpu(trained_ae, p, p.gpus, check_gpus)
            if p.checkpoint_pvc:
                kubernetes.mount_pvc(trained_ae, pvc_name=p.checkpoint_pvc,
                                     mount_path=CHECKPOINT_MOUNT)
            centres = _place(init_clusters(dataset=ingested.outputs["dataset"],
                                           autoencoder=trained_ae.outputs["model"], init=init,
                                           dec=dec, seed=member_seed, **member_run),
                             names.INIT_CLUSTERS, p.image)
            clustered = _place(dec_train(dataset=ingested.outputs["dataset"],
                                         autoencoder=trained_ae.outputs["model"],
                                         centres=centres.outputs["centres"], dec=dec,
                                         seed=member_seed, **member_run), names.DEC_TRAIN,
                               p.gpu_image if p.dec_on_gpu else p.image)
            if p.dec_on_gpu:
                _on_gpu(clustered, p, 1, check_gpus)
            trained_ae.set_caching_options(cache_pretrain)
            for task in (centres, clustered):
                task.set_caching_options(False)
            for task in (trained_ae, clustered):
                task.set_retry(num_retries=2, backoff_duration="60s", backoff_factor=2)
            return [trained_ae, centres, clustered]

        if members is None:
            member_tasks = member_steps(seed, run)
            trained_ae, _, clustered = member_tasks
            dec_model, chosen_ae = clustered.outputs["model"], trained_ae.outputs["model"]
        else:
            # Each member logs to an MLflow run of its own, nested in the pipeline's run.
            plan = _place(plan_members(seed=seed, members=members, combine=combine, **run),
                          names.PLAN_MEMBERS, p.image)
            plan.set_caching_options(False)
            with dsl.ParallelFor(plan.output) as member:
                member_tasks = member_steps(member.seed, {**run, "run_key": member.run_key})
            trained_ae, _, clustered = member_tasks
            chosen = _place(choose_member(
                dataset=ingested.outputs["dataset"], plan=plan.output,
                models=dsl.Collected(clustered.outputs["model"]),
                autoencoders=dsl.Collected(trained_ae.outputs["model"]), combine=combine,
                **run),
                names.CHOOSE_MEMBER, p.image)
            chosen.set_caching_options(False)
            member_tasks = [plan, *member_tasks, chosen]
            dec_model, chosen_ae = chosen.outputs["model"], chosen.outputs["autoencoder"]
        scored = _place(evaluate(dataset=ingested.outputs["dataset"], model=dec_model,
                                 autoencoder=chosen_ae, **run),
                        names.EVALUATE, p.image)
        registered = _place(register(dataset=ingested.outputs["dataset"], model=dec_model,
                                     report=scored.outputs["report"], model_name=model_name,
                                     registry=registry, **run), names.REGISTER, p.image)
        ingested.set_caching_options(cache_ingest)
        for task in (scored, registered):
            task.set_caching_options(False)
        for task in (ingested, *member_tasks, scored, registered):
            # URI and credentials come from the cluster at run time, never from the package;
            # optional, so a cluster without the Secret (or an MLflow without auth) works, on
            # the backends that know optional keys (pipelines.backends drops it for the others).
            kubernetes.use_secret_as_env(task, secret_name=p.mlflow_secret,
                                         secret_key_to_env={k: k for k in MLFLOW_SECRET_KEYS},
                                         optional=True)
        return registered.outputs["registered"]

    description = ("Deep Embedded Clustering: pretrain, initialise clusters, DEC, evaluate, "
                   f"register in MLflow. Runs on {backend.covers}.")

    def dec_pipeline(
        seed: int = c.seed,
        data: dict = sections["data"],
        autoencoder: dict = sections["autoencoder"],
        pretrain_config: dict = sections["pretrain"],
        init: dict = sections["init"],
        dec: dict = sections["dec"],
        registry: dict = sections["registry"],
        model_name: str = model_name,
        tracking_uri: str = "",  # empty: $MLFLOW_TRACKING_URI, from the Secret on a cluster
        experiment: str = names.DEFAULT_EXPERIMENT,
        checkpoint_root: str = p.checkpoint_root,
        n_clusters: int = c.dec.n_clusters,
        members: int = c.members,
        combine: str = c.combine,
    ) -> Artifact:
        several = c.members > 1
        return steps(seed, data, autoencoder, pretrain_config, init, dec, registry, model_name,
                     tracking_uri, experiment, checkpoint_root, n_clusters,
                     members if several else None, combine if several else None)

    if c.members == 1:
        # One member: no loop, so no ``members`` or ``combine`` parameter, which a submission
        # could otherwise set to no effect. KFP reads the pipeline's parameters from its
        # signature.
        signature = inspect.signature(dec_pipeline)
        dec_pipeline.__signature__ = signature.replace(parameters=[
            parameter for parameter in signature.parameters.values()
            if parameter.name not in MEMBER_PARAMETERS])
    return dsl.pipeline(name=PIPELINE_NAME, description=description)(dec_pipeline)


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
        "registry": sections["registry"],
        "n_clusters": config.dec.n_clusters,
        # A pipeline of one member has no such parameters (its DAG has no loop).
        **({"members": config.members, "combine": config.combine}
           if config.members > 1 else {}),
        **extra,
    }


def _sections(config: "RunConfig") -> dict:
    """Config sections as KFP struct parameters, which cannot hold nulls (absent means None)."""
    return {name: {k: v for k, v in values.items() if v is not None}
            for name, values in config.to_dict().items() if isinstance(values, dict)}
