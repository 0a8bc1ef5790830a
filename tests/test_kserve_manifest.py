"""Checks on docker/kserve-inferenceservice.yaml, the KServe InferenceService for the model.

No cluster is needed: the manifest is parsed with PyYAML and read as data. As in
tests/test_docker.py, each property is a function that returns the problems it finds; every test
runs it on the real file (expecting none) and on small broken examples (expecting some), so that
no check can pass by being unable to fail.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "docker" / "kserve-inferenceservice.yaml"

# URI schemes KServe's storage initializer downloads from. A registry URI (models:/, runs:/)
# or a path on the machine that trained the model means nothing inside the cluster.
STORAGE_SCHEMES = ("s3://", "gs://", "https://", "pvc://", "hdfs://", "webhdfs://", "oci://")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_CREDENTIAL_KEY = re.compile(
    r"pass(word|wd)?|secret|token|credential|api[-_]?key|access[-_]?key|private[-_]?key|"
    r"auth|session[-_]?key",
    re.IGNORECASE,
)
# Keys whose names look like credentials but hold only a reference to where they are kept.
_REFERENCE_KEYS = {"serviceAccountName", "secretName", "secretKeyRef", "imagePullSecrets"}
_CREDENTIAL_VALUES = {
    "an AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "a private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "a password in a URI": re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@", re.IGNORECASE),
    "a bearer token": re.compile(r"\bBearer\s+[A-Za-z0-9._~+/-]{16,}", re.IGNORECASE),
    "a GitHub or Slack token": re.compile(r"\b(gh[pousr]_[A-Za-z0-9]{20,}|xox[abpr]-[\w-]{10,})"),
}


# ---------------------------------------------------------------------------------------------
# Reading the manifest


def manifest_text() -> str:
    return MANIFEST.read_text()


def load_documents(text: str) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def inference_service() -> dict[str, Any]:
    documents = load_documents(manifest_text())
    assert len(documents) == 1, f"expected one document, found {len(documents)}"
    return documents[0]


def _get(doc: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(doc, dict) or key not in doc:
            return None
        doc = doc[key]
    return doc


def _items(node: Any, path: str = "") -> Iterator[tuple[str, str, Any]]:
    """Every (path, key, value) below ``node``, list items keyed by their index."""
    if isinstance(node, dict):
        pairs = node.items()
    elif isinstance(node, list):
        pairs = enumerate(node)
    else:
        return
    for key, value in pairs:
        where = f"{path}.{key}" if path else str(key)
        yield where, str(key), value
        yield from _items(value, where)


# ---------------------------------------------------------------------------------------------
# Properties


def problems_structure(doc: dict[str, Any]) -> list[str]:
    problems = []
    if doc.get("apiVersion") != "serving.kserve.io/v1beta1":
        problems.append(f"apiVersion is {doc.get('apiVersion')!r}, not serving.kserve.io/v1beta1")
    if doc.get("kind") != "InferenceService":
        problems.append(f"kind is {doc.get('kind')!r}, not InferenceService")
    name = _get(doc, "metadata", "name")
    if not isinstance(name, str) or not _DNS_LABEL.fullmatch(name):
        problems.append(f"metadata.name {name!r} is not a DNS-1123 label")
    model = _get(doc, "spec", "predictor", "model")
    if not isinstance(model, dict):
        return [*problems, "spec.predictor.model is missing"]
    if _get(model, "modelFormat", "name") != "mlflow":
        problems.append(f"modelFormat.name is {_get(model, 'modelFormat', 'name')!r}, not mlflow")
    if model.get("protocolVersion") != "v2":
        problems.append(f"protocolVersion is {model.get('protocolVersion')!r}, not v2")
    return problems


def problems_storage_uri(doc: dict[str, Any]) -> list[str]:
    uri = _get(doc, "spec", "predictor", "model", "storageUri")
    if not isinstance(uri, str) or not uri:
        return ["spec.predictor.model.storageUri is missing"]
    if not uri.startswith(STORAGE_SCHEMES):
        return [f"storageUri {uri!r} is not one KServe can download "
                f"(expected one of {', '.join(STORAGE_SCHEMES)})"]
    return []


def _quantity(value: Any) -> float | None:
    """A Kubernetes quantity ("500m", "2", "4Gi", "512M") as a number, or None if malformed."""
    units = {"m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
             "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?", str(value))
    if match is None or isinstance(value, bool):
        return None
    return float(match.group(1)) * units[match.group(2) or ""]


def problems_resources(doc: dict[str, Any]) -> list[str]:
    resources = _get(doc, "spec", "predictor", "model", "resources")
    if not isinstance(resources, dict):
        return ["spec.predictor.model.resources is missing"]
    problems = []
    for resource in ("cpu", "memory"):
        amounts = {}
        for bound in ("requests", "limits"):
            raw = _get(resources, bound, resource)
            amounts[bound] = _quantity(raw)
            if raw is None:
                problems.append(f"resources.{bound}.{resource} is missing")
            elif amounts[bound] is None or amounts[bound] <= 0:
                problems.append(f"resources.{bound}.{resource} {raw!r} is not a positive quantity")
        if None not in amounts.values() and amounts["requests"] > amounts["limits"]:
            problems.append(f"{resource} request is above its limit")
    return problems


def problems_service_account(doc: dict[str, Any]) -> list[str]:
    name = _get(doc, "spec", "predictor", "serviceAccountName")
    if not isinstance(name, str) or not _DNS_LABEL.fullmatch(name):
        return [f"spec.predictor.serviceAccountName {name!r} is missing or not a valid name "
                "(storage credentials come through it)"]
    return []


def problems_inline_credentials(text: str) -> list[str]:
    """Credentials written into the manifest, in its data or its comments."""
    problems = []
    for what, pattern in _CREDENTIAL_VALUES.items():
        if pattern.search(text):
            problems.append(f"the file contains {what}")
    for doc in load_documents(text):
        if isinstance(doc, dict) and doc.get("kind") == "Secret":
            problems.append("the file defines a Secret; create it apart from the manifest")
        for where, key, value in _items(doc):
            if key in _REFERENCE_KEYS or not _CREDENTIAL_KEY.search(key):
                continue
            if value not in (None, "", {}, []):
                problems.append(f"{where}: a credential-looking key with an inline value")
        for where, _, value in _items(doc):
            # Environment variables: a credential-looking name needs valueFrom, not value.
            if isinstance(value, dict) and isinstance(value.get("name"), str) \
                    and _CREDENTIAL_KEY.search(value["name"]) and "value" in value:
                problems.append(f"{where}: {value['name']} is set inline; use valueFrom")
    return problems


# ---------------------------------------------------------------------------------------------
# The real manifest


def test_the_manifest_is_one_inference_service_serving_mlflow_over_v2():
    assert problems_structure(inference_service()) == []


def test_the_storage_uri_is_one_kserve_can_download():
    assert problems_storage_uri(inference_service()) == []


def test_requests_and_limits_are_set_for_cpu_and_memory():
    assert problems_resources(inference_service()) == []


def test_storage_credentials_come_through_a_service_account():
    assert problems_service_account(inference_service()) == []


def test_no_credentials_are_written_into_the_manifest():
    assert problems_inline_credentials(manifest_text()) == []


def test_the_comments_say_how_to_find_the_storage_uri():
    text = manifest_text()
    assert "get_model_version_download_uri" in text and "source" in text


# ---------------------------------------------------------------------------------------------
# Each check can fail


def _broken(edit) -> dict[str, Any]:
    doc = copy.deepcopy(inference_service())
    edit(doc)
    return doc


def _model(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["predictor"]["model"]


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda d: d.update(apiVersion="serving.kubeflow.org/v1alpha2"), id="api"),
        pytest.param(lambda d: d.update(kind="Deployment"), id="kind"),
        pytest.param(lambda d: d["metadata"].update(name="DEC_mnist"), id="name"),
        pytest.param(lambda d: _model(d).update(modelFormat={"name": "tensorflow"}),
                     id="model format"),
        pytest.param(lambda d: _model(d).pop("protocolVersion"), id="no protocol"),
        pytest.param(lambda d: _model(d).update(protocolVersion="v1"), id="protocol v1"),
        pytest.param(lambda d: d["spec"]["predictor"].pop("model"), id="no model"),
    ],
)
def test_structure_check_rejects(edit):
    assert problems_structure(_broken(edit))


@pytest.mark.parametrize(
    "uri",
    [None, "", "models:/dec-mnist@champion", "runs:/0123/model", "/home/me/mlartifacts/model",
     "file:///tmp/model", "mlflow-artifacts:/1/models/m-1/artifacts"],
)
def test_storage_uri_check_rejects(uri):
    assert problems_storage_uri(_broken(lambda d: _model(d).update(storageUri=uri)))


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda d: _model(d).pop("resources"), id="none"),
        pytest.param(lambda d: _model(d)["resources"].pop("limits"), id="no limits"),
        pytest.param(lambda d: _model(d)["resources"]["requests"].pop("memory"),
                     id="no memory request"),
        pytest.param(lambda d: _model(d)["resources"]["limits"].update(cpu="lots"),
                     id="malformed"),
        pytest.param(lambda d: _model(d)["resources"]["limits"].update(memory="0"), id="zero"),
        pytest.param(lambda d: _model(d)["resources"]["requests"].update(memory="64Gi"),
                     id="request over limit"),
    ],
)
def test_resources_check_rejects(edit):
    assert problems_resources(_broken(edit))


@pytest.mark.parametrize("name", [None, "", "Not A Name"])
def test_service_account_check_rejects(name):
    def edit(doc):
        doc["spec"]["predictor"]["serviceAccountName"] = name

    assert problems_service_account(_broken(edit))


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param("    env:\n      - name: AWS_SECRET_ACCESS_KEY\n        value: abc123\n",
                     id="env value"),
        pytest.param("    env:\n      - name: MLFLOW_TRACKING_TOKEN\n        value: t0k3n\n",
                     id="token env"),
        pytest.param("    password: hunter2\n", id="password key"),
        pytest.param("    awsAccessKeyId: AKIAABCDEFGHIJKLMNOP\n", id="AWS key id"),
        pytest.param("# storage: s3://reader:s3cr3t@minio.example.com/models\n",
                     id="password in a URI comment"),
        pytest.param("    caBundle: |\n      -----BEGIN RSA PRIVATE KEY-----\n", id="private key"),
        pytest.param("---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: s3\n",
                     id="a Secret document"),
    ],
)
def test_credential_check_rejects(extra):
    assert problems_inline_credentials(manifest_text() + extra)


def test_credential_check_accepts_references():
    extra = ("    env:\n      - name: AWS_SECRET_ACCESS_KEY\n        valueFrom:\n"
             "          secretKeyRef: {name: s3, key: secret}\n")
    assert problems_inline_credentials(manifest_text() + extra) == []


# ---------------------------------------------------------------------------------------------
# The serving runtime the InferenceService names (docker/kserve-servingruntime.yaml)

RUNTIME_MANIFEST = ROOT / "docker" / "kserve-servingruntime.yaml"
RUNTIME_KINDS = ("ServingRuntime", "ClusterServingRuntime")
SERVING_UID = 10001  # docker/Dockerfile.serving's USER


def serving_runtime() -> dict[str, Any]:
    documents = load_documents(RUNTIME_MANIFEST.read_text())
    assert len(documents) == 1, f"expected one document, found {len(documents)}"
    return documents[0]


def _runtime_env(runtime: dict[str, Any]) -> dict[str, Any]:
    (container,) = _get(runtime, "spec", "containers") or [{}]
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def problems_runtime(runtime: dict[str, Any], service: dict[str, Any]) -> list[str]:
    """The runtime serves what the InferenceService asks for, as the project's code expects."""
    problems = []
    if runtime.get("apiVersion") != "serving.kserve.io/v1alpha1":
        problems.append(f"apiVersion is {runtime.get('apiVersion')!r}")
    if runtime.get("kind") not in RUNTIME_KINDS:
        problems.append(f"kind is {runtime.get('kind')!r}, not one of {RUNTIME_KINDS}")
    name = _get(runtime, "metadata", "name")
    if _get(service, "spec", "predictor", "model", "runtime") != name:
        problems.append(f"the InferenceService does not name the runtime {name!r}")
    formats = [f.get("name") for f in _get(runtime, "spec", "supportedModelFormats") or []]
    if _get(service, "spec", "predictor", "model", "modelFormat", "name") not in formats:
        problems.append(f"the runtime supports {formats}, not the service's model format")
    protocol = _get(service, "spec", "predictor", "model", "protocolVersion")
    if protocol not in (_get(runtime, "spec", "protocolVersions") or []):
        problems.append(f"the runtime does not speak the service's protocol {protocol!r}")
    containers = _get(runtime, "spec", "containers") or []
    if len(containers) != 1 or containers[0].get("name") != "kserve-container":
        return [*problems, "expected one container named kserve-container"]
    image = containers[0].get("image", "")
    if not re.fullmatch(r"[\w.\-/]+/dec-serving:[\w.\-]+", image):
        problems.append(f"image {image!r} is not the project's dec-serving image")
    security = containers[0].get("securityContext") or {}
    if security.get("runAsNonRoot") is not True or security.get("runAsUser") != SERVING_UID:
        problems.append(f"the container must run as non-root uid {SERVING_UID}")
    implementation = _runtime_env(runtime).get("MLSERVER_MODEL_IMPLEMENTATION", "")
    module, _, cls = implementation.rpartition(".")
    source = ROOT / (module.replace(".", "/") + ".py")
    if not source.is_file() or f"class {cls}(" not in source.read_text():
        problems.append(f"MLSERVER_MODEL_IMPLEMENTATION {implementation!r} is not a class here")
    if _runtime_env(runtime).get("MLSERVER_MODEL_URI") != "/mnt/models":
        problems.append("MLSERVER_MODEL_URI is not /mnt/models, where KServe puts the model")
    return problems


