"""Reading clips and still images, choosing frames, and the one preparation shared by data_prep and predict.

``prepare_clip`` turns a video file, a folder of frame images, a still image (a file or an array) or
an array of frames into what a shard record stores and what the model eats: up to ``max_frames`` frames spread evenly over the clip,
each a square face crop of ``image_size`` pixels, with its 18 key-points (keypoints.py) in crop
pixels, its Gaussian heat-maps at the feature-map resolution, and a flag saying where its face box
and landmarks came from (faces.FaceSource). Training (data_prep) and inference (predict) call this
same function with the same ``PrepConfig``, so they see identical inputs. It prepares one face, the
largest, followed through the clip; ``prepare_tracks`` (and ``read_track_timelines`` for a video's
windows) prepares every face alike, one ``PreparedClip`` per face.

A still image is a sample of one frame (docs/DESIGN.md: "a still image is a record of one frame"): it is
read by :func:`read_image` (EXIF orientation, 16-bit, grey and alpha handled), goes through the very
face preparation a video frame goes through (so an image and the same frame inside a video give the
same crop and key-points), and is never padded to ``min_frames`` (``PreparedClip.still``).

``segment_indices`` is the peers' frame sampling (Former-DFER): the stored frames are cut into 8
segments and 2 consecutive frames are taken from each, at random offsets in training and at the
segment centres at test time.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import cv2
import numpy as np

from dferjax import keypoints
from dferjax.data import faces

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class ClipError(ValueError):
    """A clip that cannot be prepared; ``reason`` is a sentence naming the file and the problem.

    The message is ``"{source}: {reason}"``. A ``ValueError``, so callers catching bad input catch it.

    Args:
      source: the clip's path as given (``"<frames>"`` for frames passed as arrays).
      reason: what is wrong with it.
    Attributes:
      source: as given.
      reason: as given.
    """

    def __init__(self, source: str, reason: str):
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class NoFaceError(ClipError):
    """No face was found in any frame of the clip.

    Raised by ``prepare_frames`` (and so ``prepare_clip``) unless ``PrepConfig.precropped``: a pre-cropped
    frame is a face, fitted in the whole frame where no face is detected inside it.
    """


@dataclass(frozen=True)
class PrepConfig:
    """How clips are prepared. One value for data_prep and predict (stored in dataset_info.json).

    Nothing is checked here; ``prepare_frames`` raises ValueError for values the face functions
    refuse: ``image_size`` < 1, and without ``precropped`` also ``margin`` < 0, ``upsample`` < 0 or
    ``detect_every`` < 1 (with ``precropped_detect`` also ``upsample`` < 0).

    Attributes:
      image_size: side of the square face crops, pixels.
      max_frames: frames stored per clip at most, spread evenly over the clip (or its frame range).
      min_frames: shorter clips repeat frames up to this many (noted in ``PreparedClip.notes``).
      margin: added around dlib's face box on each side, as a fraction of its size.
      upsample: dlib detector upsampling (1 finds faces down to ~40 px instead of ~80 px, 4x slower).
      detect_every: run the detector on every n-th sampled frame, fit landmarks on all (see
        ``faces.track_faces``).
      precropped: frames are already face crops: no face search over the frame; the landmarks are fitted
        as ``precropped_detect`` says (``faces.fit_landmarks_full_frame``).
      precropped_detect: with ``precropped``, detect the face inside each crop first (upsampled when the
        crop is small, ``faces.precrop_upsample``) and fit the landmarks in the detected box (DETECTED),
        in the whole frame where none is found (WHOLE_FRAME). Off by default, which is what every
        pre-cropped build made before this setting existed did (always the whole frame): a
        dataset_info.json without the key reads as it was built, and ``to_dict`` records the key only when
        it is on, so earlier builds keep their recorded settings (they resume, their shards are kept).
        Recommended on for new builds of pre-cropped data sets (DFEW's clip_224x224, FERV39k): in a crop
        with a 25% margin the whole frame is 1.5 times the box dlib's predictor was trained on.
      fast_detect: 0 (default): the detector sees every sampled frame at full size. N > 0: it searches
        shrunken pixels first (``faces.detect_faces_fast``: a region around the face followed, then the
        whole frame at a longer side of N pixels, then full size where neither finds a face and no large
        face is followed): the detector about 5x faster on frames with a face. With ``detect_every`` 2 at
        64 stored frames, a clip of the test videos is prepared 2.8-4.1x faster per worker than on the
        full-size path (faces found in line, as in a build worker per core; decoding stays;
        benchmarks/RESULTS.md), the key-points within 2% of the face size of
        the full-size path's (median over frames; mean under 3%; tests/test_faces.py). Recorded by
        ``to_dict`` only when on (earlier builds keep their recorded settings).
    """

    image_size: int = 112          # side of the square face crops
    max_frames: int = 64           # frames stored per clip at most, spread evenly over the clip
    min_frames: int = 16           # shorter clips repeat frames up to this many (and are flagged)
    margin: float = 0.25           # added around dlib's face box on each side, fraction of its size
    upsample: int = 0              # dlib detector upsampling (1 finds faces down to ~40 px, 4x slower)
    detect_every: int = 1          # run the detector on every n-th frame, fit landmarks on all
    precropped: bool = False       # frames are already face crops: no face search over the frame
    precropped_detect: bool = False  # ... landmarks in the face detected inside the crop, else the whole frame
    fast_detect: int = 0           # 0: detect at full size; N: faces.detect_faces_fast, whole frame shrunk to N px

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict.

        Returns:
          ``{field name: value}`` for every field, in declaration order, but ``precropped_detect`` only where
          it is on with ``precropped`` (off, or without ``precropped``, it changes nothing: the settings are
          then those recorded before it existed, so a build made before it resumes and keeps its shards), and
          ``fast_detect`` only where it is on (for the same reason).
        """
        values = dataclasses.asdict(self)
        if not (self.precropped and self.precropped_detect):
            del values["precropped_detect"]
        if not self.fast_detect:
            del values["fast_detect"]
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PrepConfig:
        """The PrepConfig a ``dataset_info.json`` or run's ``data.json`` recorded.

        Settings of record version 1 that no longer exist (``heatmap_size``, ``heatmap_sigma``: heat-maps
        are rendered from the key-points at the model's resolution, not stored) are ignored. Settings
        recorded without ``precropped_detect`` (before it existed, or with it off) read as off: the whole
        frame, as such shards were built, so predict prepares new clips as the training data were.

        Args:
          values: settings by field name, e.g. from ``to_dict``; keys that are not fields are ignored,
            missing fields take their defaults. Values are not converted or checked.
        Returns:
          The PrepConfig.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


@dataclass
class PreparedClip:
    """One prepared clip: T stored frames, T >= min_frames.

    (T >= ``min_frames`` after ``pad_to_min_frames``, as ``prepare_clip`` returns it; ``prepare_frames``
    and ``from_crops`` do not pad.)

    Attributes:
      frames: uint8 (T, S, S, 3) RGB face crops, S = ``PrepConfig.image_size`` pixels.
      keypoints: float32 (T, 18, 2) (x, y) in crop pixels (``keypoints.py`` order).
      sources: int8 (T,) ``faces.FaceSource`` of each frame.
      frame_indices: int32 (T,) index of each stored frame in the source clip (frames).
      num_source_frames: frames the source clip has.
      fps: frames per second of the source (0 where unknown, e.g. frame folders and arrays).
      notes: sentences a person should know (padding, several faces, frames without a detection).
      boxes: float32 (T, 4) crop boxes (x0, y0, x1, y1) in source frame pixels; None from ``from_crops``.
      still: the source is a still image (T = 1, not padded to ``min_frames``).
      track_id: which face of the source this clip follows, from ``prepare_tracks`` /
        ``read_track_timelines`` (0: the largest); None from the single-face preparation.
    """

    frames: np.ndarray           # uint8 (T, S, S, 3) RGB face crops
    keypoints: np.ndarray        # float32 (T, 18, 2) (x, y) in crop pixels
    sources: np.ndarray          # int8 (T,) faces.FaceSource of each frame
    frame_indices: np.ndarray    # int32 (T,) index of each stored frame in the source clip
    num_source_frames: int       # frames the source clip has
    fps: float                   # frames per second of the source (0 where unknown, e.g. frame folders)
    notes: list[str] = field(default_factory=list)   # what a person should know (padding, several faces)
    boxes: np.ndarray | None = None   # float32 (T, 4) crop boxes in source frame pixels
    still: bool = False               # a still image: one frame, never padded to min_frames
    track_id: int | None = None       # which face of the source (prepare_tracks); None: the one face


# --- reading -----------------------------------------------------------------------------------

def _natural_key(path: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def frame_files(folder: Path) -> list[Path]:
    """The image files of a frame folder in natural order (frame2 before frame10).

    Args:
      folder: the frame folder. Regular files with an ``IMAGE_EXTENSIONS`` suffix (any case) count;
        sub-folders are not searched.
    Returns:
      Their paths, sorted by name with digit runs compared as numbers, case-insensitively.
    Raises:
      FileNotFoundError: ``folder`` does not exist.
      NotADirectoryError: ``folder`` is a file.
    """
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()),
                  key=_natural_key)


def is_image_file(source: str | Path) -> bool:
    """True for a path to a file (not a folder) whose suffix is in ``IMAGE_EXTENSIONS`` (any case).

    Args:
      source: a path.
    Returns:
      Whether the preparation reads it as a still image; the file is not opened.
    """
    path = Path(source)
    return path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()


def is_image_array(source: Any) -> bool:
    """True for a NumPy array that is one image: (H, W) grey or (H, W, C), C in 1, 3, 4."""
    return isinstance(source, np.ndarray) and (source.ndim == 2 or (source.ndim == 3 and source.shape[2] in (1, 3, 4)))


def clamp_range(frame_range: tuple[int, int] | None, total: int) -> tuple[int, int]:
    """``frame_range`` (start, stop) clipped to ``range(total)``; the whole clip when it is None.

    Args:
      frame_range: (start, stop) frame indices, stop exclusive, or None.
      total: frames in the clip.
    Returns:
      (start, stop) with 0 <= start <= stop <= total, in frames; start == stop (no frame) when the
      range lies outside the clip or stop < start.
    """
    if frame_range is None:
        return 0, total
    start = min(max(0, int(frame_range[0])), total)
    return start, max(start, min(int(frame_range[1]), total))


def range_indices(frame_range: tuple[int, int] | None, total: int, count: int) -> np.ndarray:
    """``even_indices`` over the frames ``frame_range`` (clipped by ``clamp_range``) of ``total``.

    Args:
      frame_range: (start, stop) frame indices, stop exclusive, or None for all ``total`` frames.
      total: frames in the clip.
      count: how many indices to pick at most.
    Returns:
      int32 (min(count, stop - start),) frame indices into the whole clip, ascending.
    Raises:
      ValueError: ``count`` < 0 while the range holds more than ``count`` frames.
    """
    start, stop = clamp_range(frame_range, total)
    return start + even_indices(max(stop - start, 0), count)


def even_indices(num_available: int, count: int) -> np.ndarray:
    """``min(count, num_available)`` indices spread evenly over range(num_available), first and last kept.

    With ``num_available <= count`` every index is returned; otherwise ``count`` rounded points of
    ``linspace(0, num_available - 1, count)`` (the last is kept only for ``count`` >= 2).

    Args:
      num_available: frames to choose from.
      count: how many to pick at most.
    Returns:
      int32 (min(count, num_available),) ascending frame indices.
    Raises:
      ValueError: ``count`` < 0 while ``num_available`` > ``count``.
    """
    if num_available <= count:
        return np.arange(num_available, dtype=np.int32)
    return np.round(np.linspace(0, num_available - 1, count)).astype(np.int32)


_FACE_THREAD = True      # face_thread(): the face work in a thread beside the decoding


def face_thread(on: bool) -> None:
    """Whether this process finds faces in a thread beside the decoding (on by default).

    On, ``prepare_clip``, ``prepare_tracks``, ``read_timeline`` and ``read_track_timelines`` search each video's
    faces while it decodes (OpenCV's decoder and dlib's detector release the GIL): one preparation on two
    cores about 20% faster with the full-size detector (benchmarks/NOTES.md). Where every core already runs a
    preparation of its own (data_prep's build workers, one per core) the thread only competes with them, and
    the build turns it off in each worker. The results are the same either way.

    Args:
      on: True (the thread) or False (the face work in line, after each frame is decoded).
    """
    global _FACE_THREAD
    _FACE_THREAD = bool(on)


class _FaceWork:
    """The face work on a video's decoded frames, in one thread beside the decoding (``face_thread``).

    ``submit(fn, *args)`` queues ``fn(*args)`` on a one-thread ``ThreadPoolExecutor``: tasks run in the order
    submitted, and once more than ``pending`` are unfinished ``submit`` waits for the oldest (memory stays
    bounded; its error, if any, is raised there, so the decoding stops). OpenCV's decoder and dlib's detector
    release the GIL, so a preparation decodes and searches faces at once (benchmarks/NOTES.md). The results
    are those of the same calls made in line, in the same order; with ``face_thread(False)`` they are made in
    line, in ``submit``.

    Used as a context manager: leaving it waits for every task and raises the first task's error (after an
    error of the decoding itself, the tasks not started are cancelled).
    """

    def __init__(self, pending: int = 8):
        self._pool = (concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="dferjax-face-work")
                      if _FACE_THREAD else None)
        self._futures: collections.deque[tuple[concurrent.futures.Future, frozenset[int]]] = collections.deque()
        self._pending = pending

    def submit(self, fn: Callable[..., Any], *args: Any, holds: Iterable[int] = ()) -> None:
        """Queue ``fn(*args)``; ``holds``: the indices of the decoded frames it holds (``holding``)."""
        if self._pool is None:
            fn(*args)
            return
        self._futures.append((self._pool.submit(fn, *args), frozenset(holds)))
        while len(self._futures) > self._pending:
            self._futures.popleft()[0].result()

    def holding(self) -> set[int]:
        """The indices of the frames the unfinished tasks hold (as ``submit`` named them)."""
        return set().union(*(holds for future, holds in self._futures if not future.done()))

    def __enter__(self) -> _FaceWork:
        return self

    def __exit__(self, kind: Any, *_: Any) -> None:
        try:
            while kind is None and self._futures:
                self._futures.popleft()[0].result()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)


def _retrieve_rgb(cap: cv2.VideoCapture) -> np.ndarray | None:
    """The frame a ``grab()`` just read, as RGB uint8; None where it does not decode."""
    ok, bgr = cap.retrieve()
    if not ok or bgr is None:
        return None
    if bgr.ndim == 3 and bgr.shape[2] == 3 and bgr.dtype == np.uint8:
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)      # the channel swap, contiguous, in one pass
    return faces.to_rgb(bgr)


def _decode_pass(path: Path, wanted: set[int], seen: Callable[[np.ndarray], None] | None = None
                 ) -> tuple[int, list[np.ndarray], list[int], float]:
    """One pass over a video: (frames that decode, RGB frames at ``wanted`` indices, their indices, fps).
    ``seen(rgb)`` is given each of those frames as it is decoded, in a ``_FaceWork`` thread beside the
    decoding."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ClipError(str(path), "cannot be opened as a video (unreadable or not a video file)")
    frames, got, total = [], [], 0
    try:
        with _FaceWork() as work:
            fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
            while cap.grab():
                if total in wanted:
                    rgb = _retrieve_rgb(cap)
                    if rgb is not None:
                        frames.append(rgb)
                        got.append(total)
                        if seen is not None:
                            work.submit(seen, rgb)
                total += 1
    finally:
        cap.release()
    return total, frames, got, fps


def _read_video(path: Path, max_frames: int, frame_range: tuple[int, int] | None, header: int,
                follow: Callable[[], Callable[[np.ndarray], None]] | None = None
                ) -> tuple[list[np.ndarray], np.ndarray, int, float]:
    """Decode the frames of a video that ``even_indices`` picks: (frames RGB, indices, total, fps).

    The frames are chosen from the header's frame count and decoded in one pass; where the header
    is wrong (it can be, e.g. for truncated files), a second pass chooses from the true count.
    ``header``: the frame count ``probe_clip`` read. ``frame_range`` (start, stop) restricts the choice to
    those frames of the video.
    ``follow``: called at the start of each pass, it returns the function given each frame kept, in order,
    beside the decoding (``_decode_pass``'s ``seen``): the faces of the last pass's frames are then found.
    """
    def wanted(total: int) -> set[int]:
        return set(range_indices(frame_range, total, max_frames).tolist())

    def seen() -> Callable[[np.ndarray], None] | None:
        return None if follow is None else follow()

    total, frames, got, fps = _decode_pass(path, wanted(header), seen())
    if total == 0:
        raise ClipError(str(path), "has no decodable frame (empty or truncated video)")
    if total != header:
        total, frames, got, fps = _decode_pass(path, wanted(total), seen())
    if not frames:
        where = "" if frame_range is None else f" in frames {frame_range[0]}-{frame_range[1]}"
        raise ClipError(str(path), f"no frame could be decoded{where}")
    return frames, np.asarray(got, np.int32), total, fps


def read_image(path: str | Path) -> np.ndarray | None:
    """An image file as people store it, the one way every reader of the project reads it.

    EXIF orientation applied (a phone's portrait photo stands upright), 16-bit samples scaled to 8 bits,
    grey and alpha images to RGB.

    Args:
      path: an image file (any format OpenCV reads: JPEG, PNG, BMP, WebP, TIFF).
    Returns:
      RGB uint8 (H, W, 3), or None when the file cannot be decoded.
    """
    image = cv2.imread(str(path), cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)   # orientation applied, no alpha
    if image is None:
        return None
    if image.dtype == np.uint16:
        image = (image.astype(np.uint32) * 255 + 32767) // 65535
    elif image.dtype != np.uint8:
        image = np.clip(image, 0, 1 if image.dtype.kind == "f" else 255) * (255 if image.dtype.kind == "f" else 1)
    image = np.asarray(image, np.uint8)
    if image.ndim == 3:                        # OpenCV gives BGR
        image = np.ascontiguousarray(image[..., ::-1])
    return faces.to_rgb(image)


def _read_folder(path: Path, max_frames: int, frame_range: tuple[int, int] | None = None
                 ) -> tuple[list[np.ndarray], np.ndarray, int, list[str]]:
    files = frame_files(path)
    if not files:
        raise ClipError(str(path), "frame folder holds no image file "
                                   f"({', '.join(IMAGE_EXTENSIONS)})")
    frames, got, notes = [], [], []
    for i in range_indices(frame_range, len(files), max_frames):
        image = read_image(files[i])
        if image is None:
            notes.append(f"frame {files[i].name} could not be decoded and was left out")
            continue
        frames.append(image)
        got.append(int(i))
    if not frames:
        raise ClipError(str(path), "none of its frame images could be decoded")
    return frames, np.asarray(got, np.int32), len(files), notes


def probe_clip(source: str | Path) -> tuple[int, float]:
    """(frame count, fps) of a video (from its header; fps 0 where unknown), frame folder (fps 0) or image (1, 0).

    Nothing is decoded: a video's count is what its header says, which can be wrong (``read_clip``
    counts the frames that decode).

    Args:
      source: a video file (suffix in ``VIDEO_EXTENSIONS``), an image file (``IMAGE_EXTENSIONS``) or a
        folder of frame images.
    Returns:
      (frame count, frames per second); for a folder, the number of its image files and 0.0; for an
      image, (1, 0.0).
    Raises:
      ClipError: ``source`` does not exist, is not a folder and has neither a video nor an image
        suffix, or OpenCV cannot open it as a video.
    """
    path = Path(source)
    if path.is_dir():
        return len(frame_files(path)), 0.0
    if not path.exists():
        raise ClipError(str(path), "does not exist")
    if is_image_file(path):
        return 1, 0.0
    if path.suffix.lower() not in VIDEO_EXTENSIONS:
        raise ClipError(str(path), f"is not a video ({', '.join(VIDEO_EXTENSIONS)}), an image "
                                   f"({', '.join(IMAGE_EXTENSIONS)}) or a frame folder")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise ClipError(str(path), "cannot be opened as a video (unreadable or not a video file)")
        return max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0), 0), float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        cap.release()


