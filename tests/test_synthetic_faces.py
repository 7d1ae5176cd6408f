"""The synthetic demo faces: deterministic, landmarks exact, expressions separable by geometry."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dferjax.data import synthetic_faces as sf
from dferjax import keypoints
from dferjax.labels import BASIC_CLASSES

REPO = Path(__file__).resolve().parents[1]

# The iBUG 300-W 68-point left/right mirror, written out independently of the module.
MIRROR_68 = np.array(
    list(range(16, -1, -1))
    + [26, 25, 24, 23, 22, 21, 20, 19, 18, 17]
    + [27, 28, 29, 30, 35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]
    + [64, 63, 62, 61, 60, 67, 66, 65]
)


def grey(frame: np.ndarray, point: np.ndarray, radius: int = 0) -> float:
    """Mean grey value of the (2 radius + 1)^2 pixels around a continuous-coordinate point."""
    x, y = int(np.floor(point[0])), int(np.floor(point[1]))
    patch = frame[y - radius:y + radius + 1, x - radius:x + radius + 1].astype(float)
    return float(patch.mean())


def apex_clip(label: int, seed: int, num_frames: int = 8, size: int = 112, occluders: bool = False):
    """(spec, frames, landmarks, apex frame index) of a clip, by default without its occluders."""
    spec = sf.sample_clip(label, seed, num_frames=num_frames)
    if not occluders:
        spec = dataclasses.replace(spec, occluders=())
    frames, landmarks = sf.render_spec(spec, size)
    return spec, frames, landmarks, int(np.argmax(spec.intensity))


def normalised_keypoints(landmarks: np.ndarray) -> np.ndarray:
    """The 18 key-points, centred between the eyes, eye line horizontal, inter-ocular distance 1."""
    kp = keypoints.keypoints_from_landmarks(landmarks).astype(float)
    left, right = kp[[3, 4]].mean(0), kp[[8, 9]].mean(0)
    d = right - left
    c, s = d / np.linalg.norm(d)
    rot = np.array([[c, s], [-s, c]])
    return ((kp - (left + right) / 2) @ rot.T / np.linalg.norm(d)).ravel()


# ----------------------------------------------------------------------------------------------


def test_shapes_dtypes_and_landmarks_inside_the_frame():
    for label, seed, t, size in ((0, 0, 16, 112), (4, 1, 5, 48), (6, 2, 1, 64)):
        frames, landmarks = sf.render_clip(label, seed, num_frames=t, size=size)
        assert frames.shape == (t, size, size, 3) and frames.dtype == np.uint8
        assert landmarks.shape == (t, 68, 2) and landmarks.dtype == np.float32
        assert np.all(np.isfinite(landmarks))
    for seed in range(40):
        _, landmarks = sf.render_clip(seed % 7, seed, num_frames=6, size=64)
        assert landmarks.min() >= 0.0 and landmarks.max() < 64.0


def test_same_seed_same_bytes_different_seeds_differ():
    a, la = sf.render_clip(3, 17, num_frames=6)
    b, lb = sf.render_clip(3, 17, num_frames=6)
    assert a.tobytes() == b.tobytes() and la.tobytes() == lb.tobytes()
    c, _ = sf.render_clip(3, 18, num_frames=6)
    d, _ = sf.render_clip(4, 17, num_frames=6)
    assert a.tobytes() != c.tobytes() and a.tobytes() != d.tobytes()


def test_same_bytes_in_another_process():
    frames, landmarks = sf.render_clip(5, 123, num_frames=4, size=64)
    here = hashlib.sha256(frames.tobytes() + landmarks.tobytes()).hexdigest()
    code = ("import hashlib; from dferjax.data.synthetic_faces import render_clip; "
            "f, l = render_clip(5, 123, num_frames=4, size=64); "
            "print(hashlib.sha256(f.tobytes() + l.tobytes()).hexdigest())")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == here


def test_clip_level_draws_do_not_depend_on_the_label_or_length():
    a, b = sf.sample_clip(0, 9, num_frames=8), sf.sample_clip(6, 9, num_frames=12)
    assert a.shape == b.shape and a.hair_style == b.hair_style and a.light == b.light
    assert np.array_equal(a.colours["skin"], b.colours["skin"])
    assert [o.kind for o in a.occluders] == [o.kind for o in b.occluders]


def test_neutral_face_is_mirror_symmetric_and_left_is_image_left():
    lm = sf.face_landmarks(sf.NEUTRAL, 1.0)
    mirrored = lm[MIRROR_68] * np.array([-1.0, 1.0])
    assert np.allclose(mirrored, lm, atol=1e-9)
    kp = keypoints.keypoints_from_landmarks(lm)
    assert np.all(kp[:5, 0] < 0) and np.all(kp[5:10, 0] > 0)      # upper-left region in the image's left
    assert kp[1, 1] < kp[3, 1] < kp[12, 1] < kp[15, 1]             # brow, eye, mouth corner, lower lip
    # Every expression starts at the neutral face.
    for label in range(7):
        assert np.allclose(sf.face_landmarks(label, 0.0), lm)


def test_pose_maps_face_units_to_pixels():
    pose = sf.FacePose(cx=50.0, cy=60.0, scale=40.0, roll=0.0, yaw=0.0)
    canon = sf.face_landmarks(sf.HAPPY, 0.7)
    pixels = sf.face_landmarks(sf.HAPPY, 0.7, pose=pose)
    assert np.allclose(pixels, canon * 40.0 + (50.0, 60.0))
    turned = sf.face_landmarks(sf.NEUTRAL, 0.0, pose=dataclasses.replace(pose, yaw=0.3))
    right_eye, left_eye = turned[45, 0] - turned[42, 0], turned[39, 0] - turned[36, 0]
    assert right_eye < 0.95 * left_eye                             # one side compressed


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_drawing_matches_the_landmarks(seed):
    for label in range(7):
        _, frames, lm, apex = apex_clip(label, seed)
        frame, p = frames[apex], lm[apex]
        for eye, toward in ((slice(36, 42), 1), (slice(42, 48), 15)):
            centre = p[eye].mean(0)
            skin = 0.5 * (centre + p[[toward, 30]].mean(0))   # between the eye and the cheek
            assert grey(frame, centre) < grey(frame, skin, 1) - 15, (label, seed)
        for brow, cheek in ((19, [1, 31, 48]), (24, [15, 35, 54])):   # cheek: key-points 16, 17
            assert grey(frame, p[brow]) < grey(frame, p[cheek].mean(0), 1) - 15, (label, seed, brow)
        if label == sf.SURPRISE:
            mouth = p[60:68].mean(0)
            assert grey(frame, mouth) < grey(frame, p[[1, 31, 48]].mean(0), 1) - 25
            assert grey(frame, mouth) < grey(frame, p[57] - 0.3 * (p[57] - p[66])) - 10  # darker than the lip


def test_expressions_separable_by_apex_geometry_and_unfold():
    def features(count, offset):
        apex_x, first_x, labels = [], [], []
        for i in range(count):
            label = i % 7
            spec = sf.sample_clip(label, offset + i, num_frames=8)
            _, lm = sf.render_spec(spec, 112)
            apex_x.append(normalised_keypoints(lm[int(np.argmax(spec.intensity))]))
            first_x.append(normalised_keypoints(lm[0]))
            labels.append(label)
        return np.array(apex_x), np.array(first_x), np.array(labels)

    x_train, _, y_train = features(140, 0)
    x_test, x_first, y_test = features(70, 50_000)
    means = np.stack([x_train[y_train == c].mean(0) for c in range(7)])
    nearest = lambda x: np.argmin(((x[:, None] - means[None]) ** 2).sum(-1), 1)  # noqa: E731
    assert np.mean(nearest(x_test) == y_test) >= 0.95
    # The expression unfolds: the first frame is nearer the neutral mean than the apex is.
    moving = y_test != sf.NEUTRAL
    d_first = np.linalg.norm(x_first - means[sf.NEUTRAL], axis=1)[moving]
    d_apex = np.linalg.norm(x_test - means[sf.NEUTRAL], axis=1)[moving]
    assert np.mean(d_first < d_apex) >= 0.95
    # ... and at the first frame the classes overlap (near neutral).
    assert np.mean(nearest(x_first) == y_test) < 0.6


def test_intensity_rises_from_near_zero_to_an_apex():
    for seed in range(20):
        spec = sf.sample_clip(seed % 7, seed, num_frames=16)
        curve = spec.intensity
        apex = int(np.argmax(curve))
        assert curve[0] < 0.1 and curve[apex] > 0.7 and apex >= 3
        reached = int(np.argmax(curve > 0.9 * curve[apex]))
        assert np.all(curve[reached:] >= 0.65 * curve[apex])       # at most a slight decay after the apex


def test_occluders_appear_on_some_clips_and_never_hide_the_whole_face():
    specs = [sf.sample_clip(seed % 7, seed, num_frames=8) for seed in range(200)]
    occluded = [s for s in specs if s.occluders]
    assert 0.25 < len(occluded) / len(specs) < 0.65
    kinds = {o.kind for s in occluded for o in s.occluders}
    assert kinds == {"rect", "ellipse", "hand", "glasses", "sunglasses"}
    for spec in occluded[:12]:
        with_occ, lm = sf.render_spec(spec, 112)
        without, _ = sf.render_spec(dataclasses.replace(spec, occluders=()), 112)
        for t in range(spec.num_frames):
            x0, y0 = np.floor(lm[t].min(0)).astype(int)
            x1, y1 = np.ceil(lm[t].max(0)).astype(int)
            changed = np.any(with_occ[t, y0:y1, x0:x1] != without[t, y0:y1, x0:x1], axis=-1).mean()
            assert changed < 0.5, (spec.occluders, t, changed)


def test_nuisances_vary_between_clips():
    specs = [sf.sample_clip(0, seed) for seed in range(30)]
    skins = np.array([s.colours["skin"] for s in specs])
    assert skins.std(0).min() > 20
    assert len({s.background["kind"] for s in specs}) >= 3 and len({s.hair_style for s in specs}) >= 3
    rolls = np.array([s.pose[:, 3] for s in specs])
    assert rolls.std() > 0.05 and np.ptp(rolls, axis=1).max() > 0.02      # posed, and drifting in a clip


def test_iter_clips_balanced_deterministic_ids():
    clips = list(sf.iter_clips(9, 4, seed=3, num_frames=2, size=32))
    assert [c[0] for c in clips] == [f"train_{i:05d}" for i in range(9)] + [f"test_{i:05d}" for i in range(4)]
    assert [c[1] for c in clips] == [i % 7 for i in range(9)] + [0, 1, 2, 3]
    assert [c[2] for c in clips] == ["train"] * 9 + ["test"] * 4
    assert all(c[3].shape == (2, 32, 32, 3) and c[4].shape == (2, 68, 2) for c in clips)
    again = list(sf.iter_clips(9, 4, seed=3, num_frames=2, size=32))
    assert all(a[3].tobytes() == b[3].tobytes() for a, b in zip(clips, again))
    other = next(sf.iter_clips(1, 0, seed=4, num_frames=2, size=32))
    assert other[3].tobytes() != clips[0][3].tobytes()
    assert len(BASIC_CLASSES) == sf.NUM_CLASSES


def test_invalid_arguments():
    with pytest.raises(ValueError):
        sf.render_clip(7, 0)
    with pytest.raises(ValueError):
        sf.sample_clip(0, 0, num_frames=0)


def test_fast_enough():
    sf.render_clip(0, 0)
    start = time.perf_counter()
    for seed in range(5):
        sf.render_clip(seed % 7, seed, num_frames=16, size=112)
    per_clip = (time.perf_counter() - start) / 5
    assert per_clip < 0.15, per_clip     # about 20 ms on one core; generous for loaded test machines


def test_dlib_finds_the_drawn_faces():
    dlib = pytest.importorskip("dlib")
    import cv2

    detector = dlib.get_frontal_face_detector()
    found = total = 0
    for seed in range(14):
        _, frames, lm, apex = apex_clip(seed % 7, 1000 + seed, num_frames=3)
        for frame, p in zip(frames, lm):
            boxes = detector(cv2.resize(frame, (224, 224)), 0)
            total += 1
            if boxes:
                b = boxes[0]
                centre = np.array([b.left() + b.right() + 1, b.top() + b.bottom() + 1]) / 4
                found += np.linalg.norm(centre - p[27:36].mean(0)) < 20
    assert found / total >= 0.8, (found, total)