def test_the_inference_service_names_a_runtime_that_serves_it():
    assert problems_runtime(serving_runtime(), inference_service()) == []


def test_the_runtime_has_no_inline_credentials():
    assert problems_inline_credentials(RUNTIME_MANIFEST.read_text()) == []


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda r, s: s["spec"]["predictor"]["model"].pop("runtime"),
                     id="service names no runtime"),
        pytest.param(lambda r, s: r.update(kind="Deployment"), id="kind"),
        pytest.param(lambda r, s: r["spec"].update(protocolVersions=["v1"]), id="protocol"),
        pytest.param(lambda r, s: r["spec"].update(supportedModelFormats=[{"name": "sklearn"}]),
                     id="format"),
        pytest.param(lambda r, s: r["spec"]["containers"][0]["securityContext"].update(
            runAsUser=0), id="root"),
        pytest.param(lambda r, s: r["spec"]["containers"][0].update(
            image="docker.io/seldonio/mlserver:1.7.1"), id="stock image"),
        pytest.param(lambda r, s: r["spec"]["containers"][0]["env"].__setitem__(
            2, {"name": "MLSERVER_MODEL_IMPLEMENTATION", "value": "dec_lib.nowhere.Runtime"}),
            id="no such class"),
    ],
)
def test_runtime_check_rejects(edit):
    runtime, service = copy.deepcopy(serving_runtime()), copy.deepcopy(inference_service())
    edit(runtime, service)
    assert problems_runtime(runtime, service)
