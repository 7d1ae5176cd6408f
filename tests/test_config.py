"""Config files, their arguments and command-line overrides."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from dferjax.config import add_config_arguments, load_config, parse_args_with_config

DFEW = str(Path(__file__).resolve().parents[1] / "configs" / "dfew.py")


def test_paper_defaults():
    c = load_config(DFEW)
    assert (c.fold, c.model.num_frames, c.data.image_size, c.model.num_heads, c.model.num_layers) == (1, 16, 112, 8, 3)
    assert c.model.gcn and c.model.fusion == "structure" and c.model.temporal == "msa"
    assert c.loss.aux_weight == 0.2 and c.model.output_stride == 16


def test_fold_and_variant_arguments():
    c = load_config(DFEW + ":fold=3,variant=D")
    assert c.fold == 3 and c.model.gcn is False and c.model.temporal == "msa"
    c = load_config(DFEW + ":variant=C")
    assert c.model.temporal == "lstm" and c.model.gcn


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
    c = load_config(DFEW, ["model.num_heads=6", "model.widths=(8, 16, 32, 64)", "model.dtype=bfloat16",
                           "loss.aux_weight=0"])
    assert c.model.num_heads == 6 and c.model.widths == (8, 16, 32, 64) and c.model.dtype == "bfloat16"
    assert c.loss.aux_weight == 0.0
    with pytest.raises(KeyError, match="model.num_head'.*num_heads"):
        load_config(DFEW, ["model.num_head=6"])
    with pytest.raises(KeyError, match="'modle'"):
        load_config(DFEW, ["modle.num_heads=6"])
    with pytest.raises(TypeError, match="model.num_heads"):
        load_config(DFEW, ["model.num_heads=eight"])
    with pytest.raises(FileNotFoundError, match="nowhere.py"):
        load_config("configs/nowhere.py")


def test_command_line_overrides():
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    _, c = parse_args_with_config(parser, ["--config", DFEW + ":fold=2", "--config.model.num_layers=4"])
    assert c.fold == 2 and c.model.num_layers == 4
    with pytest.raises(SystemExit):
        parse_args_with_config(parser, ["--config", DFEW, "--bogus"])
