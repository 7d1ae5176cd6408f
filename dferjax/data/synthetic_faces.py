"""Procedurally drawn faces: the project's built-in synthetic demo set of labelled expression clips.

Every frame is drawn with OpenCV from the 68 iBUG 300-W landmarks (dlib's scheme) of a parametric
face, so the landmarks returned with it are exact by construction; no detector or shape predictor is
involved. A clip is fully determined by ``(label, seed)`` (plus ``num_frames`` and ``size``): all
randomness comes from ``np.random.default_rng`` seeded with the seed, never from a global generator,
so the bytes are the same in any process. The frame is framed like a face crop (dlib's face box
plus a 25% margin on each side, which is what ``dferjax.data.faces`` cuts from real video).

API: ``render_clip(label, seed)`` -> frames uint8 (T, S, S, 3) RGB and landmarks float32 (T, 68, 2)
in continuous pixel coordinates (pixel i spans [i, i + 1)); ``iter_clips`` yields a balanced,
deterministic train/test set; ``face_landmarks`` gives one face's landmarks; ``sample_clip`` /
``render_spec`` split a clip into its random specification (``ClipSpec``, editable, e.g. without
occluders) and the drawing; ``clip_landmarks`` gives the landmarks without drawing.

The face
    A canonical neutral face lives in *face units* (jaw about 0.96 wide, x right, y down, origin
    near the nose bridge): jaw 0-16 (ear to ear, a rounded square chin close to where dlib's
    shape predictor puts it on these drawings), brows 17-26, nose 27-35, eyes 36-47, outer lips
    48-59, inner lips 60-67. "Left" is the image's left, the subject's right (17-21, 36-41).
    Per-clip identity (``FaceShape``) varies face size and proportions, eye size and spacing, brow
    height and thickness, nose, mouth width and lip thickness. The expression moves named
    parameters (``EXPRESSIONS``: brow inner, middle and outer height, brows pulled together, upper
    and lower lid opening, mouth corner position, lip opening with jaw drop, upper/lower lip raise,
    lip pressing, mouth roundness, nose raise). The face is then posed: yaw (a rotation about the
    vertical axis of a half-ellipse depth profile with a protruding nose, which compresses one side
    of the face and moves the nose sideways), in-plane roll, scale and translation.

Drawing, back to front (all from the posed points; curves are Catmull-Rom splines through them):
background, long hair, neck and shirt, ears, the skin (jaw polygon closed by a cranium arc), hair
cap and hairline, cheek blush, expression wrinkles (nasolabial folds, frown lines between the
brows, forehead lines, nose wrinkles) whose contrast follows the intensity, the nose (bridge line,
nostril base and nostrils), the eyes (sclera polygon with iris, pupil and catch-light clipped to it,
dark upper lid line), thick brows, and the lips (outer polygon in lip colour, the inner polygon as
the dark mouth opening with tongue and upper teeth, and the lip line). Then the occluders, blur,
light and noise.

The seven expressions (label order of ``dferjax.labels``; values at the apex in ``EXPRESSIONS``)
    happy: mouth corners up and out, lips parted showing teeth, lower lids raised, cheeks blushed,
        nasolabial folds. sad: inner brows raised and oblique, outer brows down, drooping lids, mouth
        corners down and narrower, lower lip pushed up. neutral: rest. angry: brows lowered and
        pulled together with frown lines, lower lids tense, lips pressed thin and narrowed.
        surprise: whole brows high with forehead lines, eyes wide, jaw dropped to a round open
        mouth. disgust: upper lip raised (more on one side) baring teeth, mouth corners down, nose
        raised and wrinkled, brows lowered, lower lids raised. fear: brows raised and pulled
        together, eyes wide, mouth stretched sideways and slightly open.
    The expression unfolds: intensity is 0 at the first frame, rises smoothly from a random onset to
    a random apex frame (random apex strength 0.8-1) and may decay a little afterwards, with small
    per-frame jitter; each clip also scales each expression parameter by 0.8-1.2 (personal style).
    At low intensity all classes look neutral.

Nuisances (per clip, seeded)
    skin, lip, iris, hair and shirt colours; hair style; background (two-colour gradient with
    blotches, stripes or rectangles); light (brightness, contrast, colour cast, a directional shading
    gradient); head pose (roll +-0.15 rad, yaw +-0.25 rad) and position and scale that drift slowly
    over the clip with a wobble and per-frame jitter; small per-frame landmark jitter; Gaussian pixel
    noise and sometimes blur; and on 45% of the clips an occluder (a coloured rectangle or ellipse or
    a hand on a run of frames, or glasses / sunglasses on all frames) that never hides the whole face.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Iterator

import cv2
import numpy as np

from dferjax.labels import BASIC_CLASSES

HAPPY, SAD, NEUTRAL, ANGRY, SURPRISE, DISGUST, FEAR = range(7)
NUM_CLASSES = len(BASIC_CLASSES)
assert BASIC_CLASSES == ("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear")

EYE_Y = -0.25
"""Height of the eye centres in face units (the origin is near the nose bridge)."""

# Expression parameters at the apex (intensity 1), in face units unless said otherwise. Keys:
# brow_{in,mid,out}_y: brow height change (negative = up); brow_in_x: inner brows towards the centre;
# eye_up / eye_lo: relative change of the upper / lower lid opening; corner_x / corner_y: mouth
# corners outwards / downwards; open: lip opening (jaw drops with it); upper_lip / lower_lip: lip
# raise; lip_thin: fraction of lip thickness lost (pressing); round: rounder opening; nose_up: nose
# tip and wings raised; teeth: fraction of the opening filled by upper teeth; asym: how much
# stronger the mouth is on one side; cheek, fold, glabella, forehead, nose_wrinkle: drawing strengths.
EXPRESSIONS: dict[int, dict[str, float]] = {
    HAPPY: dict(corner_x=0.045, corner_y=-0.075, open=0.045, upper_lip=0.008, eye_up=-0.25, eye_lo=-0.6,
                cheek=1.0, brow_out_y=0.008, teeth=0.75, fold=1.0),
    SAD: dict(brow_in_y=-0.065, brow_mid_y=-0.015, brow_out_y=0.025, brow_in_x=0.015, eye_up=-0.35,
              corner_y=0.06, corner_x=-0.025, lower_lip=0.015, lip_thin=0.15, glabella=0.4),
    NEUTRAL: dict(),
    ANGRY: dict(brow_in_y=0.055, brow_mid_y=0.03, brow_out_y=-0.005, brow_in_x=0.04, eye_up=0.1,
                eye_lo=-0.5, lip_thin=0.7, corner_x=-0.03, corner_y=0.01, glabella=1.0),
    SURPRISE: dict(brow_in_y=-0.07, brow_mid_y=-0.08, brow_out_y=-0.06, eye_up=0.6, eye_lo=0.25,
                   open=0.13, corner_x=-0.05, round=1.0, lip_thin=0.25, teeth=0.2, forehead=1.0),
    DISGUST: dict(upper_lip=0.04, nose_up=0.02, brow_in_y=0.04, brow_in_x=0.02, eye_lo=-0.5, eye_up=-0.25,
                  corner_y=0.03, corner_x=-0.025, teeth=0.6, asym=0.35, nose_wrinkle=1.0, fold=0.5,
                  lip_thin=0.1),
    FEAR: dict(brow_in_y=-0.055, brow_mid_y=-0.035, brow_out_y=-0.012, brow_in_x=0.025, eye_up=0.5,
               eye_lo=0.1, corner_x=0.06, corner_y=0.012, open=0.05, lip_thin=0.35, teeth=0.35,
               forehead=0.5, glabella=0.5),
}
_UNSCALED = ("asym",)                       # ratios, not scaled by the intensity
_ASYM_KEYS = ("corner_x", "corner_y", "upper_lip")

# Brow shape, outer (17 / 26) to inner (21 / 22): x relative to the eye centre, y relative to it.
_BROW_DX = np.array([0.155, 0.095, 0.025, -0.05, -0.125])
_BROW_DY = np.array([-0.075, -0.12, -0.135, -0.125, -0.10])
_BROW_W_IN = np.array([0.0, 0.15, 0.4, 0.75, 1.0])
_BROW_W_OUT = np.array([1.0, 0.7, 0.35, 0.1, 0.0])
_BROW_W_MID = np.array([0.3, 0.8, 1.0, 0.8, 0.3])

# Jaw 0..16 relative to (jaw_w, jaw_h) from the eye line: a rounded square chin, close to where
# dlib's shape predictor puts the jaw on these drawings.
_JAW_X = np.array([-1.0, -0.99, -0.955, -0.895, -0.8, -0.65, -0.465, -0.25, 0.0])
_JAW_X = np.concatenate([_JAW_X, -_JAW_X[-2::-1]])
_JAW_Y = np.array([-0.06, 0.118, 0.3, 0.467, 0.636, 0.783, 0.905, 0.99, 1.02])
_JAW_Y = np.concatenate([_JAW_Y, _JAW_Y[-2::-1]])

# Extra depth (face units, towards the camera) of the nose and lips, for the yaw rotation.
_LANDMARK_DEPTH = np.zeros(68)
_LANDMARK_DEPTH[27:36] = [0.03, 0.05, 0.07, 0.10, 0.04, 0.06, 0.07, 0.06, 0.04]
_LANDMARK_DEPTH[48:68] = 0.02
_HEAD_DEPTH = 0.3     # depth of the face surface at the centre line (x = 0)
_HEAD_HALF = 0.56     # half width of the head's depth profile

_SKIN_LIGHT = np.array([240.0, 205.0, 180.0])
_SKIN_DARK = np.array([92.0, 58.0, 42.0])
_IRIS_COLOURS = np.array([[95, 60, 32], [60, 40, 25], [70, 110, 160], [85, 115, 75], [110, 95, 70]], float)
_HAIR_COLOURS = np.array([[25, 20, 18], [60, 40, 25], [110, 75, 40], [200, 170, 110], [150, 70, 35],
                          [140, 140, 140]], float)


# ----------------------------------------------------------------------------------------------
# Face geometry.


@dataclass(frozen=True)
class FaceShape:
    """Identity: proportions of one person's neutral face, in face units."""

    jaw_w: float = 0.48        # half width of the jaw at ear level
    jaw_h: float = 0.72        # eye level to chin
    head_h: float = 0.62       # ear level to the top of the skull
    eye_x: float = 0.205       # half distance between the eye centres
    eye_w: float = 0.08        # half eye width (corner to corner / 2)
    eye_up: float = 0.038      # upper lid height above the corner line
    eye_lo: float = 0.024      # lower lid depth below it
    eye_tilt: float = 0.004    # outer corner higher than the inner one
    brow_y: float = 0.0        # brow height offset
    brow_w: float = 1.0        # brow length factor
    brow_t: float = 0.034      # brow thickness
    nose_tip_y: float = -0.025
    nose_w: float = 0.085      # half width of the nose base
    mouth_y: float = 0.175
    mouth_w: float = 0.175     # half width, corner to corner / 2
    lip_up: float = 0.04       # upper lip thickness at the centre
    lip_lo: float = 0.058      # lower lip thickness at the centre

    @classmethod
    def sample(cls, rng: np.random.Generator) -> FaceShape:
        """A random person: every proportion jittered around the average face."""
        u = rng.uniform(-1.0, 1.0, 16)
        return cls(jaw_w=0.48 + 0.03 * u[0], jaw_h=0.72 + 0.035 * u[1], head_h=0.62 + 0.04 * u[2],
                   eye_x=0.205 + 0.008 * u[3], eye_w=0.08 + 0.006 * u[4], eye_up=0.038 + 0.004 * u[5],
                   eye_lo=0.024 + 0.003 * u[6], eye_tilt=0.004 + 0.005 * u[7], brow_y=0.01 * u[8],
                   brow_w=1.0 + 0.07 * u[9], brow_t=0.034 + 0.008 * u[10], nose_tip_y=-0.025 + 0.012 * u[11],
                   nose_w=0.085 + 0.01 * u[12], mouth_y=0.175 + 0.01 * u[13], mouth_w=0.175 + 0.01 * u[14],
                   lip_up=0.04 + 0.008 * u[15], lip_lo=0.058 + 0.008 * u[15])