def read_clip(source: str | Path, max_frames: int, frame_range: tuple[int, int] | None = None, *,
              follow: Callable[[], Callable[[np.ndarray], None]] | None = None
              ) -> tuple[list[np.ndarray], np.ndarray, int, float, list[str]]:
    """Frames of a video file, frame folder or still image, at most ``max_frames`` spread evenly.

    ``frame_range`` (start, stop): spread them over those source frames only (a window of a video).
    Returns (RGB uint8 frames, their indices in the source, source frame count, fps, notes).

    The frames are chosen by ``range_indices``. A video is decoded in one pass (two where its header's
    frame count is wrong); a chosen frame that fails to decode is left out. A folder image that
    fails to decode is left out with a note; images that are not uint8 (16-bit) are divided by 257.

    Args:
      source: a video file (suffix in ``VIDEO_EXTENSIONS``), a folder of frame images
        (``frame_files`` order) or an image file (``IMAGE_EXTENSIONS``: one frame, ``read_image``).
      max_frames: frames to read at most.
      frame_range: (start, stop) source frame indices, stop exclusive, or None for the whole clip.
      follow: for a video, called at the start of each decode pass; it returns the function that is given
        each frame the pass keeps, in order, in a thread beside the decoding (a face tracker's ``add``:
        ``prepare_clip`` follows the face while the video decodes). The last function returned has seen
        exactly the frames returned, and has returned for each before ``read_clip`` returns. Not called for
        a folder or an image.
    Returns:
      A tuple (frames, indices, total, fps, notes): a list of uint8 (H, W, 3) RGB arrays, int32 (n,)
      their indices in the source, the source's frame count (frames that decode, for a video; image
      files, for a folder), frames per second (0.0 for a folder or an unknown rate), and a list of
      str notes (empty for a video).
    Raises:
      ClipError: ``source`` does not exist, is neither a folder nor a file with a video or image
        suffix, cannot be opened or has no decodable frame (video), holds no image file (folder),
        none of the chosen frames decodes, or an image file does not decode.
    """
    path = Path(source)
    if path.is_dir():
        frames, idx, total, notes = _read_folder(path, max_frames, frame_range)
        return frames, idx, total, 0.0, notes
    if is_image_file(path):
        image = read_image(path)
        if image is None:
            raise ClipError(str(path), "cannot be decoded as an image (damaged, or a format OpenCV cannot read)")
        if frame_range is not None and clamp_range(frame_range, 1) == (0, 0):
            raise ClipError(str(path), f"is a still image: it has no frames {frame_range[0]}-{frame_range[1]}")
        return [image], np.zeros(1, np.int32), 1, 0.0, []
    header, _ = probe_clip(path)      # raises on a missing file, an unknown extension, an unreadable file
    frames, idx, total, fps = _read_video(path, max_frames, frame_range, header, follow)
    return frames, idx, total, fps, []


