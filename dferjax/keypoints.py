"""The face-structure definition: 18 key-points, three regions, adjacency, flip, heat-maps.

Huang et al. (2024), section 3.1.1, select 16 of dlib's 68 landmarks (iBUG 300-W scheme) "representing
eyebrows, eyes, mouth and nose" and add two cheek points, each the centre of gravity of a fixed
triangle of landmarks. Section 3.2 groups them into three regions (upper left: left brow and eye,
upper right: right brow and eye, lower: two cheeks and the mouth), leaving the two nose-bridge points
out of every region. The paper lists no indices; this module is the project's one choice, imported by
the model, data preparation, augmentation and inference alike.

"Left" and "right" are as seen in the image (the subject's right side is the image's left).
Coordinates are (x, y) in pixels of the face crop. Index = position in the 18-point vector::

    region        j   68-landmark source           where (mean dlib shape, x right, y down, face box = 1)
    upper-left    0   17  brow, outer end          (0.12, 0.21)
                  1   19  brow, middle             (0.24, 0.13)
                  2   21  brow, inner end          (0.40, 0.16)
                  3   36  eye, outer corner        (0.21, 0.29)
                  4   39  eye, inner corner        (0.37, 0.29)
    upper-right   5   26  brow, outer end          (0.86, 0.20)
                  6   24  brow, middle             (0.73, 0.13)
                  7   22  brow, inner end          (0.57, 0.16)
                  8   45  eye, outer corner        (0.76, 0.28)
                  9   42  eye, inner corner        (0.61, 0.29)
    (none)       10   27  nose bridge, top         (0.49, 0.26)
                 11   30  nose bridge, tip         (0.49, 0.49)
    lower        12   48  mouth, left corner       (0.30, 0.68)
                 13   54  mouth, right corner      (0.69, 0.67)
                 14   51  upper lip, top centre    (0.50, 0.64)
                 15   57  lower lip, bottom centre (0.50, 0.79)
                 16   centroid of (1, 31, 48)  left cheek   (0.25, 0.55)
                 17   centroid of (15, 35, 54) right cheek  (0.74, 0.54)

The right half mirrors the left half index by index (j <-> j + 5), so a horizontal flip is the
permutation ``FLIP_PERMUTATION``. The adjacency ``ADJACENCY`` (Eq. 3's A) joins points that are
neighbours on the face: each brow is a chain, each brow end meets the eye corner below it, the
inner brows meet each other and the top of the nose bridge, the bridge runs to the tip, the tip
meets the upper lip and both cheeks, each cheek meets its eye's outer corner and its mouth corner,
and the mouth is a ring (corner, top, corner, bottom). It is symmetric, binary and has no
self-loops (Eq. 3 adds each node's own feature through its residual term).
"""

from __future__ import annotations

import numpy as np

DEFINITION_VERSION = "1"
"""Bumped whenever anything below changes; data_prep records it and training checks it."""

NUM_KEYPOINTS = 18
NUM_LANDMARKS = 68

# The 16 key-points taken directly from the 68 landmarks, in key-point order 0..15.
LANDMARK_INDICES = np.array([17, 19, 21, 36, 39, 26, 24, 22, 45, 42, 27, 30, 48, 54, 51, 57])

# Key-points 16 and 17: centres of gravity of these landmark triangles.
CHEEK_TRIANGLES = np.array([[1, 31, 48], [15, 35, 54]])

KEYPOINT_NAMES = (
    "left_brow_outer", "left_brow_middle", "left_brow_inner", "left_eye_outer", "left_eye_inner",
    "right_brow_outer", "right_brow_middle", "right_brow_inner", "right_eye_outer", "right_eye_inner",
    "nose_bridge_top", "nose_tip",
    "mouth_left", "mouth_right", "upper_lip", "lower_lip",
    "left_cheek", "right_cheek",
)

# Section 3.2: three regions by face structure; the nose-bridge points 10, 11 belong to none.
REGIONS: dict[str, tuple[int, ...]] = {
    "upper_left": (0, 1, 2, 3, 4),
    "upper_right": (5, 6, 7, 8, 9),
    "lower": (12, 13, 14, 15, 16, 17),
}

# After a horizontal flip, key-point j of the flipped face is key-point FLIP_PERMUTATION[j] of the
# original face (mirrored in x). It is an involution.
FLIP_PERMUTATION = np.array([5, 6, 7, 8, 9, 0, 1, 2, 3, 4, 10, 11, 13, 12, 14, 15, 17, 16])