@dataclass(frozen=True)
class FacePose:
    """Where the face is in the frame: centre (pixels), scale (pixels per face unit), roll, yaw (rad)."""

    cx: float = 56.0
    cy: float = 56.0
    scale: float = 70.0
    roll: float = 0.0
    yaw: float = 0.0


_PARAM_KEYS = tuple(sorted({k for e in EXPRESSIONS.values() for k in e}))


def expression_params(expression: int, intensity: float | np.ndarray,
                      style: dict[str, float] | None = None) -> dict[str, np.ndarray]:
    """Every expression parameter (arrays shaped like ``intensity``; 0 = neutral, 1 = apex).

    ``style`` multiplies each parameter (a person's way of showing the expression).
    """
    if not 0 <= expression < NUM_CLASSES:
        raise ValueError(f"expression must be a label in 0..{NUM_CLASSES - 1}, got {expression}")
    intensity = np.asarray(intensity, float)
    out = {key: np.zeros_like(intensity) for key in _PARAM_KEYS}
    for key, value in EXPRESSIONS[expression].items():
        factor = np.ones_like(intensity) if key in _UNSCALED else intensity * (style or {}).get(key, 1.0)
        out[key] = value * factor
    return out


def _mouth_side(shape: FaceShape, e: dict[str, np.ndarray], s: int, asym_side: int) -> tuple[np.ndarray, ...]:
    """One side's lip contours (T, 6) at u = |x| / half width = 1 (corner), 0.92, 0.6, 0.45, 0.25, 0."""
    col = lambda k: e[k][:, None]  # noqa: E731
    scale = 1.0 + col("asym") * s * asym_side
    cx, cy, ul = (col(k) * scale for k in _ASYM_KEYS)
    open_, thin, rnd, lower = col("open"), col("lip_thin"), col("round"), col("lower_lip")
    mw = shape.mouth_w + cx
    u = np.array([1.0, 0.92, 0.6, 0.45, 0.25, 0.0])
    mid = shape.mouth_y + cy * u**2
    o = 1.0 - u ** (2.0 + 4.0 * rnd)
    o[:, :2] = 0.0                                # the corners stay closed
    body = np.sqrt(1.0 - u**2)
    up_in = mid - 0.25 * open_ * o - 0.8 * ul * body
    lo_in = mid + 0.75 * open_ * o - lower * body
    bow = np.where(u == 0.25, 0.006, 0.0)
    up_out = up_in - shape.lip_up * (1.0 - thin) * (0.35 + 0.65 * body) - 0.2 * ul * body - bow
    lo_out = lo_in + shape.lip_lo * (1.0 - thin) * (0.35 + 0.65 * body)
    return s * u * mw, up_in, lo_in, up_out, lo_out


