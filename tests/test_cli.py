"""The command line: flags users rely on, help, and one-line errors."""

import pytest

from pipelines.cli import main, make_parser


def test_every_command_has_help(capsys):
    for command in (["run"], ["compile"], ["predict"], ["submit"], ["schedule"],
                    ["config", "show"]):
        with pytest.raises(SystemExit) as exit_info:
            main([*command, "--help"])
        assert exit_info.value.code == 0
        assert "usage: dec-pipeline" in capsys.readouterr().out


def test_run_accepts_the_documented_flags():
    args = make_parser().parse_args([
        "run", "--preset", "seed", "--dataset", "mnist", "--seed", "3", "--set",
        "pretrain.epochs=2", "--set", "dec.tol=0", "--work-dir", "w", "--mlflow-uri",
        "sqlite:///x.db", "--model-name", "m", "--summary", "s.json"])
    assert (args.preset, args.seed, args.set, args.model_name) == (
        "seed", 3, ["pretrain.epochs=2", "dec.tol=0"], "m")


def test_config_show_applies_preset_then_flags_then_set(capsys):
    assert main(["config", "show", "--preset", "seed", "--seed", "5", "--dataset", "x.npz",
                 "--set", "pretrain.epochs=7", "--set", "seed=6"]) == 0
    shown = dict(line.split(" = ", 1) for line in capsys.readouterr().out.splitlines())
    assert shown["pretrain.epochs"] == "7"
    assert shown["pretrain.optimizer"] == '"sgd"'  # from the seed preset
    assert shown["seed"] == "6"  # --set wins over --seed
    assert shown["data.dataset"] == '"x.npz"'


@pytest.mark.parametrize("assignment, key", [
    ("pretrain.epochs=-1", "pretrain.epochs"),
    ("dec.tol=abc", "dec.tol"),
    ("nonsense.key=1", "nonsense.key"),
    ("init.method=spectral", "init.method"),
])
def test_bad_settings_give_one_error_line_and_exit_1(assignment, key, capsys):
    assert main(["config", "show", "--set", assignment]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and key in err[0]


def test_a_missing_dataset_is_refused_before_the_pipeline_starts(tmp_path, capsys):
    missing = tmp_path / "nope.npz"
    assert main(["run", "--preset", "quick", "--dataset", str(missing),
                 "--work-dir", str(tmp_path / "w")]) == 1
    assert str(missing) in capsys.readouterr().err
    assert not (tmp_path / "w" / "mlflow.db").exists()
