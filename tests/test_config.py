"""RunConfig: presets, typed ``KEY=VALUE`` overrides, dict round trips, and what is refused."""

from __future__ import annotations

import json

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from dec_lib.config import (
    PRESETS,
    AutoencoderConfig,
    DataConfig,
    DECConfig,
    RunConfig,
    preset,
)
from dec_lib.config.convert import NONE_WORDS
from dec_lib.config.files import config_from_file, field_docs
from dec_lib.config.sections import declared_settings
from dec_lib.errors import ConfigError

# --- presets ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_validates_and_survives_a_dict_round_trip(name):
    config = preset(name)
    assert isinstance(config, RunConfig)
    assert RunConfig.from_dict(config.to_dict()) == config


def test_the_seed_preset_is_the_published_recipe():
    config = preset("seed")
    assert config.autoencoder.hidden_dims == [500, 500, 2000]
    assert config.autoencoder.embedding_dim == 10
    assert config.dec.n_clusters == 10
    assert config.dec.alpha == 1.0
    assert config.dec.tol == 0.001


def test_quick_preset_is_small():
    config = preset("quick")
    assert config.data.n_samples == 2000
    # Less work than the default's pass over all 70,000 digits, in every phase.
    default = preset("default")
    assert config.pretrain.epochs * 2000 < default.pretrain.epochs * 70000 / 10
    assert config.dec.maxiter < default.dec.maxiter / 5
    assert config.init.method == default.init.method  # the same code path, smaller


def test_unknown_preset_is_refused_with_the_known_names():
    with pytest.raises(ConfigError, match="default") as info:
        preset("nope")
    assert info.value.key == "preset"


# --- with_overrides: typing by field ---------------------------------------------------------


@pytest.mark.parametrize(
    ("assignment", "getter", "expected"),
    [
        ("pretrain.epochs=5", lambda c: c.pretrain.epochs, 5),
        ("pretrain.batch_size= 64 ", lambda c: c.pretrain.batch_size, 64),
        ("dec.maxiter=200", lambda c: c.dec.maxiter, 200),
        ("dec.update_interval=20", lambda c: c.dec.update_interval, 20),
        ("dec.tol=1e-4", lambda c: c.dec.tol, 1e-4),
        ("dec.tol=0", lambda c: c.dec.tol, 0.0),
        ("data.n_samples=300", lambda c: c.data.n_samples, 300),
        ("data.n_samples=none", lambda c: c.data.n_samples, None),
        ("data.n_samples=None", lambda c: c.data.n_samples, None),
        ("data.n_samples=null", lambda c: c.data.n_samples, None),
        ("seed=7", lambda c: c.seed, 7),
        ("pretrain.optimizer=sgd", lambda c: c.pretrain.optimizer, "sgd"),
        ("data.dataset=/data/digits.npz", lambda c: c.data.dataset, "/data/digits.npz"),
        ("autoencoder.hidden_dims=[64, 64,128]", lambda c: c.autoencoder.hidden_dims,
         [64, 64, 128]),
        ("autoencoder.hidden_dims=32,16", lambda c: c.autoencoder.hidden_dims, [32, 16]),
    ],
)
def test_overrides_are_typed_by_the_field_they_set(assignment, getter, expected):
    value = getter(preset("default").with_overrides([assignment]))
    assert value == expected
    assert type(value) is type(expected)


def test_required_pipeline_keys_are_all_accepted_together():
    config = preset("default").with_overrides([
        "pretrain.epochs=3", "pretrain.batch_size=32", "dec.maxiter=50",
        "dec.update_interval=10", "dec.tol=0.01", "data.n_samples=500",
    ])
    assert (config.pretrain.epochs, config.pretrain.batch_size) == (3, 32)
    assert (config.dec.maxiter, config.dec.update_interval, config.dec.tol) == (50, 10, 0.01)
    assert config.data.n_samples == 500


def test_a_preset_with_overrides_is_the_preset_overridden():
    assert preset("quick", ["dec.tol=0.1", "seed=3"]) == preset("quick").with_overrides(
        ["dec.tol=0.1", "seed=3"])
    assert preset("quick", {"dec.tol": 0.1}).dec.tol == 0.1


