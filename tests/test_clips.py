"""The shared clip preparation on real videos, bad inputs, and frame sampling."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest

from dferjax.data import input_pipeline as ip
from dferjax.data import faces
from dferjax.data import clips
from dferjax.data.clips import ClipError, NoFaceError, PrepConfig, prepare_clip, segment_indices

from .conftest import TESTDATA

FAST = PrepConfig(image_size=64, max_frames=8, min_frames=8)


def test_prepare_a_real_video(testdata):
    clip = prepare_clip(testdata / "videos" / "single_face.mp4", FAST)
    assert clip.frames.shape == (8, 64, 64, 3) and clip.frames.dtype == np.uint8
    assert clip.num_source_frames == 72 and clip.fps == pytest.approx(30, abs=1)
    assert clip.frame_indices[0] == 0 and clip.frame_indices[-1] == 71          # spread over the clip
    assert (clip.sources == faces.FaceSource.DETECTED).all()
    # The face fills the crop: key-points inside it, brows above the mouth.
    assert np.isfinite(clip.keypoints).all() and (clip.keypoints > 0).all() and (clip.keypoints < 64).all()
    assert (clip.keypoints[:, 1, 1] < clip.keypoints[:, 15, 1]).all()
    # Each heat-map, rendered for a model with an 8x8 grid, peaks in the cell holding its key-point
    # (8x8 cells of 8 pixels).
    spec = ip.ExampleSpec(image_size=64, num_segments=4, frames_per_segment=2, heatmap_size=8, heatmap_sigma=1.0)
    _, _, maps = ip.model_inputs(clip.frames, clip.keypoints, spec)
    maps = maps.astype(np.float32)
    assert maps.shape == (8, 8, 8, 18)
    for t in range(8):
        for j in range(18):
            r, c = int(clip.keypoints[t, j, 1] // 8), int(clip.keypoints[t, j, 0] // 8)
            assert maps[t, r, c, j] >= maps[t, :, :, j].max() - 1e-3      # float16 storage: ties allowed


@pytest.mark.parametrize("config", [PrepConfig(image_size=64, max_frames=24, min_frames=8),
                                    PrepConfig(image_size=64, max_frames=24, min_frames=8, detect_every=3,
                                               fast_detect=320)], ids=["full", "fast-every-3"])
def test_the_face_followed_while_the_video_decodes_is_the_face_followed_in_the_decoded_frames(testdata, config):
    """prepare_clip finds the faces in a thread beside the decoding (clips._FaceWork): its clip is, array for
    array, what following the face in line over the decoded frames gives (read_clip, then prepare_frames,
    which calls faces.track_faces), on a real video with a switch from a face to none."""
    video = testdata / "videos" / "face_noface.mov"
    overlapped = prepare_clip(video, config)
    frames, indices, total, fps, notes = clips.read_clip(video, config.max_frames)
    in_line = clips.pad_to_min_frames(clips.prepare_frames(frames, config, str(video)), config.min_frames)
    assert {faces.FaceSource.DETECTED, faces.FaceSource.HELD} <= set(overlapped.sources.tolist())
    for name in ("frames", "keypoints", "sources", "boxes"):
        np.testing.assert_array_equal(getattr(overlapped, name), getattr(in_line, name), err_msg=name)
    assert overlapped.notes == in_line.notes and list(overlapped.frame_indices) == list(indices)


def test_face_thread_off_finds_the_faces_in_line_with_the_same_clip(testdata, monkeypatch):
    """clips.face_thread: on (the default) the face followed is fed its frames in the thread beside the
    decoding, off in the calling thread (what a build worker per core uses); the clip is the same."""
    video = testdata / "videos" / "fer_test.mp4"
    config = PrepConfig(image_size=64, max_frames=8, min_frames=8, detect_every=2)
    threads: list[str] = []
    add = faces.FaceFollower.add
    monkeypatch.setattr(faces.FaceFollower, "add",
                        lambda self, *a, **k: (threads.append(threading.current_thread().name), add(self, *a, **k)))
    beside = prepare_clip(video, config)
    assert len(threads) == 8 and all(name.startswith("dferjax-face-work") for name in threads)
    threads.clear()
    clips.face_thread(False)
    try:
        in_line = prepare_clip(video, config)
    finally:
        clips.face_thread(True)
    assert threads == [threading.current_thread().name] * 8
    for name in ("frames", "keypoints", "sources", "boxes"):
        np.testing.assert_array_equal(getattr(beside, name), getattr(in_line, name), err_msg=name)


def test_an_error_of_the_face_work_beside_the_decoding_is_raised_and_leaves_no_thread(testdata):
    """A face-search error raised in the thread beside the decoding (here dlib's refusal of a negative
    upsampling) comes out of prepare_clip, prepare_tracks, read_timeline and read_track_timelines as itself,
    and no thread is left running."""
    video = testdata / "videos" / "single_face.mp4"
    bad = PrepConfig(image_size=64, max_frames=8, upsample=-1)
    before = threading.active_count()
    for prepare in (lambda: prepare_clip(video, bad), lambda: clips.prepare_tracks(video, bad),
                    lambda: clips.read_timeline(video, bad, [(0.0, 1.0), (1.0, 2.0)]),
                    lambda: clips.read_track_timelines(video, bad, [(0.0, 1.0)])):
        with pytest.raises(ValueError, match="upsample must be >= 0, got -1"):
            prepare()
    assert threading.active_count() == before


def test_no_face_is_a_clear_error(testdata):
    with pytest.raises(NoFaceError, match="no_face.mp4: no face found in any of its 8"):
        prepare_clip(testdata / "videos" / "no_face.mp4", FAST)


def test_face_then_no_face_fills_the_rest(testdata):
    clip = prepare_clip(testdata / "videos" / "face_noface.mov", FAST)
    assert clip.sources[0] == faces.FaceSource.DETECTED and clip.sources[-1] == faces.FaceSource.HELD
    assert any("no face detected in" in note for note in clip.notes)


def test_frames_the_detector_skipped_are_not_noted_as_filled(testdata):
    """With detect_every=2 the frames between two detections of the face are TRACKED (their own landmark fit):
    the clip's notes count as filled (no face detected, box taken from other frames) only the INTERPOLATED and
    HELD frames, so a face in every frame gets no such note and no small-face hint (a user's report: "no face
    detected in 31 of 64 frames" on a clip whose every frame showed the face)."""
    every_other = PrepConfig(image_size=64, max_frames=16, min_frames=8, detect_every=2)
    clip = prepare_clip(testdata / "videos" / "single_face.mp4", every_other)
    assert (clip.sources == faces.FaceSource.TRACKED).sum() == 7
    assert not any("no face detected" in note or "upsampling" in note for note in clip.notes), clip.notes
    clip = prepare_clip(testdata / "videos" / "face_noface.mov", every_other)
    filled = int(np.isin(clip.sources, (faces.FaceSource.INTERPOLATED, faces.FaceSource.HELD)).sum())
    assert filled > 0 and (clip.sources == faces.FaceSource.TRACKED).any()
    assert any(note.startswith(f"no face detected in {filled} of 16 frames") for note in clip.notes), clip.notes


def test_short_frame_folder_with_a_broken_image_is_padded_and_noted(testdata, tmp_path):
    cap = cv2.VideoCapture(str(testdata / "videos" / "single_face.mp4"))
    for i in range(5):
        ok, bgr = cap.read()
        assert ok
        cv2.imwrite(str(tmp_path / f"frame{i + 1}.jpg"), bgr)
    cap.release()
    (tmp_path / "frame10.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "notes.txt").write_text("not a frame")
    clip = prepare_clip(tmp_path, FAST)
    assert clip.frames.shape[0] == 8 and clip.num_source_frames == 6
    assert any("frame10.jpg could not be decoded" in n for n in clip.notes)
    assert any("only 5 frames: repeated to 8" in n for n in clip.notes)
    assert list(clip.frame_indices) == [0, 0, 1, 1, 2, 3, 3, 4]


def test_grayscale_and_rgba_frames(testdata):
    cap = cv2.VideoCapture(str(testdata / "videos" / "single_face.mp4"))
    ok, bgr = cap.read()
    cap.release()
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    rgba = np.dstack([bgr[..., ::-1], np.full(gray.shape, 255, np.uint8)])
    for frames in ([gray] * 3, [rgba] * 3):
        clip = prepare_clip(frames, FAST)
        assert clip.frames.shape == (8, 64, 64, 3) and (clip.sources == faces.FaceSource.DETECTED).all()


@pytest.mark.parametrize("name, content, words", [
    ("missing.mp4", None, "does not exist"),
    ("empty.mp4", b"", "cannot be opened|no decodable frame"),
    ("junk.avi", b"\x00" * 5000, "cannot be opened|no decodable frame"),
    ("notes.txt", b"hello", "is not a video"),
])
def test_bad_files_raise_clip_errors(tmp_path, name, content, words):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ClipError, match=words):
        prepare_clip(path, FAST)


def test_truncated_video_still_reads_what_decodes(testdata, tmp_path):
    data = (testdata / "videos" / "single_face.mp4").read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: len(data) // 2])
    try:
        clip = prepare_clip(path, FAST)
    except ClipError as exc:                # some decoders refuse the cut file entirely: also fine
        assert "cut.mp4" in str(exc)
    else:
        assert 0 < clip.num_source_frames < 72


def test_precropped_mode_fits_landmarks_in_the_whole_frame(testdata):
    image = cv2.imread(str(testdata / "images" / "single_face.jpg"))[..., ::-1]
    det = faces.detect_faces(image)[0]
    box = faces.square_box(det.box, 0.2)
    crops, _ = faces.crop_faces([image], box[None], 112)
    clip = prepare_clip([crops[0]] * 4, PrepConfig(image_size=112, max_frames=4, min_frames=4, precropped=True))
    assert (clip.sources == faces.FaceSource.WHOLE_FRAME).all()
    assert (clip.keypoints > 0).all() and (clip.keypoints < 112).all()


def test_segment_indices_test_mode_takes_segment_centres():
    # 64 stored frames, 8 segments of 8: centred pairs start at 3, 11, ...
    np.testing.assert_array_equal(segment_indices(64), np.repeat(np.arange(3, 64, 8), 2) + np.tile([0, 1], 8))


def test_segment_indices_train_mode_stays_inside_segments():
    rng = np.random.default_rng(0)
    for _ in range(50):
        idx = segment_indices(40, rng=rng)
        assert len(idx) == 16 and (np.diff(idx) >= 0).all()
        for s in range(8):
            pair = idx[2 * s: 2 * s + 2]
            assert pair[1] == pair[0] + 1 and 5 * s <= pair[0] and pair[1] < 5 * (s + 1)


@pytest.mark.parametrize("n", [1, 5, 16])
def test_segment_indices_short_clips(n):
    idx = segment_indices(n)
    assert len(idx) == 16 and idx.min() >= 0 and idx.max() < n and (np.diff(idx) >= 0).all()


def test_several_faces_take_the_largest_and_say_so(testdata):
    image = cv2.imread(str(testdata / "images" / "multi_face.jpg"))[..., ::-1]
    dets = faces.detect_faces(image)
    assert len(dets) > 1
    clip = prepare_clip([image] * 2, PrepConfig(image_size=64, max_frames=2, min_frames=2))
    assert any("several faces in 2 of 2 frames: took the largest" in n for n in clip.notes)
    largest = faces.square_box(dets[0].box, 0.25)
    np.testing.assert_allclose(clip.boxes[0], largest, atol=1e-3)


def test_images_are_read_as_people_store_them(tmp_path):
    """One reader for preparation and annotation: EXIF orientation applied (against Pillow's
    exif_transpose), 16-bit samples scaled to 8 bits (against NumPy), grey and alpha to RGB."""
    from PIL import Image, ImageOps

    from dferjax.data.clips import read_image
    band = np.zeros((40, 60, 3), np.uint8)
    band[:10, :, 0] = 255
    image = Image.fromarray(band)
    exif = image.getexif()
    exif[0x0112] = 6                                     # "rotate 90 CW to display"
    image.save(tmp_path / "portrait.jpg", exif=exif.tobytes())
    expected = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "portrait.jpg")).convert("RGB"))
    np.testing.assert_array_equal(read_image(tmp_path / "portrait.jpg"), expected)
    grey16 = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "g16.png"), grey16)
    got = read_image(tmp_path / "g16.png")
    assert got.shape == (64, 64, 3) and got.dtype == np.uint8
    np.testing.assert_array_equal(got[..., 1], np.round(grey16.astype(np.float64) * 255 / 65535).astype(np.uint8))
    rgba = np.dstack([band, np.full((40, 60), 7, np.uint8)])
    cv2.imwrite(str(tmp_path / "rgba.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png"), band)
    assert read_image(tmp_path / "nothing.png") is None


