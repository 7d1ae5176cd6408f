"""Readings of what the paper leaves open (issue 21), each checked where it shows: where the weights start from
(said when training starts, kept with the checkpoints and in results.json), landmarks on pre-cropped frames
(detected inside the crop, against the detected path on the full image), the AFEW fine-tuning schedule."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import cv2
import jax
import numpy as np
import pytest
from flax import nnx

from dferjax import models, train
from dferjax.config import config_file_module
from dferjax.data import faces, synthetic
from dferjax.data.clips import PrepConfig, prepare_clip
from dferjax.engine import checkpoints as ckpt

ROOT = Path(__file__).resolve().parents[1]
DEMO = str(ROOT / "configs" / "demo.py")

# The demo config (the tiny models) on 4 frames of 32x32, batch 4: 2 steps and one evaluation.
TINY = ["--config.data.num_segments=2",
        *[f"--config.model.{name}.{key}={value}" for name in models.MODELS
          for key, value in (("num_frames", 4), ("image_size", 32)) if key in models.MODELS[name].default_config()],
        "--config.train.batch_size=4", "--config.train.eval_batch_size=4", "--config.train.epochs=1",
        "--config.runtime.log_every=1", "--config.runtime.progress=False", "--config.runtime.cpu_devices=0"]


# ---------------------------------------------------------------------------------------------
# Item 1: where the weights start from


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("readings_demo")
    synthetic.make_demo_set(out, num_train=8, num_test=4, prep=PrepConfig(image_size=48, max_frames=4, min_frames=4),
                            progress=False)
    return out


MODEL = "frame_mean"
"""The model trained here: the smallest with a ResNet18 backbone and ``backbone_weights`` (the key is read as
dfer's is, ``model.<name>.backbone_weights``), at a fraction of dfer's compile time."""


def tiny_args(shards: Path, workdir: Path, *extra: str) -> list[str]:
    return ["--config", DEMO, *TINY, f"--config.model.name={MODEL}", f"--config.data.dir={shards}",
            "--workdir", str(workdir), *extra]


def backbone_file(path: Path) -> Path:
    """A torchvision-named state dict (.npz) of the tiny model's backbone, as a pretrained file would be."""
    config = config_file_module(DEMO).get_config()
    config.model.name = MODEL
    model = models.build_model(config.model, seed=7)
    names = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}
    arrays = {}
    for key_path, value in jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(nnx.state(model.backbone)))[0]:
        parts = [str(getattr(k, "key", k)) for k in key_path]
        value = np.asarray(value)
        if parts[-1] == "kernel":
            value = value.transpose(3, 2, 0, 1)                             # HWIO -> OIHW
        arrays[".".join(parts[:-1] + [names[parts[-1]]])] = value
    np.savez(path, **arrays)
    return path


def latest_meta(workdir: Path) -> dict:
    """The meta saved with the run's latest checkpoint."""
    mngr = ckpt.manager(workdir / ckpt.LATEST_DIR, max_to_keep=2, read_only=True)
    try:
        return ckpt.restore_meta(mngr, mngr.latest_step())
    finally:
        mngr.close()


