"""Model files (python -m dferjax.export): one safetensors file with JSON metadata, loaded wherever a run is,
giving the run's probabilities bit for bit (in this process and a fresh one) and its WAR; a changed byte
or metadata entry, another format, an unknown config key or a wrong shape is refused, named."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import safetensors.numpy

from dferjax import evaluate, export, predict
from dferjax.data import synthetic
from dferjax.data.clips import PrepConfig
from dferjax.engine import checkpoints as ckpt

from .conftest import TESTDATA
from .test_train import ROOT

PREP = PrepConfig(image_size=48, max_frames=8, min_frames=8)
VIDEO = TESTDATA / "videos" / "single_face.mp4"


@pytest.fixture(scope="module")
def shards(trained_demo):
    return trained_demo[0]


@pytest.fixture(scope="module")
def run(trained_demo):
    """A tiny model trained for 1 epoch (2 steps): real weights, not good ones."""
    return trained_demo[1]


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
    """(the model file, what ``python -m dferjax.export RUN FILE`` printed)."""
    path = tmp_path_factory.mktemp("export_file") / "model.safetensors"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert export.main([str(run), str(path)]) == 0
    return path, printed.getvalue()


@pytest.fixture(scope="module")
def inputs(run):
    """Model inputs of a synthetic clip, and the run's probabilities for them."""
    predictor = predict.Predictor(run)
    entry = [c for c in synthetic.synthetic_listing(8, 7).clips if c.split == "test"][2]
    frames, _, heatmaps, _ = predictor.inputs(synthetic.render_entry(entry, PREP))
    return predictor, frames, heatmaps, predictor.probabilities([frames], [heatmaps])


def test_export_prints_what_it_wrote_and_the_card(run, exported):
    path, printed = exported
    results = json.loads((run / ckpt.RESULTS_FILE).read_text())
    mb = path.stat().st_size / 1e6
    assert f"wrote {path}: {mb:.2f} MB, " in printed and " parameters (+ " in printed and "sha256 " in printed
    assert f"WAR {100 * results['best']['war']:.2f}%" in printed
    card = path.with_suffix(".md").read_text()
    for text in ("# dferjax model: dfer", "happy, sad, neutral, angry, surprise, disgust, fear", "synthetic",
                 "## Scores on test", "## Use", f"--checkpoint {path.name}", "sha256"):
        assert text in card, text


def test_the_file_is_safetensors_with_json_metadata_only(exported, run, shards):
    """No pickle: an 8-byte length, a JSON header (tensors and str->str metadata), then the tensors' bytes."""
    path, _ = exported
    raw = path.read_bytes()
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + size])
    metadata = header.pop("__metadata__")
    assert set(metadata) == {"format", "format_version", "dferjax_version", "sha256", *ckpt.MODEL_JSON_KEYS}
    assert metadata["format"] == "dferjax-model" and metadata["format_version"] == "1"
    spans = sorted(tuple(t["data_offsets"]) for t in header.values())
    assert {t["dtype"] for t in header.values()} == {"F32"}
    assert spans[0][0] == 0 and all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    assert spans[-1][1] == len(raw) - 8 - size            # nothing but the tensors after the header
    values = {k: json.loads(metadata[k]) for k in ckpt.MODEL_JSON_KEYS}
    assert set(values["config"]["model"]) == {"name", "num_classes", "dtype", "dfer"}    # the selected model only
    assert values["config"]["data"]["dir"] == shards.name                                # no path of this machine
    assert values["data"]["prep"] == PREP.to_dict() and values["checkpoint"]["step"] == 2
    tensors = safetensors.numpy.load_file(str(path))
    model, _, _ = ckpt.load_model(run)
    _, params, rest = ckpt.split_model(model)
    expected = ckpt.model_tensors(params, rest)
    assert sorted(tensors) == sorted(expected) and all(tensors[k].tobytes() == expected[k].tobytes() for k in tensors)


def test_predictor_of_the_file_equals_the_run_bit_for_bit(run, exported, inputs):
    path, _ = exported
    from_run, frames, heatmaps, expected = inputs
    from_file = predict.Predictor(path)
    assert (from_file.prep, from_file.spec, from_file.class_names, from_file.jpeg_quality) == \
        (from_run.prep, from_run.spec, from_run.class_names, from_run.jpeg_quality)
    np.testing.assert_array_equal(from_file.probabilities([frames], [heatmaps]), expected)
    assert from_file.describe().startswith(f"model file {path}, WAR ")


def test_a_fresh_process_loads_the_file_to_the_same_probabilities(exported, inputs, tmp_path):
    path, _ = exported
    _, frames, heatmaps, expected = inputs
    np.savez(tmp_path / "inputs.npz", frames=frames, heatmaps=heatmaps)
    code = ("import sys, numpy as np; from dferjax import Predictor; p = Predictor(sys.argv[1]); "
            "d = np.load(sys.argv[2]); np.save(sys.argv[3], p.probabilities([d['frames']], [d['heatmaps']]))")
    done = subprocess.run([sys.executable, "-c", code, str(path), str(tmp_path / "inputs.npz"), str(tmp_path / "p.npy")],
                          cwd=ROOT, env={**os.environ, "JAX_PLATFORMS": "cpu"}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), expected)