# --- preparation -------------------------------------------------------------------------------

def prepare_frames(frames: list[np.ndarray], config: PrepConfig, source: str = "<frames>",
                   face_box: tuple[float, float, float, float] | None = None,
                   cache: faces.FrameCache | None = None, keys: Sequence[int] | None = None,
                   track: faces.FaceTrack | None = None) -> PreparedClip:
    """Face crops, key-points and flags for already decoded RGB frames (the core of prepare_clip).

    With ``config.precropped`` each frame is the crop: the landmarks are fitted in the face detected inside
    it (``config.precropped_detect``), else in the whole frame (``faces.fit_landmarks_full_frame``;
    ``sources`` say which, a note counts the frames fitted in the whole frame); otherwise faces are
    tracked over the frames (``faces.track_faces``) and notes record frames with several faces or none
    detected. The clip is not padded to ``config.min_frames`` (``prepare_clip`` does that).

    Args:
      frames: the T frames to prepare, all of one size, any layout ``faces.to_rgb`` accepts.
      config: the preparation settings (``image_size``, ``margin``, ``upsample``, ``detect_every``,
        ``precropped``, ``precropped_detect`` are used here).
      source: the clip's name for error messages.
      face_box: (x0, y0, x1, y1) face box in frame pixels that the data set's annotation gives (the
        same for every frame): the landmarks are fitted in it, nothing is detected
        (``faces.fit_landmarks_in_box``, FaceSource.GIVEN). Takes precedence over ``precropped``.
      cache: detections and landmark fits shared by clips cut from the same decoded video
        (``faces.FrameCache``; ``read_timeline`` passes one to all its windows): the same result, each
        frame's faces found once.
      keys: with ``cache``, each frame's index in its video.
      track: the face followed through these T frames already (``faces.FaceFollower`` at ``config``'s
        settings fed them, as ``prepare_clip`` does while a video decodes: what ``faces.track_faces``
        would give), used instead of following it here. Ignored with ``face_box`` or ``precropped``.
    Returns:
      A ``PreparedClip`` of T frames with ``boxes`` and ``notes`` set; ``frame_indices`` is 0..T-1,
      ``num_source_frames`` T and ``fps`` 0.0 (``prepare_clip`` overwrites them).
    Raises:
      ClipError: ``frames`` is empty, or its frames differ in size (pre-cropped frames are resized instead).
      NoFaceError: not ``config.precropped`` and no frame has a face.
      ValueError: a frame is not an image ``faces.to_rgb`` accepts, or ``config`` holds a value the
        face functions refuse (``image_size`` < 1; without ``precropped`` also ``margin`` < 0,
        ``upsample`` < 0 or ``detect_every`` < 1).
      faces.FaceModelError: dlib or its landmark model file is missing.
    """
    frames, notes = _uniform_frames(frames, config, source)
    if face_box is not None:
        track = faces.fit_landmarks_in_box(frames, face_box, margin=config.margin)
    elif config.precropped:
        track = faces.fit_landmarks_full_frame(frames, detect=config.precropped_detect, upsample=config.upsample,
                                               cache=cache, keys=keys)
        notes += _precropped_notes(track.flags, config)
    else:
        if track is None:
            track = faces.track_faces(frames, margin=config.margin, upsample=config.upsample,
                                      detect_every=config.detect_every, fast_side=config.fast_detect,
                                      cache=cache, keys=keys)
        elif len(track) != len(frames):
            raise ValueError(f"{source}: a face track of {len(track)} frames for {len(frames)} frames")
        if not track.has_face:
            raise _no_face(source, len(frames), config)
        if track.multiple_faces and len(frames) == 1:
            notes.append(f"{int(track.num_faces.max())} faces in the image: took the largest")
        elif track.multiple_faces:
            n = int(np.sum(track.num_faces > 1))
            notes.append(f"several faces in {n} of {len(frames)} frames: took the largest, then followed it "
                         f"(up to {int(track.num_faces.max())} faces in a frame)")
        if track.switches:
            where = ", ".join(str(t) for t in track.switches[:5])
            notes.append(f"the face followed was lost and another taken at sampled frame(s) {where}: the clip "
                         "shows more than one person; no box was interpolated between them")
        notes += _filled_notes(track.flags, config)
    return _cropped(frames, track, config, notes)