def test_overrides_return_a_copy_and_leave_the_original_alone():
    base = preset("default")
    changed = base.with_overrides(["pretrain.epochs=5"])
    assert changed.pretrain.epochs == 5
    assert base.pretrain.epochs == 40


def test_later_assignments_of_one_key_win():
    config = preset("default").with_overrides(["dec.maxiter=10", "dec.maxiter=20"])
    assert config.dec.maxiter == 20


def test_overrides_accept_a_dict_of_already_parsed_values():
    config = preset("default").with_overrides(
        {"pretrain.epochs": 40.0, "dec.tol": 0, "data.n_samples": None,
         "autoencoder.hidden_dims": [8.0, 4]}
    )
    assert config.pretrain.epochs == 40 and type(config.pretrain.epochs) is int
    assert config.dec.tol == 0.0 and type(config.dec.tol) is float
    assert config.data.n_samples is None
    assert config.autoencoder.hidden_dims == [8, 4]
    assert all(type(d) is int for d in config.autoencoder.hidden_dims)


# --- with_overrides: refusals naming the key -------------------------------------------------


@pytest.mark.parametrize(
    ("assignment", "key"),
    [
        ("pretrain.foo=1", "pretrain.foo"),
        ("foo=1", "foo"),
        ("bar.epochs=1", "bar.epochs"),
        ("pretrain=1", "pretrain"),
        ("pretrain.epochs.x=1", "pretrain.epochs.x"),
        ("data.data.n_samples=1", "data.data.n_samples"),
        ("SECTIONS=1", "SECTIONS"),
    ],
)
def test_unknown_keys_are_refused_naming_the_key(assignment, key):
    with pytest.raises(ConfigError, match="unknown key") as info:
        preset("default").with_overrides([assignment])
    assert info.value.key == key
    assert "pretrain.epochs" in str(info.value)  # the message lists the known keys


@pytest.mark.parametrize(
    ("assignment", "key"),
    [
        ("pretrain.epochs=abc", "pretrain.epochs"),
        ("pretrain.epochs=5.5", "pretrain.epochs"),
        ("pretrain.epochs=true", "pretrain.epochs"),
        ("dec.tol=small", "dec.tol"),
        ("dec.tol=nan", "dec.tol"),
        ("dec.alpha=NaN", "dec.alpha"),
        ("dec.alpha=inf", "dec.alpha"),
        ("dec.learning_rate=-inf", "dec.learning_rate"),
        ("data.n_samples=lots", "data.n_samples"),
        ("autoencoder.hidden_dims=[64,x]", "autoencoder.hidden_dims"),
    ],
)
def test_unparsable_values_are_refused_naming_the_key(assignment, key):
    with pytest.raises(ConfigError, match="cannot read") as info:
        preset("default").with_overrides([assignment])
    assert info.value.key == key


def test_nan_passed_as_a_float_is_refused():
    with pytest.raises(ConfigError) as info:
        preset("default").with_overrides({"dec.tol": float("nan")})
    assert info.value.key == "dec.tol"


def test_an_assignment_without_equals_sign_is_refused():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        preset("default").with_overrides(["pretrain.epochs"])


@pytest.mark.parametrize(
    ("assignment", "key"),
    [
        ("pretrain.epochs=-1", "pretrain.epochs"),
        ("pretrain.batch_size=0", "pretrain.batch_size"),
        ("dec.maxiter=-5", "dec.maxiter"),
        ("dec.update_interval=0", "dec.update_interval"),
        ("dec.tol=1.5", "dec.tol"),
        ("dec.tol=-0.1", "dec.tol"),
        ("dec.alpha=0", "dec.alpha"),
        ("data.n_samples=0", "data.n_samples"),
        ("seed=-1", "seed"),
        ("pretrain.optimizer=rmsprop", "pretrain.optimizer"),
        ("pretrain.momentum=1", "pretrain.momentum"),
        ("autoencoder.hidden_dims=[64,0]", "autoencoder.hidden_dims"),
        ("init.mixture_components=1001", "init.mixture_components"),
    ],
)
def test_impossible_values_are_refused_naming_the_key(assignment, key):
    with pytest.raises(ConfigError) as info:
        preset("default").with_overrides([assignment])
    assert info.value.key == key
    assert key in str(info.value)


