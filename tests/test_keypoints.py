"""The face-structure definition against real dlib landmarks and independent geometry."""

from __future__ import annotations

import re
from collections import deque

import numpy as np
import pytest

from dferjax import keypoints

# The iBUG 300-W 68-point left/right mirror, written out independently of keypoints.py.
MIRROR_68 = np.array(
    list(range(16, -1, -1))                              # jaw 0..16 reversed
    + [26, 25, 24, 23, 22, 21, 20, 19, 18, 17]          # brows
    + [27, 28, 29, 30, 35, 34, 33, 32, 31]              # nose bridge stays, nostrils mirror
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]  # eyes
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]  # outer lips
    + [64, 63, 62, 61, 60, 67, 66, 65]                  # inner lips
)


def xml_faces(testdata):
    """(landmarks (68, 2) in pixel centres, image width) for every face in dlib's test XML."""
    text = (testdata / "images" / "testing_with_face_landmarks.xml").read_text(encoding="latin-1")
    faces = []
    for width, body in re.findall(r"<image file='[^']+' width='(\d+)'[^>]*>(.*?)</image>", text, re.S):
        for box in re.findall(r"<box [^>]*>(.*?)</box>", body, re.S):
            pts = [(float(x) + 0.5, float(y) + 0.5) for x, y in re.findall(r"x='(-?\d+)' y='(-?\d+)'", box)]
            faces.append((np.array(pts, np.float32), float(width)))
    return faces


def test_mirror_is_an_involution():
    assert sorted(MIRROR_68) == list(range(68)) and (MIRROR_68[MIRROR_68] == np.arange(68)).all()


def test_flip_permutation_mirrors_real_faces(testdata):
    faces = xml_faces(testdata)
    assert len(faces) >= 5
    for landmarks, width in faces:
        # Flip the real landmarks themselves (mirror x, relabel), then take key-points ...
        flipped_landmarks = np.stack([width - landmarks[:, 0], landmarks[:, 1]], axis=1)[MIRROR_68]
        expected = keypoints.keypoints_from_landmarks(flipped_landmarks)
        # ... which must equal the key-points of the original, flipped by keypoints.py.
        got = keypoints.flip_keypoints(keypoints.keypoints_from_landmarks(landmarks), width)
        np.testing.assert_allclose(got, expected, atol=1e-4)


def test_left_and_right_are_image_left_and_right_on_real_faces(testdata):
    names = keypoints.KEYPOINT_NAMES
    for landmarks, _ in xml_faces(testdata):
        kp = keypoints.keypoints_from_landmarks(landmarks)
        for left, right in [("left_brow_outer", "right_brow_outer"), ("left_eye_outer", "right_eye_outer"),
                            ("mouth_left", "mouth_right"), ("left_cheek", "right_cheek")]:
            assert kp[names.index(left), 0] < kp[names.index(right), 0]
        # Brows above eyes above the nose tip above the mouth (y grows downwards).
        assert kp[names.index("left_brow_middle"), 1] < kp[names.index("left_eye_outer"), 1] \
            < kp[names.index("nose_tip"), 1] < kp[names.index("lower_lip"), 1]


def test_cheeks_are_triangle_centroids():
    lm = np.random.default_rng(0).random((68, 2)).astype(np.float32) * 100
    kp = keypoints.keypoints_from_landmarks(lm)
    np.testing.assert_allclose(kp[16], (lm[1] + lm[31] + lm[48]) / 3, rtol=1e-6)
    np.testing.assert_allclose(kp[17], (lm[15] + lm[35] + lm[54]) / 3, rtol=1e-6)
    np.testing.assert_allclose(kp[:16], lm[[17, 19, 21, 36, 39, 26, 24, 22, 45, 42, 27, 30, 48, 54, 51, 57]])


def test_regions_follow_the_paper():
    sizes = {name: len(members) for name, members in keypoints.REGIONS.items()}
    assert sizes == {"upper_left": 5, "upper_right": 5, "lower": 6}
    pooled = set().union(*keypoints.REGIONS.values())
    assert sorted(set(range(18)) - pooled) == [keypoints.KEYPOINT_NAMES.index("nose_bridge_top"),
                                              keypoints.KEYPOINT_NAMES.index("nose_tip")]


def test_adjacency_is_symmetric_connected_and_flip_invariant():
    a = keypoints.ADJACENCY
    assert a.shape == (18, 18) and (a == a.T).all() and (np.diag(a) == 0).all()
    assert set(np.unique(a)) == {0.0, 1.0}
    seen, queue = {0}, deque([0])
    while queue:
        for j in np.flatnonzero(a[queue.popleft()]):
            if j not in seen:
                seen.add(int(j))
                queue.append(int(j))
    assert seen == set(range(18))
    p = keypoints.FLIP_PERMUTATION
    assert (a[np.ix_(p, p)] == a).all()       # the graph of a mirrored face is the same graph


@pytest.mark.parametrize("resolution", [(7, 7), (14, 14), (28, 21)])
def test_heatmap_maxima_sit_at_their_keypoints(resolution):
    rng = np.random.default_rng(1)
    kp = rng.random((3, 18, 2)).astype(np.float32) * [112, 96]
    maps = keypoints.render_heatmaps(kp, (96, 112), resolution, sigma=1.0)
    h, w = resolution
    assert maps.shape == (3, h, w, 18) and maps.max() <= 1.0
    for n in range(3):
        for j in range(18):
            i_max, j_max = np.unravel_index(np.argmax(maps[n, :, :, j]), (h, w))
            # The key-point lies in the maximal cell.
            assert int(kp[n, j, 0] * w / 112) == j_max and int(kp[n, j, 1] * h / 96) == i_max


def test_heatmap_value_is_the_gaussian_of_the_cell_distance():
    kp = np.full((18, 2), np.nan, np.float32)
    kp[0] = (40.0, 24.0)          # on a 112 image and a 7x7 map: cell units (2.5, 1.5) = a cell centre
    maps = keypoints.render_heatmaps(kp, (112, 112), (7, 7), sigma=1.5)
    assert maps[1, 2, 0] == pytest.approx(1.0)
    assert maps[3, 4, 0] == pytest.approx(np.exp(-(2 ** 2 + 2 ** 2) / (2 * 1.5 ** 2)), rel=1e-5)
    assert (maps[..., 1:] == 0).all()                            # NaN key-points give empty maps


def test_flipping_heatmaps_equals_rendering_flipped_keypoints():
    kp = np.random.default_rng(2).random((2, 18, 2)).astype(np.float32) * 112
    maps = keypoints.render_heatmaps(kp, (112, 112), (7, 7), sigma=1.0)
    flipped = keypoints.render_heatmaps(keypoints.flip_keypoints(kp, 112), (112, 112), (7, 7), sigma=1.0)
    np.testing.assert_allclose(keypoints.flip_heatmaps(maps), flipped, atol=1e-6)