def _uniform_frames(frames: list[np.ndarray], config: PrepConfig, source: str) -> tuple[list[np.ndarray], list[str]]:
    """``frames`` as RGB uint8, all of one size (pre-cropped faces resized to the first's), and a note
    where they were resized; ClipError for no frame or, not pre-cropped, frames of several sizes."""
    if not frames:
        raise ClipError(source, "has no frame")
    frames = [faces.to_rgb(f) for f in frames]
    shapes = {f.shape for f in frames}
    notes: list[str] = []
    if len(shapes) > 1 and config.precropped:       # face crops exported per frame differ in size
        height, width = frames[0].shape[:2]
        frames = [f if f.shape[:2] == (height, width) else
                  cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA if f.shape[0] > height
                             else cv2.INTER_LINEAR) for f in frames]
        notes.append(f"face crops of {len(shapes)} sizes: each resized to the first's {width}x{height}")
    elif len(shapes) > 1:
        raise ClipError(source, f"frames differ in size ({sorted(shapes)[:3]}...)")
    return frames, notes


def _precropped_notes(flags: np.ndarray, config: PrepConfig) -> list[str]:
    """The note on the pre-cropped frames whose landmarks were fitted in the whole frame because no face was
    detected inside the crop (none where every frame's face was detected, or without ``precropped_detect``)."""
    whole = int(np.sum(flags == faces.FaceSource.WHOLE_FRAME))
    if not config.precropped_detect or not whole:
        return []
    detected = len(flags) - whole
    return [f"pre-cropped: no face detected inside the crop in {whole} of {len(flags)} frames, landmarks fitted "
            f"in the whole frame there; in the detected face in the other {detected}"]


