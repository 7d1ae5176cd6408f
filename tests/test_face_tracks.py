"""Every face of a clip, followed: faces.track_all_faces and clips.prepare_tracks / read_track_timelines.

Clips with two faces are built from two real test videos side by side (../shared/testdata/videos); the
seam between them is where every box of one face must stay on its own side.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from dferjax import keypoints
from dferjax.data import clips, faces
from dferjax.data.faces import FaceSource

pytest.importorskip("dlib", reason="face detection needs dlib")

LEFT, RIGHT = "single_face.mp4", "woman2.mp4"      # one face each, detected in every frame read here
PREP = clips.PrepConfig(image_size=48, max_frames=8, min_frames=12)


def media(testdata: Path, *names: str) -> list[Path]:
    paths = [testdata / name for name in names]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        pytest.skip(f"test media missing: {', '.join(missing)}")
    return paths


def read_frames(path: Path, count: int = 8, step: int = 3) -> list[np.ndarray]:
    """``count`` frames, every ``step``-th, RGB."""
    cap = cv2.VideoCapture(str(path))
    out, i = [], 0
    try:
        while len(out) < count and cap.grab():
            if i % step == 0:
                ok, bgr = cap.retrieve()
                assert ok, f"cannot decode frame {i} of {path}"
                out.append(np.ascontiguousarray(bgr[..., ::-1]))
            i += 1
    finally:
        cap.release()
    assert len(out) == count, f"{path} has fewer than {count * step} frames"
    return out


def side_by_side(left: list[np.ndarray], right: list[np.ndarray], height: int = 336
                 ) -> tuple[list[np.ndarray], int]:
    """Frames of ``left`` and ``right`` resized to one height and put side by side; the seam's x."""
    def fit(frame: np.ndarray) -> np.ndarray:
        width = round(frame.shape[1] * height / frame.shape[0])
        return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)

    pairs = [(fit(a), fit(b)) for a, b in zip(left, right)]
    return [np.ascontiguousarray(np.concatenate(p, axis=1)) for p in pairs], pairs[0][0].shape[1]


@pytest.fixture
def two_faces(testdata: Path) -> tuple[list[np.ndarray], int]:
    """8 frames of two faces side by side (LEFT, RIGHT) and the seam's x."""
    left, right = media(testdata / "videos", LEFT, RIGHT)
    return side_by_side(read_frames(left), read_frames(right))


def write_video(path: Path, frames: list[np.ndarray], fps: float = 8) -> Path:
    """RGB ``frames`` written to ``path`` as an MJPG AVI at ``fps``."""
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    for frame in frames:
        writer.write(np.ascontiguousarray(frame[..., ::-1]))
    writer.release()
    return path


def centres_x(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 0] + boxes[:, 2]) / 2


def test_two_faces_side_by_side_are_two_tracks_each_on_its_side(two_faces):
    frames, seam = two_faces
    tracks = faces.track_all_faces(frames)
    assert len(tracks) == 2 and tracks.dropped == 0
    assert [t.track_id for t in tracks] == [0, 1]
    sides = sorted(tracks, key=lambda t: centres_x(t.boxes)[0])
    assert np.all(centres_x(sides[0].boxes) < seam), "the left face's track crossed the seam"
    assert np.all(centres_x(sides[1].boxes) > seam), "the right face's track crossed the seam"
    for track in tracks:
        assert len(track) == len(frames) and track.switches == []
        assert np.all(track.flags == FaceSource.DETECTED)
        assert np.all(track.num_faces == 2) and np.all(track.identity == 0)
        assert np.all(np.isfinite(track.landmarks))
    areas = [np.mean((t.face_boxes[:, 2] - t.face_boxes[:, 0]) * (t.face_boxes[:, 3] - t.face_boxes[:, 1]))
             for t in tracks]
    assert areas[0] >= areas[1], "tracks are not ordered by size"


def test_the_largest_track_is_the_single_face_preparation(two_faces):
    frames, _ = two_faces
    largest = faces.track_all_faces(frames)[0]
    one = faces.track_faces(frames)
    np.testing.assert_array_equal(largest.boxes, one.boxes)
    np.testing.assert_array_equal(largest.landmarks, one.landmarks)
    np.testing.assert_array_equal(largest.flags, one.flags)

    clip = clips.prepare_clip(frames, PREP)
    prepared = clips.prepare_tracks(frames, PREP)
    assert [c.track_id for c in prepared] == [0, 1] and clip.track_id is None
    np.testing.assert_array_equal(prepared[0].boxes, clip.boxes)
    np.testing.assert_array_equal(prepared[0].frames, clip.frames)
    np.testing.assert_array_equal(prepared[0].keypoints, clip.keypoints)


