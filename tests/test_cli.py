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


def _shown(capsys) -> dict[str, str]:
    return dict(line.split(" = ", 1) for line in capsys.readouterr().out.splitlines())


@pytest.mark.parametrize("suffix, text", [
    (".yaml", "preset: seed\npretrain:\n  epochs: 11\n  batch_size: 64\nseed: 4\n"),
    (".toml", 'preset = "seed"\nseed = 4\n[pretrain]\nepochs = 11\nbatch_size = 64\n'),
])
def test_config_file_sits_between_the_preset_and_the_flags(tmp_path, capsys, suffix, text):
    path = tmp_path / f"team{suffix}"
    path.write_text(text)
    assert main(["config", "show", "--config", str(path)]) == 0
    shown = _shown(capsys)
    assert (shown["pretrain.epochs"], shown["pretrain.batch_size"], shown["seed"]) == (
        "11", "64", "4")
    assert shown["pretrain.optimizer"] == '"sgd"'  # the file's preset
    assert main(["config", "show", "--config", str(path), "--set", "pretrain.epochs=2",
                 "--seed", "9"]) == 0
    shown = _shown(capsys)
    assert (shown["pretrain.epochs"], shown["pretrain.batch_size"], shown["seed"]) == (
        "2", "64", "9")


def test_submit_assignments_win_over_set_and_the_file(tmp_path):
    from pipelines.cli import build_config

    path = tmp_path / "c.yaml"
    path.write_text("dec:\n  maxiter: 100\n  tol: 0.01\n")
    args = make_parser().parse_args([
        "submit", "--host", "http://kfp", "--config", str(path), "--set", "dec.maxiter=200",
        "dec.maxiter=300"])
    config = build_config(args)
    assert (config.dec.maxiter, config.dec.tol) == (300, 0.01)


def test_a_file_preset_and_another_preset_flag_are_refused(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("preset: quick\n")
    assert main(["config", "show", "--config", str(path), "--preset", "quick"]) == 0
    capsys.readouterr()
    assert main(["config", "show", "--config", str(path), "--preset", "seed"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "quick" in err[0] and "seed" in err[0] and str(path) in err[0]


@pytest.mark.parametrize("content, fragment", [
    (None, "not found"),
    ("pretrain:\n  epochz: 3\n", "pretrain.epochz"),
    ("pretrain: [1, 2\n", "not valid YAML"),
])
def test_bad_config_files_give_one_error_line(tmp_path, capsys, content, fragment):
    path = tmp_path / "c.yaml"
    if content is not None:
        path.write_text(content)
    assert main(["config", "show", "--config", str(path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and fragment in err[0]


@pytest.mark.parametrize("fmt", ["yaml", "toml"])
def test_config_show_writes_a_file_that_reads_back_equal(tmp_path, capsys, fmt):
    from dec_lib.config import preset
    from dec_lib.config.files import config_from_file

    assert main(["config", "show", "--preset", "quick", "--set", "dec.tol=0.02",
                 "--format", fmt]) == 0
    path = tmp_path / f"shown.{fmt}"
    path.write_text(capsys.readouterr().out)
    assert config_from_file(path) == preset("quick").with_overrides(["dec.tol=0.02"])
    assert main(["config", "show", "--config", str(path), "--format", fmt]) == 0
    assert capsys.readouterr().out == path.read_text()


@pytest.mark.parametrize("command", [["run"], ["compile"], ["submit"], ["schedule"],
                                     ["config", "show"]])
def test_help_explains_config_files(command, capsys):
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--config FILE" in out and "YAML" in out and "TOML" in out


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


def test_retraining_best_continues_its_champion_as_one_member():
    """``best`` trains three members; retraining continues the one champion (a mean of members
    included), so ``--retrain`` trains one, and an explicit count above one is refused."""
    from dec_lib.errors import ConfigError
    from pipelines.cli import build_config

    args = make_parser().parse_args(["run", "--preset", "best", "--retrain"])
    config = build_config(args)
    assert (config.members, config.registry.warm_start) == (1, True)
    assert build_config(make_parser().parse_args(["run", "--preset", "best"])).members == 3
    explicit = make_parser().parse_args(["run", "--preset", "best", "--retrain", "--set",
                                         "members=3"])
    with pytest.raises(ConfigError, match="3 members cannot warm-start"):
        build_config(explicit)