def _no_face(source: str, num_frames: int, config: PrepConfig) -> NoFaceError:
    """The NoFaceError of ``num_frames`` frames of ``source`` without a face, with the upsampling hint."""
    hint = ("; faces smaller than about 80 pixels need detector upsampling (--upsample 1)"
            if config.upsample == 0 else
            f" (detector upsampling {config.upsample}; faces smaller than about "
            f"{80 // 2 ** config.upsample} pixels need --upsample {config.upsample + 1})")
    where = "in the image" if num_frames == 1 else f"in any of its {num_frames} sampled frames"
    return NoFaceError(source, f"no face found {where}{hint}")


def _filled_notes(flags: np.ndarray, config: PrepConfig) -> list[str]:
    """The notes on frames whose face was not measured there but filled from other frames (``flags``: a track's
    FaceSource per frame; a TRACKED frame, skipped by ``detect_every``, has its own landmark fit: not filled)."""
    notes = []
    missing = int(np.sum(~np.isin(flags, [int(m) for m in faces.MEASURED])))
    if missing:
        notes.append(f"no face detected in {missing} of {len(flags)} frames: box and landmarks "
                     "filled from the nearest frames with a face")
    if missing * 2 > len(flags) and config.upsample == 0:
        notes.append("a face small in the frame (under about 80 pixels) is found more often with detector "
                     "upsampling (--upsample 1)")
    return notes


def _cropped(frames: list[np.ndarray], track: faces.FaceTrack, config: PrepConfig, notes: list[str]) -> PreparedClip:
    """The PreparedClip of ``frames`` cut at ``track``'s boxes (crops, key-points, sources, boxes, notes)."""
    crops, _ = faces.crop_faces(frames, track.boxes, config.image_size)
    landmarks = faces.landmarks_to_crop(track.landmarks, track.boxes, config.image_size)
    clip = from_crops(crops, landmarks, track.flags, config)
    clip.notes, clip.boxes = notes, track.boxes
    return clip


def from_crops(crops: np.ndarray, landmarks: np.ndarray, sources: np.ndarray, config: PrepConfig) -> PreparedClip:
    """A PreparedClip from face crops (T, S, S, 3) and their 68 landmarks in crop pixels (T, 68, 2).

    The last step of every preparation (and the whole of it for data whose landmarks are known, such
    as the synthetic demo set): the 18 key-points. Heat-maps are not part of a prepared clip: a model
    that needs them has them rendered from the key-points at its own resolution
    (input_pipeline.model_inputs).

    Args:
      crops: (T, S, S, 3) RGB face crops (an array), S = ``config.image_size`` pixels; cast to uint8.
      landmarks: (T, 68, 2) dlib landmarks (x, y) in crop pixels; NaN ones give NaN key-points.
      sources: (T,) ``faces.FaceSource`` of each frame; cast to int8.
      config: only ``image_size`` is used.
    Returns:
      A ``PreparedClip`` with keypoints float32 (T, 18, 2) in crop pixels, ``frame_indices`` 0..T-1,
      ``num_source_frames`` T, ``fps`` 0.0, no notes and ``boxes`` None.
    Raises:
      ValueError: the crops are not ``image_size`` x ``image_size``, or ``landmarks`` is not of shape
        (..., 68, 2).
    """
    size = config.image_size
    if crops.shape[1:3] != (size, size):
        raise ValueError(f"face crops are {crops.shape[1:3]}, expected {size}x{size} (image_size)")
    kps = keypoints.keypoints_from_landmarks(landmarks)
    t = len(crops)
    return PreparedClip(frames=np.asarray(crops, np.uint8), keypoints=kps,
                        sources=np.asarray(sources, np.int8), frame_indices=np.arange(t, dtype=np.int32),
                        num_source_frames=t, fps=0.0)


def pad_to_min_frames(clip: PreparedClip, min_frames: int) -> PreparedClip:
    """Repeat frames (evenly, in order) so a short clip has ``min_frames``; noted in ``clip.notes``.

    Frame i of the result is stored frame floor(i * T / min_frames); ``frames``, ``keypoints``,
    ``sources``, ``frame_indices`` and ``boxes`` (when set) are repeated alike.

    Args:
      clip: a prepared clip of T >= 1 frames; changed in place.
      min_frames: the number of frames it must have at least.
    Returns:
      ``clip`` itself: unchanged when T >= ``min_frames``, else with ``min_frames`` frames.
    """
    t = len(clip.frames)
    if t >= min_frames:
        return clip
    take = np.floor(np.arange(min_frames) * t / min_frames).astype(np.int32)
    clip.notes.append(f"only {t} frames: repeated to {min_frames}")
    for name in ("frames", "keypoints", "sources", "frame_indices", "boxes"):
        value = getattr(clip, name)
        if value is not None:
            setattr(clip, name, value[take])
    return clip


def prepare_clip(source: str | Path | np.ndarray | list[np.ndarray], config: PrepConfig,
                 frame_range: tuple[int, int] | None = None,
                 face_box: tuple[float, float, float, float] | None = None) -> PreparedClip:
    """The shared preparation: read, pick frames, find the face, crop, key-points.

    ``source`` is a video file, a folder of frame images, an image file, one image array or a
    sequence of RGB uint8 frames; ``frame_range`` (start, stop) prepares only that part of it
    (predict's sliding windows). Raises ClipError (NoFaceError when no frame has a face) with a
    reason naming the source.

    Up to ``config.max_frames`` frames are taken evenly (``range_indices``), prepared by
    ``prepare_frames`` and padded to ``config.min_frames`` by ``pad_to_min_frames``. A still image
    (an image file, or an array ``is_image_array`` accepts) is one frame and is not padded
    (``still`` True).

    Args:
      source: a video file path, a frame-folder path, an image file path (str or Path), one image
        (an (H, W) or (H, W, C) array, named ``"<image>"`` in messages) or a sequence of frames (e.g.
        a (N, H, W, 3) uint8 array or a list of images, named ``"<frames>"``).
      config: the preparation settings.
      frame_range: (start, stop) source frame indices, stop exclusive, or None for the whole clip.
      face_box: a face box (x0, y0, x1, y1) in source pixels that the data set gives: landmarks
        are fitted in it, nothing detected (see ``prepare_frames``).
    Returns:
      A ``PreparedClip`` of max(n, ``config.min_frames``) frames (1 for a still image), n <=
      ``config.max_frames`` the frames read, with ``frame_indices`` into the source,
      ``num_source_frames``, ``fps`` (0.0 for folders, images and frame sequences) and the notes of
      reading and preparation.
    Raises:
      ClipError: the source cannot be read (see ``read_clip``), or has no frame (in the range), or
        its frames differ in size.
      NoFaceError: not ``config.precropped`` and no frame has a face.
      ValueError: a frame is not an image ``faces.to_rgb`` accepts, or ``config`` holds a value the
        face functions refuse (see ``prepare_frames``).
      faces.FaceModelError: dlib or its landmark model file is missing.
    """
    follower: list[faces.FaceFollower] = []       # the face followed while a video decodes

    def follow() -> Callable[[np.ndarray], None]:
        follower[:] = [faces.FaceFollower(margin=config.margin, upsample=config.upsample,
                                          detect_every=config.detect_every, fast_side=config.fast_detect)]
        return follower[0].add

    tracking = face_box is None and not config.precropped
    frames, indices, total, fps, notes, name, still = _read_source(source, config, frame_range,
                                                                   follow if tracking else None)
    track = follower[0].finish() if follower else None
    return _finished(prepare_frames(frames, config, name, face_box, track=track), indices, total, fps, notes,
                     still, config)


