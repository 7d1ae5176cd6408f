"""Config files, their arguments and command-line overrides."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from dferjax.config import add_config_arguments, load_config, parse_args_with_config

DFEW = str(Path(__file__).resolve().parents[1] / "configs" / "dfew.py")


def test_paper_defaults():
    c = load_config(DFEW)
    m = c.model.dfer
    assert c.model.name == "dfer"
    assert (c.fold, m.num_frames, m.image_size, m.num_heads, m.num_layers) == (1, 16, 112, 8, 3)
    assert m.gcn and m.fusion == "structure" and m.temporal == "msa"
    assert m.aux_weight == 0.2 and m.output_stride == 16


def test_fold_and_variant_arguments():
    c = load_config(DFEW + ":fold=3,variant=D")
    assert c.fold == 3 and c.model.dfer.gcn is False and c.model.dfer.temporal == "msa"
    c = load_config(DFEW + ":variant=C")
    assert c.model.dfer.temporal == "lstm" and c.model.dfer.gcn


@pytest.mark.parametrize("arg, error, words", [
    ("fold=6", ValueError, "fold must be 1-5"),
    ("folds=2", KeyError, "'folds'"),
    ("variant=F", ValueError, "Table 9"),
    ("fold=two", TypeError, "fold"),
])
def test_bad_arguments_name_the_problem(arg, error, words):
    with pytest.raises(error, match=words):
        load_config(f"{DFEW}:{arg}")


def test_overrides_and_their_errors():
    c = load_config(DFEW, ["model.dfer.num_heads=6", "model.dfer.widths=(8, 16, 32, 64)", "model.dtype=bfloat16",
                           "model.dfer.aux_weight=0"])
    m = c.model.dfer
    assert m.num_heads == 6 and m.widths == (8, 16, 32, 64) and c.model.dtype == "bfloat16"
    assert m.aux_weight == 0.0 and isinstance(m.aux_weight, float)
    with pytest.raises(KeyError, match="model.dfer.num_head'.*did you mean 'num_heads'"):
        load_config(DFEW, ["model.dfer.num_head=6"])
    with pytest.raises(KeyError, match="'modle'.*did you mean 'model'"):
        load_config(DFEW, ["modle.num_heads=6"])
    with pytest.raises(TypeError, match="model.dfer.num_heads"):
        load_config(DFEW, ["model.dfer.num_heads=eight"])
    with pytest.raises(FileNotFoundError, match="nowhere.py"):
        load_config("configs/nowhere.py")


def test_command_line_overrides():
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    _, c = parse_args_with_config(parser, ["--config", DFEW + ":fold=2", "--config.model.dfer.num_layers=4"])
    assert c.fold == 2 and c.model.dfer.num_layers == 4
    with pytest.raises(SystemExit):
        parse_args_with_config(parser, ["--config", DFEW, "--bogus"])


def test_model_name_selects_a_registered_model_with_its_own_section():
    from dferjax import models
    c = load_config(DFEW, ["model.name=frame_mean", "model.frame_mean.widths=(8, 8, 16, 16)"])
    assert models.model_class(c.model) is models.FrameMeanModel
    assert models.model_section(c.model).widths == (8, 8, 16, 16)
    spec = models.input_spec(c.model)
    assert spec.heatmap_size is None and spec.num_frames == 16 and spec.image_size == 112
    c = load_config(DFEW, ["model.name=nope"])
    with pytest.raises(models.UnknownModelError, match="'nope'.*known models: dfer, frame_mean"):
        models.build_model(c.model)
    with pytest.raises(KeyError, match="model.frame_mean.gcn"):      # each section has only its own keys
        load_config(DFEW, ["model.frame_mean.gcn=False"])


def test_the_loaded_config_is_locked():
    c = load_config(DFEW)
    with pytest.raises((AttributeError, KeyError)):
        c.model.dfer.new_key = 1


def test_values_as_people_type_them():
    """Booleans in any case (ml_collections' config_flags); a value outside a key's allowed set fails in
    one line naming the key and the allowed values, before any model is built."""
    from dferjax import models
    for typed in ("false", "False", "FALSE", "0"):
        assert load_config(DFEW, [f"model.dfer.gcn={typed}"]).model.dfer.gcn is False
    c = load_config(DFEW, ["model.dfer.fusion=Mean"])
    with pytest.raises(models.ModelConfigError,
                       match="model.dfer.fusion = 'Mean' is not one of 'structure', 'mean', 'lstm'"):
        models.check_config(c.model)
    with pytest.raises(models.ModelConfigError, match="model.dfer.output_stride = 12"):
        models.input_spec(load_config(DFEW, ["model.dfer.output_stride=12"]).model)
    with pytest.raises(models.ModelConfigError, match="model.dtype = 'float16' is not one of"):
        models.check_config(load_config(DFEW, ["model.dtype=float16"]).model)


def test_keys_that_moved_say_where_to():
    with pytest.raises(KeyError, match="'train.cpu_devices' moved to runtime.cpu_devices"):
        load_config(DFEW, ["train.cpu_devices=1"])
    with pytest.raises(KeyError, match="'loss.aux_weight' moved to model.dfer.aux_weight"):
        load_config(DFEW, ["loss.aux_weight=0.1"])
    with pytest.raises(KeyError, match="that key is at model.dfer.num_heads"):
        load_config(DFEW, ["model.num_heads=4"])
    with pytest.raises(KeyError, match="that key is at model.dfer.widths, model.frame_mean.widths"):
        load_config(DFEW, ["model.widths=(8, 8, 8, 8)"])