def test_prepare_tracks_gives_a_padded_clip_per_face_in_source_pixels(two_faces):
    frames, seam = two_faces
    prepared = clips.prepare_tracks(np.stack(frames), PREP)
    assert len(prepared) == 2
    for k, clip in enumerate(prepared):
        assert clip.frames.shape == (PREP.min_frames, 48, 48, 3) and not clip.still
        assert clip.boxes.shape == (PREP.min_frames, 4) and clip.keypoints.shape == (PREP.min_frames, 18, 2)
        assert clip.num_source_frames == len(frames)
        assert set(clip.frame_indices.tolist()) == set(range(len(frames)))
        assert clip.notes[0] == f"face {k}: one of 2 faces followed through the clip, numbered by size (0: the largest)"
        assert any("repeated to" in n for n in clip.notes)
    x = [centres_x(c.boxes) for c in prepared]
    assert (np.all(x[0] < seam) and np.all(x[1] > seam)) or (np.all(x[0] > seam) and np.all(x[1] < seam))


def test_a_photo_with_several_faces_gives_one_track_per_face(testdata):
    (path,) = media(testdata / "images", "multi_face.jpg")
    image = clips.read_image(path)
    detected = faces.detect_faces(image)
    assert len(detected) >= 2, "multi_face.jpg should show several faces"
    tracks = faces.track_all_faces([image])
    assert len(tracks) == len(detected) and tracks.dropped == 0
    prepared = clips.prepare_tracks(path, PREP)
    assert len(prepared) == len(detected)
    for k, (clip, det) in enumerate(zip(prepared, detected)):        # both largest first
        assert clip.still and len(clip.frames) == 1 and clip.track_id == k
        assert clip.sources.tolist() == [FaceSource.DETECTED]
        np.testing.assert_allclose(clip.boxes[0], faces.square_box(det.box, PREP.margin), atol=1e-4)
        assert clip.notes == [f"face {k}: one of {len(detected)} faces in the image, numbered by size (0: the largest)"]
    np.testing.assert_array_equal(prepared[0].frames, clips.prepare_clip(path, PREP).frames)


def test_no_face_anywhere_is_a_no_face_error_naming_the_source(testdata):
    (path,) = media(testdata / "images", "no_faces.jpg")
    assert faces.track_all_faces([clips.read_image(path)]) == []
    with pytest.raises(clips.NoFaceError, match="no_faces.jpg: no face found in the image"):
        clips.prepare_tracks(path, PREP)


def test_a_face_hidden_for_some_frames_keeps_its_id_and_the_gap_is_interpolated(two_faces):
    frames, seam = two_faces
    frames = [f.copy() for f in frames]
    for t in (3, 4):
        frames[t][:, seam:] = 128                       # the right face leaves for two frames
    tracks = faces.track_all_faces(frames)
    assert len(tracks) == 2, "the face came back as a new track"
    right = next(t for t in tracks if centres_x(t.boxes)[0] > seam)
    expected = [FaceSource.DETECTED] * 3 + [FaceSource.INTERPOLATED] * 2 + [FaceSource.DETECTED] * 3
    assert right.flags.tolist() == expected
    np.testing.assert_allclose(right.boxes[3], right.boxes[2] + (right.boxes[5] - right.boxes[2]) / 3, atol=1e-3)
    assert right.num_faces.tolist() == [2, 2, 2, 1, 1, 2, 2, 2]


def test_a_face_that_moved_during_a_gap_is_found_again_by_its_appearance(testdata):
    (path,) = media(testdata / "videos", LEFT)
    video = read_frames(path)
    height, width = video[0].shape[:2]
    shift = width // 2                                   # far more than the face box: no overlap
    frames = []
    for t, frame in enumerate(video):
        canvas = np.full((height, width + shift, 3), 128, np.uint8)
        if t < 3:
            canvas[:, :width] = frame
        elif t > 4:
            canvas[:, shift:] = frame
        frames.append(canvas)
    tracks = faces.track_all_faces(frames)
    assert len(tracks) == 1
    assert tracks[0].flags.tolist() == [0, 0, 0, 1, 1, 0, 0, 0]
    x = centres_x(tracks[0].boxes)
    assert x[5] - x[2] > shift * 0.8
    apart = faces.track_all_faces(frames, appearance_threshold=2.0, min_frames=1)   # overlap only
    assert len(apart) == 2


def test_short_tracks_are_dropped_and_counted(two_faces):
    frames, seam = two_faces
    frames = [f.copy() for f in frames]
    for t in range(1, 8):
        frames[t][:, seam:] = 128                       # the right face is seen in one frame of eight
    tracks = faces.track_all_faces(frames, min_frames=2)
    assert len(tracks) == 1 and tracks.dropped == 1 and tracks.min_frames == 2
    assert np.all(centres_x(tracks[0].boxes) < seam)
    assert len(faces.track_all_faces(frames)) == 2      # the default: a tenth of 8 frames, so 1


