"""The KFP backend versions a compiled package can target, and what each one needs changed.

The package is written by kfp and kfp-kubernetes 2.17, whose output assumes a current backend.
Older backends differ in three ways that matter here, all read in kubeflow/pipelines' source:

- **Run key.** The driver resolves ``{{$.pipeline_job_uuid}}`` (``dsl.PIPELINE_JOB_ID_PLACEHOLDER``)
  to the run's id from 2.5.0 on (``backend/src/v2/driver/driver.go``, ``resolve.go`` from 2.14).
  Before 2.5 no ``{{$.pipeline_job_*}}`` placeholder is resolved: the step receives the literal
  text. What every version does is replace ``{{workflow.uid}}`` anywhere in the compiled
  workflow with the run's id: the API server for a run
  (``backend/src/apiserver/template/v2_template.go``, ``ReplaceUID``) and the scheduled-workflow
  controller with a fresh id for each recurring run
  (``backend/src/crd/controller/scheduledworkflow/util/scheduled_workflow.go``). The task's
  parameters travel inside that workflow, so ``{{workflow.uid}}`` is the run key before 2.5.
  (``{{$.pipeline_job_name}}`` is the run's *display name*: empty for recurring runs.)
- **Optional Secret keys.** ``SecretAsEnv.optional`` exists from 2.15.0
  (``kubernetes_platform/proto/kubernetes_executor_config.proto``). 2.14's Argo compiler
  unmarshals the Kubernetes config strictly (``protojson.Unmarshal`` in
  ``backend/src/v2/compiler/argocompiler/container.go``) and refuses the run; 2.5's driver
  discards unknown fields (``util.UnmarshalString``), so every key becomes mandatory.
- **Parameterised names.** kfp-kubernetes writes ``secretNameParameter`` and ``pvcNameParameter``
  beside the plain ``secretName`` and ``constant``. The protos 2.2.0 to 2.4.x build against
  (``go.mod``: kubernetes_platform 8b2a099e8c9f, d911c8b73b49) lack both, and the 2.2.0 and 2.3.0
  drivers unmarshal strictly (``jsonpb.UnmarshalString`` in ``backend/src/v2/cmd/driver/main.go``):
  every task would fail in its driver.

Also before 2.4.1 the Argo compiler writes no ``retryStrategy``: ``set_retry`` does nothing.
And before 2.14.0 the backend cannot hand a list of artifacts collected from a ``ParallelFor``
(``dsl.Collected``) to a step: #11725, commit ``ed828b513a``, first tagged in 2.14.0. A run of
several members (``members`` > 1) needs it.
"""

from __future__ import annotations

from dataclasses import dataclass

from dec_lib.errors import ConfigError

PIPELINE_JOB_ID = "{{$.pipeline_job_uuid}}"
"""``kfp.dsl.PIPELINE_JOB_ID_PLACEHOLDER``, spelled out: the CLI reads this module before it
imports kfp, which is slow to import."""
WORKFLOW_UID = "{{workflow.uid}}"


@dataclass(frozen=True)
class Backend:
    """One compile target: the oldest backend version it is for, and what differs there."""

    version: str
    covers: str
    """The backend versions this target runs on, in words."""
    run_key: str
    """The placeholder every uncached step gets as its run key, resolved per run."""
    optional_secret: bool
    """Whether the MLflow Secret and each of its keys may be missing."""
    parameterised_names: bool
    """Whether ``secretNameParameter`` and ``pvcNameParameter`` may stay in the package."""
    retries: bool
    """Whether ``set_retry`` reaches Argo (``retryStrategy``)."""
    collected_artifacts: bool
    """Whether a step may take artifacts collected from a ``ParallelFor`` (``members`` > 1)."""


BACKENDS = {
    "2.15": Backend("2.15", "KFP 2.15 and later", PIPELINE_JOB_ID,
                    optional_secret=True, parameterised_names=True, retries=True,
                    collected_artifacts=True),
    "2.5": Backend("2.5", "KFP 2.5 to 2.14 (Kubeflow 1.10.1, 1.10.2)", PIPELINE_JOB_ID,
                   optional_secret=False, parameterised_names=True, retries=True,
                   collected_artifacts=False),
    "2.2": Backend("2.2", "KFP 2.2 to 2.4 (Kubeflow 1.9, 1.10.0)", WORKFLOW_UID,
                   optional_secret=False, parameterised_names=False, retries=False,
                   collected_artifacts=False),
}
DEFAULT_BACKEND = "2.15"
OLDEST_BACKEND = "2.2"


def backend(version: str) -> Backend:
    """The target for ``--kfp-backend``: one of ``BACKENDS``."""
    try:
        return BACKENDS[version]
    except KeyError:
        raise ConfigError("kfp_backend", f"{version!r} is not a target; use one of "
                          f"{', '.join(BACKENDS)} (the oldest backend version you run)") from None


def adapt_platform_spec(platform_spec: dict, target: Backend) -> dict:
    """The compiled Kubernetes platform spec with only the fields ``target`` accepts.

    Fields are removed, never added: ``secretName`` and ``constant`` say the same as the
    parameters dropped beside them, and without ``optional`` a Secret key is required, which
    is what those backends do anyway.
    """
    executors = platform_spec.get("platforms", {}).get("kubernetes", {}) \
        .get("deploymentSpec", {}).get("executors", {})
    for config in executors.values():
        for secret in config.get("secretAsEnv", []):
            if not target.optional_secret:
                secret.pop("optional", None)
            if not target.parameterised_names:
                secret.pop("secretNameParameter", None)
        for volume in config.get("pvcMount", []):
            if not target.parameterised_names:
                volume.pop("pvcNameParameter", None)
    return platform_spec


def required_secret_keys(target: Backend, keys: tuple[str, ...]) -> tuple[str, ...]:
    """The Secret keys a pod cannot start without on ``target``: none where they are optional."""
    return () if target.optional_secret else keys


def compile_package(pipeline, path: str, target: Backend) -> None:
    """Compile ``pipeline`` to ``path`` for ``target``, as kfp writes it for the newest."""
    import yaml
    from kfp import compiler

    compiler.Compiler().compile(pipeline, path)
    if target.optional_secret and target.parameterised_names:
        return  # kfp's own output, untouched
    with open(path, encoding="utf-8") as f:
        docs = list(yaml.safe_load_all(f))
    if len(docs) > 1:
        adapt_platform_spec(docs[1], target)
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump_all(docs, f, sort_keys=True)