def test_more_clusters_than_samples_is_refused_on_n_clusters():
    with pytest.raises(ConfigError, match=r"data\.n_samples=10") as info:
        preset("default").with_overrides(["dec.n_clusters=20", "data.n_samples=10"])
    assert info.value.key == "dec.n_clusters"


def test_fewer_mixture_components_than_clusters_are_refused_before_training():
    with pytest.raises(ConfigError, match="use 0 or at least 10") as info:
        preset("default").with_overrides(["init.mixture_components=5"])
    assert info.value.key == "init.mixture_components"
    assert preset("default").with_overrides(["init.mixture_components=10"])


def test_a_umap_fit_subset_smaller_than_the_clusters_is_refused_before_training():
    with pytest.raises(ConfigError, match="cannot be fitted on 5 points") as info:
        preset("default").with_overrides(["init.umap_fit_samples=5"])
    assert info.value.key == "init.umap_fit_samples"


def test_as_many_clusters_as_samples_is_allowed():
    config = preset("default").with_overrides(["dec.n_clusters=10", "data.n_samples=10"])
    assert config.dec.n_clusters == config.data.n_samples == 10


# --- from_dict / to_dict ---------------------------------------------------------------------


def test_from_dict_round_trips_a_non_default_config():
    config = RunConfig(
        seed=3,
        data=DataConfig(dataset="/tmp/x.npz", n_samples=123),
        autoencoder=AutoencoderConfig(hidden_dims=[7, 5], embedding_dim=3),
        dec=DECConfig(n_clusters=4, alpha=2.5, tol=0.05),
    ).validate()
    again = RunConfig.from_dict(config.to_dict())
    assert again == config
    assert RunConfig.from_dict(json.loads(config.to_json())) == config


def test_from_dict_fills_missing_sections_and_keys_with_defaults():
    config = RunConfig.from_dict({"pretrain": {"epochs": 3}})
    assert config.pretrain.epochs == 3
    assert config.pretrain.batch_size == RunConfig().pretrain.batch_size
    assert config.dec == RunConfig().dec


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"bogus": 1}, "bogus"),
        ({"pretrain": {"epochs": 3, "epoch": 4}}, "pretrain.epoch"),
        ({"dec": {"n_cluster": 4}}, "dec.n_cluster"),
    ],
)
def test_from_dict_refuses_unknown_keys(values, key):
    with pytest.raises(ConfigError, match="unknown key") as info:
        RunConfig.from_dict(values)
    assert info.value.key == key


def test_from_dict_refuses_a_section_that_is_not_a_mapping():
    with pytest.raises(ConfigError) as info:
        RunConfig.from_dict({"pretrain": 5})
    assert info.value.key == "pretrain"


@pytest.mark.parametrize("key", ["epochs", "batch_size"])
def test_from_dict_accepts_integral_floats_for_int_fields(key):
    """KFP hands struct parameters over as JSON numbers, which arrive as floats (40.0)."""
    config = RunConfig.from_dict({"pretrain": {key: 40.0}})
    value = getattr(config.pretrain, key)
    assert value == 40
    assert type(value) is int


def test_from_dict_accepts_an_integral_float_for_an_optional_int():
    config = RunConfig.from_dict({"data": {"n_samples": 2000.0}})
    assert config.data.n_samples == 2000
    assert type(config.data.n_samples) is int


@pytest.mark.parametrize("value", [40.5, float("inf"), float("nan"), True, "forty"])
def test_from_dict_refuses_non_integral_values_for_int_fields(value):
    with pytest.raises(ConfigError) as info:
        RunConfig.from_dict({"pretrain": {"epochs": value}})
    assert info.value.key == "pretrain.epochs"


