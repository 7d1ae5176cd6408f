"""Still images as samples of one frame: the same preparation as a video frame, image files as people store
them, the 8-class label set, the still-image demo, and models refusing shards of the other kind."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from dferjax import labels, train
from dferjax.config import load_config
from dferjax.data import clips, dataset, synthetic
from dferjax.data import input_pipeline as ip
from dferjax.data.clips import PrepConfig
from dferjax.data.dataset import DataConfigError
from dferjax.engine.inputs import open_data

from .conftest import CASES, TESTDATA

ROOT = Path(__file__).resolve().parents[1]
PREP = PrepConfig(image_size=64, max_frames=1, min_frames=1)
needs_testdata = pytest.mark.skipif(not TESTDATA.is_dir(), reason=f"real test media not found at {TESTDATA}")


def video_frame(path: Path, index: int) -> np.ndarray:
    """Frame ``index`` of a video, RGB, decoded by OpenCV frame by frame (independent of clips.read_clip)."""
    cap = cv2.VideoCapture(str(path))
    try:
        for _ in range(index + 1):
            ok, bgr = cap.read()
            assert ok, f"{path} has fewer than {index + 1} frames"
    finally:
        cap.release()
    return bgr[..., ::-1]


@needs_testdata
def test_a_still_image_and_the_same_video_frame_give_the_same_crop_keypoints_and_inputs(tmp_path):
    video = TESTDATA / "videos" / "single_face.mp4"
    k = 37
    image_file = tmp_path / "frame.png"                          # lossless: the very pixels of frame k
    cv2.imwrite(str(image_file), np.ascontiguousarray(video_frame(video, k)[..., ::-1]))
    still = clips.prepare_clip(image_file, PREP)
    inside = clips.prepare_clip(video, PREP, frame_range=(k, k + 1))
    assert still.still and not inside.still and len(still.frames) == len(inside.frames) == 1
    assert inside.frame_indices.tolist() == [k] and still.frame_indices.tolist() == [0]
    np.testing.assert_array_equal(still.frames, inside.frames)
    np.testing.assert_array_equal(still.keypoints, inside.keypoints)
    np.testing.assert_array_equal(still.boxes, inside.boxes)
    spec = ip.ExampleSpec(image_size=64, num_segments=1, frames_per_segment=1, heatmap_size=4)
    for a, b in zip(ip.clip_inputs(still.frames, still.keypoints, spec, 95),
                    ip.clip_inputs(inside.frames, inside.keypoints, spec, 95)):
        np.testing.assert_array_equal(a, b)
    # ... and an image array is the image file.
    array = clips.prepare_clip(clips.read_image(image_file), PREP)
    np.testing.assert_array_equal(array.frames, still.frames)
    assert array.still


@needs_testdata
def test_a_still_image_is_never_padded_and_probes_as_one_frame():
    path = TESTDATA / "images" / "single_face.jpg"
    clip = clips.prepare_clip(path, PrepConfig(image_size=48, max_frames=16, min_frames=16))
    assert len(clip.frames) == 1 and clip.num_source_frames == 1 and clip.fps == 0.0
    assert clips.probe_clip(path) == (1, 0.0)
    assert not any("repeated" in note for note in clip.notes)


@needs_testdata
def test_several_faces_take_the_largest_and_no_face_names_the_file():
    many = clips.prepare_clip(TESTDATA / "images" / "multi_face.jpg", PREP)
    assert any("faces in the image: took the largest" in note for note in many.notes)
    with pytest.raises(clips.NoFaceError, match=r"no_faces\.jpg: no face found in the image"):
        clips.prepare_clip(TESTDATA / "images" / "no_faces.jpg", PREP)


def test_an_image_that_does_not_decode_is_named(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(clips.ClipError, match=r"broken\.jpg: cannot be decoded as an image"):
        clips.prepare_clip(bad, PREP)


@needs_testdata
def test_exif_orientation_is_applied_as_pillow_applies_it(tmp_path):
    from PIL import Image, ImageOps
    upright = Image.open(TESTDATA / "images" / "single_face.jpg").convert("RGB")
    stored = upright.transpose(Image.Transpose.ROTATE_90)          # how a phone stores a portrait photo
    exif = Image.Exif()
    exif[0x0112] = 6                                              # Orientation: rotate 90 CW to display
    path = tmp_path / "portrait.jpg"
    stored.save(path, quality=95, exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    got = clips.read_image(path)
    assert got.shape == expected.shape == (upright.height, upright.width, 3)
    assert np.abs(got.astype(int) - expected.astype(int)).mean() < 2.0    # two JPEG decoders
    clip = clips.prepare_clip(path, PREP)                            # the face is found upright
    assert clip.still and clip.sources.tolist() == [0]


def test_sixteen_bit_grey_and_alpha_images_read_as_their_eight_bit_rgb(tmp_path):
    rng = np.random.default_rng(0)
    grey8 = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "g16.png"), grey8.astype(np.uint16) * 257)
    np.testing.assert_array_equal(clips.read_image(tmp_path / "g16.png"), np.repeat(grey8[..., None], 3, axis=2))
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    bgra = np.concatenate([rgb[..., ::-1], np.full((20, 30, 1), 128, np.uint8)], axis=2)
    cv2.imwrite(str(tmp_path / "a.png"), bgra)
    np.testing.assert_array_equal(clips.read_image(tmp_path / "a.png"), rgb)


@pytest.mark.skipif(not (CASES / "image_modes").is_dir(), reason=f"cases not found at {CASES}")
def test_the_cases_grey_16_bit_frame_reads_as_its_8_bit_twin():
    g8 = sorted((CASES / "image_modes" / "gray8").iterdir())[0]
    g16 = CASES / "image_modes" / "gray16" / g8.name
    np.testing.assert_array_equal(clips.read_image(g8), clips.read_image(g16))


def test_eight_classes_are_the_seven_basic_ones_then_contempt():
    assert labels.class_names(8) == ("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear", "contempt")
    assert labels.class_names(11)[:8] == labels.class_names(8)
    with pytest.raises(ValueError, match="model.num_classes must be 7"):
        labels.class_names(9)


@pytest.fixture(scope="module")
def image_shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("still_demo")
    synthetic.make_demo_set(out, num_train=16, num_test=7, prep=PrepConfig(image_size=48, max_frames=1, min_frames=1),
                            progress=False, still=True)
    return out


@pytest.fixture(scope="module")
def clip_shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("clip_demo")
    synthetic.make_demo_set(out, num_train=8, num_test=7, prep=PrepConfig(image_size=48, max_frames=4, min_frames=4),
                            progress=False)
    return out


def test_the_synthetic_still_image_is_the_apex_frame_of_its_clip(image_shards):
    info = dataset.read_info(image_shards)
    assert info["media"] == {"image": 23}
    lines = [json.loads(line) for line in (image_shards / dataset.MANIFEST_FILE).read_text().splitlines()]
    assert {line["media"] for line in lines} == {"image"}
    entry = synthetic.synthetic_listing(16, 7, still=True).clips[3]
    still = synthetic.render_entry(entry, PrepConfig(image_size=48, max_frames=1, min_frames=1))
    from dferjax.data import synthetic_faces
    label, seed = (int(v) for v in entry.source[len(synthetic.SOURCE_PREFIX):].removesuffix(":still").split(":"))
    spec = synthetic_faces.sample_clip(label, seed, num_frames=synthetic.STILL_FRAMES)
    frames, _ = synthetic_faces.render_spec(spec, 48)
    np.testing.assert_array_equal(still.frames[0], frames[int(np.argmax(spec.intensity))])


def test_a_clip_model_refuses_image_shards_and_an_image_model_clip_shards(image_shards, clip_shards):
    clip_config = load_config(str(ROOT / "configs" / "demo.py"))
    clip_config.data.dir = str(image_shards)
    with pytest.raises(DataConfigError, match=r"model.dfer.num_frames = 8 frames \(a clip model\).*23 still images"):
        open_data(clip_config)
    image_config = load_config(str(ROOT / "configs" / "demo_images.py"))
    image_config.data.dir = str(clip_shards)
    with pytest.raises(DataConfigError, match=r"1 frame \(a still-image model\).*15 clips and no still image"):
        open_data(image_config)
    image_config.data.dir = str(image_shards)
    image_config.model.dfer.image_size = 48
    assert open_data(image_config)["spec"].num_frames == 1


def test_the_still_image_demo_trains_and_evaluates(tmp_path):
    workdir = tmp_path / "run"
    args = ["--config", str(ROOT / "configs" / "demo_images.py") + ":train=16,test=7,epochs=2", "--workdir",
            str(workdir), f"--config.data.dir={tmp_path / 'data'}", "--config.train.batch_size=8",
            "--config.train.eval_batch_size=8", "--config.runtime.progress=False", "--config.runtime.cpu_devices=0",
            "--config.synthetic.workers=1", "--config.model.dfer.image_size=32", "--config.synthetic.image_size=32"]
    assert train.main(args) == 0
    results = json.loads((workdir / "results.json").read_text())
    assert results["last"]["epoch"] == 2 and 0.0 <= results["last"]["war"] <= 1.0
    info = dataset.read_info(tmp_path / "data")
    assert info["media"] == {"image": 23} and info["prep"]["max_frames"] == 1
