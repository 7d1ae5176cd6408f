"""predict on the real videos of ../shared/testdata with a tiny model trained here; its inputs against
the training pipeline's; timelines, annotation, faults."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from dferjax import predict
from dferjax.data import dataset, faces, records, synthetic
from dferjax.data import input_pipeline as ip
from dferjax.data.clips import PrepConfig
from dferjax.engine import checkpoints as ckpt

from .conftest import TESTDATA

needs_testdata = pytest.mark.skipif(not TESTDATA.is_dir(),
                                    reason=f"real test media not found at {TESTDATA} (the team's shared/ folder)")
VIDEOS = TESTDATA / "videos"
WITH_FACE = ["single_face.mp4", "fer_test.mp4", "woman2.mp4", "WolfgangLanger_Pexels.mp4", "face_noface.mov"]
PREP = PrepConfig(image_size=48, max_frames=8, min_frames=8)


@pytest.fixture(scope="module")
def shards(trained_demo):
    return trained_demo[0]


@pytest.fixture(scope="module")
def run(trained_demo):
    """A tiny model trained for 2 steps (its weights are not meant to be good, only real)."""
    return trained_demo[1]


@pytest.fixture(scope="module")
def predictor(run):
    return predict.Predictor(run)


def test_inputs_equal_the_test_pipeline_on_the_same_clip(shards, run, predictor):
    """A clip prepared outside the shards gets exactly what the evaluation reads from its record."""
    assert json.loads((run / ckpt.DATA_FILE).read_text())["prep"] == PREP.to_dict()
    assert predictor.prep == PREP
    listing = synthetic.synthetic_listing(8, 7)
    entry = [c for c in listing.clips if c.split == "test"][3]
    clip = synthetic.render_entry(entry, PREP)
    frames, _, heatmaps, _ = predictor.inputs(clip)
    info = dataset.read_info(shards)
    source = records.ShardedDataSource(dataset.split_shards(shards, info, ["test"], "data.test_splits"))
    example = ip.record_example(source[3], predictor.spec, None)
    np.testing.assert_array_equal(frames, example["frames"])
    np.testing.assert_array_equal(heatmaps, example["heatmaps"])
    # ... and the probabilities are the softmax of the evaluation model's logits.
    model, _, _ = ckpt.load_model(run)
    logits = np.asarray(model({"frames": example["frames"][None],
                               "heatmaps": example["heatmaps"][None].astype(np.float32)}).logits[0])
    expected = np.exp(logits - logits.max())
    # (the jitted batch and the op-by-op call sum in other orders: float32 rounding, ~1e-5 of a probability)
    np.testing.assert_allclose(predictor.probabilities([frames], [heatmaps])[0], expected / expected.sum(),
                               rtol=1e-4, atol=2e-5)


def test_describe_names_the_checkpoint_and_the_model(run, predictor):
    text = predictor.describe()
    assert text.startswith(f"checkpoint {run}")
    assert f"; model dfer (Table 9 model E, {predictor.spec.num_frames} frames of " in text and "; 7 classes; cpu device" in text


def test_batches_do_not_change_results(predictor):
    rng = np.random.default_rng(0)
    size, t, h = predictor.spec.image_size, predictor.spec.num_frames, predictor.spec.heatmap_size
    frames = [rng.integers(0, 256, (t, size, size, 3), dtype=np.uint8) for _ in range(5)]
    maps = [rng.random((t, h, h, 18)).astype(np.float16) for _ in range(5)]
    together = predictor.probabilities(frames, maps)
    alone = np.concatenate([predictor.probabilities([f], [m]) for f, m in zip(frames, maps)])
    assert together.shape == (5, 7)
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-6)


def test_window_ranges_cover_the_clip():
    # 72 frames at 30 fps, windows of 1 s every 0.5 s: 30 frames every 15, the last one moved to the end.
    assert predict.window_ranges(72, 30.0, 1.0, 0.5) == [(0, 30), (15, 45), (30, 60), (42, 72)]
    assert predict.window_ranges(20, 30.0, 1.0, 0.5) == [(0, 20)]
    assert predict.window_ranges(60, 30.0, 1.0, 1.0) == [(0, 30), (30, 60)]
    with pytest.raises(ValueError, match="positive"):
        predict.window_ranges(60, 30.0, 0.0, 1.0)


@needs_testdata
def test_probabilities_for_every_video_with_a_face(predictor):
    results = predict.predict(predictor, [VIDEOS / name for name in WITH_FACE])
    for name, result in zip(WITH_FACE, results):
        assert result.error is None, (name, result.error)
        assert result.probabilities.shape == (7,)
        assert np.all(result.probabilities >= 0)
        assert result.probabilities.sum() == pytest.approx(1.0, abs=1e-5), name
        assert result.num_frames == int(cv2.VideoCapture(str(VIDEOS / name)).get(cv2.CAP_PROP_FRAME_COUNT))
        line = predict.to_json(result, predictor.class_names)
        assert sum(line["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert line["label"] == max(line["probabilities"], key=line["probabilities"].get)


@needs_testdata
def test_no_face_exits_2_naming_the_file(run, capsys):
    code = predict.main(["--checkpoint", str(run), str(VIDEOS / "no_face.mp4"), str(VIDEOS / "single_face.mp4")])
    captured = capsys.readouterr()
    assert code == 2
    assert "no_face.mp4: no face found" in captured.err
    assert "single_face.mp4" in captured.out and "1 of 2 inputs classified" in captured.out


@needs_testdata
def test_json_timeline_covers_the_video(run, capsys):
    video = VIDEOS / "face_noface.mov"
    assert predict.main(["--checkpoint", str(run), "--json", "--window", "1.5", "--stride", "1", str(video)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    out = json.loads(lines[0])
    assert out["model"].startswith("dfer (") and " px" in out["model"]    # the line says what produced it
    windows = out["windows"]
    cap = cv2.VideoCapture(str(video))
    frames, fps = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), cap.get(cv2.CAP_PROP_FPS)
    assert windows[0]["start_frame"] == 0 and windows[-1]["end_frame"] == frames
    assert windows[-1]["end_s"] == pytest.approx(frames / fps, abs=1e-3)
    for a, b in zip(windows, windows[1:]):
        assert b["start_frame"] <= a["end_frame"]           # no gap between windows
    # This video loses its face half-way: early windows are classified, the last ones say why not.
    assert "probabilities" in windows[0] and sum(windows[0]["probabilities"].values()) == pytest.approx(1, abs=1e-4)
    assert "no face" in windows[-1]["error"]
    assert sum(out["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)


@needs_testdata
def test_annotated_video_keeps_frame_count_and_size(run, tmp_path, capsys):
    video = VIDEOS / "single_face.mp4"
    out = tmp_path / "annotated.mp4"
    assert predict.main(["--checkpoint", str(run), "--window", "1", str(video), "--annotate", str(out)]) == 0
    source, written = cv2.VideoCapture(str(video)), cv2.VideoCapture(str(out))
    for prop in (cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT):
        assert written.get(prop) == source.get(prop)
    count = 0
    changed = 0
    while True:
        ok_a, a = source.read()
        ok_b, b = written.read()
        if not ok_b:
            break
        assert ok_a
        count += 1
        changed += np.abs(a.astype(int) - b.astype(int)).mean() > 2      # the drawing shows
    assert count == int(source.get(cv2.CAP_PROP_FRAME_COUNT)) == 72
    assert changed == count
    import av                                                   # H.264 (browser-playable), the input's timing
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        stamps = [float(frame.time) for frame in container.decode(stream)]
    source = cv2.VideoCapture(str(video))
    expected = []
    while source.grab():
        expected.append(source.get(cv2.CAP_PROP_POS_MSEC) / 1000)
    np.testing.assert_allclose(np.asarray(stamps) - stamps[0], np.asarray(expected) - expected[0], atol=1e-3)


@needs_testdata
def test_annotation_draws_the_prepared_face(predictor, tmp_path):
    """On sampled frames the drawn square is the crop box and the key-points lie inside it."""
    result = predict.predict(predictor, [VIDEOS / "single_face.mp4"])[0]
    boxes, points, sampled, _ = predict.frame_tracks(result, result.num_frames)
    clip = result.clip
    assert sampled.sum() == len(np.unique(clip.frame_indices))
    i = int(clip.frame_indices[2])
    np.testing.assert_allclose(boxes[i], faces.crop_squares(clip.boxes[2:3])[0])
    # Back in crop pixels, the frame key-points are the clip's key-points.
    back = faces.landmarks_to_crop(points[i][None], clip.boxes[2:3], PREP.image_size)[0]
    np.testing.assert_allclose(back, clip.keypoints[2], atol=1e-3)
    inside = (points[i] >= boxes[i][:2]) & (points[i] <= boxes[i][2:])
    assert inside.all()
    sheet = predict.contact_sheet(result, tmp_path / "sheet.png", predictor.class_names)
    image = cv2.imread(str(sheet))
    assert image.shape == (28 + 160, 4 * 160, 3)     # the tiny config's 4 model frames in one row


@needs_testdata
def test_several_faces_take_the_largest_and_say_so(predictor, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(4):
        shutil.copy(TESTDATA / "images" / "multi_face.jpg", folder / f"frame{i}.jpg")
    result = predict.predict(predictor, [folder])[0]
    assert result.error is None
    assert any("several faces" in note and "largest" in note for note in result.notes)
    assert any("frame rate unknown" in note for note in result.notes)


def test_unreadable_and_missing_inputs_exit_1(run, tmp_path, capsys):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    code = predict.main(["--checkpoint", str(run), str(broken), str(tmp_path / "missing.mp4")])
    err = capsys.readouterr().err
    assert code == 1
    assert "broken.mp4" in err and "missing.mp4: does not exist" in err


def test_checkpoint_of_another_config_names_the_setting(run, capsys):
    demo = str(Path(__file__).resolve().parents[1] / "configs" / "demo.py")
    code = predict.main(["--checkpoint", str(run), "--config", demo, "whatever.mp4"])
    err = capsys.readouterr().err
    assert code == 1
    # The demo's 8 frames against the run's 4: another position embedding (17 x d against 5 x d).
    assert "another model" in err and "pos_embedding" in err and "model.dfer.num_frames: 4 != 8" in err


def test_missing_checkpoint_is_an_error(tmp_path, capsys):
    assert predict.main(["--checkpoint", str(tmp_path), "x.mp4"]) == 1
    assert "is neither a run directory" in capsys.readouterr().err


def test_run_figures(run, tmp_path, capsys):
    from dferjax import plots

    out = tmp_path / "figures"
    assert plots.main(["--run", str(run), "--out", str(out), "--clips", "3"]) == 0
    printed = capsys.readouterr().out
    for name in ("confusion.png", "curves.png", "tsne.png", "heatmaps.png"):
        image = cv2.imread(str(out / name))
        assert image is not None and min(image.shape[:2]) > 100, name
        assert f"wrote {out / name}" in printed


def test_tsne_separates_separable_features(tmp_path):
    """Three well-separated Gaussian clusters stay apart in the 2-D map (checked on sklearn's output)."""
    from dferjax import figures

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 20)
    features = rng.normal(size=(60, 16)) * 0.1 + np.eye(16)[labels] * 5
    points = figures.tsne_points(features, seed=0)
    assert points.shape == (60, 2)
    centres = np.stack([points[labels == k].mean(0) for k in range(3)])
    spread = max(np.linalg.norm(points[labels == k] - centres[k], axis=1).max() for k in range(3))
    assert min(np.linalg.norm(centres[a] - centres[b]) for a in range(3) for b in range(a + 1, 3)) > spread
    path = figures.plot_tsne(features, labels, ["a", "b", "c"], tmp_path / "tsne.png")
    assert cv2.imread(str(path)) is not None