def _read_source(source: str | Path | np.ndarray | list[np.ndarray], config: PrepConfig,
                 frame_range: tuple[int, int] | None,
                 follow: Callable[[], Callable[[np.ndarray], None]] | None = None
                 ) -> tuple[list[np.ndarray], np.ndarray, int, float, list[str], str, bool]:
    """The frames ``prepare_clip`` prepares: (frames, their indices, total, fps, notes, name, still);
    ``follow`` as ``read_clip``'s (a video only)."""
    still = is_image_array(source) or (isinstance(source, (str, Path)) and is_image_file(source))
    if isinstance(source, (str, Path)):
        frames, indices, total, fps, notes = read_clip(source, config.max_frames, frame_range, follow=follow)
        return frames, indices, total, fps, notes, str(source), still
    if still:
        return [source], np.zeros(1, np.int32), 1, 0.0, [], "<image>", True
    all_frames = list(source)
    indices = range_indices(frame_range, len(all_frames), config.max_frames)
    return [all_frames[i] for i in indices], indices, len(all_frames), 0.0, [], "<frames>", False


def _finished(clip: PreparedClip, indices: np.ndarray, total: int, fps: float, notes: list[str], still: bool,
              config: PrepConfig) -> PreparedClip:
    """``clip`` (prepared frames) with its source frame indices, count, fps and reading notes before its
    own; a still image marked ``still``, a clip padded to ``config.min_frames``."""
    clip.frame_indices, clip.num_source_frames, clip.fps = np.asarray(indices, np.int32), total, fps
    clip.notes = notes + clip.notes
    if still:
        clip.still = True
        return clip
    return pad_to_min_frames(clip, config.min_frames)


def prepare_tracks(source: str | Path | np.ndarray | list[np.ndarray], config: PrepConfig,
                   frame_range: tuple[int, int] | None = None) -> list[PreparedClip]:
    """Every face of a source, each prepared as ``prepare_clip`` prepares the one face: a clip per face.

    The same frames as ``prepare_clip`` (``range_indices``; a still image is one frame), the faces
    followed through them by ``faces.track_all_faces`` (a still image: every face detected in it),
    each face's frames cut at its boxes, key-points computed, padded to ``config.min_frames`` (not a
    still image). Clip k is face k (``PreparedClip.track_id``), faces numbered by size (0: the largest).
    Its notes name the face and the faces left out as seen too briefly (``FaceTracks.dropped``) and
    count its frames without a detection of it. A ``config.precropped`` source is one face by definition:
    ``[prepare_clip(...)]`` with ``track_id`` 0.

    Args:
      source: what ``prepare_clip`` takes (a video, frame folder or image file path, one image array or a
        sequence of frames).
      config: the preparation settings.
      frame_range: (start, stop) source frame indices, stop exclusive, or None for the whole clip.
    Returns:
      One ``PreparedClip`` per face, largest face first, each with ``boxes`` in source frame pixels
      and ``frame_indices``, ``num_source_frames``, ``fps`` and ``still`` as ``prepare_clip`` sets them.
    Raises:
      ClipError: the source cannot be read, has no frame (in the range), or its frames differ in size.
      NoFaceError: not ``config.precropped`` and no frame has a face.
      ValueError: a frame is not an image ``faces.to_rgb`` accepts, or ``config`` holds a value the
        face functions refuse.
      faces.FaceModelError: dlib or its landmark model file is missing.
    """
    if config.precropped:
        clip = prepare_clip(source, config, frame_range)
        clip.track_id = 0
        return [clip]
    tracker: list[faces.FaceTracker] = []       # the faces followed while a video decodes

    def follow() -> Callable[[np.ndarray], None]:
        tracker[:] = [_tracker(config)]
        return tracker[0].add

    frames, indices, total, fps, notes, name, still = _read_source(source, config, frame_range, follow)
    frames, _ = _uniform_frames(frames, config, name)
    if not tracker:                                # not a video: the frames read
        tracker.append(_tracker(config))
        for frame in frames:
            tracker[0].add(frame)
    tracks = _tracks_found(tracker[0], config, name)
    return [_finished(_track_clip(frames, track, tracks, config, still), indices, total, fps, list(notes), still,
                      config) for track in tracks]


def _tracker(config: PrepConfig) -> faces.FaceTracker:
    """A ``faces.FaceTracker`` at the config's settings (margin, upsample, detect_every)."""
    return faces.FaceTracker(margin=config.margin, upsample=config.upsample, detect_every=config.detect_every)


def _tracks_found(tracker: faces.FaceTracker, config: PrepConfig, source: str) -> faces.FaceTracks:
    """The tracks of the frames ``tracker`` was fed (``FaceTracker.finish``); NoFaceError where it found none."""
    tracks = tracker.finish()
    if not tracks:
        raise _no_face(source, len(tracker.num_faces), config)
    return tracks


def _track_clip(frames: list[np.ndarray], track: faces.FaceTrack, tracks: faces.FaceTracks, config: PrepConfig,
                still: bool) -> PreparedClip:
    """The PreparedClip of one face ``track`` (over ``frames``) of the faces ``tracks``, with its notes."""
    where = "in the image" if still else "followed through the clip"
    if len(tracks) == 1:
        notes = [f"face {track.track_id}: the only face {where}"]
    else:
        notes = [f"face {track.track_id}: one of {len(tracks)} faces {where}, numbered by size (0: the largest)"]
    if tracks.dropped:
        notes.append(f"{tracks.dropped} more face(s) detected in fewer than {tracks.min_frames} of the "
                     f"{tracks.detector_frames} frames searched were left out")
    clip = _cropped(frames, track, config, notes + _filled_notes(track.flags, config))
    clip.track_id = track.track_id
    return clip


@dataclass
class VideoTimeline:
    """A video read once for a whole clip and for windows of it (``read_timeline``).

    clip: the clip prepared as ``prepare_clip`` prepares it (the same frame choice), or the ClipError
      its preparation raised.
    windows: per requested window, its PreparedClip or the ClipError (e.g. no face in it).
    timestamps: float64 (total,) presentation time of every frame, in seconds, as the file says.
    variable_rate: the frame intervals vary by more than half (a variable-frame-rate video).
    windows_s: the windows asked for, [(start_s, end_s)].
    frames_held: the most decoded frames held in memory at once while reading (``read_timeline`` frees a
      window's frames once it is prepared; 0 where not counted).
    """

    clip: PreparedClip | ClipError
    windows: list[PreparedClip | ClipError]
    timestamps: np.ndarray
    variable_rate: bool
    windows_s: list[tuple[float, float]]
    frames_held: int = 0


def window_targets(start_s: float, end_s: float, count: int) -> np.ndarray:
    """``count`` times spread evenly over [start_s, end_s): the centres of ``count`` equal slices."""
    return start_s + (np.arange(count) + 0.5) * (end_s - start_s) / count


