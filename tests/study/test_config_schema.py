"""The typed configuration: type and range errors name the key, unknown keys list close matches, the doc is
up to date, model options and entry-point signatures are checked before anything runs."""

import textwrap
from pathlib import Path

import pytest

from sgd_dynamics.config_schema import from_mapping
from sgd_dynamics.experiments.config_reference import config_markdown
from sgd_dynamics.experiments.entry_points import resolve_entry_point
from sgd_dynamics.experiments.setup import prepare
from sgd_dynamics.experiments.study_config import StudyConfig, load_config

DOCS = Path(__file__).parents[2] / "docs" / "config.md"


@pytest.mark.parametrize(("raw", "match"), [
    ({"lrs": 0.01}, r"lrs=0.01 is invalid: expected a list of numbers \(each a finite number > 0|"
                    r"lrs=0.01 is invalid: expected a list of numbers"),
    ({"lrs": [0.01, "x"]}, r"lrs\[1\]='x' is invalid: expected a finite number > 0"),
    ({"momentum": "0.9"}, r"momentum='0.9' is invalid: expected 0 <= x < 1"),
    ({"momentum": 1.0}, r"momentum=1.0 is invalid: expected 0 <= x < 1"),
    ({"steps": 60.5}, r"steps=60.5 is invalid: expected an integer >= 10"),
    ({"batch_size": True}, r"batch_size=True is invalid: expected an integer >= 1"),
    ({"model": "mpl"}, r"model='mpl' is invalid: expected one of 'mlp', 'cnn', 'resnet', 'linear' or "
                       r"'package.module:function'"),
    ({"samplers": ["with_replacment"]}, r"samplers\[0\]='with_replacment' is invalid: expected one of"),
    ({"model_options": [256]}, r"model_options=\[256\] is invalid: expected a table of options"),
    ({"steps": 100, "burn_in": 99},
     r"burn_in=99 is invalid: expected an integer in \[0, steps - 1\) = \[0, 99\)"),
])
def test_a_wrong_type_or_range_names_the_key_the_value_and_what_is_valid(raw, match):
    with pytest.raises(ValueError, match=match):
        from_mapping(StudyConfig, raw)


def test_unknown_key_lists_close_matches_and_lists_become_tuples(tmp_path):
    with pytest.raises(ValueError, match=r"config key 'modle' is unknown: did you mean 'model'\? expected"):
        from_mapping(StudyConfig, {"modle": "mlp"})
    cfg = tmp_path / "c.toml"
    cfg.write_text('lrs = [0.01, 1]\nmomenta = [0, 0.5]\n')
    config = load_config(cfg)
    assert config.lrs == (0.01, 1.0) and all(isinstance(x, float) for x in config.lrs)
    assert config.momenta == (0.0, 0.5)


def test_docs_config_md_is_generated_from_the_schema_and_up_to_date():
    text = config_markdown()
    assert DOCS.read_text() == text, "python -m sgd_dynamics.experiments.config_reference > docs/config.md"
    for key in ("pretrain_lr", "model_options", "burn_in", "activations", "quick_timescales"):
        assert f"`{key}`" in text
    assert "build(input_shape, num_classes, **options)" in text and "load()" in text


def test_an_unknown_model_option_is_an_error_listing_the_valid_ones():
    with pytest.raises(ValueError, match=r"model_options.widths=\[8\] is invalid: expected a keyword of "
                                         r"model='mlp': one of hidden"):
        prepare(StudyConfig(dataset="teacher", model_options={"widths": [8]}))


def test_entry_points_resolve_from_the_working_directory_and_their_signature_is_checked(tmp_path,
                                                                                       monkeypatch):
    (tmp_path / "cwd_model_mod.py").write_text(textwrap.dedent("""
        from torch import nn
        def build(input_shape, num_classes, width=8):
            return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0], width), nn.ReLU(),
                                 nn.Linear(width, num_classes))
        def wrong(input_shape):
            return nn.Linear(input_shape[0], 2)
        def load(split):
            return None
    """))
    monkeypatch.chdir(tmp_path)
    assert callable(resolve_entry_point("cwd_model_mod:build", "model"))   # no PYTHONPATH needed
    setup = prepare(StudyConfig(dataset="teacher", model="cwd_model_mod:build", model_options={"width": 4}))
    assert sum(p.numel() for p in setup.build_model().parameters()) == 40 * 4 + 4 + 4 * 10 + 10
    with pytest.raises(ValueError, match=r"model='cwd_model_mod:wrong' does not accept the call "
                                         r"build\(input_shape, num_classes\)"):
        prepare(StudyConfig(dataset="teacher", model="cwd_model_mod:wrong", model_options={}))
    with pytest.raises(ValueError, match=r"model='cwd_model_mod:build' does not accept the call "
                                         r"build\(input_shape, num_classes, depth=...\)"):
        prepare(StudyConfig(dataset="teacher", model="cwd_model_mod:build", model_options={"depth": 2}))
    with pytest.raises(ValueError, match=r"dataset='cwd_model_mod:load' cannot be called as load\(\)"):
        prepare(StudyConfig(dataset="cwd_model_mod:load"))
    with pytest.raises(ValueError, match=r"cannot import module 'nowhere_mod' .* searched in the current "
                                         r"directory"):
        resolve_entry_point("nowhere_mod:build", "model")