def test_training_says_where_the_weights_came_from(shards, tmp_path, capsys):
    # Random initialisation: said once, kept with the checkpoints and in results.json.
    scratch = tmp_path / "scratch"
    assert train.main(tiny_args(shards, scratch)) == 0
    out = capsys.readouterr().out
    key = f"model.{MODEL}.backbone_weights"
    line = f"weights: random initialisation (train.seed 0), no pretrained weights ({key} is empty)"
    assert out.count(line) == 1 and out.count("weights:") == 1
    assert latest_meta(scratch)["weights"]["init"] == "random"
    assert json.loads((scratch / ckpt.RESULTS_FILE).read_text())["weights"]["init"] == "random"
    assert all(r["kind"] in ("train", "eval") for r in map(json.loads, (scratch / ckpt.METRICS_FILE).open()))

    # A pretrained backbone file: its path and sha256.
    weights = backbone_file(tmp_path / "resnet18-tiny.npz")
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    pretrained = tmp_path / "pretrained"
    assert train.main(tiny_args(shards, pretrained, f"--config.{key}={weights}")) == 0
    out = capsys.readouterr().out
    assert out.count("weights:") == 1
    assert (f"weights: backbone from {weights.resolve()} (sha256 {digest}, {key}); every other parameter random "
            "(train.seed 0)") in out
    results = json.loads((pretrained / ckpt.RESULTS_FILE).read_text())
    assert results["weights"]["init"] == "pretrained"
    assert results["weights"]["files"] == [{"key": key, "path": str(weights.resolve()), "sha256": digest}]

    # Resumed (the same command again, nothing left to train): what the start recorded is said again.
    assert train.main(tiny_args(shards, scratch)) == 0
    out = capsys.readouterr().out
    assert f"{line} (recorded when the run started)" in out

    # Fine-tuned from the pretrained run: the checkpoint, which overrides the file, and what that run started from.
    config = ckpt.load_run_config(pretrained)
    config.train.init_checkpoint = str(pretrained)
    origin = train.weights_origin(config)
    assert origin["init"] == "checkpoint" and origin["checkpoint"].startswith(str(pretrained / ckpt.BEST_DIR))
    assert f"which overrides {key}" in origin["text"]
    assert f"that run started from: backbone from {weights.resolve()}" in origin["text"]


def test_models_name_their_own_weights_keys(tmp_path):
    """The line is generic: a model's ``*_weights`` keys (or those its class lists in WEIGHTS_KEYS), of the
    selected model only; a missing file is an error before anything is trained."""
    config = config_file_module(DEMO).get_config()
    assert train.weights_keys(config) == {"model.dfer.backbone_weights": ""}
    missing = tmp_path / "nowhere.pth"
    config.model.dfer.backbone_weights = str(missing)
    with pytest.raises(FileNotFoundError):
        train.weights_origin(config)


# ---------------------------------------------------------------------------------------------
# Item 5: landmarks on pre-cropped frames

TOLERANCE = 0.02
"""Mean key-point distance to the detected path on the full image, as a fraction of the face size (dlib's box)."""
MARGIN = 0.25


def _keypoint_error(a: np.ndarray, b: np.ndarray, size: int) -> float:
    """Mean distance of (T, 18, 2) key-points in size x size crops, as a fraction of the face in them."""
    return float(np.linalg.norm(a - b, axis=-1).mean() / (size / (1 + 2 * MARGIN)))


@pytest.mark.parametrize("size", [224, 112])       # DFEW's clip_224x224; a smaller crop, detected upsampled
def test_precropped_landmarks_match_the_detected_path(testdata, size):
    image = cv2.imread(str(testdata / "images" / "single_face.jpg"))[..., ::-1].copy()
    full = prepare_clip(image, PrepConfig(image_size=size, max_frames=1, min_frames=1, margin=MARGIN))
    assert full.sources[0] == faces.FaceSource.DETECTED
    crop = full.frames[0]                              # the face cut with faces.square_box(box, 0.25)
    new = PrepConfig(image_size=size, max_frames=1, min_frames=1, precropped=True, precropped_detect=True)
    old = PrepConfig(image_size=size, max_frames=1, min_frames=1, precropped=True)
    detected, whole = prepare_clip(crop, new), prepare_clip(crop, old)
    assert detected.sources[0] == faces.FaceSource.DETECTED and whole.sources[0] == faces.FaceSource.WHOLE_FRAME
    error, before = (_keypoint_error(c.keypoints, full.keypoints, size) for c in (detected, whole))
    assert error < TOLERANCE and error < before / 2, (error, before)
    np.testing.assert_array_equal(prepare_clip(crop, new).keypoints, detected.keypoints)    # deterministic