def test_predict_command_on_a_video_gives_the_runs_result(run, exported, inputs, capsys):
    if not VIDEO.is_file():
        pytest.skip(f"real test media not found at {VIDEO} (the team's shared/ folder)")
    path, _ = exported
    assert predict.main(["--checkpoint", str(path), "--json", str(VIDEO)]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line == inputs[0].predict(str(VIDEO)).to_dict()


def test_evaluating_the_file_gives_the_runs_war(run, exported, shards, capsys):
    path, _ = exported
    assert evaluate.main(["--checkpoint", str(path)]) == 1
    assert capsys.readouterr().err.strip() == (f"error: {path} is a model file: name the shards to evaluate it on "
                                               "(--data DIR)")
    assert evaluate.main(["--checkpoint", str(path), "--data", str(shards)]) == 0
    report = json.loads(path.with_name(f"model.eval-{shards.name}-test.json").read_text())   # the shards named
    expected = json.loads((run / ckpt.RESULTS_FILE).read_text())["best"]     # the run's evaluation of that checkpoint
    assert (report["war"], report["uar"], report["confusion"]) == (expected["war"], expected["uar"], expected["confusion"])
    assert report["epoch"] == expected["epoch"] == 1
    assert path.with_name(f"model.eval-{shards.name}-test-confusion.png").is_file()


def _rewrite(path, target, tensors=None, **changes):
    """Copy the model file with tensors or metadata entries changed, keeping its old sha256."""
    from safetensors import safe_open
    with safe_open(str(path), framework="numpy") as f:
        metadata = dict(f.metadata())
        old = {k: f.get_tensor(k) for k in f.keys()}
    metadata.update(changes)
    safetensors.numpy.save_file(tensors or old, str(target), metadata=metadata)
    return target


def test_a_changed_file_is_refused_naming_it(exported, tmp_path, capsys):
    path, _ = exported
    raw = bytearray(path.read_bytes())
    data_start = 8 + int.from_bytes(raw[:8], "little")
    raw[(data_start + len(raw)) // 2] ^= 0x01            # one bit in the middle of the tensor data
    flipped = tmp_path / "flipped.safetensors"
    flipped.write_bytes(bytes(raw))
    card = ckpt.read_model_file(path)[1]["card"]
    card["scores"]["war"] = 0.99
    edited = _rewrite(path, tmp_path / "edited.safetensors", card=json.dumps(card))
    for bad in (flipped, edited):
        with pytest.raises(ckpt.CheckpointError, match="sha256 does not match") as error:
            predict.Predictor(bad)
        assert str(bad) in str(error.value) and "\n" not in str(error.value)
    assert predict.main(["--checkpoint", str(flipped), "clip.mp4"]) == predict.EXIT_ERROR
    assert capsys.readouterr().err.startswith(f"error: {flipped}: its sha256 does not match its contents")
    other = tmp_path / "backbone.safetensors"
    safetensors.numpy.save_file({"conv1.weight": np.zeros((2, 3), np.float32)}, str(other))
    with pytest.raises(ckpt.CheckpointError, match=re.escape(f"{other} is not a dferjax model file: a safetensors file")):
        ckpt.load_trained(other)
    junk = tmp_path / "model.pt"
    junk.write_bytes(b"\x80\x04\x95 not safetensors")
    with pytest.raises(ckpt.CheckpointError, match=re.escape(f"{junk} is not a dferjax model file: not a readable")):
        ckpt.load_trained(junk)


def test_unknown_config_keys_and_wrong_shapes_are_refused_named(exported, tmp_path):
    path, _ = exported
    tensors, values = ckpt.read_model_file(path)
    entries = {k: values[k] for k in ckpt.MODEL_JSON_KEYS}

    newer = json.loads(json.dumps(entries))
    newer["config"]["model"]["dfer"]["gate"] = True
    ckpt.save_model_file(tmp_path / "newer.safetensors", tensors, **newer)
    with pytest.raises(ckpt.CheckpointError, match="config key 'model.dfer.gate' is unknown"):
        ckpt.load_model_file(tmp_path / "newer.safetensors")

    older = json.loads(json.dumps(entries))
    del older["config"]["data"]["crop_padding"]          # a key added since: today's default
    ckpt.save_model_file(tmp_path / "older.safetensors", tensors, **older)
    assert ckpt.load_model_file(tmp_path / "older.safetensors").config.data.crop_padding == 0

    name = sorted(k for k in tensors if k.startswith("params/"))[-1]
    wrong = {**tensors, name: np.zeros((3, 3), np.float32)}
    ckpt.save_model_file(tmp_path / "wrong.safetensors", wrong, **entries)
    with pytest.raises(ckpt.CheckpointError, match=f"parameters do not fit .*{re.escape(name)}: \\(3, 3\\) float32 in"):
        ckpt.load_model_file(tmp_path / "wrong.safetensors")


def test_export_refuses_a_folder_or_a_card_name(run, tmp_path):
    with pytest.raises(ckpt.CheckpointError, match="name the model file"):
        export.export(run, tmp_path)
    with pytest.raises(ckpt.CheckpointError, match="the card is written as"):
        export.export(run, tmp_path / "model.md")
    assert not any(tmp_path.iterdir())
