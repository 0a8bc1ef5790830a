"""Configuration files: round trips, precedence (preset < file < overrides), and every error."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import yaml

from dec_lib.config import PRESETS, RunConfig, preset
from dec_lib.config.files import (
    MAX_CONFIG_BYTES,
    config_from_file,
    dump_config,
    field_docs,
    format_config,
    load_config_file,
)
from dec_lib.errors import ConfigError, DataError


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".toml"])
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_dump_then_load_gives_the_same_config(tmp_path, name, suffix):
    config = preset(name).with_overrides(["seed=7", "autoencoder.hidden_dims=[64,32]",
                                          "pretrain.learning_rate=1e-5",
                                          "data.dataset=/data/my digits: v2.npz"])
    path = dump_config(config, tmp_path / f"config{suffix}")
    assert config_from_file(path) == config
    # The written file is plain YAML/TOML that other tools read too.
    parsed = (tomllib.loads if suffix == ".toml" else yaml.safe_load)(path.read_text())
    assert parsed["pretrain"]["learning_rate"] == pytest.approx(1e-5)


def test_dumped_file_documents_each_setting_from_the_dataclass_docstrings(tmp_path):
    text = format_config(preset("default"))
    assert "# Degrees of freedom of the Student's t kernel." in text
    assert "  alpha: 1.0" in text
    assert field_docs()["init.method"].startswith("kmeans on the embedding")
    assert all(len(line) <= 100 for line in text.splitlines())


def test_none_round_trips_through_toml_which_has_no_null(tmp_path):
    config = preset("default")
    assert config.data.n_samples is None
    text = format_config(config, "toml")
    assert 'n_samples = "none"' in text
    assert config_from_file(_write(tmp_path, "c.toml", text)).data.n_samples is None


def test_precedence_is_preset_then_file_then_overrides(tmp_path):
    path = _write(tmp_path, "run.yaml", """
preset: quick
pretrain:
  epochs: 7
dec:
  maxiter: 50
  tol: 0.01
""")
    config = config_from_file(path, ["dec.maxiter=9"])
    assert config.data.n_samples == 2000  # from the preset, untouched by the file
    assert config.pretrain.epochs == 7  # the file beats the preset
    assert config.dec.maxiter == 9  # the override beats the file
    assert config.dec.tol == 0.01
    # Without a preset key, the file starts from "default".
    plain = config_from_file(_write(tmp_path, "plain.yaml", "pretrain: {epochs: 3}\n"))
    assert plain == preset("default").with_overrides({"pretrain.epochs": 3})


def test_a_preset_from_the_command_line_is_used_unless_the_file_names_another(tmp_path):
    plain = _write(tmp_path, "plain.yaml", "pretrain:\n  epochs: 3\n")
    assert config_from_file(plain, base_preset="quick").data.n_samples == 2000
    named = _write(tmp_path, "named.yaml", "preset: quick\n")
    assert config_from_file(named, base_preset="quick") == preset("quick")
    with pytest.raises(ConfigError, match=r"named\.yaml starts from preset 'quick' but 'best'"):
        config_from_file(named, base_preset="best")


def test_dotted_keys_are_nested_in_yaml_and_toml(tmp_path):
    path = _write(tmp_path, "dotted.yaml", """
pretrain.epochs: 50
pretrain:
  batch_size: 64