def test_precropped_video_frames_detect_and_fall_back_with_a_note(testdata):
    cap = cv2.VideoCapture(str(testdata / "videos" / "single_face.mp4"))
    frames = []
    while len(frames) < 4:
        ok, frame = cap.read()
        assert ok
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    cap.release()
    size = 112
    prep = PrepConfig(image_size=size, max_frames=5, min_frames=5, margin=MARGIN)
    full = prepare_clip(frames, PrepConfig(image_size=size, max_frames=4, min_frames=4, margin=MARGIN))
    assert (full.sources == faces.FaceSource.DETECTED).all()
    crops = [*full.frames, np.zeros_like(full.frames[0])]          # and a frame without a face
    clip = prepare_clip(crops, dataclasses.replace(prep, precropped=True, precropped_detect=True))
    assert clip.sources.tolist() == [faces.FaceSource.DETECTED] * 4 + [faces.FaceSource.WHOLE_FRAME]
    assert any("no face detected inside the crop in 1 of 5 frames" in n and "other 4" in n for n in clip.notes)
    assert _keypoint_error(clip.keypoints[:4], full.keypoints, size) < TOLERANCE
    old = prepare_clip(crops, dataclasses.replace(prep, precropped=True))
    assert (old.sources == faces.FaceSource.WHOLE_FRAME).all() and not any("inside the crop" in n for n in old.notes)


def test_precropped_detect_keeps_the_settings_of_earlier_builds():
    """Off by default and recorded only when on: the settings of a build made before it are unchanged (it
    resumes, its shards are kept) and read back as built (the whole frame)."""
    before = {"image_size": 112, "max_frames": 64, "min_frames": 16, "margin": 0.25, "upsample": 0,
              "detect_every": 1, "precropped": True}
    assert PrepConfig(precropped=True).to_dict() == before
    assert PrepConfig.from_dict(before).precropped_detect is False
    assert "precropped_detect" not in PrepConfig().to_dict()
    on = PrepConfig(precropped=True, precropped_detect=True)
    assert on.to_dict()["precropped_detect"] is True and PrepConfig.from_dict(on.to_dict()) == on


def test_small_crops_are_upsampled_for_the_detector():
    assert [faces.precrop_upsample(s, s) for s in (224, 160, 159, 112, 80, 64, 48)] == [0, 0, 1, 1, 1, 2, 2]
    assert faces.precrop_upsample(224, 224, upsample=1) == 1


# ---------------------------------------------------------------------------------------------
# Item 7: the AFEW fine-tuning schedule


def test_afew_config_has_its_own_short_schedule():
    afew = config_file_module(str(ROOT / "configs" / "afew.py"))
    assert "4.3.2" in afew.__doc__ and "our reading" in afew.__doc__.lower()
    config = afew.get_config()
    assert (config.train.epochs, config.train.learning_rate, tuple(config.train.lr_decay_epochs)) == (20, 1e-4, (15,))
    assert config.train.init_checkpoint == "runs/dfew-1"
    config = afew.get_config("init=runs/dfew-3,epochs=30,lr=3e-4,decay=0")
    assert (config.train.epochs, config.train.learning_rate, tuple(config.train.lr_decay_epochs)) == (30, 3e-4, ())
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        afew.get_config("epochs=0")


def test_demo_at_the_paper_size_keeps_the_papers_model():
    """configs/demo.py:size=paper (the GPU plan's end-to-end run): the paper's input and widths, a synthetic
    set drawn at that size into its own folder; the default demo stays tiny."""
    demo = config_file_module(str(Path(__file__).resolve().parents[1] / "configs" / "demo.py"))
    paper, tiny = demo.get_config("size=paper"), demo.get_config()
    reference = models.default_config().dfer
    assert paper.model.dfer.widths == reference.widths == (64, 128, 256, 512)
    assert (paper.model.dfer.num_frames, paper.model.dfer.image_size) == (16, 112)
    assert (paper.synthetic.image_size, paper.synthetic.max_frames) == (112, 16)
    assert paper.data.num_segments * paper.data.frames_per_segment == 16
    assert paper.data.dir != tiny.data.dir
    assert (tiny.model.dfer.image_size, tiny.synthetic.max_frames) == (64, 8)
    with pytest.raises(ValueError, match="size must be tiny or paper"):
        demo.get_config("size=huge")
