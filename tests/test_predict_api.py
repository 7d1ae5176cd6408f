"""The Python API as researchers use it: ``from dferjax import Predictor``, the same probabilities as the
command line, a list equals one-by-one calls, and tables (records, CSV) that round-trip."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest

from dferjax import predict

from .conftest import TESTDATA

VIDEOS = TESTDATA / "videos"
needs_testdata = pytest.mark.skipif(not TESTDATA.is_dir(), reason=f"real test media not found at {TESTDATA}")


@pytest.fixture(scope="module")
def run(trained_demo):
    return trained_demo[1]


@pytest.fixture(scope="module")
def predictor(run):
    from dferjax import Predictor                      # the documented short import
    return Predictor(run)


@needs_testdata
def test_the_api_gives_what_the_command_line_prints(run, predictor, capsys):
    video = VIDEOS / "single_face.mp4"
    result = predictor.predict(str(video))
    assert predict.main(["--checkpoint", str(run), "--json", str(video)]) == 0
    printed = json.loads(capsys.readouterr().out.strip())
    assert printed["label"] == result.label
    for name, p in printed["probabilities"].items():
        assert p == pytest.approx(result.scores[name], abs=1e-6)


@needs_testdata
def test_a_list_equals_one_by_one_calls_and_keeps_errors_in_place(predictor):
    inputs = [str(VIDEOS / "single_face.mp4"), str(VIDEOS / "no_face.mp4"), str(VIDEOS / "woman2.mp4")]
    together = predictor.predict(inputs)
    assert [r.source for r in together] == inputs
    assert together[1].no_face and together[1].label is None
    for name, r in zip(inputs[::2], together[::2]):
        alone = predictor.predict(name)
        np.testing.assert_array_equal(alone.probabilities, r.probabilities)


@needs_testdata
def test_records_and_csv_round_trip_per_input_window_and_frame(predictor, tmp_path):
    video = str(VIDEOS / "face_noface.mov")
    results = predictor.predict([video, str(VIDEOS / "no_face.mp4")], window=1.5, stride=1.0)
    rows = predict.to_records(results, per_frame=True)
    frames = int(cv2.VideoCapture(video).get(cv2.CAP_PROP_FRAME_COUNT))
    levels = [r["level"] for r in rows if r["source"] == video]
    assert levels[0] == "input" and levels.count("window") == len(results[0].windows) > 1
    assert levels.count("frame") == frames
    assert [r["frame"] for r in rows if r["level"] == "frame"] == list(range(frames))
    assert len({tuple(r) for r in rows}) == 1                       # one set of columns, in one order
    failed = [r for r in rows if r["source"].endswith("no_face.mp4")]
    assert len(failed) == 1 and "no face found" in failed[0]["error"]
    window_rows = [r for r in rows if r["level"] == "window"]
    for w, row in zip(results[0].windows, window_rows):
        assert row["start_s"] == pytest.approx(w.start_s, abs=1e-4)
        if w.probabilities is not None:
            assert row["p_happy"] == float(w.probabilities[0]) and row["label"] == predictor.class_names[
                int(np.argmax(w.probabilities))]
    # A frame without a detected face says so and carries no measured box claim.
    frame_rows = [r for r in rows if r["level"] == "frame"]
    assert any(r["face_detected"] for r in frame_rows) and not all(r["face_detected"] for r in frame_rows)
    path = predict.write_csv(results, tmp_path / "out.csv", per_frame=True)
    with path.open(newline="", encoding="utf-8") as f:
        back = list(csv.DictReader(f))
    assert len(back) == len(rows)
    for written, read in zip(rows, back):
        assert list(read) == list(written)
        for key, value in written.items():
            if value is None:
                assert read[key] == ""
            elif isinstance(value, bool):
                assert read[key] == str(value)
            elif isinstance(value, (int, float)):
                assert float(read[key]) == value                    # numbers read back exactly
            else:
                assert read[key] == value
    assert results[0].to_records() == [r for r in predict.to_records(results) if r["source"] == video]


@needs_testdata
def test_the_command_line_writes_the_same_csv(run, predictor, tmp_path, capsys):
    video = str(VIDEOS / "single_face.mp4")
    out = tmp_path / "table.csv"
    assert predict.main(["--checkpoint", str(run), video, "--csv", str(out), "--per-frame"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    with out.open(newline="", encoding="utf-8") as f:
        back = list(csv.DictReader(f))
    expected = predict.to_records([predictor.predict(video)], per_frame=True)
    assert len(back) == len(expected) and back[0]["label"] == expected[0]["label"]
    assert float(back[0]["p_sad"]) == pytest.approx(expected[0]["p_sad"], abs=1e-7)


def test_to_dataframe_needs_pandas_and_says_what_to_use_instead(predictor):
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install pandas.*to_records"):
            predict.to_dataframe([])
    else:
        assert predict.to_dataframe([]).shape[0] == 0


def test_errors_are_printed_once(run, tmp_path, capsys):
    missing = tmp_path / "nowhere.mp4"
    assert predict.main(["--checkpoint", str(run), str(missing)]) == 1
    captured = capsys.readouterr()
    assert (captured.out + captured.err).count("nowhere.mp4: does not exist") == 1
    assert "0 of 1 input classified" in captured.out


@needs_testdata
def test_plot_draws_the_timeline_of_each_input(run, tmp_path, capsys):
    out = tmp_path / "timeline.png"
    video = str(VIDEOS / "face_noface.mov")
    assert predict.main(["--checkpoint", str(run), video, "--window", "1.5", "--plot", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    image = cv2.imread(str(out))
    assert image.shape[1] == 1200
    grey = np.all(np.abs(image.astype(int) - 211) <= 3, axis=2)       # windows without a face: shaded
    assert grey.any()
    with pytest.raises(SystemExit):
        predict.main(["--checkpoint", str(run), video, "--plot", str(out)])     # --plot needs --window
    assert "--plot needs --window" in capsys.readouterr().err


def side_by_side(path, count=24):
    """A clip of two test videos side by side (single_face.mp4 left, woman2.mp4 right) written to ``path``;
    returns the x of the seam."""
    def frames(name):
        cap, out = cv2.VideoCapture(str(VIDEOS / name)), []
        while len(out) < count:
            ok, frame = cap.read()
            assert ok
            out.append(frame)
        return out
    left, right = frames("single_face.mp4"), frames("woman2.mp4")
    h = min(left[0].shape[0], right[0].shape[0])
    fit = lambda f: cv2.resize(f, (int(round(f.shape[1] * h / f.shape[0])), h))    # noqa: E731
    seam = fit(left[0]).shape[1]
    joined = [np.concatenate([fit(a), fit(b)], axis=1) for a, b in zip(left, right)]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 12, (joined[0].shape[1], h))
    for frame in joined:
        writer.write(frame)
    writer.release()
    return seam


@needs_testdata
def test_every_face_is_followed_on_its_own_side(run, predictor, tmp_path, capsys):
    video = tmp_path / "two.avi"
    seam = side_by_side(video)
    found = predictor.predict(str(video), window=1.0, faces="all")
    assert [r.face for r in found] == [0, 1] and all(r.error is None for r in found)
    sides = []
    for r in found:
        centres = (r.box[:, 0] + r.box[:, 2]) / 2                 # every stored frame's face square
        assert np.all(centres < seam) or np.all(centres > seam), centres
        sides.append(bool(np.all(centres < seam)))
        assert r.windows and all(w.clip is None or w.clip.track_id == r.face for w in r.windows)
    assert sorted(sides) == [False, True]                         # one face on each side
    rows = predict.to_records(found)
    assert {row["face"] for row in rows} == {0, 1}
    out = tmp_path / "annotated.mp4"
    assert predict.main(["--checkpoint", str(run), str(video), "--faces", "all", "--window", "1",
                         "--annotate", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "two.avi [face 0]" in printed and "two.avi [face 1]" in printed
    assert "1 of 1 input classified (2 faces)" in printed
    assert int(cv2.VideoCapture(str(out)).get(cv2.CAP_PROP_FRAME_COUNT)) == 24