def _canonical(shape: FaceShape, e: dict[str, np.ndarray], asym_side: int = 1) -> np.ndarray:
    """The 68 landmarks (T, 68, 2) in face units for expression parameters ``e`` (arrays (T,))."""
    col = lambda k: e[k][:, None]  # noqa: E731
    t = len(e["open"])
    lm = np.zeros((t, 68, 2))
    lm[:, 0:17, 0] = shape.jaw_w * _JAW_X
    lm[:, 0:17, 1] = EYE_Y + shape.jaw_h * _JAW_Y + 0.6 * col("open") * np.clip(_JAW_Y, 0.0, 1.0) ** 3
    ones = np.ones((t, 1))
    for s in (-1, 1):
        # Brows, outer to inner.
        bx = s * (shape.eye_x + shape.brow_w * _BROW_DX) - s * col("brow_in_x") * _BROW_W_IN
        by = (EYE_Y + shape.brow_y + _BROW_DY + col("brow_in_y") * _BROW_W_IN
              + col("brow_out_y") * _BROW_W_OUT + col("brow_mid_y") * _BROW_W_MID)
        lm[:, [17, 18, 19, 20, 21] if s < 0 else [26, 25, 24, 23, 22]] = np.stack([bx, by], -1)
        # Eye: outer corner, upper outer, upper inner, inner corner, lower inner, lower outer.
        ex, ew, tilt = s * shape.eye_x, shape.eye_w, shape.eye_tilt
        up = shape.eye_up * np.maximum(0.1, 1.0 + col("eye_up"))
        lo = shape.eye_lo * np.maximum(0.1, 1.0 + col("eye_lo"))
        xs = ones * np.array([ex + s * ew, ex + s * ew / 3, ex - s * ew / 3, ex - s * ew, ex - s * ew / 3,
                              ex + s * ew / 3])
        ys = np.concatenate([ones * (EYE_Y - tilt), EYE_Y - up - 0.6 * tilt, EYE_Y - 0.95 * up,
                             ones * (EYE_Y + 0.003), EYE_Y + lo, EYE_Y + lo - 0.3 * tilt], 1)
        lm[:, [36, 37, 38, 39, 40, 41] if s < 0 else [45, 44, 43, 42, 47, 46]] = np.stack([xs, ys], -1)
    # Nose: bridge 27-30, base 31-35.
    tip = shape.nose_tip_y - col("nose_up")
    top = EYE_Y - 0.005
    lm[:, 27:31, 1] = top + (tip - top) * np.array([0.0, 1 / 3, 2 / 3, 1.0])
    lm[:, 31:36, 0] = shape.nose_w * (1.0 + 3.0 * col("nose_up")) * np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    lm[:, 31:36, 1] = tip + np.array([0.05, 0.065, 0.075, 0.065, 0.05]) - 0.5 * col("nose_up")
    # Mouth, from each side's contours (u index 0 corner, 1 inner corner, 2 = 0.6, 3 = 0.45, 4 = 0.25).
    x_l, ui_l, li_l, uo_l, lo_l = _mouth_side(shape, e, -1, asym_side)
    x_r, ui_r, li_r, uo_r, lo_r = _mouth_side(shape, e, 1, asym_side)
    centre = lambda a, b: 0.5 * (a[:, 5] + b[:, 5])  # noqa: E731
    zero = np.zeros(t)
    mouth = [  # (x, y) of 48 .. 67
        (x_l[:, 0], uo_l[:, 0]), (x_l[:, 2], uo_l[:, 2]), (x_l[:, 4], uo_l[:, 4]), (zero, centre(uo_l, uo_r)),
        (x_r[:, 4], uo_r[:, 4]), (x_r[:, 2], uo_r[:, 2]), (x_r[:, 0], uo_r[:, 0]),
        (x_r[:, 2], lo_r[:, 2]), (x_r[:, 4], lo_r[:, 4]), (zero, centre(lo_l, lo_r)),
        (x_l[:, 4], lo_l[:, 4]), (x_l[:, 2], lo_l[:, 2]),
        (x_l[:, 1], ui_l[:, 1]), (x_l[:, 3], ui_l[:, 3]), (zero, centre(ui_l, ui_r)),
        (x_r[:, 3], ui_r[:, 3]), (x_r[:, 1], ui_r[:, 1]),
        (x_r[:, 3], li_r[:, 3]), (zero, centre(li_l, li_r)), (x_l[:, 3], li_l[:, 3]),
    ]
    lm[:, 48:68] = np.stack([np.stack(p, -1) for p in mouth], 1)
    return lm


def _pose_points(points: np.ndarray, pose: np.ndarray, extra_depth: np.ndarray | float = 0.0) -> np.ndarray:
    """Face units (T, P, 2) -> pixels, for poses (T, 5) = (cx, cy, scale, roll, yaw) in pixels / radians.

    Yaw rotates the points about the vertical axis, each at the depth of a half-ellipse head profile
    (plus ``extra_depth``, e.g. for the nose); roll rotates in the image plane.
    """
    cx, cy, scale, roll, yaw = (pose[:, k, None] for k in range(5))
    x, y = points[..., 0], points[..., 1]
    z = _HEAD_DEPTH * (np.sqrt(np.clip(1.0 - (x / _HEAD_HALF) ** 2, 0.0, 1.0)) - 1.0) + extra_depth
    x = x * np.cos(yaw) + z * np.sin(yaw)
    c, s = np.cos(roll), np.sin(roll)
    return np.stack([cx + scale * (c * x - s * y), cy + scale * (s * x + c * y)], -1)


def face_landmarks(expression: int, intensity: float, shape: FaceShape | None = None,
                   pose: FacePose | None = None, *, style: dict[str, float] | None = None,
                   asym_side: int = 1) -> np.ndarray:
    """The 68 landmarks (68, 2) of a face showing ``expression`` at ``intensity`` in [0, 1].

    With ``pose`` they are continuous pixel coordinates of the frame; without, face units (jaw 0.96
    wide, origin near the nose bridge, y down). ``shape`` defaults to the average face; ``asym_side``
    (+1 / -1) picks the side where an asymmetric expression (disgust) is stronger.
    """
    e = expression_params(expression, np.array([intensity], float), style)
    lm = _canonical(shape or FaceShape(), e, asym_side)
    if pose is not None:
        posed = np.array([[pose.cx, pose.cy, pose.scale, pose.roll, pose.yaw]])
        lm = _pose_points(lm, posed, _LANDMARK_DEPTH)
    return lm[0]