dec.n_clusters: 12
seed: 3
""")
    assert load_config_file(path) == {"pretrain": {"epochs": 50, "batch_size": 64},
                                      "dec": {"n_clusters": 12}, "seed": 3}
    toml = _write(tmp_path, "dotted.toml", '"pretrain.epochs" = 50\ndec.n_clusters = 12\n')
    assert load_config_file(toml) == {"pretrain": {"epochs": 50}, "dec": {"n_clusters": 12}}
    assert config_from_file(toml).pretrain.epochs == 50


def test_an_empty_file_or_section_changes_nothing(tmp_path):
    assert config_from_file(_write(tmp_path, "empty.yaml", "")) == preset("default")
    commented = _write(tmp_path, "commented.yaml", "pretrain:\n  # epochs: 3\n")
    assert config_from_file(commented) == preset("default")


def test_overrides_may_be_a_dict(tmp_path):
    path = _write(tmp_path, "c.toml", "[dec]\nmaxiter = 5\n")
    assert config_from_file(path, {"dec.maxiter": 6}).dec.maxiter == 6


# ------------------------------------------------------------------------------------- errors

def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.yaml: configuration file not found"):
        load_config_file(tmp_path / "nope.yaml")


def test_unsupported_suffix(tmp_path):
    with pytest.raises(DataError, match=r"c\.json: unsupported .* \.yaml, \.yml or \.toml"):
        load_config_file(_write(tmp_path, "c.json", "{}"))


def test_unparsable_yaml_names_file_and_line(tmp_path):
    path = _write(tmp_path, "bad.yaml", "pretrain:\n  epochs: 5\n  batch_size: [1, 2\n")
    with pytest.raises(DataError, match=r"bad\.yaml: not valid YAML: line \d+, column \d+"):
        load_config_file(path)


def test_unparsable_toml_names_file_and_line(tmp_path):
    path = _write(tmp_path, "bad.toml", "[pretrain]\nepochs = 5\nbatch_size = = 3\n")
    with pytest.raises(DataError, match=r"bad\.toml: not valid TOML: .*line 3"):
        load_config_file(path)


def test_top_level_must_be_a_mapping(tmp_path):
    with pytest.raises(DataError, match=r"list\.yaml: the top level must be a mapping"):
        load_config_file(_write(tmp_path, "list.yaml", "- pretrain\n- dec\n"))


def test_unknown_section_lists_the_known_ones(tmp_path):
    path = _write(tmp_path, "c.yaml", "pretraining:\n  epochs: 5\n")
    with pytest.raises(ConfigError, match=r"c\.yaml.*known: seed, members, combine, preset, data, "
                                          r"autoencoder, pretrain, init, dec") as error:
        load_config_file(path)
    assert error.value.key == "pretraining"


def test_unknown_key_lists_the_section_keys(tmp_path):
    path = _write(tmp_path, "c.toml", "[dec]\nmax_iter = 5\n")
    with pytest.raises(ConfigError, match=r"c\.toml.*known keys of dec: n_clusters, alpha, "
                                          r"maxiter") as error:
        load_config_file(path)
    assert error.value.key == "dec.max_iter"
    with pytest.raises(ConfigError, match="unknown key") as error:
        load_config_file(_write(tmp_path, "d.yaml", "pretrain.epochs.max: 5\n"))
    assert error.value.key == "pretrain.epochs.max"


@pytest.mark.parametrize("text, key, expected", [
    ("pretrain:\n  epochs: fifty\n", "pretrain.epochs", "an integer, got 'fifty'"),
    ("pretrain:\n  epochs: 2.5\n", "pretrain.epochs", "an integer, got 2.5"),
    ("pretrain:\n  epochs: true\n", "pretrain.epochs", "an integer, got True"),
    ("dec:\n  tol: '0.1'\n", "dec.tol", "a finite number, got '0.1'"),
    ("data:\n  dataset: no\n", "data.dataset", r"text, got False \(quote it"),
    ("autoencoder:\n  hidden_dims: 500\n", "autoencoder.hidden_dims", "a list, got 500"),
    ("autoencoder:\n  hidden_dims: [500, x]\n", "autoencoder.hidden_dims", "an integer"),
    pytest.param("registry:\n  warm_start: 1\n", "registry.warm_start", "true or false, got 1",
                 marks=pytest.mark.skipif("registry" not in RunConfig.SECTIONS,
                                          reason="the registry section is not merged yet")),
    ("seed: [1]\n", "seed", "an integer"),
    ("dec: 5\n", "dec", "expected a mapping of settings"),
    ("preset: fastest\n", "preset", "unknown preset 'fastest'.*known: seed, default"),
    ("pretrain.epochs: 5\npretrain:\n  epochs: 6\n", "pretrain.epochs", "set twice"),
])
def test_wrong_values_name_the_key_and_the_file(tmp_path, text, key, expected):
    path = _write(tmp_path, "typed.yaml", text)
    with pytest.raises(ConfigError, match=expected) as error:
        load_config_file(path)
    assert error.value.key == key
    assert "typed.yaml" in str(error.value)


def test_an_impossible_combination_names_the_file(tmp_path):
    path = _write(tmp_path, "c.yaml", "data: {n_samples: 5}\n")  # 10 clusters from 5 images
    with pytest.raises(ConfigError, match=r"c\.yaml") as error:
        config_from_file(path)
    assert error.value.key == "dec.n_clusters"


def test_an_impossible_combination_made_by_an_override_does_not_blame_the_file(tmp_path):
    path = _write(tmp_path, "c.yaml", "pretrain: {epochs: 5}\n")
    with pytest.raises(ConfigError) as error:
        config_from_file(path, ["data.n_samples=5"])
    assert error.value.key == "dec.n_clusters" and "c.yaml" not in str(error.value)
    with pytest.raises(ConfigError) as error:
        config_from_file(path, ["pretrain.epochs=-1"])
    assert error.value.key == "pretrain.epochs" and "c.yaml" not in str(error.value)


def test_an_impossible_value_in_the_file_names_the_file(tmp_path):
    path = _write(tmp_path, "c.toml", "[pretrain]\noptimizer = \"rmsprop\"\n")
    with pytest.raises(ConfigError, match=r"must be 'sgd' or 'adam' .*c\.toml") as error:
        config_from_file(path, ["pretrain.epochs=3"])
    assert error.value.key == "pretrain.optimizer"


def test_a_bad_override_is_reported_as_an_override(tmp_path):
    path = _write(tmp_path, "c.yaml", "pretrain: {epochs: 5}\n")
    with pytest.raises(ConfigError, match="cannot read 'x' as an integer") as error:
        config_from_file(path, ["pretrain.epochs=x"])
    assert error.value.key == "pretrain.epochs"


def test_loaded_values_build_a_valid_config(tmp_path):
    path = _write(tmp_path, "c.toml", "seed = 4\n[data]\nn_samples = 300\n")
    values = load_config_file(path)
    assert RunConfig.from_dict(values) == RunConfig(seed=4).with_overrides(
        ["data.n_samples=300"])


# ------------------------------------------------------------------- hostile files: bounded

def _billion_laughs(levels: int) -> str:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        refs = ", ".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    lines.append(f"pretrain: {{epochs: *a{levels - 1}}}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("levels", [4, 6, 9])
def test_a_yaml_alias_bomb_is_refused_quickly_in_one_short_line(tmp_path, levels):
    import time

    path = _write(tmp_path, "laughs.yaml", _billion_laughs(levels))
    started = time.perf_counter()
    with pytest.raises(DataError, match="alias") as error:
        load_config_file(path)
    # Expanded, nine levels of ten would be 10^9 nodes: minutes. 5 s leaves room for a busy CI.
    assert time.perf_counter() - started < 5
    assert len(str(error.value)) < 300 and "\n" not in str(error.value)


def test_a_few_yaml_aliases_are_still_read(tmp_path):
    path = _write(tmp_path, "anchors.yaml",
                  "autoencoder: {hidden_dims: &dims [64, 32]}\npretrain: {epochs: 5}\n")
    assert load_config_file(path)["autoencoder"]["hidden_dims"] == [64, 32]


def test_a_yaml_alias_that_refers_to_itself_is_refused(tmp_path):
    path = _write(tmp_path, "loop.yaml", "a: &a [*a]\n")
    with pytest.raises(DataError, match="a YAML alias refers to itself"):
        load_config_file(path)


@pytest.mark.parametrize("name,text", [
    ("deep.yaml", "[" * 50_000 + "]" * 50_000 + "\n"),
    ("deep-map.yaml", "{a: " * 50_000 + "1" + "}" * 50_000 + "\n"),
    ("deep.toml", "x = " + "[" * 50_000 + "]" * 50_000 + "\n"),
    ("deep-tables.toml", "x = " + "{a = " * 5_000 + "1" + "}" * 5_000 + "\n"),
])
def test_deeply_nested_files_are_refused_without_a_recursion_error(tmp_path, name, text):
    path = _write(tmp_path, name, text)
    with pytest.raises(DataError, match="nested deeper than 16 levels"):
        load_config_file(path)


def test_a_key_written_twice_in_a_yaml_mapping_is_refused_naming_the_line(tmp_path):
    path = _write(tmp_path, "twice.yaml", "pretrain:\n  epochs: 5\n  epochs: 50\n")
    with pytest.raises(DataError, match=r"'epochs' is written twice \(line 3\)"):
        load_config_file(path)


def test_a_config_file_over_the_size_limit_is_refused_before_parsing(tmp_path):
    path = _write(tmp_path, "big.yaml", "# " + "x" * (MAX_CONFIG_BYTES + 10) + "\n")
    with pytest.raises(DataError, match="larger than 256 KiB"):
        load_config_file(path)


def test_a_fifo_given_as_the_config_file_is_refused_without_blocking(tmp_path):
    import os

    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match="FIFO"):
        load_config_file(fifo)


def test_an_error_about_a_huge_value_quotes_only_a_short_part_of_it(tmp_path):
    path = _write(tmp_path, "long.yaml", "pretrain: {optimizer: " + "x" * 100_000 + "}\n")
    with pytest.raises(ConfigError) as error:
        config_from_file(path)
    assert len(str(error.value)) < 300
    path = _write(tmp_path, "list.yaml", "pretrain: {epochs: [" + "1, " * 5_000 + "1]}\n")
    with pytest.raises(ConfigError) as error:
        load_config_file(path)
    assert len(str(error.value)) < 300
