"""The events a step reports to whoever runs it, and how the local CLI reads them."""

from __future__ import annotations

import json
import logging

import pytest

from dec_lib.runtime import events
from dec_lib.runtime.progress import log_line, setup_logging
from pipelines.cli import StepOutput


def test_an_emitted_event_reads_back_as_it_was_written(capsys):
    events.emit(events.RUN, run_id="abc123")
    events.emit(events.ERROR, message="ingest: x.npz: no such file")
    lines = capsys.readouterr().err.splitlines()
    assert [events.parse(line) for line in lines] == [
        events.Event("run", {"run_id": "abc123"}),
        events.Event("error", {"message": "ingest: x.npz: no such file"})]


@pytest.mark.parametrize("line", [
    "13:04:36 INFO    dec.steps: ingest: started",
    '{"message": "no marker"}',
    '{"dec_event": "unknown", "message": "x"}',
    '{"dec_event": "error", "message": ',
    '["dec_event", "error"]',
    "",
])
def test_no_other_line_passes_for_an_event(line):
    assert events.parse(line) is None


def test_an_unknown_kind_is_refused_when_written():
    with pytest.raises(ValueError, match="unknown event kind"):
        events.emit("progress", message="x")  # type: ignore[arg-type]


def test_a_step_logs_events_that_the_cli_turns_back_into_the_text_line(capsys):
    setup_logging("INFO", events=True)
    try:
        logging.getLogger("dec.steps").info("pretrain: epoch %s", "3/10 (30%), ETA 20s")
        (line,) = capsys.readouterr().err.splitlines()
        event = events.parse("    " + line)  # kfp.local indents what it relays
        assert event.kind == events.LOG and json.loads(line)["severity"] == "INFO"
        text = log_line(event.fields)
        assert text.endswith(" INFO    dec.steps: pretrain: epoch 3/10 (30%), ETA 20s")
    finally:
        setup_logging("INFO")


def test_the_cli_shows_log_events_and_keeps_errors_and_runs_to_itself(tmp_path, capsys):
    log = tmp_path / "run.log"
    record = {"time": "13:04:36", "severity": "INFO", "logger": "dec.steps",
              "message": "pretrain: epoch 1/2 (50%), ETA 3s"}
    relayed = [
        "    [KFP Executor 2026-11-30 13:04:34,632 INFO]: Looking for component `ingest`\n",
        "    " + json.dumps({"dec_event": "run", "run_id": "r1"}) + "\n",
        # the docker runner relays chunks that split lines anywhere
        "    " + json.dumps({"dec_event": "log", **record})[:20],
        json.dumps({"dec_event": "log", **record})[20:] + "\n",
        "    " + json.dumps({"dec_event": "run", "run_id": "r1"}) + "\n",
        "    " + json.dumps({"dec_event": "error", "message": "ingest: bad data"}) + "\n",
        "    2026/11/30 13:04:36 INFO mlflow.store.db.utils: Creating initial tables",
    ]
    with StepOutput(log, show_all=False) as output:
        for text in relayed:
            print(text, end="")
    shown = capsys.readouterr().out.splitlines()
    assert shown == ["13:04:36 INFO    dec.steps: pretrain: epoch 1/2 (50%), ETA 3s"]
    assert output.run_ids == ["r1"] and output.errors == ["ingest: bad data"]
    written = log.read_text().splitlines()
    assert written == [
        "    [KFP Executor 2026-11-30 13:04:34,632 INFO]: Looking for component `ingest`",
        "    13:04:36 INFO    dec.steps: pretrain: epoch 1/2 (50%), ETA 3s",
        "    2026/11/30 13:04:36 INFO mlflow.store.db.utils: Creating initial tables"]
    assert output.tail == [line + "\n" for line in written]


def test_with_verbose_the_cli_shows_every_line_but_no_event_json(tmp_path, capsys):
    with StepOutput(tmp_path / "run.log", show_all=True):
        print("    other output")
        print("    " + json.dumps({"dec_event": "run", "run_id": "r1"}))
    assert capsys.readouterr().out.splitlines() == ["    other output"]