def read_timeline(source: str | Path, config: PrepConfig, windows_s: list[tuple[float, float]]) -> VideoTimeline:
    """Prepare a video's whole clip and its windows of time in one decode pass.

    The whole clip takes the frames ``prepare_clip`` takes (``range_indices`` over the frame count);
    a window [start_s, end_s) takes up to ``config.max_frames`` frames at evenly spread times, each the
    first frame presented at or after its time, from the frames' presentation timestamps (so windows of
    a variable-frame-rate video span what they say). Each frame's faces are found once
    (``faces.FrameCache``) and shared by the windows (and the clip) that take it: the result is what
    ``prepare_frames`` gives each window's frames alone. A window is prepared as soon as the decoding has
    passed its last frame, and decoded frames no window still needs are freed then: memory holds the frames
    of the windows in progress and the whole clip's, not the video's (``VideoTimeline.frames_held``). Time
    linear in the video's length.

    Args:
      source: a video file.
      config: how clips are prepared.
      windows_s: [(start_s, end_s)] in seconds.
    Returns:
      A :class:`VideoTimeline`.
    Raises:
      ClipError: the file cannot be read (a clip or window without a face is reported in the result).
    """
    path = Path(source)
    cache = faces.FrameCache()
    results: list[PreparedClip | ClipError | None] = [None] * len(windows_s)
    header, fps = probe_clip(path)

    def prepare(w: int, indices: list[int], taken: dict[int, np.ndarray]) -> None:
        results[w] = _prepared(path, config, taken, sorted(set(indices)), header, fps, cache)

    with _FaceWork(pending=2) as work:       # the windows' faces found while the decoding goes on
        def ready(w: int, indices: list[int], frames: dict[int, np.ndarray]) -> None:
            taken = {i: frames[i] for i in set(indices) if i in frames}
            work.submit(prepare, w, indices, taken, holds=taken)

        frames, clip_indices, _, _, _, timestamps, held = _decode_timeline(
            path, config, windows_s, ready, (header, fps), elsewhere=work.holding)
    total = len(timestamps)
    if total != header:                               # a wrong header: the whole clip as prepare_clip reads it
        clip: PreparedClip | ClipError
        try:
            clip = prepare_clip(path, config)
        except ClipError as error:
            clip = error
    else:
        clip = _prepared(path, config, frames, clip_indices, total, fps, cache)
    for result in results:
        if isinstance(result, PreparedClip):
            result.num_source_frames = total
    return VideoTimeline(clip, results, timestamps, _variable_rate(timestamps), list(windows_s), held)


def _variable_rate(timestamps: np.ndarray) -> bool:
    """True when the frame intervals vary by more than half (a variable-frame-rate video)."""
    intervals = np.diff(timestamps)
    return bool(len(intervals) > 1 and intervals.min() > 0 and intervals.max() > 1.5 * intervals.min())


def _decode_timeline(path: Path, config: PrepConfig, windows_s: list[tuple[float, float]],
                     ready: Callable[[int, list[int], dict[int, np.ndarray]], None] | None = None,
                     probed: tuple[int, float] | None = None,
                     seen: Callable[[int, np.ndarray], None] | None = None,
                     elsewhere: Callable[[], set[int]] | None = None
                     ) -> tuple[dict[int, np.ndarray], list[int], list[list[int]], int, float, np.ndarray, int]:
    """The one decode pass of a timeline: (RGB frames by index, the whole clip's indices from the header's
    count, each window's frame indices, the header's count, fps, float64 timestamps of every frame, the
    most frames held at once).

    With ``ready``, ``ready(w, indices, frames)`` is called for window w as soon as the decoding has passed
    its last frame (the rest at the end), and the frames that neither an unfinished window nor the whole
    clip takes are freed then (the latest decoded frame is kept for windows past the video's end): the
    frames returned are the clip's. Without, every decoded frame is returned. ``probed``: what ``probe_clip``
    gave for ``path``, where the caller read it already (else it is read here). ``seen(i, rgb)`` is called
    for every frame decoded, in time order, as it is decoded. ``elsewhere()``: the indices of frames the
    caller still holds after they were freed here (windows queued for preparation): counted in the frames
    held.
    """
    header, fps = probed or probe_clip(path)
    clip_wanted = set(range_indices(None, header, config.max_frames).tolist())
    targets = sorted((t, w) for w, (a, b) in enumerate(windows_s) for t in window_targets(a, b, config.max_frames))
    left = [0] * len(windows_s)                       # targets of each window not yet reached
    for _, w in targets:
        left[w] += 1
    picked: list[list[int]] = [[] for _ in windows_s]
    finished = [False] * len(windows_s)
    users: dict[int, int] = {}                        # frame index -> unfinished windows that take it
    frames: dict[int, np.ndarray] = {}
    stamps: list[float] = []
    held, k, last = 0, 0, -1

    def keep(i: int) -> bool:
        return ready is None or i in users or i in clip_wanted or i == last

    def pick(w: int, i: int) -> None:
        if not picked[w] or picked[w][-1] != i:
            users[i] = users.get(i, 0) + 1
        picked[w].append(i)

    def finish(w: int) -> None:
        finished[w] = True
        if ready is None:
            return
        ready(w, picked[w], frames)
        for i in set(picked[w]):
            users[i] -= 1
            if users[i] == 0:
                del users[i]
                if not keep(i):
                    frames.pop(i, None)

    cap = cv2.VideoCapture(str(path))
    try:
        while cap.grab():
            i = len(stamps)
            stamps.append(float(cap.get(cv2.CAP_PROP_POS_MSEC) or 0.0) / 1000.0)
            done = []
            take = i in clip_wanted
            while k < len(targets) and targets[k][0] <= stamps[-1] + 1e-9:
                w = targets[k][1]
                pick(w, i)
                left[w] -= 1
                if left[w] == 0:
                    done.append(w)
                take, k = True, k + 1
            if take:
                rgb = _retrieve_rgb(cap)
                if rgb is not None:
                    previous, last = last, i
                    if previous >= 0 and not keep(previous):
                        frames.pop(previous, None)
                    frames[i] = rgb
                    held = max(held, len(frames) if elsewhere is None else len(frames.keys() | elsewhere()))
                    if seen is not None:
                        seen(i, rgb)
            for w in done:
                finish(w)
    finally:
        cap.release()
    total = len(stamps)
    if total == 0:
        raise ClipError(str(path), "has no decodable frame (empty or truncated video)")
    for _, w in targets[k:]:                          # times past the last frame: the last frame
        pick(w, total - 1)
    if frames and total - 1 not in frames and any(total - 1 in p for p in picked):
        for p in picked:                              # not decoded (not wanted): the latest decoded one
            p[:] = [i if i in frames else max(frames) for i in p]
        for i in [i for i in users if i not in frames]:
            users[max(frames)] = users.get(max(frames), 0) + users.pop(i)
    for w in range(len(windows_s)):
        if not finished[w]:
            finish(w)
    return frames, sorted(clip_wanted), picked, header, fps, np.asarray(stamps, np.float64), held


