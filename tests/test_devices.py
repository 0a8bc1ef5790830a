"""GPU present or fail fast: a step given GPUs where TensorFlow sees none."""

from __future__ import annotations

import logging
import uuid

import numpy as np
import pytest
import yaml
from kfp_backend import inputs_as_resolved, run_executor

from dec_lib import steps
from dec_lib.errors import DeviceError
from dec_lib.runtime import events
from dec_lib.runtime.devices import check_gpus, visible_gpus
from pipelines.cli import main


def _no_count():
    raise AssertionError("a step without DEC_GPUS must not load CUDA to count GPUs")


def test_a_step_given_a_gpu_tensorflow_cannot_see_fails_naming_the_cause_and_the_way_out():
    with pytest.raises(DeviceError) as error:
        check_gpus("pretrain", {"DEC_GPUS": "1"}, count_gpus=lambda: 0)
    message = str(error.value)
    assert "given 1 GPU(s)" in message and "TensorFlow sees 0" in message
    assert "LD_LIBRARY_PATH" in message and "--allow-cpu-fallback" in message
    assert "\n" not in message


def test_fewer_gpus_than_given_fail_too():
    with pytest.raises(DeviceError, match="given 2 GPU"):
        check_gpus("pretrain", {"DEC_GPUS": "2"}, count_gpus=lambda: 1)
    check_gpus("pretrain", {"DEC_GPUS": "2"}, count_gpus=lambda: 2)


def test_with_cpu_fallback_a_missing_gpu_is_one_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="dec_lib.runtime.devices"):
        check_gpus("pretrain", {"DEC_GPUS": "1", "DEC_CPU_FALLBACK": "1"},
                   count_gpus=lambda: 0)
    (record,) = caplog.records
    assert "pretrain: given 1 GPU(s)" in record.getMessage()
    assert "training on the CPU" in record.getMessage()


def test_a_step_given_no_gpu_checks_nothing():
    check_gpus("ingest", {}, count_gpus=_no_count)
    check_gpus("ingest", {"DEC_GPUS": ""}, count_gpus=_no_count)


def test_a_garbled_gpu_count_is_an_error_naming_the_variable():
    with pytest.raises(DeviceError, match="DEC_GPUS='one'"):
        check_gpus("pretrain", {"DEC_GPUS": "one"}, count_gpus=lambda: 0)


# --------------------------------------------------- the pretrain executor, run as the backend does

@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpu-check")
    source = root / "images.npz"
    np.savez(source, x=np.random.default_rng(0).random((64, 8, 8), dtype=np.float32))
    uri = f"sqlite:///{root / 'mlflow.db'}"
    steps.ingest({"dataset": str(source)}, 0, str(root / "dataset"),
                 steps.TrackingContext("", uri, "gpu-check"))
    return root / "dataset", uri


def _pretrain(tmp_path, ingested, *options):
    if visible_gpus():
        pytest.skip("this machine has a GPU: the step would see it")
    path = tmp_path / "dec.yaml"
    assert main(["compile", "--output", str(path), *options]) == 0
    spec = next(yaml.safe_load_all(path.read_text()))
    dataset, uri = ingested
    parameters = inputs_as_resolved(spec, "pretrain", backend="2.15", run_id=str(uuid.uuid4()),
                                    arguments={"tracking_uri": uri, "experiment": "gpu-check",
                                               "autoencoder": {"hidden_dims": [16, 16, 32],
                                                               "embedding_dim": 4},
                                               "pretrain_config": {"epochs": 1,
                                                                   "batch_size": 32}})
    process, output = run_executor(spec, "pretrain", parameters, tmp_path / "run",
                                   artifacts={"dataset": str(dataset)})
    reported = map(events.parse, process.stderr.splitlines())
    return process, output, [e.message for e in reported if e and e.kind == events.ERROR]


def test_the_compiled_pretrain_step_without_a_gpu_fails_at_once_with_one_line(
        tmp_path, ingested):
    process, _, errors = _pretrain(tmp_path, ingested)
    assert process.returncode == 1
    (line,) = errors
    assert line.startswith("pretrain: given 1 GPU(s) (DEC_GPUS=1) but TensorFlow sees 0")
    assert "Traceback" not in process.stderr


def test_with_cpu_fallback_the_compiled_pretrain_step_trains_on_the_cpu(tmp_path, ingested):
    process, output, _ = _pretrain(tmp_path, ingested, "--allow-cpu-fallback")
    assert process.returncode == 0, process.stderr[-3000:]
    assert "training on the CPU" in process.stderr
    model = output["artifacts"]["model"]["artifacts"][0]["metadata"]
    assert model["epochs"] >= 1 and model["final_loss"] > 0