_LEFT_EDGES = [(0, 1), (1, 2), (0, 3), (2, 4), (3, 4), (3, 16), (12, 16)]
_CENTRE_EDGES = [(2, 7), (2, 10), (7, 10), (10, 11), (11, 14), (11, 16), (11, 17),
                 (12, 14), (14, 13), (13, 15), (15, 12)]


def _adjacency() -> np.ndarray:
    mirror = {j: int(FLIP_PERMUTATION[j]) for j in range(NUM_KEYPOINTS)}
    edges = _LEFT_EDGES + [(mirror[a], mirror[b]) for a, b in _LEFT_EDGES] + _CENTRE_EDGES
    a = np.zeros((NUM_KEYPOINTS, NUM_KEYPOINTS), np.float32)
    for i, j in edges:
        a[i, j] = a[j, i] = 1.0
    return a


ADJACENCY = _adjacency()
"""Eq. (3)'s A: the 18x18 symmetric binary key-point adjacency, no self-loops."""


def keypoints_from_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """The 18 key-points (..., 18, 2) from dlib's 68 landmarks (..., 68, 2), same coordinates.

    NaN landmarks (a frame without a fit) give NaN key-points.
    """
    landmarks = np.asarray(landmarks, np.float32)
    if landmarks.shape[-2:] != (NUM_LANDMARKS, 2):
        raise ValueError(f"landmarks must have shape (..., 68, 2), got {landmarks.shape}")
    direct = landmarks[..., LANDMARK_INDICES, :]
    cheeks = landmarks[..., CHEEK_TRIANGLES, :].mean(axis=-2)
    return np.concatenate([direct, cheeks], axis=-2)


def flip_keypoints(keypoints: np.ndarray, width: float) -> np.ndarray:
    """Key-points (..., 18, 2) of the horizontally flipped image of the given pixel width.

    Mirrors x (a pixel centre at x goes to width - x, with continuous coordinates whose pixel i
    spans [i, i + 1)) and reorders so that index j keeps its meaning (left brow stays left brow).
    """
    keypoints = np.asarray(keypoints, np.float32)
    mirrored = np.stack([width - keypoints[..., 0], keypoints[..., 1]], axis=-1)
    return mirrored[..., FLIP_PERMUTATION, :]


def render_heatmaps(keypoints: np.ndarray, image_size: tuple[int, int], resolution: tuple[int, int],
                    sigma: float) -> np.ndarray:
    """Gaussian attention maps A^j of section 3.1.1, one per key-point.

    keypoints: (..., 18, 2) as (x, y) in continuous pixel coordinates of an image of
    ``image_size = (height, width)``; a NaN key-point gives an all-zero map.
    resolution: (h, w) of the maps, normally the backbone's feature map.
    sigma: the Gaussian's standard deviation in map cells.
    Returns float32 (..., h, w, 18), peak value 1 at a key-point that sits on a cell centre.
    """
    keypoints = np.asarray(keypoints, np.float32)
    img_h, img_w = image_size
    h, w = resolution
    if sigma <= 0:
        raise ValueError(f"heat-map sigma must be positive (in feature-map cells), got {sigma}")
    # Key-point position in cell units; cell (i, j) has its centre at (j + 0.5, i + 0.5).
    cx = keypoints[..., 0] * (w / img_w)
    cy = keypoints[..., 1] * (h / img_h)
    gx = np.arange(w, dtype=np.float32) + 0.5
    gy = np.arange(h, dtype=np.float32) + 0.5
    dx2 = (gx[:, None] - cx[..., None, :]) ** 2           # (..., w, 18)
    dy2 = (gy[:, None] - cy[..., None, :]) ** 2           # (..., h, 18)
    maps = np.exp(-(dy2[..., :, None, :] + dx2[..., None, :, :]) / (2.0 * sigma**2))
    return np.nan_to_num(maps, nan=0.0).astype(np.float32)


def flip_heatmaps(heatmaps: np.ndarray) -> np.ndarray:
    """Heat-maps (..., h, w, 18) of the horizontally flipped image: mirror w, swap left/right."""
    return np.asarray(heatmaps)[..., :, ::-1, :][..., FLIP_PERMUTATION]