# ----------------------------------------------------------------------------------------------
# The per-clip specification (everything random is drawn here).


@dataclass(frozen=True)
class Occluder:
    """Something in front of the face on frames [first, last]; lengths in face units."""

    kind: str                    # "rect", "ellipse", "hand", "glasses", "sunglasses"
    first: int
    last: int
    anchor: int = 30             # landmark the occluder is placed relative to
    offset: tuple[float, float] = (0.0, 0.0)
    drift: tuple[float, float] = (0.0, 0.0)  # face units per frame
    radius: float = 0.15         # face units (glasses: lens size relative to the eye)
    aspect: float = 1.0
    angle: float = 0.0
    colour: tuple[float, float, float] = (128.0, 128.0, 128.0)


@dataclass(frozen=True)
class ClipSpec:
    """Everything random about one clip, independent of the frame size (lengths are fractions of it)."""

    label: int
    num_frames: int
    shape: FaceShape
    style: dict[str, float]               # per-parameter factor: this person's way of showing it
    asym_side: int
    intensity: np.ndarray                 # (T,) expression intensity per frame
    pose: np.ndarray                      # (T, 5): cx, cy, scale (fractions of size), roll, yaw (rad)
    jitter: np.ndarray                    # (T, 68, 2) landmark jitter in face units
    colours: dict[str, np.ndarray]
    hair_style: int                       # 0 none, 1 short, 2 long, 3 short with a fringe
    hairline: float
    gaze: tuple[float, float]
    wrinkle_base: float                   # how visible folds are at rest
    background: dict[str, object]
    light: dict[str, float]
    noise_sigma: float
    blur_sigma: float
    noise_seed: int
    occluders: tuple[Occluder, ...] = field(default=())


def _intensity_curve(rng: np.random.Generator, t: int) -> np.ndarray:
    """Intensity per frame: 0 at the start, smooth rise from onset to apex, optional slight decay."""
    last = max(t - 1, 1)
    onset = rng.uniform(0.0, 0.25) * last
    apex = rng.uniform(0.4, 0.8) * last
    peak = rng.uniform(0.8, 1.0)
    decay = rng.uniform(0.0, 0.25) if rng.random() < 0.5 else 0.0
    frames = np.arange(t, dtype=float)
    u = np.clip((frames - onset) / max(apex - onset, 1e-6), 0.0, 1.0)
    curve = peak * u * u * (3.0 - 2.0 * u)
    after = frames > apex
    curve[after] = peak * (1.0 - decay * (frames[after] - apex) / max(last - apex, 1e-6))
    return curve


def _sample_colours(rng: np.random.Generator) -> dict[str, np.ndarray]:
    tone = rng.uniform(0.0, 1.0)
    skin = np.clip((_SKIN_LIGHT * (1 - tone) + _SKIN_DARK * tone) * rng.uniform(0.94, 1.06, 3), 0, 255)
    lips = np.clip(skin * np.array([0.82, 0.55, 0.55]) + np.array([30.0, 5.0, 10.0]) * rng.uniform(0.5, 1.2),
                   0, 255)
    hair = np.clip(_HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))] * rng.uniform(0.8, 1.15), 0, 255)
    return dict(
        skin=skin, lips=lips, hair=hair, brow=np.minimum(hair * 0.8, skin * 0.42),
        iris=_IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))] * rng.uniform(0.85, 1.15),
        sclera=np.array([238.0, 236.0, 230.0]) * rng.uniform(0.9, 1.0),
        shirt=rng.uniform(20, 235, 3), blush=np.array([225.0, 95.0, 100.0]),
        mouth=np.array([70.0, 22.0, 28.0]) * rng.uniform(0.7, 1.1), teeth=np.array([240.0, 236.0, 220.0]),
    )