CASES = TESTDATA.parent / "cases"


@pytest.mark.skipif(not (CASES / "tiny_face").is_dir(), reason=f"{CASES / 'tiny_face'} not found (shared/cases)")
def test_small_faces_are_found_with_detector_upsampling(run, capsys):
    """cases/tiny_face: a 55-pixel face in a 1280x720 frame. At the shards' setting (upsampling 0) dlib
    finds nothing; predict retries at 1, finds it and says so; --upsample 0 keeps the old behaviour,
    and its message says what small faces need."""
    video = CASES / "tiny_face" / "small_in_720p.mp4"
    assert predict.main(["--checkpoint", str(run), "--json", str(video)]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["label"] in predict.Predictor(run).class_names
    assert any("upsampling 1" in n for n in out["notes"])
    assert predict.main(["--checkpoint", str(run), "--upsample", "0", str(video)]) == 2
    err = capsys.readouterr().err
    assert "no face found in any of its 8 sampled frames" in err and "smaller than about 80 pixels" in err
    assert "--upsample 1" in err
    # Found in a few frames only at 0: the note says what small faces need.
    assert predict.main(["--checkpoint", str(run), "--json", str(CASES / "tiny_face" / "tiny_192x108.mp4")]) == 0
    notes = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["notes"]
    assert any("--upsample 1" in note for note in notes)


def test_inputs_with_the_same_file_name_stay_distinct():
    sources = ["x/a/clip.mp4", "x/b/clip.mp4", "my clip (1).mp4", "笑顔 ä.mp4", "x/a/clip.mp4", "c/d/e.mp4"]
    assert predict.distinct_names(sources) == ["a/clip.mp4", "b/clip.mp4", "my clip (1).mp4", "笑顔 ä.mp4",
                                               "a/clip.mp4#2", "e.mp4"]
    paths = predict.annotation_paths("out/sheet.png", sources)
    assert len(set(paths)) == len(sources)
    assert [p.name for p in paths[:4]] == ["sheet-a_clip.png", "sheet-b_clip.png", "sheet-my clip (1).png",
                                           "sheet-笑顔 ä.png"]
    assert predict.annotation_paths("out/one.mp4", ["x/a/clip.mp4"]) == [Path("out/one.mp4")]


@pytest.mark.skipif(not (CASES / "path_quirks").is_dir(), reason=f"{CASES / 'path_quirks'} not found (shared/cases)")
def test_same_names_in_other_folders_get_their_own_outputs(run, tmp_path, capsys):
    """cases/path_quirks: a/clip.mp4 and b/clip.mp4 (different videos), spaces and non-ASCII names: one
    contact sheet per input, table rows that tell them apart, columns aligned for wide characters."""
    case = CASES / "path_quirks"
    inputs = [str(case / n) for n in ("a/clip.mp4", "b/clip.mp4", "my clip (1).mp4", "笑顔 ä.mp4")]
    assert predict.main(["--checkpoint", str(run), *inputs, "--annotate", str(tmp_path / "sheet.png")]) == 0
    out = capsys.readouterr().out
    assert len(list(tmp_path.glob("sheet-*.png"))) == 4
    rows = [line for line in out.splitlines() if line.split() and line.split()[0] in ("a/clip.mp4", "b/clip.mp4")]
    assert len(rows) == 2
    header = out.splitlines()[1]
    row = next(line for line in out.splitlines() if line.startswith("笑顔"))
    assert predict._width(row) == len(header)            # aligned in terminal columns


def count_grabs(monkeypatch) -> dict[str, int]:
    """Counts, from now on, the videos clips.py opens with OpenCV ("opens") and the frames it grabs ("n")."""
    from dferjax.data import clips
    counts = {"n": 0, "opens": 0}
    real = cv2.VideoCapture

    class Counting:
        def __init__(self, *args):
            counts["opens"] += 1
            self.cap = real(*args)

        def grab(self):
            counts["n"] += 1
            return self.cap.grab()

        def __getattr__(self, name):
            return getattr(self.cap, name)

    monkeypatch.setattr(clips.cv2, "VideoCapture", Counting)
    return counts


@needs_testdata
def test_a_timeline_decodes_the_video_once_and_its_clip_is_prepare_clips(predictor, monkeypatch):
    """cases/long_video's kind: all windows of a video come from one decode pass (every frame grabbed
    once, whatever the number of windows), and the whole clip is exactly what prepare_clip gives."""
    from dferjax.data import clips
    video = VIDEOS / "woman2.mp4"
    count = clips.probe_clip(video)[0]
    real = cv2.VideoCapture
    grabs = count_grabs(monkeypatch)
    results = predict.predict(predictor, [str(video)], window_s=1.0, stride_s=0.5)
    assert len(results[0].windows) >= 25 and results[0].error is None
    assert grabs["n"] <= count + 1 and grabs["opens"] <= 3          # probes open without decoding
    monkeypatch.setattr(clips.cv2, "VideoCapture", real)
    whole = clips.prepare_clip(video, predictor.prep)
    np.testing.assert_array_equal(results[0].clip.frames, whole.frames)
    np.testing.assert_array_equal(results[0].clip.frame_indices, whole.frame_indices)
    np.testing.assert_allclose(results[0].clip.keypoints, whole.keypoints)


@needs_testdata
def test_timeline_windows_equal_single_window_predictions_of_their_frames(run, predictor):
    """Issue 20: the windows of a timeline share each frame's face detection (faces.FrameCache) and run in
    batches; window by window they equal a prediction of the same frames on their own (decoded here by
    OpenCV, prepared without a cache, classified one input at a time). The detector runs once per distinct
    frame the timeline takes, not once per window's frame."""
    video = VIDEOS / "woman2.mp4"
    cap = cv2.VideoCapture(str(video))
    decoded = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        decoded.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    cap.release()
    before = faces.detector_calls()
    (result,) = predict.predict(predictor, [str(video)], window_s=1.0, stride_s=0.5)
    calls = faces.detector_calls() - before
    windows = [w for w in result.windows if w.clip is not None]
    assert len(windows) >= 25
    taken = {int(i) for w in windows for i in w.clip.frame_indices} | {int(i) for i in result.clip.frame_indices}
    assert calls == len(taken) < sum(len(w.clip.frame_indices) for w in windows)   # overlapping windows share
    # memory: a window's frames are freed once it is prepared (the clip's own frames and those of the two
    # or three windows in progress are held, not every frame taken)
    from dferjax.data import clips
    timeline = clips.read_timeline(video, predictor.prep, [(w.start_s, w.end_s) for w in result.windows])
    assert 0 < timeline.frames_held <= 4 * predictor.prep.max_frames < len(taken)
    single = predict.Predictor(run, batch_size=1)
    for window in windows[::6] + windows[-1:]:
        indices = window.clip.frame_indices
        alone = single.predict(np.stack([decoded[i] for i in indices]))
        np.testing.assert_array_equal(alone.clip.frames, window.clip.frames)
        np.testing.assert_array_equal(alone.clip.keypoints, window.clip.keypoints)
        np.testing.assert_array_equal(alone.clip.sources, window.clip.sources)
        np.testing.assert_allclose(alone.probabilities, window.probabilities, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not (CASES / "vfr").is_dir(), reason=f"{CASES / 'vfr'} not found (shared/cases)")
def test_windows_of_a_variable_rate_video_span_the_times_they_say(predictor, capsys):
    """cases/vfr: frames 0-35 at 30 fps, 36-71 at 6 fps (6.8 s). Every frame a window takes is presented
    inside that window (by the construction's times, not OpenCV's); the note says the rate varies."""
    results = predict.predict(predictor, [str(CASES / "vfr" / "vfr.mp4")], window_s=2.0, stride_s=2.0)
    result = results[0]
    assert any("frame rate varies" in note for note in result.notes)

    def shown_at(i):
        return i / 30 if i < 36 else 1.2 + (i - 36) / 6

    # The header says 6.8 s; the last frames are presented up to 7.2 s: a last window ends there.
    assert [round(w.start_s, 2) for w in result.windows] == [0.0, 2.0, 4.0, 4.8, 5.2]
    assert result.windows[-1].stop == 72 and result.windows[-1].end_s == pytest.approx(7.2, abs=0.01)
    for w in result.windows:
        times = [shown_at(int(i)) for i in w.clip.frame_indices]
        assert all(w.start_s - 1e-6 <= t < w.end_s + 1 / 6 for t in times), (w.start_s, w.end_s, times)


@needs_testdata
def test_frames_without_a_face_are_shown_and_reported_as_such(predictor, run, tmp_path, capsys):
    """face_noface.mov loses its face half-way: the JSON gives each window's share of frames with a face
    detected; windows that rest on filled frames say so; the annotated copy draws no box and no key-points
    where no face was detected, and its legend says so."""
    video = VIDEOS / "face_noface.mov"
    assert predict.main(["--checkpoint", str(run), "--json", "--window", "1", str(video)]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    result = predict.predict(predictor, [str(video)])[0]
    sources = np.asarray(result.clip.sources)[result.take]
    expected = np.isin(sources, [int(m) for m in faces.MEASURED]).mean()           # counted here
    assert out["detected_share"] == pytest.approx(expected, abs=1e-4) and 0 < expected < 1
    shares = [w.get("detected_share") for w in out["windows"] if "probabilities" in w]
    assert shares[0] == 1.0 and all(0 <= s <= 1 for s in shares)
    for w in out["windows"]:
        if "probabilities" in w and w["detected_share"] < 0.5:
            assert "rests mostly on filled frames" in w["note"]
    _, _, _, measured = predict.frame_tracks(result, result.num_frames)
    assert measured[0] and not measured[-1]
    path = predict.annotate_video(result, tmp_path / "a.mp4", predictor.class_names)
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    green = lambda f: int(np.sum((f[..., 1] > 200) & (f[..., 0] < 80) & (f[..., 2] < 80)))   # noqa: E731
    red = lambda f: int(np.sum((f[..., 2] > 200) & (f[..., 0] < 80) & (f[..., 1] < 80)))     # noqa: E731
    legend = frames[0].shape[0] - 60                          # the legend's rows
    first, last = frames[0][:legend], frames[-1][:legend]
    assert green(first) > 100 and green(last) == 0             # a box where a face is, none where none is
    assert red(last) == 0                                      # nothing drawn at the face (key-points have red)
    assert red(frames[-1][legend:]) > 20 and red(frames[0][legend:]) == 0    # "no face detected in this frame"


@pytest.mark.skipif(not (CASES / "vfr").is_dir(), reason=f"{CASES / 'vfr'} not found (shared/cases)")
def test_an_annotated_copy_keeps_a_variable_frame_rate(predictor, tmp_path):
    """cases/vfr: the annotated .mp4 presents every frame when the input does (to the millisecond),
    not at the average rate."""
    video = CASES / "vfr" / "vfr.mp4"

    def stamps(path):
        cap = cv2.VideoCapture(str(path))
        out = []
        while cap.grab():
            out.append(cap.get(cv2.CAP_PROP_POS_MSEC))
        return np.asarray(out)

    result = predict.predict(predictor, [str(video)])[0]
    path = predict.annotate_video(result, tmp_path / "vfr.mp4", predictor.class_names)
    given, written = stamps(video), stamps(path)
    assert len(written) == len(given) == 72
    np.testing.assert_allclose(written, given, atol=1.0)
    assert np.diff(written)[40] > 4 * np.diff(written)[10]         # the slow half stays slow


@pytest.mark.skipif(not (CASES / "long_video").is_dir(), reason=f"{CASES / 'long_video'} not found (shared/cases)")
def test_the_long_video_case_is_read_in_one_pass_with_bounded_memory(monkeypatch):
    """cases/long_video (woman2.mp4 looped 8x: 3,712 frames, 124 s) at --window 2 --stride 2: one decode pass
    (every frame grabbed once), each sampled frame's face detected once, and the decoded frames held at once
    bounded by a few windows' worth, not the video's."""
    from dferjax.data import clips
    video = CASES / "long_video" / "long8x.mp4"
    count, fps = clips.probe_clip(video)
    grabs = count_grabs(monkeypatch)
    spans = predict.window_times(count / fps, 2.0, 2.0)
    before = faces.detector_calls()
    timeline = clips.read_timeline(video, PREP, spans)
    assert len(timeline.windows) == len(spans) >= 60 and grabs["n"] <= count + 1
    taken = {int(i) for w in timeline.windows if isinstance(w, clips.PreparedClip) for i in w.frame_indices}
    taken |= {int(i) for i in timeline.clip.frame_indices}
    assert faces.detector_calls() - before == len(taken)
    assert 0 < timeline.frames_held <= 4 * PREP.max_frames < len(taken)