def test_precropped_face_crops_of_several_sizes_are_resized(testdata, tmp_path):
    """cases/image_modes/crops_root, generated: face crops exported per frame at two sizes (as a
    detector with a 25% margin exports them). Pre-cropped, each is resized to the first's size and
    the clip is prepared, saying so; whole frames of different sizes are still refused."""
    video = cv2.VideoCapture(str(testdata / "videos" / "single_face.mp4"))
    crops, box = [], None
    for k in range(8):
        ok, frame = video.read()
        if box is None:
            box = faces.detect_faces(frame[..., ::-1])[0].box
        x0, y0, x1, y1 = (int(v) for v in faces.square_box(box))
        crop = frame[max(y0, 0):y1, max(x0, 0):x1]
        crops.append(crop if k % 2 == 0 else cv2.resize(crop, None, fx=0.8, fy=0.8))
    folder = tmp_path / "varying_crops"
    folder.mkdir()
    for k, crop in enumerate(crops):
        cv2.imwrite(str(folder / f"{k:03d}.png"), crop)
    prep = PrepConfig(image_size=64, max_frames=8, min_frames=8, precropped=True)
    clip = prepare_clip(folder, prep)
    assert clip.frames.shape == (8, 64, 64, 3) and any("2 sizes" in note for note in clip.notes)
    with pytest.raises(ClipError, match="differ in size"):
        prepare_clip(folder, PrepConfig(image_size=64, max_frames=8, min_frames=8))


CASES = TESTDATA.parent / "cases"


@pytest.mark.skipif(not (CASES / "image_modes").is_dir(), reason=f"{CASES / 'image_modes'} not found (shared/cases)")
def test_image_modes_of_the_handed_case():
    """cases/image_modes: gray8 and gray16 prepare to the same frames (to 8-bit rounding), rgb16 and
    rgba too; the varying face crops of crops_root are written pre-cropped."""
    case = CASES / "image_modes"
    prep = PrepConfig(image_size=64, max_frames=8, min_frames=8)
    same = lambda a, b: np.abs(prepare_clip(case / a, prep).frames.astype(int)        # noqa: E731
                               - prepare_clip(case / b, prep).frames.astype(int)).max() <= 2
    assert same("gray8", "gray16") and same("rgb16", "rgba")
    crops = case / "crops_root" / "happy" / "varying_crops"
    clip = prepare_clip(crops, PrepConfig(image_size=64, max_frames=8, min_frames=8, precropped=True))
    assert clip.frames.shape == (8, 64, 64, 3)