def test_flat_uses_the_dotted_keys_that_overrides_accept():
    config = preset("quick")
    flat = config.flat()
    assert flat["pretrain.epochs"] == config.pretrain.epochs
    assert flat["data.n_samples"] == 2000
    # every flat key can be set back to its own value
    assert config.with_overrides(flat) == config


# ------------------------------------------------------------- bounds: refused before training

@pytest.mark.parametrize("assignment,key", [
    ("seed=18446744073709551616", "seed"),
    ("seed=4294967296", "seed"),
    ("dec.n_clusters=1", "dec.n_clusters"),
    ("pretrain.epochs=99999999999", "pretrain.epochs"),
    ("autoencoder.hidden_dims=[]", "autoencoder.hidden_dims"),
    ("autoencoder.hidden_dims=[10000000]", "autoencoder.hidden_dims"),
    ("autoencoder.hidden_dims=[" + ",".join(["8"] * 17) + "]", "autoencoder.hidden_dims"),
    ("pretrain.batch_size=10000000000", "pretrain.batch_size"),
    ("dec.maxiter=1000000000000", "dec.maxiter"),
    ("init.n_init=100000", "init.n_init"),
    ("data.n_samples=100000000000", "data.n_samples"),
    ("pretrain.learning_rate=1e300", "pretrain.learning_rate"),
])
def test_values_that_can_only_fail_or_run_for_days_are_refused_naming_the_key(assignment, key):
    with pytest.raises(ConfigError) as error:
        preset("quick").with_overrides([assignment])
    assert error.value.key == key
    assert len(str(error.value)) < 300


@given(st.integers(min_value=0, max_value=2**32 - 1))
@settings(max_examples=30, deadline=None)
def test_every_seed_numpy_and_tensorflow_accept_is_accepted(seed):
    assert preset("quick").with_overrides([f"seed={seed}"]).seed == seed


@given(st.one_of(st.integers(max_value=-1), st.integers(min_value=2**32)))
@settings(max_examples=30, deadline=None)
def test_every_seed_outside_32_bits_is_refused(seed):
    with pytest.raises(ConfigError) as error:
        preset("quick").with_overrides([f"seed={seed}"])
    assert error.value.key == "seed" and len(str(error.value)) < 300


def test_a_value_of_a_million_digits_is_refused_in_one_short_line():
    with pytest.raises(ConfigError) as error:
        preset("quick").with_overrides(["seed=" + "9" * 1_000_000])
    assert error.value.key == "seed" and len(str(error.value)) < 300


# --------------------------------------------------------------- declared once, checked once

def test_every_setting_is_declared_with_a_doc_and_what_it_allows():
    settings = declared_settings()
    assert [item.key for item in settings] == list(RunConfig().flat())
    for item in settings:
        assert item.doc.endswith(".") and len(item.doc) > 15, item.key
        assert item.constraint is not None or item.hint is bool, item.key
        assert item.allowed(), item.key


def test_the_docs_given_by_config_show_are_the_declared_ones():
    docs = field_docs()
    for item in declared_settings():
        assert docs[item.key].startswith(item.doc.replace("`", "")[:40])
    assert docs["pretrain.checkpoint_every"].startswith("Epochs between resumable checkpoints")


@pytest.mark.parametrize(("assignment", "message"), [
    ("pretrain.optimizer=rmsprop", "must be 'sgd' or 'adam' (got 'rmsprop')"),
    ("init.method=spectral", "must be 'kmeans' or 'umap'"),
    ("registry.promotion_criterion=f1", "must be 'auto', 'acc' or 'silhouette'"),
    ("dec.precision=fp8", "must be 'float32', 'bfloat16' or 'auto'"),
    ("pretrain.epochs=100001", "must be in [0, 100,000] (got 100001)"),
    ("pretrain.momentum=1", "must be in [0, 1) (got 1.0)"),
    ("dec.learning_rate=0", "must be in (0, 100] (got 0.0)"),
    ("data.n_samples=0", "must be in [1, 1,000,000,000] or none (got 0)"),
    ("data.dataset= ", "must name 'mnist' or a path"),
    ("autoencoder.hidden_dims=[]", "needs 1 to 16 layers"),
    ("autoencoder.hidden_dims=[8,0]", "every layer needs 1 to 100,000 units"),
])
def test_refusals_say_what_is_allowed_and_what_was_given(assignment, message):
    with pytest.raises(ConfigError) as info:
        preset("default").with_overrides([assignment])
    assert info.value.key == assignment.split("=")[0]
    assert message in str(info.value)