def test_timeline_windows_take_their_frames_from_each_face_track(two_faces, tmp_path):
    frames, seam = two_faces
    frames = [f.copy() for f in frames + frames]         # 16 frames at 8 fps: two seconds
    for t in range(8, 16):
        frames[t][:, seam:] = 128                        # the right face is gone for the second window
    path = write_video(tmp_path / "two_faces.avi", frames)
    windows = [(0.0, 1.0), (1.0, 2.0)]
    timelines = clips.read_track_timelines(path, PREP, windows)
    assert len(timelines) == 2
    left = next(tl for tl in timelines if np.all(centres_x(tl.clip.boxes) < seam))
    right = next(tl for tl in timelines if tl is not left)
    assert np.all(centres_x(right.clip.boxes) > seam)
    assert left.windows_s == windows and len(left.timestamps) == 16
    for k, tl in enumerate(timelines):
        assert isinstance(tl.clip, clips.PreparedClip) and tl.clip.frames.shape[0] == PREP.min_frames
        assert tl.clip.track_id == k
    for k, window in enumerate(left.windows):
        assert isinstance(window, clips.PreparedClip) and window.track_id == left.clip.track_id
        assert np.all(centres_x(window.boxes) < seam)
        assert window.frame_indices.min() >= 8 * k and window.frame_indices.max() <= 8 * k + 8
    assert isinstance(right.windows[0], clips.PreparedClip) and np.all(centres_x(right.windows[0].boxes) > seam)
    assert isinstance(right.windows[1], clips.NoFaceError)
    assert f"face {right.clip.track_id} was not detected" in str(right.windows[1])
    # The one-face timeline is unchanged: its whole clip is prepare_clip's.
    single = clips.read_timeline(path, PREP, windows)
    np.testing.assert_array_equal(single.clip.boxes, clips.prepare_clip(path, PREP).boxes)


def test_track_timelines_of_a_long_video_hold_few_frames_and_equal_tracking_all_frames_at_once(two_faces, tmp_path):
    """Two decode passes (track, then cut) hold a bounded number of frames, and give each window what the
    whole timeline's frames tracked in memory give: the same boxes, sources, crops and key-points."""
    frames, seam = two_faces
    frames = [f.copy() for f in (frames + frames[::-1]) * 4]     # 64 frames at 8 fps: 8 seconds
    for t in range(24, 40):
        frames[t][:, seam:] = 128                                # the right face is gone for two seconds
    path = write_video(tmp_path / "two_faces_long.avi", frames)
    prep = clips.PrepConfig(image_size=48, max_frames=4, min_frames=4, detect_every=2)
    windows = [(float(s), s + 1.0) for s in range(8)]
    timelines = clips.read_track_timelines(path, prep, windows)
    assert len(timelines) == 2

    # The reference: every frame the timeline took, decoded here by OpenCV and tracked at once.
    taken = sorted({int(i) for tl in timelines for c in [tl.clip, *tl.windows] if isinstance(c, clips.PreparedClip)
                    for i in c.frame_indices})
    decoded = read_frames(path, count=len(frames), step=1)
    tracks = faces.track_all_faces([decoded[i] for i in taken], margin=prep.margin, detect_every=prep.detect_every)
    assert len(tracks) == 2
    position = {i: k for k, i in enumerate(taken)}
    assert 0 < timelines[0].frames_held <= 2 * prep.max_frames + 8 < len(taken)
    for tl, track in zip(timelines, tracks):
        assert tl.frames_held == timelines[0].frames_held
        for c in [tl.clip, *tl.windows]:
            if isinstance(c, clips.NoFaceError):
                continue
            assert isinstance(c, clips.PreparedClip) and c.track_id == track.track_id
            part = track.take([position[int(i)] for i in c.frame_indices])
            np.testing.assert_array_equal(c.boxes, part.boxes)
            np.testing.assert_array_equal(c.sources, part.flags)
            crops, _ = faces.crop_faces([decoded[i] for i in c.frame_indices], part.boxes, prep.image_size)
            np.testing.assert_array_equal(c.frames, crops)
            landmarks = faces.landmarks_to_crop(part.landmarks, part.boxes, prep.image_size)
            np.testing.assert_array_equal(c.keypoints, keypoints.keypoints_from_landmarks(landmarks))
    right = next(tl for tl in timelines if np.all(centres_x(tl.clip.boxes) > seam))
    assert [isinstance(w, clips.NoFaceError) for w in right.windows] == [False] * 3 + [True] * 2 + [False] * 3


def test_track_timelines_of_a_truncated_video_take_the_clip_frames_of_its_true_length(two_faces, tmp_path):
    """A file cut short keeps its header's frame count: the first pass finds the true count, is repeated
    with it, and the whole clip takes the frames prepare_clip takes (chosen from the frames that decode)."""
    frames, _ = two_faces
    whole = write_video(tmp_path / "whole.avi", frames * 3)       # 24 frames at 8 fps
    cut = tmp_path / "cut.avi"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 6 // 10])
    header, _ = clips.probe_clip(cut)
    timelines = clips.read_track_timelines(cut, PREP, [(0.0, 1.0), (1.0, 2.0)])
    total = len(timelines[0].timestamps)
    assert 0 < total < header == 24
    expected = clips.prepare_clip(cut, PREP).frame_indices
    for tl in timelines:
        np.testing.assert_array_equal(tl.clip.frame_indices, expected)
        assert tl.clip.num_source_frames == total
        assert all(isinstance(w, clips.PreparedClip) for w in tl.windows)
