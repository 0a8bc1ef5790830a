"""A stand-in for the KFP backend where the real one cannot run here.

Three things the backend does to a compiled package, each read in kubeflow/pipelines at the tag
named (the repository's ``backend/`` and the protos its ``go.mod`` pins):

- which fields of the Kubernetes platform spec it accepts (``ACCEPTED``);
- how a task's input parameters reach the step (``inputs_as_resolved``): ``{{workflow.uid}}``
  replaced in the whole workflow, then the driver's placeholders;
- the executor command it runs, with ``{{$}}`` replaced by the executor input (``run_executor``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Fields each backend's proto of the Kubernetes executor config has, by message, in JSON
# spelling. A field outside them fails the run: strictly unmarshalled by the 2.2.0/2.3.0 driver
# (jsonpb.UnmarshalString in backend/src/v2/cmd/driver/main.go) and by the 2.14+ Argo compiler
# (protojson.Unmarshal in backend/src/v2/compiler/argocompiler/container.go); 2.5's driver drops
# it instead (util.UnmarshalString, AllowUnknownFields), which for ``optional`` makes a Secret
# key required. Sources: kubernetes_platform/proto/kubernetes_executor_config.proto at the
# version go.mod pins (2.2.0: 8b2a099e8c9f; 2.3.0 and 2.4.x: d911c8b73b49; from 2.5.0 the
# repository's own, via a replace directive); InputParameterSpec and ValueOrRuntimeParameter from
# api/v2alpha1/pipeline_spec.proto (2.2.0: api 58ce09e07d03; 2.5.0 on: the repository's own).
_EXECUTOR_CONFIG_2_2 = {
    "secretAsVolume", "secretAsEnv", "pvcMount", "nodeSelector", "podMetadata",
    "imagePullSecret", "imagePullPolicy", "configMapAsVolume", "configMapAsEnv",
    "activeDeadlineSeconds", "fieldPathAsEnv", "tolerations", "genericEphemeralVolume",
    "nodeAffinity", "podAffinity"}
_EXECUTOR_CONFIG_2_3 = _EXECUTOR_CONFIG_2_2 | {"enabledSharedMemory", "emptyDirMounts"}
_PARAMETER_SPECS = {
    "InputParameterSpec": {"taskOutputParameter", "runtimeValue", "componentInputParameter",
                           "taskFinalStatus", "parameterExpressionSelector"},
    "ValueOrRuntimeParameter": {"constantValue", "runtimeParameter", "constant"},
    "SecretKeyToEnvMap": {"secretKey", "envVar"},
}
_OLD = {
    **_PARAMETER_SPECS,
    "SecretAsEnv": {"secretName", "keyToEnv"},
    "PvcMount": {"taskOutputParameter", "constant", "componentInputParameter", "mountPath"},
    "NodeSelector": {"labels"},
    "Toleration": {"key", "operator", "value", "effect", "tolerationSeconds"},
}
_2_5 = {
    **_OLD,
    "KubernetesExecutorConfig": _EXECUTOR_CONFIG_2_3,
    "SecretAsEnv": {"secretName", "keyToEnv", "secretNameParameter"},
    "PvcMount": _OLD["PvcMount"] | {"pvcNameParameter"},
    "NodeSelector": {"labels", "nodeSelectorJson"},
    "Toleration": _OLD["Toleration"] | {"tolerationJson"},
}
ACCEPTED = {
    "2.2": {**_OLD, "KubernetesExecutorConfig": _EXECUTOR_CONFIG_2_2},
    "2.3": {**_OLD, "KubernetesExecutorConfig": _EXECUTOR_CONFIG_2_3},
    "2.5": _2_5,
    "2.14": _2_5,  # the same messages as 2.5
    "2.15": {**_2_5, "SecretAsEnv": _2_5["SecretAsEnv"] | {"optional"}},
}
TARGET_COVERS = {"2.15": ("2.15",), "2.5": ("2.5", "2.14"), "2.2": ("2.2", "2.3")}
"""The backend versions each ``--kfp-backend`` target must satisfy (2.4.x: 2.3's protos)."""

_CHILDREN = {
    "KubernetesExecutorConfig": {"secretAsEnv": "SecretAsEnv", "pvcMount": "PvcMount",
                                 "nodeSelector": "NodeSelector", "tolerations": "Toleration"},
    "SecretAsEnv": {"keyToEnv": "SecretKeyToEnvMap", "secretNameParameter": "InputParameterSpec"},
    "PvcMount": {"pvcNameParameter": "InputParameterSpec"},
    "InputParameterSpec": {"runtimeValue": "ValueOrRuntimeParameter"},
}


def refused_fields(platform_spec: dict, version: str) -> list[str]:
    """The platform spec's fields backend ``version`` does not know, as paths."""
    executors = platform_spec["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    refused: list[str] = []

    def visit(value, message: str, path: str) -> None:
        if isinstance(value, list):
            for i, item in enumerate(value):
                visit(item, message, f"{path}[{i}]")
            return
        known = ACCEPTED[version].get(message)
        if known is None or not isinstance(value, dict):
            return  # a message none of the packages use, or a scalar or map
        for field, inner in value.items():
            if field not in known:
                refused.append(f"{path}.{field}")
            elif field in _CHILDREN.get(message, {}):
                visit(inner, _CHILDREN[message][field], f"{path}.{field}")

    for label, config in executors.items():
        visit(config, "KubernetesExecutorConfig", label)
    return refused


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def inputs_as_resolved(spec: dict, task: str, *, backend: str, run_id: str,
                       display_name: str = "", run_name: str = "dec-pipeline-x7k2p",
                       arguments: dict | None = None) -> dict:
    """The input parameters task ``task`` receives on ``backend`` for one run.

    The Argo compiler embeds the task spec in the workflow as JSON
    (backend/src/v2/compiler/argocompiler/dag.go, stablyMarshalJSON); the API server replaces
    every ``{{workflow.uid}}`` in that workflow with the run's id, and for a recurring run the
    scheduled-workflow controller does with a fresh one (``ReplaceUID`` in
    backend/src/apiserver/template/v2_template.go and
    backend/src/crd/controller/scheduledworkflow/util/scheduled_workflow.go, 2.2.0 to 2.15.0).
    From 2.5.0 the driver then replaces a constant that *is* one of its placeholders
    (backend/src/v2/driver/driver.go in 2.5.0, resolve.go from 2.14.0); before, none.
    ``display_name`` is empty for a recurring run (the job's display name is not the run's).
    """
    task_json = json.dumps(spec["root"]["dag"]["tasks"][task]).replace("{{workflow.uid}}",
                                                                      run_id)
    task_spec = json.loads(task_json)
    given = {name: definition.get("defaultValue") for name, definition in
             spec["root"]["inputDefinitions"]["parameters"].items()}
    given.update(arguments or {})
    placeholders = {"{{$.pipeline_job_name}}": display_name,
                    "{{$.pipeline_job_resource_name}}": run_name,
                    "{{$.pipeline_job_uuid}}": run_id,
                    "{{$.pipeline_task_name}}": task}
    values = {}
    for name, parameter in task_spec["inputs"]["parameters"].items():
        if "componentInputParameter" in parameter:
            values[name] = given[parameter["componentInputParameter"]]
        else:
            constant = parameter["runtimeValue"]["constant"]
            if _version(backend) >= (2, 5) and isinstance(constant, str):
                constant = placeholders.get(constant, constant)
            values[name] = constant
    return values


def run_executor(spec: dict, task: str, parameters: dict, workdir: Path,
                 artifacts: dict[str, str] | None = None, env: dict | None = None
                 ) -> tuple[subprocess.CompletedProcess, dict]:
    """Run ``task``'s executor command from the package, as the launcher does.

    The launcher replaces ``{{$}}`` in the arguments with the executor input: parameter values,
    the input artifacts' URIs (``artifacts``, by input name) and each output artifact's URI
    (backend/src/v2/component/launcher_v2.go). Locally an artifact's path is its URI. Returns
    the process and the executor output it wrote.
    """
    component = spec["root"]["dag"]["tasks"][task]["componentRef"]["name"]
    label = spec["components"][component]["executorLabel"]
    container = spec["deploymentSpec"]["executors"][label]["container"]
    outputs = spec["components"][component].get("outputDefinitions", {}).get("artifacts", {})
    inputs = spec["components"][component].get("inputDefinitions", {}).get("artifacts", {})
    workdir.mkdir(parents=True, exist_ok=True)
    executor_input = {
        "inputs": {"parameterValues": parameters, "artifacts": {
            name: {"artifacts": [{"name": name, "uri": uri, "metadata": {}, "type": {
                "schemaTitle": inputs[name]["artifactType"]["schemaTitle"]}}]}
            for name, uri in (artifacts or {}).items()}},
        "outputs": {
            "artifacts": {name: {"artifacts": [{
                "name": name, "type": {"schemaTitle": output["artifactType"]["schemaTitle"]},
                "uri": str(workdir / name), "metadata": {}}]} for name, output in outputs.items()},
            "outputFile": str(workdir / "executor_output.json"),
        },
    }
    args = [json.dumps(executor_input) if arg == "{{$}}" else arg for arg in container["args"]]
    environment = {**os.environ, **(env or {}),
                   "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                   "PYTHONPATH": str(REPO)}
    for variable in container.get("env", []):
        environment[variable["name"]] = variable["value"]
    process = subprocess.run([*container["command"], *args], capture_output=True, text=True,
                             env=environment, timeout=300, cwd=workdir)
    written = workdir / "executor_output.json"
    return process, (json.loads(written.read_text()) if written.exists() else {})