def read_track_timelines(source: str | Path, config: PrepConfig, windows_s: list[tuple[float, float]]
                         ) -> list[VideoTimeline]:
    """``read_timeline`` for every face of a video: one :class:`VideoTimeline` per face, largest first.

    The frames are those ``read_timeline`` reads (the whole clip's and every window's). The faces are
    followed once, by ``faces.FaceTracker`` (``faces.track_all_faces`` one frame at a time), over all these
    frames in time order, so face k is the same person in the whole clip and in every window; then each
    face's clip and windows take their frames out of its track (``FaceTrack.take``) and are cut, noted and
    padded as ``prepare_tracks`` does (``track_id`` k). A window (or the whole clip) in none of whose frames
    face k was detected is a NoFaceError in that timeline, not a clip of boxes held from elsewhere.

    Memory is bounded as ``read_timeline``'s, not by the video's length: the faces are tracked in a first
    decode pass that frees each frame once the tracker has seen it and no window in progress needs it;
    where a track's boxes are known (at the end), a second pass decodes the same frames again and cuts
    each window's faces as soon as the decoding has passed it (``VideoTimeline.frames_held``: the most
    frames either pass held, the tracker's included). The cost is the second decode (a third where the
    file's header gives a wrong frame count: the first pass is repeated with the true count).

    Differences from ``prepare_tracks`` on the same video (which follows the faces over the whole clip's
    frames only): a frame where a face was not detected is filled from the nearest of all decoded frames
    (often nearer), and ``config.detect_every`` counts decoded frames, not the whole clip's. Frames where
    the face was detected have the same box and landmarks. A ``config.precropped`` video is one face:
    ``[read_timeline(...)]``, its clips with ``track_id`` 0.

    Args:
      source: a video file.
      config: how clips are prepared.
      windows_s: [(start_s, end_s)] in seconds.
    Returns:
      A list of ``VideoTimeline``, one per face (``timelines[k].clip.track_id == k`` where the clip is
      no error), all with the same ``timestamps``, ``variable_rate`` and ``windows_s``.
    Raises:
      ClipError: the file cannot be read.
      NoFaceError: not ``config.precropped`` and no decoded frame has a face.
      faces.FaceModelError: dlib or its landmark model file is missing.
    """
    path = Path(source)
    if config.precropped:
        timeline = read_timeline(path, config, windows_s)
        for clip in [timeline.clip, *timeline.windows]:
            if isinstance(clip, PreparedClip):
                clip.track_id = 0
        return [timeline]

    def follow(probed: tuple[int, float]) -> tuple[faces.FaceTracker, list[int], int, float, np.ndarray, int]:
        """Pass 1: the tracker fed every frame the timeline takes, in time order (and those frames)."""
        tracker = _tracker(config)
        order: list[int] = []

        with _FaceWork() as work:            # the faces followed while the decoding goes on
            def seen(i: int, rgb: np.ndarray) -> None:
                order.append(i)
                work.submit(tracker.add, rgb, holds=(i,))

            _, _, _, header, fps, timestamps, held = _decode_timeline(path, config, windows_s, _nothing, probed,
                                                                      seen, work.holding)
        return tracker, order, header, fps, timestamps, held

    tracker, order, header, fps, timestamps, held = follow(probe_clip(path))
    total = len(timestamps)
    if total != header:                   # a wrong header: the whole clip's frames as prepare_clip chooses them
        first_held = held
        tracker, order, _, _, timestamps, held = follow((total, fps))
        held = max(held, first_held)
    tracks = _tracks_found(tracker, config, str(path))
    position = {i: k for k, i in enumerate(order)}

    def part(track: faces.FaceTrack, indices: list[int], frames: dict[int, np.ndarray], where: str
             ) -> PreparedClip | ClipError:
        got = [i for i in sorted(set(indices)) if i in frames]
        if not got:
            return ClipError(str(path), "no frame could be decoded")
        taken = track.take([position[i] for i in got])
        if not np.any(np.isin(taken.flags, (faces.FaceSource.DETECTED, faces.FaceSource.TRACKED))):
            return NoFaceError(str(path), f"face {track.track_id} was not detected in any of {where}'s "
                                          f"{len(got)} frames")
        clip = _track_clip([frames[i] for i in got], taken, tracks, config, still=False)
        return _finished(clip, np.asarray(got), total, fps, [], False, config)

    windows: list[list[PreparedClip | ClipError | None]] = [[None] * len(windows_s) for _ in tracks]

    def ready(w: int, indices: list[int], frames: dict[int, np.ndarray]) -> None:
        for k, face in enumerate(tracks):
            windows[k][w] = part(face, indices, frames, "the window")

    frames, clip_indices, _, _, _, _, held_cut = _decode_timeline(path, config, windows_s, ready, (total, fps))
    held = max(held + tracker.most_held, held_cut)
    variable = _variable_rate(timestamps)
    return [VideoTimeline(part(face, clip_indices, frames, "the clip"), windows[k], timestamps, variable,
                          list(windows_s), held) for k, face in enumerate(tracks)]


def _nothing(*_: Any) -> None:
    """A ``ready`` that keeps nothing: the decode pass frees each window's frames once it is passed."""


def _prepared(path: Path, config: PrepConfig, frames: dict[int, np.ndarray], indices: list[int], total: int,
              fps: float, cache: faces.FrameCache | None = None) -> PreparedClip | ClipError:
    """The PreparedClip of the decoded ``frames`` at ``indices`` (as prepare_clip finishes one), or the error;
    ``cache`` shares each frame's faces with the other clips of the same decode pass."""
    got = [i for i in indices if i in frames]
    try:
        if not got:
            raise ClipError(str(path), "no frame could be decoded")
        clip = prepare_frames([frames[i] for i in got], config, str(path), cache=cache, keys=got)
    except ClipError as error:
        return error
    clip.frame_indices, clip.num_source_frames, clip.fps = np.asarray(got, np.int32), total, fps
    return pad_to_min_frames(clip, config.min_frames)


# --- sampling ----------------------------------------------------------------------------------

def segment_indices(num_stored: int, num_segments: int = 8, frames_per_segment: int = 2,
                    rng: np.random.Generator | None = None) -> np.ndarray:
    """Which stored frames make one model input: ``num_segments`` x ``frames_per_segment`` indices.

    The clip is cut into equal segments; from each, ``frames_per_segment`` consecutive frames are
    taken at a random offset when ``rng`` is given (training) or centred (test). A clip with fewer
    stored frames than that repeats its frames evenly, in order.

    Args:
      num_stored: frames the clip stores.
      num_segments: equal segments the stored frames are cut into (8 as Former-DFER).
      frames_per_segment: consecutive frames taken from each segment (2 as Former-DFER).
      rng: draws one uniform offset per segment (training); None for the centred, deterministic
        choice (test). Not used for a clip shorter than ``num_segments * frames_per_segment``.
    Returns:
      int32 (num_segments * frames_per_segment,) stored-frame indices in [0, num_stored), in time
      order.
    Raises:
      ValueError: ``num_stored`` < 1.
    """
    if num_stored < 1:
        raise ValueError("a clip needs at least one stored frame")
    wanted = num_segments * frames_per_segment
    if num_stored < wanted:                  # too short for segments: every frame, evenly repeated
        return np.floor(np.arange(wanted) * num_stored / wanted).astype(np.int32)
    bounds = np.linspace(0, num_stored, num_segments + 1)
    out = []
    for s in range(num_segments):
        lo, hi = bounds[s], bounds[s + 1]
        room = max(hi - lo - frames_per_segment, 0.0)
        offset = rng.uniform(0, room) if rng is not None else room / 2
        start = int(np.floor(lo + offset))
        out.extend(start + k for k in range(frames_per_segment))
    return np.clip(np.asarray(out, np.int32), 0, num_stored - 1)