def _sample_occluders(rng: np.random.Generator, t: int) -> tuple[Occluder, ...]:
    kind = str(rng.choice(["none", "rect", "ellipse", "hand", "glasses", "sunglasses"],
                          p=[0.55, 0.1, 0.1, 0.12, 0.09, 0.04]))
    if kind == "none":
        return ()
    if kind in ("glasses", "sunglasses"):
        return (Occluder(kind, 0, t - 1, colour=tuple(rng.uniform(10, 120, 3)),
                         aspect=rng.uniform(0.65, 0.85), radius=rng.uniform(1.3, 1.6)),)
    if rng.random() < 0.25:
        first, last = 0, t - 1
    else:
        length = int(rng.integers(max(2, t // 4), max(3, (3 * t) // 4) + 1))
        first = int(rng.integers(0, max(1, t - length + 1)))
        last = min(t - 1, first + length - 1)
    if kind == "hand":
        anchor = int([48, 54, 57, 8, 4, 12][rng.integers(6)])
        colour = np.clip(_SKIN_LIGHT + rng.uniform(0, 1) * (_SKIN_DARK - _SKIN_LIGHT), 0, 255)
        return (Occluder(kind, first, last, anchor, offset=tuple(rng.uniform(-0.05, 0.05, 2) + (0.0, 0.1)),
                         drift=tuple(rng.uniform(-0.008, 0.008, 2)), radius=rng.uniform(0.12, 0.17),
                         angle=rng.uniform(-0.6, 0.6), colour=tuple(colour)),)
    anchor = int([48, 54, 57, 8, 36, 45, 1, 15, 30, 19, 24][rng.integers(11)])
    return (Occluder(kind, first, last, anchor, offset=tuple(rng.uniform(-0.08, 0.08, 2)),
                     drift=tuple(rng.uniform(-0.01, 0.01, 2)), radius=rng.uniform(0.09, 0.18),
                     aspect=rng.uniform(0.5, 1.5), angle=rng.uniform(0, np.pi),
                     colour=tuple(rng.uniform(0, 255, 3))),)


def sample_clip(label: int, seed: int, *, num_frames: int = 16) -> ClipSpec:
    """The random specification of clip ``(label, seed)``.

    Identity, timing and nuisances depend on ``seed`` only (the same seed shows the same person, light
    and background with each label); clip-level draws do not depend on ``num_frames`` either.
    """
    if not 0 <= label < NUM_CLASSES:
        raise ValueError(f"label must be in 0..{NUM_CLASSES - 1}, got {label}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    t = num_frames
    clip_seq, frame_seq = np.random.SeedSequence(seed).spawn(2)
    rng = np.random.default_rng(clip_seq)
    frame_rng = np.random.default_rng(frame_seq)
    shape = FaceShape.sample(rng)
    style = {key: float(rng.uniform(0.8, 1.2)) for key in _PARAM_KEYS}
    asym_side = 1 if rng.random() < 0.5 else -1
    intensity = _intensity_curve(rng, t)
    # Pose: base + slow drift over the clip + a slow wobble + per-frame jitter.
    scale = rng.uniform(0.64, 0.74)
    base = np.array([0.5 + rng.uniform(-0.03, 0.03), 0.5 + 0.035 * scale + rng.uniform(-0.03, 0.03), scale,
                     rng.uniform(-0.15, 0.15), rng.uniform(-0.25, 0.25)])
    drift = np.array([0.02, 0.02, 0.025, 0.06, 0.1]) * rng.uniform(-1, 1, 5)
    wobble_phase = rng.uniform(0, 2 * np.pi)
    colours = _sample_colours(rng)
    hair_style = int(rng.integers(4))
    hairline = float(rng.uniform(-0.56, -0.48))
    gaze = (float(rng.uniform(-0.006, 0.006)), float(rng.uniform(-0.004, 0.004)))
    wrinkle_base = float(rng.uniform(0.0, 0.35))
    background = dict(kind=int(rng.integers(4)), c1=rng.uniform(0, 255, 3), c2=rng.uniform(0, 255, 3),
                      angle=rng.uniform(0, 2 * np.pi), blobs=rng.uniform(-1, 1, (6, 6, 3)),
                      freq=rng.uniform(3, 12), stripe_angle=rng.uniform(0, np.pi),
                      rects=rng.uniform(0, 1, (4, 7)))
    light = dict(brightness=rng.uniform(-35, 25), contrast=rng.uniform(0.7, 1.2),
                 gradient=rng.uniform(0.0, 0.45), angle=rng.uniform(0, 2 * np.pi), r=rng.uniform(0.9, 1.1),
                 g=rng.uniform(0.93, 1.07), b=rng.uniform(0.9, 1.1))
    noise_sigma = float(rng.uniform(1.5, 7.0))
    blur_sigma = float(rng.uniform(0.5, 1.0)) if rng.random() < 0.3 else 0.0
    occluders = _sample_occluders(rng, t)
    # Per-frame randomness from its own stream.
    phase = np.arange(t) / max(t - 1, 1)
    pose = (base[None] + drift[None] * phase[:, None]
            + np.array([0.004, 0.004, 0.004, 0.01, 0.012]) * np.sin(2 * np.pi * phase + wobble_phase)[:, None]
            + np.array([0.003, 0.003, 0.003, 0.008, 0.01]) * frame_rng.standard_normal((t, 5)))
    intensity = np.clip(intensity * (1.0 + 0.04 * frame_rng.standard_normal(t)), 0.0, 1.0)
    jitter = 0.0015 * frame_rng.standard_normal((t, 68, 2))
    noise_seed = int(frame_rng.integers(2**63))
    return ClipSpec(label, t, shape, style, asym_side, intensity, pose, jitter, colours, hair_style,
                    hairline, gaze, wrinkle_base, background, light, noise_sigma, blur_sigma, noise_seed,
                    occluders)


# ----------------------------------------------------------------------------------------------
# Geometry of every drawn shape, for all frames at once.

_SHIFT = 4
_ONE = 1 << _SHIFT
_AA = cv2.LINE_AA


def _ip(points: np.ndarray) -> np.ndarray:
    """Continuous pixel coordinates -> OpenCV fixed point (4 fractional bits, pixel centres at integers)."""
    return np.round((points - 0.5) * _ONE).astype(np.int32)


def _col(c: np.ndarray | tuple) -> tuple[float, float, float]:
    return tuple(float(v) for v in c)


@functools.lru_cache(maxsize=None)
def _spline_matrix(n: int, closed: bool, k: int) -> np.ndarray:
    """(m, n) matrix taking n points to a Catmull-Rom curve through them with k samples per segment."""
    p = np.eye(n)
    if closed:
        p0, p1, p2, p3 = np.roll(p, 1, 0), p, np.roll(p, -1, 0), np.roll(p, -2, 0)
    else:
        ext = np.concatenate([p[:1], p, p[-1:]])
        p0, p1, p2, p3 = ext[:-3], ext[1:-2], ext[2:-1], ext[3:]
    t = (np.arange(k) / k)[None, :, None]
    t2, t3 = t * t, t * t * t
    out = (p0[:, None] * (-0.5 * t3 + t2 - 0.5 * t) + p1[:, None] * (1.5 * t3 - 2.5 * t2 + 1)
           + p2[:, None] * (-1.5 * t3 + 2 * t2 + 0.5 * t) + p3[:, None] * (0.5 * t3 - 0.5 * t2))
    out = out.reshape(-1, n)
    return out if closed else np.concatenate([out, p[-1:]])


def _spline(points: np.ndarray, closed: bool, k: int = 4) -> np.ndarray:
    """Catmull-Rom curve through points (..., n, 2)."""
    return _spline_matrix(points.shape[-2], closed, k) @ points


def _ellipse(ax: float, ay: float, n: int = 24, start: float = 0.0, stop: float = 2 * np.pi) -> np.ndarray:
    """Points (n, 2) of an ellipse (arc) around the origin; a full ellipse does not repeat its start."""
    a = np.linspace(start, stop, n, endpoint=stop - start < 2 * np.pi - 1e-9)
    return np.stack([ax * np.cos(a), ay * np.sin(a)], 1)


def _static_outlines(spec: ClipSpec) -> dict[str, np.ndarray]:
    """Outlines that do not change with the expression, in face units: head, hair, ears, neck, shirt."""
    s = spec.shape
    cy = EYE_Y + s.jaw_h * _JAW_Y[0]
    out = {
        "cranium": _ellipse(s.jaw_w, s.head_h, 21, 0.0, -np.pi)[1:-1] + (0.0, cy),
        "ear_l": _ellipse(0.045, 0.09, 14) + (-s.jaw_w - 0.02, EYE_Y + 0.08),
        "ear_r": _ellipse(0.045, 0.09, 14) + (s.jaw_w + 0.02, EYE_Y + 0.08),
        "neck": np.array([[-0.17, 0.25], [0.17, 0.25], [0.2, 0.8], [-0.2, 0.8]]),
        "shirt": np.array([[-1.2, 1.8], [-1.05, 0.98], [-0.6, 0.74], [-0.2, 0.68], [0.0, 0.8], [0.2, 0.68],
                           [0.6, 0.74], [1.05, 0.98], [1.2, 1.8]]),
    }
    if spec.hair_style:
        outer = _ellipse(s.jaw_w + 0.03, s.head_h + 0.04, 25, np.pi - 0.15, 2 * np.pi + 0.15) + (0.0, cy)
        x = np.linspace(s.jaw_w + 0.02, -s.jaw_w - 0.02, 15)
        line = spec.hairline + 0.25 * (x / s.jaw_w) ** 4
        if spec.hair_style == 3:  # a fringe: lower and wavy in the middle
            line = line + 0.07 * np.exp(-((x + 0.1) / 0.25) ** 2) + 0.012 * np.sin(x * 40)
        out["hair"] = np.concatenate([outer, np.stack([x, line], 1)])
    if spec.hair_style == 2:
        back = _ellipse(s.jaw_w + 0.09, s.head_h + 0.07, 17, np.pi, 2 * np.pi) + (0.0, cy)
        out["hair_back"] = np.concatenate([back, [[s.jaw_w + 0.14, 0.62], [-s.jaw_w - 0.14, 0.62]]])
    return out


_Block = tuple[np.ndarray, "np.ndarray | float"]


def _moving_outlines(spec: ClipSpec, lm: np.ndarray, e: dict[str, np.ndarray]) -> dict[str, _Block]:
    """Shapes that follow the landmarks (T, 68, 2): points (T, n, 2) in face units and extra depth."""
    t = len(lm)
    out: dict[str, _Block] = {}
    for name, tri, toward in (("cheek_l", [1, 31, 48], 36), ("cheek_r", [15, 35, 54], 45)):
        centre = lm[:, tri].mean(1) * 0.8 + lm[:, toward] * 0.2
        out[name] = (centre[:, None] + _ellipse(0.075, 0.05, 16), 0.0)
    for s, wing, corner in ((-1, 31, 48), (1, 35, 54)):
        a = lm[:, wing] + (0.03 * s, -0.015)
        b = lm[:, corner] + (0.035 * s, 0.03)
        mid = 0.5 * (a + b) + (0.025 * s, 0.0)
        out[f"fold_{s}"] = (np.stack([a, mid, b], 1), 0.03)
        top = lm[:, 27] + (0.03 * s, -0.02)
        out[f"glabella_{s}"] = (np.stack([top, top + (0.005 * s, -0.07)], 1), 0.02)
        w0 = lm[:, 27] + (0.035 * s, 0.07)
        out[f"wrinkle_{s}"] = (np.stack([w0, w0 + (0.03 * s, 0.025)], 1), 0.05)
    brow_top = 0.5 * (lm[:, 19] + lm[:, 24])
    dx = np.array([-0.2, -0.1, 0.0, 0.1, 0.2])
    for k in range(3):
        arc = brow_top[:, None] + np.stack([dx, np.abs(dx) * 0.15 - (0.05 + 0.045 * k)], 1)
        out[f"forehead_{k}"] = (arc, 0.0)
    side = 1.0 if np.mean(spec.pose[:, 4]) >= 0 else -1.0
    out["ridge"] = (lm[:, 28:31] + (0.025 * side, 0.0), _LANDMARK_DEPTH[28:31])
    for name, idx in (("nostril_l", 32), ("nostril_r", 34)):
        out[name] = (lm[:, idx, None] + (0.0, -0.012) + _ellipse(0.018, 0.01, 10), 0.06)
    gaze = np.asarray(spec.gaze)
    for name, idx in (("iris_l", slice(36, 42)), ("iris_r", slice(42, 48))):
        centre = lm[:, idx].mean(1) + gaze
        out[name] = (np.stack([centre, centre + (0.014, -0.012)], 1), 0.0)
    upper_in = lm[:, [60, 61, 62, 63, 64]]
    lower_in = lm[:, [60, 67, 66, 65, 64]]
    frac = (np.minimum(e["teeth"], 0.9) * 0.6)[:, None, None]
    edge = upper_in + frac * (lower_in - upper_in)
    out["teeth"] = (np.concatenate([upper_in - (0.0, 0.02), edge[:, ::-1]], 1), 0.02)
    tongue = 0.3 * 0.5 * (lower_in[:, 2] + upper_in[:, 2]) + 0.7 * lower_in[:, 2]
    out["tongue"] = (tongue[:, None] + _ellipse(0.07, 0.03, 14), 0.02)
    assert all(v[0].shape[0] == t for v in out.values())
    return out


# Landmark curves drawn as splines: name -> (landmark indices, closed).
_CURVES = {
    "jaw": (list(range(17)), False),
    "brow_l": (list(range(17, 22)), False), "brow_r": (list(range(22, 27)), False),
    "nose_base": (list(range(31, 36)), False),
    "eye_l": (list(range(36, 42)), True), "eye_r": (list(range(42, 48)), True),
    "lips_outer": (list(range(48, 60)), True), "lips_inner": (list(range(60, 68)), True),
    "lip_line": ([60, 61, 62, 63, 64], False),
}
_SMOOTHED = {"fold_-1": False, "fold_1": False, "forehead_0": False, "forehead_1": False, "forehead_2": False}


def _clip_points(spec: ClipSpec, size: int) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray],
                                                         dict[str, np.ndarray]]:
    """Landmarks (T, 68, 2) and poses (T, 5) in pixels, every drawn outline (T, n, 2), expression params.

    The whole clip is shifted (and if needed shrunk about the frame centre) so that every landmark lies
    at least 2% of the frame inside it.
    """
    e = expression_params(spec.label, spec.intensity, spec.style)
    canon = _canonical(spec.shape, e, spec.asym_side) + spec.jitter
    pose = spec.pose * np.array([size, size, size, 1.0, 1.0])
    lms = _pose_points(canon, pose, _LANDMARK_DEPTH)
    margin = 1.0 + 0.02 * size
    lo, hi = lms.reshape(-1, 2).min(0), lms.reshape(-1, 2).max(0)
    shrink = min(1.0, float(np.min((size - 2 * margin) / np.maximum(hi - lo, 1e-6))))
    if shrink < 1.0:
        pose[:, :2] = size / 2 + (pose[:, :2] - size / 2) * shrink
        pose[:, 2] *= shrink
        lms = size / 2 + (lms - size / 2) * shrink
        lo, hi = lms.reshape(-1, 2).min(0), lms.reshape(-1, 2).max(0)
    shift = np.maximum(margin - lo, 0.0) - np.maximum(hi - (size - margin), 0.0)
    pose[:, :2] += shift
    lms = lms + shift
    # Every other outline, posed in one go.
    blocks: dict[str, tuple[np.ndarray, object]] = {
        k: (np.broadcast_to(v, (len(lms),) + v.shape), 0.0) for k, v in _static_outlines(spec).items()}
    blocks.update(_moving_outlines(spec, canon, e))
    names = list(blocks)
    sizes = [blocks[n][0].shape[1] for n in names]
    pts = np.concatenate([blocks[n][0] for n in names], 1)
    depth = np.concatenate([np.broadcast_to(np.asarray(blocks[n][1], float), (size_,))
                            for n, size_ in zip(names, sizes)])
    posed = np.split(_pose_points(pts, pose, depth), np.cumsum(sizes)[:-1], axis=1)
    shapes = dict(zip(names, posed))
    for name, (idx, closed) in _CURVES.items():
        shapes[name] = _spline(lms[:, idx], closed)
    for name, closed in _SMOOTHED.items():
        shapes[name] = _spline(shapes[name], closed)
    shapes["hair"] = _spline(shapes["hair"], True, 2) if "hair" in shapes else None
    shapes = {k: v for k, v in shapes.items() if v is not None}
    shapes["head"] = np.concatenate([shapes["jaw"], shapes["cranium"]], 1)
    return lms, pose, shapes, e


def clip_landmarks(spec: ClipSpec, size: int = 112) -> np.ndarray:
    """The landmarks (T, 68, 2) float32 that ``render_spec(spec, size)`` returns, without drawing."""
    return _clip_points(spec, size)[0].astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Drawing.


def _background(spec: ClipSpec, size: int) -> np.ndarray:
    """The clip's static background (size, size, 3) float32."""
    bg = spec.background
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    a = bg["angle"]
    w = np.clip(xx * math.cos(a) + yy * math.sin(a) + 0.5, 0.0, 1.0)[..., None]
    img = (bg["c1"] * (1 - w) + bg["c2"] * w).astype(np.float32)
    kind = bg["kind"]
    if kind == 1:
        img += 30.0 * cv2.resize(bg["blobs"].astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    elif kind == 2:
        sa = bg["stripe_angle"]
        img += (18.0 * np.sin(2 * np.pi * bg["freq"] * (xx * math.cos(sa) + yy * math.sin(sa))))[..., None]
    elif kind == 3:
        for r in bg["rects"]:
            x0, y0, w_, h_ = r[0] * size, r[1] * size, r[2] * size * 0.6, r[3] * size
            box = np.array([[x0, y0], [x0 + w_, y0], [x0 + w_, y0 + h_], [x0, y0 + h_]])
            cv2.fillPoly(img, [_ip(box)], _col(r[4:7] * 255), _AA, _SHIFT)
    return img


def _light_field(spec: ClipSpec, size: int) -> tuple[np.ndarray, np.float32]:
    """Multiplicative shading (size, size, 3) (directional gradient, colour cast, contrast) and offset."""
    li = spec.light
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    a = li["angle"]
    shade = 1.0 + li["gradient"] * 2.0 * (xx * math.cos(a) + yy * math.sin(a))
    gains = np.array([li["r"], li["g"], li["b"]], np.float32) * li["contrast"]
    mult = (shade[..., None] * gains).astype(np.float32)
    return mult, np.float32(128.0 * (1.0 - li["contrast"]) + li["brightness"])


def _mix(a: np.ndarray, b: np.ndarray, t: float) -> tuple[float, float, float]:
    return _col(np.asarray(a) * (1.0 - t) + np.asarray(b) * t)


def _clipped(img: np.ndarray, outline: np.ndarray, fill: tuple, draw) -> None:
    """Fill ``outline`` (fixed point) with ``fill``, then ``draw(canvas, offset)`` clipped to it."""
    h, w = img.shape[:2]
    x0, y0 = np.maximum(outline.min(0) // _ONE - 1, 0)
    x1, y1 = outline.max(0) // _ONE + 3
    x1, y1 = min(x1, w), min(y1, h)
    if x1 <= x0 or y1 <= y0:
        return
    roi = img[y0:y1, x0:x1]
    cv2.fillPoly(roi, [outline - (x0 * _ONE, y0 * _ONE)], fill, _AA, _SHIFT)
    canvas = np.empty_like(roi)
    canvas[:] = fill
    draw(canvas, np.array([x0, y0]) * _ONE)
    mask = np.zeros(roi.shape[:2], np.uint8)
    cv2.fillPoly(mask, [outline - (x0 * _ONE, y0 * _ONE)], 1, cv2.LINE_8, _SHIFT)
    np.copyto(roi, canvas, where=mask[..., None].astype(bool))


class _Palette:
    """The clip's colours as OpenCV tuples."""

    def __init__(self, spec: ClipSpec) -> None:
        c = spec.colours
        skin = c["skin"]
        self.skin, self.skin_rgb, self.wrinkle_rgb = _col(skin), skin, skin * 0.6
        self.neck, self.ear = _col(skin * 0.82), _col(skin * 0.9)
        self.ridge, self.nose = _col(skin * 0.8), _col(skin * 0.7)
        self.nostril, self.eye_line = _col(skin * 0.45), _col(skin * 0.55)
        self.hair, self.hair_back, self.brow = _col(c["hair"]), _col(c["hair"] * 0.85), _col(c["brow"])
        self.shirt, self.lips, self.lip_line = _col(c["shirt"]), _col(c["lips"]), _col(c["lips"] * 0.45)
        self.sclera, self.iris, self.mouth = _col(c["sclera"]), _col(c["iris"]), _col(c["mouth"])
        self.tongue, self.teeth, self.blush = _col(c["mouth"] * 1.6 + 20), _col(c["teeth"]), c["blush"]
        self.lash, self.pupil, self.glint = (30.0, 22.0, 20.0), (12.0, 10.0, 10.0), (250.0, 250.0, 250.0)


def _draw_face(img: np.ndarray, p: dict[str, np.ndarray], pal: _Palette, spec: ClipSpec,
               e: dict[str, float], scale: float) -> None:
    """Draw one frame's face from its fixed-point outlines ``p`` onto the float32 image ``img``."""
    fill, line = cv2.fillPoly, cv2.polylines
    th = max(1, int(round(0.012 * scale)))
    if "hair_back" in p:
        fill(img, [p["hair_back"]], pal.hair_back, _AA, _SHIFT)
    fill(img, [p["neck"]], pal.neck, _AA, _SHIFT)
    fill(img, [p["shirt"]], pal.shirt, _AA, _SHIFT)
    fill(img, [p["ear_l"], p["ear_r"]], pal.ear, _AA, _SHIFT)
    fill(img, [p["head"]], pal.skin, _AA, _SHIFT)
    if "hair" in p:
        fill(img, [p["hair"]], pal.hair, _AA, _SHIFT)
    blush = _mix(pal.skin_rgb, pal.blush, 0.1 + 0.25 * e["cheek"])
    fill(img, [p["cheek_l"], p["cheek_r"]], blush, _AA, _SHIFT)
    base = spec.wrinkle_base
    for names, strength in ((("fold_-1", "fold_1"), 0.3 * base + 0.7 * e["fold"]),
                            (("glabella_-1", "glabella_1"), e["glabella"]),
                            (("wrinkle_-1", "wrinkle_1"), e["nose_wrinkle"]),
                            (("forehead_0", "forehead_1", "forehead_2"), 0.25 * base + 0.8 * e["forehead"])):
        if strength > 0.05:
            colour = _mix(pal.skin_rgb, pal.wrinkle_rgb, min(1.0, strength))
            line(img, [p[n] for n in names], False, colour, 1, _AA, _SHIFT)
    line(img, [p["ridge"]], False, pal.ridge, th, _AA, _SHIFT)
    line(img, [p["nose_base"]], False, pal.nose, th, _AA, _SHIFT)
    fill(img, [p["nostril_l"], p["nostril_r"]], pal.nostril, _AA, _SHIFT)
    iris_r, pupil_r, glint_r = (int(round(f * scale * _ONE)) for f in (0.035, 0.015, 0.005))
    for eye, iris in (("eye_l", "iris_l"), ("eye_r", "iris_r")):
        contour, centre = p[eye], p[iris]

        def draw_eye(canvas: np.ndarray, off: np.ndarray, centre: np.ndarray = centre) -> None:
            c = centre[0] - off
            cv2.circle(canvas, c, iris_r, pal.iris, -1, _AA, _SHIFT)
            cv2.circle(canvas, c, pupil_r, pal.pupil, -1, _AA, _SHIFT)
            cv2.circle(canvas, centre[1] - off, glint_r, pal.glint, -1, _AA, _SHIFT)

        _clipped(img, contour, pal.sclera, draw_eye)
        line(img, [contour], True, pal.eye_line, 1, _AA, _SHIFT)
        line(img, [contour[: len(contour) // 2 + 1]], False, pal.lash, th, _AA, _SHIFT)
    bt = max(1, int(round(spec.shape.brow_t * scale)))
    line(img, [p["brow_l"], p["brow_r"]], False, pal.brow, bt, _AA, _SHIFT)
    fill(img, [p["lips_outer"]], pal.lips, _AA, _SHIFT)

    def draw_mouth(canvas: np.ndarray, off: np.ndarray) -> None:
        fill(canvas, [p["tongue"] - off], pal.tongue, _AA, _SHIFT)
        if e["teeth"] > 0.02:
            fill(canvas, [p["teeth"] - off], pal.teeth, _AA, _SHIFT)

    _clipped(img, p["lips_inner"], pal.mouth, draw_mouth)
    line(img, [p["lip_line"]], False, pal.lip_line, 1, _AA, _SHIFT)


def _draw_occluder(img: np.ndarray, occ: Occluder, lm: np.ndarray, pose: np.ndarray, t: int) -> None:
    """Draw an occluder for frame ``t`` given its landmarks (68, 2) and pose (5,) in pixels."""
    sc, roll = pose[2], pose[3]
    colour = _col(occ.colour)
    if occ.kind in ("glasses", "sunglasses"):
        ux = np.array([math.cos(roll), math.sin(roll)])
        rot = np.array([ux, [-ux[1], ux[0]]])
        th = max(1, int(round(0.015 * sc)))
        lenses = []
        for idx in (slice(36, 42), slice(42, 48)):
            half = np.linalg.norm(lm[idx][0] - lm[idx][3]) * 0.5 * occ.radius
            lenses.append(lm[idx].mean(0) + _ellipse(half, half * occ.aspect, 20) @ rot)
        ipl = [_ip(lens) for lens in lenses]
        if occ.kind == "sunglasses":
            cv2.fillPoly(img, ipl, (25.0, 25.0, 30.0), _AA, _SHIFT)
        cv2.polylines(img, ipl, True, colour, th, _AA, _SHIFT)
        left, right = lenses
        segments = [(left[np.argmax(left @ ux)], right[np.argmin(right @ ux)]),
                    (left[np.argmin(left @ ux)], lm[0]), (right[np.argmax(right @ ux)], lm[16])]
        cv2.polylines(img, [_ip(np.stack(s)) for s in segments], False, colour, th, _AA, _SHIFT)
        return
    centre = lm[occ.anchor] + sc * (np.asarray(occ.offset) + np.asarray(occ.drift) * (t - occ.first))
    r = occ.radius * sc
    ca, sa = math.cos(occ.angle), math.sin(occ.angle)
    rot = np.array([[ca, sa], [-sa, ca]])
    if occ.kind == "rect":
        box = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * np.array([r, r * occ.aspect])
        cv2.fillPoly(img, [_ip(centre + box @ rot)], colour, _AA, _SHIFT)
    elif occ.kind == "ellipse":
        cv2.fillPoly(img, [_ip(centre + _ellipse(r, r * occ.aspect, 24) @ rot)], colour, _AA, _SHIFT)
    elif occ.kind == "hand":  # a palm below the anchor and four fingers pointing up, tilted by the angle
        palm = _ellipse(r * 0.95, r * 0.8, 20) + (0.0, r * 1.1)
        cv2.fillPoly(img, [_ip(centre + palm @ rot)], colour, _AA, _SHIFT)
        fingers = [np.array([[x, r * 0.7], [x * 1.1, r * (0.7 - length)]])
                   for x, length in zip(np.array([-1.5, -0.5, 0.5, 1.5]) * r * 0.45, (1.1, 1.3, 1.25, 1.0))]
        finger_width = max(1, int(round(r * 0.42)))
        cv2.polylines(img, [_ip(centre + f @ rot) for f in fingers], False, colour, finger_width, _AA, _SHIFT)
        gaps = [np.array([[x, r * 0.75], [x * 1.1, -r * 0.2]]) for x in np.array([-1.0, 0.0, 1.0]) * r * 0.45]
        shadow = _col(np.asarray(occ.colour) * 0.8)
        cv2.polylines(img, [_ip(centre + g @ rot) for g in gaps], False, shadow, 1, _AA, _SHIFT)


def render_spec(spec: ClipSpec, size: int = 112) -> tuple[np.ndarray, np.ndarray]:
    """Draw a clip specification: frames uint8 (T, size, size, 3) RGB and landmarks float32 (T, 68, 2)."""
    lms, pose, shapes, e = _clip_points(spec, size)
    fixed = {k: _ip(v) for k, v in shapes.items()}
    background = _background(spec, size)
    mult, offset = _light_field(spec, size)
    pal = _Palette(spec)
    noise_rng = np.random.default_rng(spec.noise_seed)
    frames = np.empty((spec.num_frames, size, size, 3), np.uint8)
    for t in range(spec.num_frames):
        img = background.copy()
        outlines = {k: v[t] for k, v in fixed.items()}
        _draw_face(img, outlines, pal, spec, {k: float(v[t]) for k, v in e.items()}, float(pose[t, 2]))
        for occ in spec.occluders:
            if occ.first <= t <= occ.last:
                _draw_occluder(img, occ, lms[t], pose[t], t)
        if spec.blur_sigma > 0:
            img = cv2.GaussianBlur(img, (3, 3), spec.blur_sigma)
        img *= mult
        noise = noise_rng.standard_normal((size, size, 1), dtype=np.float32)
        img += offset + noise * np.float32(spec.noise_sigma)
        np.clip(img, 0.0, 255.0, out=img)
        frames[t] = img + np.float32(0.5)
    return frames, lms.astype(np.float32)


def render_clip(label: int, seed: int, *, num_frames: int = 16, size: int = 112
                ) -> tuple[np.ndarray, np.ndarray]:
    """Clip ``(label, seed)``: frames uint8 (T, size, size, 3) RGB and landmarks float32 (T, 68, 2).

    Landmarks are continuous pixel coordinates of the frame (pixel i spans [i, i + 1)). The same
    arguments give byte-identical frames in any process.
    """
    return render_spec(sample_clip(label, seed, num_frames=num_frames), size)


def clip_seed(seed: int, split: str, index: int) -> int:
    """The seed of clip ``index`` of ``split`` ("train" or "test") in the data set made with ``seed``."""
    code = {"train": 0, "test": 1}[split]
    return int(np.random.SeedSequence([seed, code, index]).generate_state(1, np.uint64)[0])


def iter_clips(num_train: int, num_test: int, *, seed: int = 0, num_frames: int = 16, size: int = 112
               ) -> Iterator[tuple[str, int, str, np.ndarray, np.ndarray]]:
    """Yield ``(clip_id, label, split, frames, landmarks)``: the train clips, then the test clips.

    Labels go round-robin over the 7 classes (balanced); clip ids are like ``train_00012``; each clip
    has its own seed derived from ``seed``, the split and its index, so the set is deterministic.
    """
    for split, count in (("train", num_train), ("test", num_test)):
        for i in range(count):
            label = i % NUM_CLASSES
            frames, landmarks = render_clip(label, clip_seed(seed, split, i), num_frames=num_frames,
                                            size=size)
            yield f"{split}_{i:05d}", label, split, frames, landmarks
