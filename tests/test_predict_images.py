"""predict on still images: a tiny still-image run (one frame per sample) and a tiny clip run, both
trained here for 2 steps, on the real photos of ../shared/testdata/images; the command line (--images,
--json, --annotate, exit statuses) and the Python API (Predictor.predict on paths, arrays, lists)."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from dferjax import predict, train
from dferjax.data import clips, faces, records, synthetic
from dferjax.data import input_pipeline as ip
from dferjax.data.clips import PrepConfig

from .conftest import TESTDATA
from .test_train import tiny_args

IMAGES = TESTDATA / "images"
needs_images = pytest.mark.skipif(not IMAGES.is_dir(),
                                  reason=f"real test photos not found at {IMAGES} (the team's shared/ folder)")
IMAGE_PREP = PrepConfig(image_size=48, max_frames=1, min_frames=1)
CLIP_PREP = PrepConfig(image_size=48, max_frames=8, min_frames=8)
ONE_FRAME = ["--config.data.num_segments=1", "--config.data.frames_per_segment=1",
             "--config.model.dfer.num_frames=1", "--config.model.dfer.temporal=none"]


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    """A still-image model (one frame per sample, Table 9's model B) trained for 2 steps on drawn faces."""
    shards = tmp_path_factory.mktemp("image_shards")
    synthetic.make_demo_set(shards, num_train=8, num_test=7, prep=IMAGE_PREP, progress=False, still=True)
    workdir = tmp_path_factory.mktemp("image_run") / "run"
    assert train.main(tiny_args(shards, workdir, "--config.train.epochs=1", *ONE_FRAME)) == 0
    return workdir


@pytest.fixture(scope="module")
def clip_run(tmp_path_factory):
    """The clip model of tests/test_predict.py (4 frames) trained for 2 steps."""
    shards = tmp_path_factory.mktemp("clip_shards")
    synthetic.make_demo_set(shards, num_train=8, num_test=7, prep=CLIP_PREP, progress=False)
    workdir = tmp_path_factory.mktemp("clip_run") / "run"
    assert train.main(tiny_args(shards, workdir, "--config.train.epochs=1")) == 0
    return workdir


@pytest.fixture(scope="module")
def predictor(image_run):
    return predict.Predictor(image_run)


def evaluation_example(predictor: predict.Predictor, path) -> dict:
    """What the evaluation reads from a test record of ``path`` prepared as the run's shards are."""
    clip = clips.prepare_clip(path, predictor.prep)
    record = records.encode_clip("photo", 0, "test", "", clip, predictor.jpeg_quality)
    return ip.record_example(record, predictor.spec, None)


@pytest.fixture
def fast_main(predictor, monkeypatch):
    """``predict.main`` with the module's loaded predictor (no reload and recompile per call)."""
    monkeypatch.setattr(predict, "Predictor", lambda *args, **kwargs: predictor)
    return predict.main


@needs_images
def test_an_image_is_one_frame_and_gets_what_the_evaluation_reads(predictor):
    path = IMAGES / "single_face.jpg"
    assert predictor.prep == IMAGE_PREP and predictor.spec.num_frames == 1
    result = predictor.predict(path)
    assert result.is_image and result.kind == "image" and result.error is None
    assert result.clip.still and len(result.clip.frames) == 1
    assert result.probabilities.shape == (7,) and np.all(result.probabilities >= 0)
    assert result.probabilities.sum() == pytest.approx(1.0, abs=1e-5)
    assert result.label == max(result.scores, key=result.scores.get)
    assert result.probabilities_by_class == result.scores and list(result.scores) == predictor.class_names
    # The model's input is the record's: the same crop, JPEG round trip and heat-maps.
    example = evaluation_example(predictor, path)
    frames, _, heatmaps, _ = predictor.inputs(result.clip)
    assert frames.shape == (1, 32, 32, 3)
    np.testing.assert_array_equal(result.inputs[0], example["frames"])
    np.testing.assert_array_equal(heatmaps, example["heatmaps"])
    # ... and the probabilities are the model's on the evaluation's example (tests/test_predict.py checks the
    # batched forward against the model called eagerly).
    np.testing.assert_allclose(result.probabilities, predictor.probabilities([example["frames"]],
                                                                             [example["heatmaps"]])[0], atol=1e-6)
    # Face square and key-points in image pixels: the key-points lie in the square, inside the photo.
    height, width = clips.read_image(path).shape[:2]
    box, points = result.box, result.keypoints
    assert box.shape == (4,) and points.shape == (18, 2)
    assert np.all((points >= box[:2]) & (points <= box[2:]))
    assert np.all((points >= 0) & (points < [width, height]))


@needs_images
def test_the_python_api_takes_paths_arrays_and_lists(predictor):
    path = IMAGES / "single_face.jpg"
    image = clips.read_image(path)                       # uint8 RGB (H, W, 3)
    by_path = predictor.predict(str(path))
    by_array = predictor.predict(image)
    assert by_array.source == "<image>" and by_array.is_image
    np.testing.assert_allclose(by_array.probabilities, by_path.probabilities, atol=1e-6)
    np.testing.assert_allclose(by_array.box, by_path.box)
    # A list: one Prediction each, in order; errors stay in their Prediction.
    results = predictor.predict([path, image, IMAGES / "no_faces.jpg", np.stack([image] * 3)])
    assert [r.source for r in results] == [str(path), "<image 1>", str(IMAGES / "no_faces.jpg"), "<frames 3>"]
    np.testing.assert_allclose(results[1].probabilities, by_path.probabilities, atol=1e-6)
    assert results[2].no_face and results[2].label is None and results[2].scores is None
    assert "no_faces.jpg: no face found in the image" in results[2].error
    frames = results[3]                                  # (N, H, W, 3): the frames of one clip
    stored = len(frames.frame_indices)                   # the run's preparation stores max_frames = 1 of 3
    assert not frames.is_image and frames.kind == "clip" and frames.num_frames == 3
    assert frames.box.shape == (stored, 4) and frames.keypoints.shape == (stored, 18, 2)
    assert frames.label in predictor.class_names
    # One input that fails raises, naming it.
    with pytest.raises(clips.NoFaceError, match="no_faces.jpg: no face found in the image"):
        predictor.predict(IMAGES / "no_faces.jpg")
    with pytest.raises(clips.ClipError, match="missing.png: does not exist"):
        predictor.predict(IMAGES / "missing.png")
    with pytest.raises(ValueError, match="positive"):
        predictor.predict([path], window=0)


@needs_images
def test_several_faces_take_the_largest_and_say_so(predictor):
    result = predictor.predict(IMAGES / "multi_face.jpg", window=1.0)
    assert result.error is None and result.is_image and not result.windows
    assert any("faces in the image: took the largest" in note for note in result.notes)
    assert predict.NO_WINDOW_NOTE in result.notes              # --window does not apply to an image


@needs_images
def test_an_image_without_a_face_exits_2_naming_it(image_run, capsys):
    code = predict.main(["--checkpoint", str(image_run), str(IMAGES / "no_faces.jpg"),
                         str(IMAGES / "single_face.jpg")])
    captured = capsys.readouterr()
    assert code == 2
    assert "no_faces.jpg: no face found in the image" in captured.err
    assert "single_face.jpg" in captured.out and "1 of 2 inputs classified" in captured.out


@needs_images
def test_a_folder_of_images_is_one_row_per_image_with_images(predictor, fast_main, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    names = ["single_face.jpg", "0-f1-su-ph.jpg", "45-m7-di-ph.jpg"]
    for name in names:
        shutil.copy(IMAGES / name, folder / name)
    (folder / "readme.txt").write_text("not a photo")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert fast_main(["--checkpoint", "RUN", "--images", str(folder)]) == 0
    out = capsys.readouterr().out
    rows = [line.split()[0] for line in out.splitlines() if line.split() and line.split()[0] in names]
    assert rows == ["0-f1-su-ph.jpg", "45-m7-di-ph.jpg", "single_face.jpg"]        # natural order
    assert f"skipped {folder / 'readme.txt'}: not an image file" in out
    assert "3 of 3 inputs classified" in out
    # --json: one object per image; a folder without an image is an error naming it.
    assert fast_main(["--checkpoint", "RUN", str(folder), "--images", "--json", str(empty)]) == 1   # intermixed
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.strip().splitlines()]
    assert [line["source"] for line in lines[:3]] == [str(folder / n) for n in sorted(names)]
    assert f"{empty}: --images: the folder holds no image file" in lines[3]["error"]
    assert f"error: {empty}: --images" in captured.err and "readme.txt" in captured.err
    for line in lines[:3]:
        assert set(line) == {"source", "kind", "model", "label", "probabilities", "box", "keypoints", "notes"}
        assert line["kind"] == "image" and sum(line["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert line["label"] == max(line["probabilities"], key=line["probabilities"].get)
        assert len(line["box"]) == 4 and np.asarray(line["keypoints"]).shape == (18, 2)
    # Without --images a folder is the frames of one clip: one result (these photos differ in size: refused).
    with pytest.raises(clips.ClipError, match="frames differ in size"):
        predictor.predict(folder)
    frames = tmp_path / "frames"
    frames.mkdir()
    for k in range(3):
        shutil.copy(IMAGES / "single_face.jpg", frames / f"{k:04d}.jpg")
    clip = predictor.predict(frames)
    assert clip.kind == "clip" and clip.num_frames == 3 and clip.to_dict()["kind"] == "clip"


@needs_images
def test_an_annotated_image_is_the_photo_with_box_points_and_bars(predictor, fast_main, tmp_path, capsys):
    path = IMAGES / "single_face.jpg"
    out = tmp_path / "out.png"
    assert fast_main(["--checkpoint", "RUN", str(path), "--annotate", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    given = np.ascontiguousarray(clips.read_image(path)[..., ::-1]).astype(int)       # BGR, as cv2 reads
    written = cv2.imread(str(out)).astype(int)
    assert written.shape == given.shape                                   # full size, not a contact sheet
    changed = np.abs(written - given).max(axis=-1) > 0
    result = predictor.predict(path)
    x0, y0, x1, y1 = (int(round(v)) for v in result.box)
    # The box outline is drawn in the "face detected" green (its bottom edge: the bars may cover the top).
    bottom = written[y1, x0 + 5:x1 - 5]
    assert np.mean(np.all(np.abs(bottom - predict.DETECTED_COLOUR) < 40, axis=-1)) > 0.9
    # Inside the box, below the probability panel (a top corner), only the key-point dots changed.
    corners = changed[:, :3].all(axis=1) | changed[:, -3:].all(axis=1)
    panel = int(np.argmin(corners))                                     # first row the panel leaves alone
    drawn = np.zeros(changed.shape, np.uint8)
    for x, y in result.keypoints:
        cv2.circle(drawn, (int(round(x)), int(round(y))), 8, 1, -1)
    inside = np.zeros(changed.shape, bool)
    inside[max(y0 + 6, panel):y1 - 5, x0 + 6:x1 - 5] = True
    assert changed[inside].any()
    assert not np.any(changed & inside & (drawn == 0))
    # A video name for an image is an error of that input, in one line.
    assert fast_main(["--checkpoint", "RUN", str(path), "--annotate", str(tmp_path / "x.mp4")]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(err) == 1 and "single_face.jpg: --annotate x.mp4: a still image is annotated as an image" in err[0]


@needs_images
def test_a_clip_model_classifies_an_image_as_its_frame_repeated(clip_run):
    """A model of 4 frames sees the one frame 4 times, as the test split shows it a one-frame record."""
    clip_predictor = predict.Predictor(clip_run)
    path = IMAGES / "single_face.jpg"
    result = clip_predictor.predict(path)
    assert result.is_image and result.take.tolist() == [0, 0, 0, 0]
    example = evaluation_example(clip_predictor, path)
    np.testing.assert_array_equal(result.inputs[0], example["frames"])
    np.testing.assert_allclose(result.probabilities, clip_predictor.probabilities([example["frames"]],
                                                                                  [example["heatmaps"]])[0], atol=1e-6)
    line = result.to_dict()
    assert line["kind"] == "image" and line["label"] == result.label


@needs_images
def test_a_still_image_model_on_a_video_averages_frames_spread_over_it(predictor):
    video = TESTDATA / "videos" / "woman2.mp4"
    result = predictor.predict(str(video))
    count = predict.STILL_MODEL_FRAMES
    assert len(result.clip.frames) == count and result.clip.frame_indices[-1] > result.num_frames * 0.9
    assert any(f"mean over {count} frames" in note for note in result.notes)
    each = [ip.clip_inputs(result.clip.frames[i:i + 1], result.clip.keypoints[i:i + 1], predictor.spec,
                           predictor.jpeg_quality) for i in range(count)]
    probs = predictor.probabilities([e[0] for e in each], [e[2] for e in each])     # one frame at a time
    np.testing.assert_allclose(result.probabilities, probs.mean(axis=0), rtol=1e-5, atol=1e-7)


@needs_images
def test_a_run_trained_on_face_crops_still_finds_the_face_in_a_photo(image_run, tmp_path):
    """Shards of pre-cropped faces (RAF-DB aligned, DFEW's crops) train on crops; a user's photo is not one:
    the face is searched for (no face: an error naming the photo), unless the inputs are said to be crops."""
    run = tmp_path / "cropped_run"
    shutil.copytree(image_run, run)
    info = json.loads((run / "data.json").read_text())
    info["prep"]["precropped"] = True
    (run / "data.json").write_text(json.dumps(info))
    searching = predict.Predictor(run)
    with pytest.raises(clips.NoFaceError, match="no_faces.jpg"):
        searching.predict(IMAGES / "no_faces.jpg")
    found = searching.predict(IMAGES / "single_face.jpg")
    assert any("trained on face crops" in note for note in found.notes)
    assert found.clip.sources.tolist() == [int(faces.FaceSource.DETECTED)]
    as_crops = predict.Predictor(run, precropped=True).predict(IMAGES / "no_faces.jpg")
    assert as_crops.clip.sources.tolist() == [int(faces.FaceSource.WHOLE_FRAME)] and as_crops.label