def test_a_config_is_validated_once_however_it_is_built(monkeypatch, tmp_path):
    calls = []
    original = RunConfig.validate

    def counting(self):
        calls.append(1)
        return original(self)

    monkeypatch.setattr(RunConfig, "validate", counting)
    path = tmp_path / "c.yaml"
    path.write_text("preset: quick\npretrain: {epochs: 5}\n")
    builds = [lambda: preset("quick"), lambda: preset("quick", ["dec.tol=0.1"]),
              lambda: RunConfig.from_dict({"dec": {"tol": 0.1}}),
              lambda: config_from_file(path, ["dec.maxiter=9"])]
    for build in builds:
        calls.clear()
        build()
        assert len(calls) == 1
    config = preset("quick")
    calls.clear()
    config.with_overrides(["seed=3"])
    assert len(calls) == 1


def test_validate_after_a_change_in_place_converts_and_refuses():
    config = preset("quick")
    config.pretrain.epochs = 12.0
    assert type(config.validate().pretrain.epochs) is int
    config.dec.tol = 2
    with pytest.raises(ConfigError, match=r"dec\.tol"):
        config.validate()


def test_best_is_default_with_shifts_more_epochs_and_the_mean_of_three_members():
    changed = {key for key, value in preset("best").flat().items()
               if preset("default").flat()[key] != value}
    assert changed == {"pretrain.epochs", "pretrain.augment_shift", "members"}
    assert preset("best").members == 3 and preset("best").combine == "mean"


# ------------------------------------------- one converter: a file and --set read values alike

@pytest.mark.parametrize(("key", "text"), [
    ("pretrain.epochs", "50"),
    ("pretrain.learning_rate", "1.0e-4"),
    ("dec.tol", "0"),
    ("data.n_samples", "300"),
    ("data.n_samples", "null"),
    ("data.dataset", "/data/x.npz"),
    ("autoencoder.hidden_dims", "[64, 32]"),
    ("registry.warm_start", "true"),
    ("registry.warm_start", "off"),
    ("seed", "4294967295"),
])
@pytest.mark.parametrize("suffix", [".yaml", ".toml"])
def test_a_value_from_a_file_and_from_set_give_the_same_config(tmp_path, key, text, suffix):
    parsed = yaml.safe_load(text)
    path = tmp_path / f"c{suffix}"
    if suffix == ".yaml":
        path.write_text(f"{key}: {text}\n")
    else:
        value = json.dumps("none" if parsed is None else parsed)
        path.write_text(f'"{key}" = {value}\n')
    from_file = config_from_file(path)
    from_set = preset("default").with_overrides([f"{key}={text}"])
    assert from_file == from_set
    assert type(from_file.flat()[key]) is type(from_set.flat()[key])


@pytest.mark.parametrize("word", [*sorted(NONE_WORDS), "None", "NULL"])
def test_the_none_words_are_the_same_in_a_file_and_on_the_command_line(tmp_path, word):
    path = tmp_path / "c.toml"
    path.write_text(f"[data]\nn_samples = {json.dumps(word)}\n")
    assert config_from_file(path).data.n_samples is None
    assert preset("quick").with_overrides([f"data.n_samples={word}"]).data.n_samples is None


def test_the_config_package_imports_nothing_above_it():
    """Layer order: errors < runtime < config; data, models and MLOps read config, not back."""
    import ast
    from pathlib import Path

    import dec_lib.config

    allowed = ("dec_lib.config", "dec_lib.errors", "dec_lib.runtime")
    for path in Path(dec_lib.config.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            for name in names:
                if name.startswith("dec_lib"):
                    assert name.startswith(allowed), f"{path.name} imports {name}"
