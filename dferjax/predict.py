"""Expression of the face in a video, a frame folder or a still image, from a trained run.

    python -m dferjax.predict --checkpoint RUN_OR_STEP_DIR_OR_MODEL_FILE INPUT [INPUT ...] [--images] [--faces all]
        [--json] [--window SECONDS [--stride SECONDS]] [--annotate OUT.mp4|OUT.png] [--batch-size N]

An INPUT is told apart by what it is: a file with an image suffix (.jpg, .jpeg, .png, .bmp, .webp,
.tif, .tiff; ``clips.IMAGE_EXTENSIONS``) is a still image, one row; any other file is a video, one
row; a folder is, by default, the frames of one clip (one row), and with ``--images`` every folder
argument is a folder of loose still images instead: one row per image file in it (natural order,
sub-folders not searched; its other files are listed as skipped with the reason; a folder without
an image is an error naming it).

Every input goes through the clip preparation the run's training shards were built with
(``clips.prepare_clip`` with the run's PrepConfig, kept in ``RUN/data.json``): the same frame choice,
face box, 18 key-points, JPEG round trip and segment sampling (``input_pipeline.clip_inputs``) as
the test split of training (Sec. 4.2 of the paper: 16 frames, 8 segments x 2), and the inputs the
run's model declares (heat-maps only for a model that takes them). A still image is one frame: a
model trained on images (one frame per sample, ``configs/demo_images.py``) sees it once, a clip model
sees it repeated to its N frames, exactly as the test split shows such a record. With several faces
the largest is taken (the row's notes say so). The model (any registered one; Eqs. 1-13 for
``dfer``) is loaded once and run over all inputs in fixed-size batches on the default JAX device (an
accelerator when one is present).

Output per input: the most probable expression and the probability of each class (softmax of the
classifier's logits; the temporal classifier's v_class, Eq. 12, for the full ``dfer``), as a table
or, with ``--json``, one JSON object per input and line (``Prediction.to_dict``: "source", "kind"
("image" or "clip"), "label", "probabilities" by class name, "box" and "keypoints" in source pixels,
"notes"; a clip adds its frames, rate, windows). ``--window`` adds a timeline to a video or frame
folder: the video cut into windows of that many seconds (overlapping by ``--stride``), each prepared
and classified as a clip of its own, covering the whole video; a still image has none (a note on its
row says the window was not applied). ``--annotate`` draws the face box, the 18 key-points and the
probabilities into a copy of the video (.mp4, .avi) or a contact sheet of the model's input frames
(.png, .jpg); for a still image into a copy of the image itself, at full size (.png, .jpg only: a
video name is an error for that input).

Python: ``Predictor(RUN).predict(x)`` with x a path (video, frame folder, image), an image array or a
frames array, or a list of these (see :meth:`Predictor.predict`).

Exit status: 0 when every input was classified; 2 when some input has no face in any sampled frame
(the message names it); 1 when an input cannot be read, cannot be annotated as asked, or the
checkpoint cannot be used.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import fractions
import json
import math
import os
import sys
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import cv2
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from dferjax import figures
from dferjax import keypoints as kp
from dferjax.config import load_config
from dferjax.data import clips, faces
from dferjax.data import input_pipeline as ip
from dferjax.data.dataset import DataConfigError
from dferjax.data.keyframes import keyframe_note
from dferjax.engine import checkpoints as ckpt
from dferjax.engine.inputs import example_spec
from dferjax.labels import class_names as default_class_names
from dferjax.models import ModelConfigError, dfer

EXIT_NO_FACE = 2
EXIT_ERROR = 1
VIDEO_OUT = (".mp4", ".avi")
IMAGE_OUT = (".png", ".jpg", ".jpeg")
DEFAULT_FPS = 25.0


@dataclass
class Window:
    """One window of a timeline: source frames [start, stop), its result or why it has none."""

    start: int
    stop: int
    start_s: float
    end_s: float
    probabilities: np.ndarray | None = None
    error: str | None = None
    clip: clips.PreparedClip | None = None
    detected_share: float | None = None     # of the frames the model saw, those with a face detected
    keyframes: int | None = None            # a keyframe model (tdrag): distinct keyframes the model saw


@dataclass
class Prediction:
    """The result for one input: its probabilities, face, timeline and notes, or why it has none.

    ``predict`` fills it; the properties below read it by class name and in source pixels.

    Attributes:
      source: the input's path as given; an array input is named ``"<image>"`` / ``"<frames>"`` (with
        its position in the list, ``"<image 3>"``, when several inputs were given).
      probabilities: float32 (K,) class probabilities (softmax), in ``class_names`` order; None on error.
      clip: the prepared clip (``clips.PreparedClip``; one frame with ``still`` for an image).
      take: int32 (N,) indices of the stored frames the model saw (N = the model's frames).
      inputs: the model's frames uint8 (N, S, S, 3) and key-points float32 (N, 18, 2) in their pixels.
      windows: the timeline (``--window``), empty without one or for an image.
      detected_share: share of the frames the model saw whose face was detected in that frame.
      notes: sentences a person should know (several faces, padding, filled frames, ignored window).
      error: why the input has no result (a sentence naming it), else None.
      no_face: the error is that no face was found.
      num_frames: frames of the source (1 for an image).
      fps: frames per second used for times (0 for an image).
      still: the input is a still image (an image file or an image array).
      face: with ``faces="all"``, which face of the input this is (0: the largest, then by size); None
        for the default one face (the largest, followed).
      class_names: the model's class names (set by ``predict``).
      model: the model that predicted, in words (``Predictor.model_description``: its registered name, input
        and variant; set by ``predict``), so that a saved result says what produced it.
      exception: the ``clips.ClipError`` (``NoFaceError`` when ``no_face``) behind ``error``.
    """

    source: str
    probabilities: np.ndarray | None = None
    clip: clips.PreparedClip | None = None
    take: np.ndarray | None = None           # stored frames the model saw (clip-level)
    inputs: tuple[np.ndarray, np.ndarray] | None = None   # model frames and key-points (contact sheet)
    windows: list[Window] = field(default_factory=list)
    detected_share: float | None = None     # of the frames the model saw, those with a face detected
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    no_face: bool = False
    num_frames: int = 0
    fps: float = 0.0
    still: bool = False
    face: int | None = None                 # with faces="all": which face (0: the largest); None: the one face
    class_names: list[str] | None = field(default=None, repr=False)
    model: str | None = None
    exception: clips.ClipError | None = field(default=None, repr=False, compare=False)
    region_names: list[str] | None = None   # a model with facial regions (lnlj): their names
    region_weights: np.ndarray | None = None  # float32 (R,) each region's weight (mean over the inputs)
    region_boxes: np.ndarray | None = None    # float32 (R, 4) each region's window, source pixels (first input)

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps if self.fps > 0 else 0.0

    @property
    def is_image(self) -> bool:
        """True for a still image (an image file or an (H, W[, C]) array), False for a clip."""
        return self.still

    @property
    def kind(self) -> str:
        """``"image"`` or ``"clip"`` (a video, a frame folder or a frames array)."""
        return "image" if self.still else "clip"

    @property
    def label(self) -> str | None:
        """The most probable class's name; None on error."""
        if self.probabilities is None or self.class_names is None:
            return None
        return self.class_names[int(np.argmax(self.probabilities))]

    @property
    def scores(self) -> dict[str, float] | None:
        """Probability (0-1, summing to 1) by class name, in the model's class order; None on error."""
        if self.probabilities is None or self.class_names is None:
            return None
        return {name: float(v) for name, v in zip(self.class_names, self.probabilities)}

    @property
    def probabilities_by_class(self) -> dict[str, float] | None:
        """The same as :attr:`scores`."""
        return self.scores

    @property
    def box(self) -> np.ndarray | None:
        """The face square the model's crop was cut from, (x0, y0, x1, y1) in source pixels (float32).

        (4,) for an image; (T, 4) for a clip, one per stored frame (:attr:`frame_indices` says which
        source frame). Whole-pixel corners; it may extend past the frame (the crop is black there).
        None on error.
        """
        if self.clip is None or self.clip.boxes is None:
            return None
        squares = faces.crop_squares(self.clip.boxes)
        return squares[0] if self.still else squares

    @property
    def keypoints(self) -> np.ndarray | None:
        """The 18 key-points (``keypoints.py`` order), (x, y) in source pixels (float32; NaN where unknown).

        (18, 2) for an image; (T, 18, 2) for a clip, one per stored frame (:attr:`frame_indices`).
        None on error.
        """
        if self.clip is None or self.clip.boxes is None:
            return None
        points = faces.crop_to_frame(self.clip.keypoints, self.clip.boxes, self.clip.frames.shape[1])
        return points[0] if self.still else points

    @property
    def regions(self) -> dict[str, dict[str, Any]] | None:
        """A region model's (``lnlj``) weight of each facial region and its window: {name: {"weight": w,
        "box": [x0, y0, x1, y1] source pixels, or None for a clip (the windows move with the face)}}, in the
        model's region order; the weights are the non-local network's (softmax: they sum to 1), averaged over
        the inputs of a clip. None for a model without regions or on error."""
        if self.region_names is None or self.region_weights is None:
            return None
        boxes = self.region_boxes if self.still and self.region_boxes is not None else [None] * len(self.region_names)
        return {name: {"weight": float(w), "box": None if b is None else [float(v) for v in b]}
                for name, w, b in zip(self.region_names, self.region_weights, boxes)}

    @property
    def frame_indices(self) -> np.ndarray | None:
        """int32 (T,) source frame of each stored frame (``[0]`` for an image); None on error."""
        return None if self.clip is None else np.asarray(self.clip.frame_indices)

    def to_dict(self, class_names: Sequence[str] | None = None) -> dict[str, Any]:
        """What ``--json`` prints for this input: JSON-ready values, pixels to 0.01, probabilities to 1e-6.

        Keys: "source", "kind" ("image" | "clip"), "model" (where set: :attr:`model`); on error "error"
        and "no_face"; else "label", "probabilities" ({class name: probability}), "box" and "keypoints"
        (source pixels: [x0, y0, x1, y1] and 18 [x, y] for an image, one of each per stored frame for a
        clip; null for an unknown point), "notes"; a clip adds "frames" (source frames), "fps", "duration_s",
        "detected_share", "frame_indices" (of the stored frames) and, with a timeline, "windows" (each with
        "keyframes", the distinct keyframes the model saw of its frames, for a keyframe model such as
        ``tdrag``: fewer than the model's frames where the window is mostly still); a model
        with facial regions (``lnlj``) adds "regions" ({name: {"weight", "box"}}, :attr:`regions`).

        Args:
          class_names: the model's class names; default :attr:`class_names`.
        Raises:
          ValueError: no class names are known.
        """
        names = list(class_names if class_names is not None else self.class_names or [])
        if not names and self.error is None:
            raise ValueError(f"{self.source}: the class names are needed (Prediction.class_names is not set)")

        def probs(p: np.ndarray) -> dict[str, float]:
            return {name: round(float(v), 6) for name, v in zip(names, p)}

        out: dict[str, Any] = {"source": self.source, "kind": self.kind}
        if self.model is not None:
            out["model"] = self.model
        if self.face is not None:
            out["face"] = self.face
        if self.error:
            out.update(error=self.error, no_face=self.no_face)
            return out
        out.update(label=names[int(np.argmax(self.probabilities))], probabilities=probs(self.probabilities))
        box, points = self.box, self.keypoints
        out["box"] = None if box is None else _pixels(box)
        out["keypoints"] = None if points is None else _pixels(points)
        if not self.still:
            out.update(frames=self.num_frames, fps=round(self.fps, 4), duration_s=round(self.duration_s, 4),
                       detected_share=_round(self.detected_share),
                       frame_indices=[int(i) for i in self.frame_indices])
        regions = self.regions
        if regions is not None:
            out["regions"] = {name: {"weight": round(r["weight"], 6),
                                     "box": None if r["box"] is None else [round(v, 2) for v in r["box"]]}
                              for name, r in regions.items()}
        out["notes"] = list(self.notes)
        if self.windows:
            out["windows"] = []
            for w in self.windows:
                entry: dict[str, Any] = {"start_s": round(w.start_s, 4), "end_s": round(w.end_s, 4),
                                         "start_frame": w.start, "end_frame": w.stop}
                if w.probabilities is not None:
                    entry.update(label=names[int(np.argmax(w.probabilities))], probabilities=probs(w.probabilities),
                                 detected_share=_round(w.detected_share))
                    if w.keyframes is not None:
                        entry["keyframes"] = w.keyframes
                    warning = _rests_on_filled(w.detected_share if w.detected_share is not None else 1.0)
                    if warning:
                        entry["note"] = warning
                else:
                    entry["error"] = w.error
                out["windows"].append(entry)
        return out


    def to_records(self, per_frame: bool = False) -> list[dict[str, Any]]:
        """This prediction's table rows (:func:`to_records`): the input, its windows, with ``per_frame`` its
        frames."""
        return to_records([self], per_frame)


def _pixels(values: np.ndarray) -> list[Any]:
    """Nested lists of pixel coordinates rounded to 0.01; NaN as None (JSON null)."""
    a = np.asarray(values, np.float64)
    if a.ndim == 1:
        return [None if not np.isfinite(v) else round(float(v), 2) for v in a]
    return [_pixels(row) for row in a]


class Predictor:
    """A trained model, loaded once, with the run's clip preparation and input spec."""

    def __init__(self, checkpoint: str | Path, which: str = "best", config_spec: str | None = None,
                 batch_size: int = 8, upsample: int | None = None, precropped: bool | None = None):
        """Args: checkpoint (a run or step directory, or a model file of ``python -m dferjax.export``),
        which ("best"/"latest", for a run), config_spec (PATH[:ARG] the checkpoint must fit), batch_size
        (clips per model call), upsample (dlib detector upsampling instead of the training shards': 1 finds
        faces down to about 40 pixels, at about 4x the detection time; None: the shards', and one retry at 1
        for an input where no face was found), precropped (the inputs are face crops like pre-cropped
        training shards: no face search; None: faces are searched for in every input, also for a run trained
        on pre-cropped faces such as RAF-DB's aligned images or DFEW's crops, and each result says so)."""
        wanted = load_config(config_spec) if config_spec else None
        trained = ckpt.load_trained(checkpoint, which, wanted)
        self.model, self.config, self.meta, self.card = trained.model, trained.config, trained.meta, trained.card
        data_info = trained.data_info
        self.prep = clips.PrepConfig.from_dict(dict(data_info.get("prep") or {}))
        self.notes: list[str] = []
        """Sentences every result of this predictor carries (how its preparation differs from training's)."""
        if self.prep.precropped and precropped is None:
            self.notes.append("the run was trained on face crops (pre-cropped shards): the face was detected in this "
                              f"input and cropped with a {self.prep.margin:.0%} margin; for inputs that are face "
                              "crops like the training data, pass --precropped yes")
        if precropped is not None or self.prep.precropped:
            self.prep = dataclasses.replace(self.prep, precropped=bool(precropped))
        self.retry_upsample = upsample is None and self.prep.upsample == 0 and not self.prep.precropped
        if upsample is not None:
            self.prep = dataclasses.replace(self.prep, upsample=int(upsample))
        self.jpeg_quality = int(data_info.get("jpeg_quality") or 95)
        self.spec = example_spec(self.config)
        self.clip_prep = self.prep
        """The preparation of videos and frame folders: a still-image model (one frame per sample) is given
        ``STILL_MODEL_FRAMES`` frames spread over the clip, each classified, the probabilities averaged."""
        if self.spec.num_frames == 1:
            self.clip_prep = dataclasses.replace(self.prep, max_frames=max(self.prep.max_frames, STILL_MODEL_FRAMES),
                                                 min_frames=1)
        num_classes = int(self.config.model.num_classes)
        self.class_names = list(data_info.get("classes") or default_class_names(num_classes))
        if len(self.class_names) != num_classes:
            where = trained.model_file or f"{trained.run_dir}/{ckpt.DATA_FILE}"
            raise ckpt.CheckpointError(f"{where} names {len(self.class_names)} classes but the model has {num_classes}")
        self.checkpoint = trained.source
        self.batch_size = max(1, int(batch_size))
        graphdef, state = nnx.split(self.model)
        self._state = nnx.as_pure(state)

        @jax.jit
        def forward(state, inputs):
            model = nnx.merge(graphdef, state)
            logits = model(inputs, train=False).logits
            return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)

        self._forward = forward
        self.region_names: list[str] | None = None
        """The facial regions of a model that weighs them (``lnlj``: REGION_NAMES), else None."""
        if getattr(type(self.model), "REGION_NAMES", None) and hasattr(self.model, "region_weights"):
            self.region_names = list(type(self.model).REGION_NAMES)

            @jax.jit
            def regions(state, inputs):
                model = nnx.merge(graphdef, state)
                return model.region_weights(inputs).astype(jnp.float32), model.region_boxes(inputs)

            self._regions = regions

    def describe(self) -> str:
        best = self.meta.get("best") or {}
        war = f", WAR {100 * best['war']:.2f}% at epoch {best.get('epoch')}" if "war" in best else ""
        kind = "model file" if self.card is not None else "checkpoint"
        return (f"{kind} {self.checkpoint}{war}; model {self.model_description}; "
                f"{len(self.class_names)} classes; {jax.devices()[0].platform} device")

    @property
    def model_description(self) -> str:
        """The model this run holds, in words: its registered name, its input (frames, size, keyframe
        selection) and, for the paper's model, its variant; e.g. "tdrag (16 frames of 112 px among
        ssim keyframes at 0.99)"."""
        name = str(self.config.model.name)
        spec = self.spec
        parts = [f"{spec.num_frames} frame{'s' if spec.num_frames != 1 else ''} of {spec.image_size} px"]
        if spec.keyframes:
            parts[0] += f" among {spec.keyframes} keyframes at {spec.keyframe_threshold:g}"
        if name == "dfer":
            variant = dfer.variant_of(self.config.model.dfer)
            parts.insert(0, f"Table 9 model {variant}" if variant else "an ablation outside Table 9")
        return f"{name} ({', '.join(parts)})"

    def predict(self, x: Any, window: float | None = None, stride: float | None = None, *,
                default_fps: float = DEFAULT_FPS, faces: str = "largest") -> Prediction | list[Prediction]:
        """Classify the expression of the face in ``x``: one input, or a list of them.

        Args:
          x: a video file path; a frame-folder path (the frames of one clip); an image file path
            (``clips.IMAGE_EXTENSIONS``); an image array, uint8 RGB (H, W, 3) or grey (H, W) (also
            (H, W, 1) and RGBA (H, W, 4)); a frames array, uint8 RGB (N, H, W, 3), the frames of one
            clip; or a list (or tuple) of any of these, each one input.
          window: seconds per window of a timeline (``Prediction.windows``) for a video, frame folder
            or frames array (``default_fps`` frames per second where the rate is unknown); not applied
            to an image (a note says so). None: no timeline.
          stride: seconds between window starts (default half a window).
          default_fps: the frame rate assumed for frame folders and frames arrays.
          faces: "largest" (default: the largest face, followed, never switching person) or "all" (every
            face followed through the clip and classified on its own: a list of Predictions per input,
            ``Prediction.face`` 0, 1, ... by size; see :func:`predict`).
        Returns:
          A ``Prediction`` for one input (``label``, ``scores``, ``box``, ``keypoints``, ``is_image``,
          ``to_dict()``; with faces="all" a list, one per face); for a list, a list of them in its order, where an input that cannot be
          classified has ``error`` set (and ``no_face`` when no face was found) instead of raising.
        Raises:
          clips.NoFaceError: (one input only) no face in the image / in any sampled frame; the message
            names the input.
          clips.ClipError: (one input only) the input cannot be read or prepared (missing, not an image
            or video, undecodable, a bad array); a ValueError naming the input.
          ValueError: ``window`` or ``stride`` is not positive.
        """
        if isinstance(x, (list, tuple)):
            return predict(self, list(x), window, stride, default_fps, faces=faces)
        found = predict(self, [x], window, stride, default_fps, faces=faces)
        if found[0].exception is not None and (faces == "largest" or len(found) == 1):
            raise found[0].exception
        return found[0] if faces == "largest" else found

    def prep_for(self, source: Any, upsample: int | None = None) -> clips.PrepConfig:
        """The preparation of ``source``: the run's for a still image, :attr:`clip_prep` for a clip; at detector
        ``upsample`` (None: the predictor's)."""
        prep = self.prep if _is_still(source) else self.clip_prep
        return prep if upsample is None else dataclasses.replace(prep, upsample=upsample)

    def prepare(self, source: str | Path | np.ndarray, frame_range: tuple[int, int] | None = None,
                upsample: int | None = None) -> clips.PreparedClip:
        """The run's clip preparation (``clips.prepare_clip``) of ``source`` (a video, frame folder or
        image path, an image array or a frames array) or its ``frame_range``, at the detector
        ``upsample`` given (default: the predictor's). Raises ClipError / NoFaceError naming the source."""
        return clips.prepare_clip(source, self.prep_for(source, upsample), frame_range)

    def inputs(self, clip: clips.PreparedClip) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
        """Model frames, key-points, heat-maps (None for a model without) and the stored frames taken."""
        return ip.clip_inputs(clip.frames, clip.keypoints, self.spec, self.jpeg_quality)

    def model_inputs(self, clip: clips.PreparedClip) -> tuple[list[tuple[np.ndarray, np.ndarray | None]],
                                                               np.ndarray, np.ndarray, np.ndarray]:
        """What the model is given for ``clip``: a list of (frames, heat-maps) inputs whose probabilities are
        averaged (one input, :meth:`inputs`, except for a still-image model on a clip: one per stored frame),
        with the model frames and key-points of all of them and the stored frames taken."""
        if self.spec.num_frames == 1 and not clip.still and len(clip.frames) > 1:
            parts = [ip.clip_inputs(clip.frames[i:i + 1], clip.keypoints[i:i + 1], self.spec, self.jpeg_quality)
                     for i in range(len(clip.frames))]
            return ([(f, h) for f, _, h, _ in parts], np.concatenate([f for f, _, _, _ in parts]),
                    np.concatenate([k for _, k, _, _ in parts]), np.arange(len(clip.frames), dtype=np.int32))
        frames, points, heatmaps, take = self.inputs(clip)
        return [(frames, heatmaps)], frames, points, take

    def _batches(self, frames: Sequence[np.ndarray], heatmaps: Sequence[np.ndarray | None]):
        """(batch, n): the inputs in batches of ``batch_size``, the last padded to the compiled shape."""
        b = self.batch_size
        for i in range(0, len(frames), b):
            batch = {"frames": np.stack(frames[i:i + b])}
            if self.spec.heatmap_size is not None:
                batch["heatmaps"] = np.stack(heatmaps[i:i + b])
            n = len(batch["frames"])
            if n < b:        # pad the last batch so every call has the compiled shape
                batch = {k: np.concatenate([v, np.repeat(v[-1:], b - n, axis=0)]) for k, v in batch.items()}
            yield batch, n

    def probabilities(self, frames: Sequence[np.ndarray], heatmaps: Sequence[np.ndarray | None]) -> np.ndarray:
        """Class probabilities (N, K) of N model inputs, in batches of ``batch_size`` (one compiled shape).

        ``heatmaps``: one per input, None for a model that takes none.
        """
        out = [np.asarray(self._forward(self._state, batch))[:n] for batch, n in self._batches(frames, heatmaps)]
        return np.concatenate(out) if out else np.zeros((0, len(self.class_names)), np.float32)

    def regions(self, frames: Sequence[np.ndarray], heatmaps: Sequence[np.ndarray | None]
                ) -> tuple[np.ndarray, np.ndarray]:
        """A region model's (``region_names`` set) weights float32 (N, R) and windows float32 (N, R, 4) (x0, y0,
        x1, y1 in the model input's pixels) of N model inputs, each the mean (weights) and the first (windows)
        over an input's frames. ValueError for a model without regions."""
        if self.region_names is None:
            raise ValueError(f"model {self.model_description} weighs no facial regions")
        weights, boxes = [], []
        for batch, n in self._batches(frames, heatmaps):
            w, b = (np.asarray(x) for x in self._regions(self._state, batch))
            per = w.shape[0] // len(batch["frames"])          # frames per input
            weights.append(w.reshape(-1, per, w.shape[-1]).mean(axis=1)[:n])
            boxes.append(b.reshape(-1, per, *b.shape[1:])[:, 0][:n])
        r = len(self.region_names)
        return (np.concatenate(weights) if weights else np.zeros((0, r), np.float32),
                np.concatenate(boxes) if boxes else np.zeros((0, r, 4), np.float32))


def window_ranges(num_frames: int, fps: float, window_s: float, stride_s: float) -> list[tuple[int, int]]:
    """Frame ranges [start, stop) of windows of ``window_s`` seconds every ``stride_s`` seconds.

    They cover every frame: the last window ends at the last frame (it may overlap its predecessor
    more), and a clip shorter than one window is one window.
    """
    if window_s <= 0 or stride_s <= 0:
        raise ValueError("--window and --stride must be positive numbers of seconds")
    length = max(1, int(round(window_s * fps)))
    step = max(1, int(round(stride_s * fps)))
    if num_frames <= length:
        return [(0, num_frames)]
    starts = list(range(0, num_frames - length + 1, step))
    if starts[-1] + length < num_frames:
        starts.append(num_frames - length)
    return [(s, s + length) for s in starts]


def window_times(duration_s: float, window_s: float, stride_s: float) -> list[tuple[float, float]]:
    """Windows [start_s, end_s) of ``window_s`` seconds every ``stride_s`` seconds over a video of
    ``duration_s`` seconds; the last one ends at the end (it may overlap its predecessor more), and a
    video shorter than one window is one window."""
    if window_s <= 0 or stride_s <= 0:
        raise ValueError("--window and --stride must be positive numbers of seconds")
    if duration_s <= window_s:
        return [(0.0, duration_s)]
    starts = list(np.arange(0.0, duration_s - window_s + 1e-9, stride_s))
    if starts[-1] + window_s < duration_s - 1e-9:
        starts.append(duration_s - window_s)
    return [(float(a), float(a) + window_s) for a in starts]


def detected_share(clip: clips.PreparedClip, take: np.ndarray) -> float:
    """Share of the model's input frames (stored frames ``take``) whose face was measured in that frame,
    not filled (interpolated or held) from frames with a face."""
    sources = np.asarray(clip.sources)[np.asarray(take)]
    return float(np.isin(sources, [int(m) for m in faces.MEASURED]).mean()) if len(sources) else 0.0


def _rests_on_filled(share: float) -> str | None:
    """A note when fewer than half of the frames the model saw had a face detected in them."""
    if share >= 0.5:
        return None
    return (f"the prediction rests mostly on filled frames: a face was detected in {share:.0%} of the frames the "
            "model saw (the others have the box of the nearest frames with a face)")


def timeline_end(timestamps: np.ndarray) -> float:
    """When the last frame stops being shown: its timestamp plus the last frame interval."""
    if len(timestamps) < 2:
        return float(timestamps[-1]) if len(timestamps) else 0.0
    return float(timestamps[-1] + (timestamps[-1] - timestamps[-2]))


def _spans(duration_s: float, window_s: float, stride_s: float | None) -> list[tuple[float, float]]:
    return window_times(duration_s, window_s, stride_s or window_s / 2)


def _is_still(source: Any) -> bool:
    """An image array, or a path with an image suffix that is not a folder (existing or not)."""
    if isinstance(source, np.ndarray):
        return clips.is_image_array(source)
    path = Path(source)
    return path.suffix.lower() in clips.IMAGE_EXTENSIONS and not path.is_dir()


def _source_name(source: Any, index: int, count: int) -> str:
    """A path as given; an array as ``<image>`` / ``<frames>``, with its list position among several."""
    if not isinstance(source, np.ndarray):
        return str(source)
    kind = "image" if clips.is_image_array(source) else "frames"
    return f"<{kind}>" if count == 1 else f"<{kind} {index}>"


def _named(error: clips.ClipError, name: str) -> clips.ClipError:
    """``error`` naming the input ``name`` (an array's list position) instead of clips' own name."""
    return error if error.source == name else type(error)(name, error.reason)


def _prepare_input(predictor: Predictor, source: str | Path | np.ndarray, upsample: int | None,
                   window_s: float | None, stride_s: float | None, default_fps: float
                   ) -> tuple[clips.PreparedClip, Any]:
    """The input's clip and, for a video with windows, its whole timeline from one decode pass."""
    if not window_s or isinstance(source, np.ndarray) or Path(source).is_dir():
        return predictor.prepare(source, upsample=upsample), None
    prep = predictor.prep_for(source, upsample)
    count, fps = clips.probe_clip(source)
    spans = _spans(count / (fps if fps > 0 else default_fps), window_s, stride_s)
    timeline = clips.read_timeline(source, prep, spans)
    if isinstance(timeline.clip, clips.ClipError):
        raise timeline.clip
    return timeline.clip, timeline


STILL_MODEL_FRAMES = 16
"""Frames of a video or frame folder a still-image model classifies (spread evenly; probabilities averaged)."""

FACES = ("largest", "all")
"""Which faces ``predict`` classifies: the largest, followed through the clip (never switching person), or
every face, each followed and classified on its own (``clips.prepare_tracks``)."""


def _prepare_faces(predictor: Predictor, source: Any, window_s: float | None, stride_s: float | None,
                   default_fps: float, faces_: str, upsample: int | None) -> list[tuple[Any, Any]]:
    """(clip, timeline) per face of ``source`` at detector ``upsample`` (None: the predictor's); one pair for
    faces="largest". A face whose whole clip has no detection comes as (ClipError, timeline)."""
    if faces_ == "largest":
        return [_prepare_input(predictor, source, upsample, window_s, stride_s, default_fps)]
    prep = predictor.prep_for(source, upsample)
    video = not isinstance(source, np.ndarray) and not Path(source).is_dir() and not _is_still(source)
    if window_s and video:
        count, fps = clips.probe_clip(source)
        spans = _spans(count / (fps if fps > 0 else default_fps), window_s, stride_s)
        return [(t.clip, t) for t in clips.read_track_timelines(source, prep, spans)]
    return [(clip, None) for clip in clips.prepare_tracks(source, prep)]


def _prepare_retrying(predictor: Predictor, source: Any, window_s: float | None, stride_s: float | None,
                      default_fps: float, faces_: str = "largest") -> tuple[list[tuple[Any, Any]], int | None]:
    """``_prepare_faces``, retried at detector upsampling 1 where no face was found (small faces) unless the
    predictor's upsampling was set; returns the (clip, timeline) pairs and the upsampling used (None: the
    predictor's)."""
    try:
        return _prepare_faces(predictor, source, window_s, stride_s, default_fps, faces_, None), None
    except clips.NoFaceError:
        if not predictor.retry_upsample:
            raise
    pairs = _prepare_faces(predictor, source, window_s, stride_s, default_fps, faces_, 1)
    for clip, _ in pairs:
        if isinstance(clip, clips.PreparedClip):
            clip.notes.insert(0, "no face at the training shards' detector setting: found with detector upsampling "
                                 "1 (--upsample 1)")
    return pairs, 1


NO_WINDOW_NOTE = "a still image has no timeline: the window (--window) was not applied"
NO_FACE_WINDOWS_NOTE = ("windows per face are made for video files only: this input's faces are classified over "
                        "the whole clip")


def predict(predictor: Predictor, sources: Sequence[str | Path | np.ndarray], window_s: float | None = None,
            stride_s: float | None = None, default_fps: float = DEFAULT_FPS, progress: bool = False,
            faces: str = "largest") -> list[Prediction]:
    """Prepare every input (and its windows), then classify all of them in batches.

    Args:
      predictor: the loaded run.
      sources: the inputs, each what :meth:`Predictor.predict` takes for one input (a video, frame
        folder or image path, an image array or a frames array).
      window_s, stride_s: a timeline's window length and stride, seconds (not for still images).
      default_fps: the frame rate assumed where the source has none (frame folders, frames arrays).
      progress: print a line per prepared input on stderr.
      faces: "largest" (default): one result per input, the largest face followed through the clip (never
        switching person); "all": one result per face of each input (``Prediction.face`` 0, 1, ... by size),
        every face followed through the clip by ``faces.track_all_faces`` and classified on its own (with
        windows for a video file: a timeline per face from one tracking pass).
    Returns:
      The ``Prediction`` of every input (with faces="all": of every face of every input, the faces of an
      input together, largest first), in input order; an input that fails has ``error`` (and ``exception``)
      set instead of probabilities. Nothing is raised for a bad input.
    Raises:
      ValueError: ``window_s`` or ``stride_s`` is not positive, or ``faces`` is not one of :data:`FACES`.
    """
    if (window_s is not None and window_s <= 0) or (stride_s is not None and stride_s <= 0):
        raise ValueError(f"window ({window_s}) and stride ({stride_s}) must be positive numbers of seconds")
    if faces not in FACES:
        raise ValueError(f"faces must be one of {', '.join(FACES)}, got {faces!r}")
    results: list[Prediction] = []
    pending: list[tuple[Prediction | Window, np.ndarray, np.ndarray | None]] = []
    model = predictor.model_description
    for index, source in enumerate(sources):
        name = _source_name(source, index, len(sources))
        still = _is_still(source)
        window_here = None if still else window_s
        try:
            pairs, upsample = _prepare_retrying(predictor, source, window_here, stride_s, default_fps, faces)
        except (clips.ClipError, ValueError) as error:     # ValueError: an array that is no image, say
            result = Prediction(name, still=still, class_names=list(predictor.class_names), model=model)
            results.append(result)
            failure = error if isinstance(error, clips.ClipError) else clips.ClipError(name, str(error))
            result.exception = _named(failure, name)
            result.error, result.no_face = str(result.exception), isinstance(failure, clips.NoFaceError)
            continue
        for clip, timeline in pairs:
            result = Prediction(name, still=still, class_names=list(predictor.class_names), model=model,
                                face=None if faces == "largest" else len([r for r in results if r.source == name
                                                                          and r.face is not None]))
            results.append(result)
            if isinstance(clip, clips.ClipError):          # a face with no detection in the whole clip
                result.exception = _named(clip, name)
                result.error, result.no_face = str(result.exception), isinstance(clip, clips.NoFaceError)
                continue
            if faces == "all" and window_here and timeline is None and not clip.still:
                result.notes.append(NO_FACE_WINDOWS_NOTE)
            _add_result(predictor, result, source, clip, timeline, window_here if (faces == "largest" or timeline)
                        else None, window_s, stride_s, default_fps, upsample, pending, extra_window=faces == "largest")
        if progress:
            mine = [r for r in results if r.source == name]
            n = sum(len(r.windows) for r in mine)
            windows = f" ({n} window{'s' if n != 1 else ''})" if window_here else ""
            who = f", {len(mine)} face{'s' if len(mine) != 1 else ''}" if faces == "all" else ""
            print(f"prepared {name}{who}{windows}", file=sys.stderr, flush=True)
    probs = predictor.probabilities([p[1] for p in pending], [p[2] for p in pending])
    shares: dict[int, list[np.ndarray]] = {}
    for (item, _, _), p in zip(pending, probs):          # an item with several inputs: their mean
        shares.setdefault(id(item), []).append(p)
        item.probabilities = np.mean(shares[id(item)], axis=0).astype(np.float32)
    if predictor.region_names is not None:
        _add_regions(predictor, [p for p in pending if isinstance(p[0], Prediction)])
    return results


def _add_regions(predictor: Predictor, pending: list) -> None:
    """Set ``region_names``, ``region_weights`` (mean over an input's model inputs) and ``region_boxes``
    (source pixels, its first model input's windows) of each Prediction in ``pending`` (item, frames,
    heat-maps)."""
    weights, boxes = predictor.regions([p[1] for p in pending], [p[2] for p in pending])
    seen: dict[int, list[np.ndarray]] = {}
    for (item, _, _), w, b in zip(pending, weights, boxes):
        seen.setdefault(id(item), []).append(w)
        item.region_names = list(predictor.region_names)
        item.region_weights = np.mean(seen[id(item)], axis=0).astype(np.float32)
        if len(seen[id(item)]) == 1 and item.clip is not None and item.clip.boxes is not None:
            first = int(item.take[0]) if item.take is not None and len(item.take) else 0
            corners = faces.crop_to_frame(b.reshape(1, -1, 2), item.clip.boxes[first:first + 1],
                                          predictor.spec.image_size)
            item.region_boxes = corners.reshape(-1, 4).astype(np.float32)


def _add_result(predictor: Predictor, result: Prediction, source: Any, clip: clips.PreparedClip, timeline: Any,
                window_here: float | None, window_s: float | None, stride_s: float | None, default_fps: float,
                upsample: int | None, pending: list, extra_window: bool = True) -> None:
    """Fill ``result`` from its prepared clip (and timeline), and queue its model inputs (and its windows')
    in ``pending``. ``extra_window``: add a window over frames presented past the duration the header states
    (prepared on its own: not for faces="all", whose face numbers come from one tracking pass)."""
    result.clip, result.still = clip, bool(clip.still)
    result.notes = list(clip.notes) + result.notes
    if result.still and window_s:
        result.notes.append(NO_WINDOW_NOTE)
    if timeline is not None and timeline.variable_rate:
        rates = 1.0 / np.diff(timeline.timestamps)
        result.notes.append(f"the frame rate varies ({rates.min():.3g}-{rates.max():.3g} fps): window times come "
                            "from the frames' timestamps, and an annotated .mp4 copy keeps them")
    result.num_frames = clip.num_source_frames
    if result.still:
        result.fps = 0.0
    else:
        result.fps = clip.fps if clip.fps > 0 else default_fps
        if clip.fps <= 0:
            result.notes.append(f"frame rate unknown: times assume {result.fps:g} frames per second (--fps)")
    given, frames, points, take = predictor.model_inputs(clip)
    result.take, result.inputs = take, (frames, points)
    result.detected_share = detected_share(clip, take)
    result.notes.extend(predictor.notes)
    if predictor.spec.keyframes and not result.still:
        result.notes.append(keyframe_note(len(np.unique(take)), len(clip.frames), predictor.spec.num_frames))
    if len(given) > 1:
        result.notes.append(f"a still-image model: the probabilities are the mean over {len(given)} frames spread "
                            "over the clip, each classified on its own")
    warning = _rests_on_filled(result.detected_share)
    if warning:
        result.notes.append(warning)
    pending.extend((result, f, h) for f, h in given)

    def add_window(window: Window, prepare: Any) -> None:
        """Append ``window`` with its clip (``prepare()``: a PreparedClip, or raises/returns ClipError)."""
        result.windows.append(window)
        try:
            window_clip = prepare()
            if isinstance(window_clip, clips.ClipError):
                raise window_clip
        except clips.ClipError as error:
            window.error = error.reason
            return
        window.clip = window_clip
        w_given, _, _, w_take = predictor.model_inputs(window_clip)
        window.detected_share = detected_share(window_clip, w_take)
        if predictor.spec.keyframes:
            window.keyframes = len(np.unique(w_take))
        pending.extend((window, f, h) for f, h in w_given)

    if window_here and timeline is not None:           # a video: its windows came with the one decode pass
        stamps = timeline.timestamps
        end = timeline_end(stamps)
        for (start_s, end_s), window_clip in zip(timeline.windows_s, timeline.windows):
            # The frames presented in [start_s, end_s): the window's span of the source.
            first = int(np.searchsorted(stamps, start_s - 1e-6))
            stop = max(int(np.searchsorted(stamps, end_s - 1e-6)), first + 1)
            if end_s >= end - 1e-6:
                stop = len(stamps)
            add_window(Window(first, stop, start_s, end_s), lambda c=window_clip: c)
        if extra_window and result.windows and result.windows[-1].stop < len(stamps):
            # Frames presented after the duration the header states: one more window ends at the last.
            start_s = max(0.0, end - window_s)
            first = int(np.searchsorted(stamps, start_s - 1e-6))
            add_window(Window(first, len(stamps), start_s, end),
                       lambda a=first: predictor.prepare(source, (a, len(stamps)), upsample))
    elif window_here:
        for start, stop in window_ranges(result.num_frames, result.fps, window_s, stride_s or window_s / 2):
            add_window(Window(start, stop, start / result.fps, stop / result.fps),
                       lambda a=start, b=stop: predictor.prepare(source, (a, b), upsample))


# --- output ------------------------------------------------------------------------------------

def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def to_json(result: Prediction, class_names: Sequence[str]) -> dict[str, Any]:
    """``result.to_dict(class_names)``: what ``--json`` prints for one input."""
    return result.to_dict(class_names)


RECORD_FIELDS = ("source", "kind", "face", "level", "start_s", "end_s", "frame", "time_s", "label")
"""The first columns of every table row (``to_records``); the class probabilities ``p_<class>`` follow,
then :data:`RECORD_TAIL`."""
RECORD_TAIL = ("detected_share", "face_detected", "box_x0", "box_y0", "box_x1", "box_y1", "error", "notes")


def to_records(results: Sequence[Prediction], per_frame: bool = False,
               class_names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The predictions as table rows (dicts with the same keys, in column order), for CSV or pandas.

    Per input one row of ``level`` "input" (the whole clip or image), then one "window" row per window
    of its timeline, then, with ``per_frame``, one "frame" row per source frame (every frame of a video or
    frame folder, the one frame of an image) holding the face box of that frame (interpolated between the
    sampled frames, as ``--annotate`` draws it), whether a face was detected there, and the probabilities
    shown on it (the window centred nearest to it, else the whole clip's).

    Columns: ``source``, ``kind`` ("image" | "clip"), ``face`` (with faces="all": 0, 1, ... by size),
    ``level``, ``start_s`` / ``end_s`` (a window's span,
    seconds; the whole clip for an input row), ``frame`` and ``time_s`` (frame rows; seconds at the clip's
    frame rate), ``label``, ``p_<class>`` per class (probabilities, 0-1), ``detected_share`` (of the
    frames the model saw, those with a face detected in them), ``face_detected`` (frame rows),
    ``box_x0..box_y1`` (the face square in source pixels: an image's, a frame's), ``error``, ``notes``
    ("; "-joined). A value that does not apply is None.

    Args:
      results: predictions of ``predict`` / ``Predictor.predict``.
      per_frame: add the frame rows.
      class_names: the model's classes (default: each prediction's ``class_names``).
    Returns:
      A list of dicts, all with the same keys in the same order.
    Raises:
      ValueError: no class names are known.
    """
    rows: list[dict[str, Any]] = []
    for r in results:
        names = list(class_names if class_names is not None else r.class_names or [])
        if not names:
            raise ValueError(f"{r.source}: the class names are needed (Prediction.class_names is not set)")
        empty = dict.fromkeys(RECORD_FIELDS + tuple(f"p_{n}" for n in names) + RECORD_TAIL)

        def row(level: str, probs: np.ndarray | None, **values: Any) -> dict[str, Any]:
            out = {**empty, "source": r.source, "kind": r.kind, "face": r.face, "level": level, **values}
            if probs is not None:
                out["label"] = names[int(np.argmax(probs))]
                out.update({f"p_{n}": float(v) for n, v in zip(names, probs)})
            return out

        if r.error:
            rows.append(row("input", None, error=r.error))
            continue
        box = r.box if r.still else None
        whole = row("input", r.probabilities, detected_share=_round(r.detected_share), notes="; ".join(r.notes),
                    start_s=None if r.still else 0.0, end_s=None if r.still else round(r.duration_s, 4))
        if box is not None:
            whole.update(zip(("box_x0", "box_y0", "box_x1", "box_y1"), (float(v) for v in box)))
        rows.append(whole)
        for w in r.windows:
            rows.append(row("window", w.probabilities, start_s=round(w.start_s, 4), end_s=round(w.end_s, 4),
                            detected_share=_round(w.detected_share), error=w.error))
        if not per_frame:
            continue
        count = max(r.num_frames, 1)
        boxes, _, _, measured = frame_tracks(r, count)
        for f in range(count):
            probs, _ = _probabilities_at(r, f)
            values: dict[str, Any] = {"frame": f, "face_detected": bool(measured[f])}
            if not r.still:
                values["time_s"] = round(f / r.fps, 4) if r.fps > 0 else None
            if np.all(np.isfinite(boxes[f])):
                values.update(zip(("box_x0", "box_y0", "box_x1", "box_y1"), (float(v) for v in boxes[f])))
            rows.append(row("frame", probs, **values))
    return rows


def write_csv(results: Sequence[Prediction], path: str | Path, per_frame: bool = False,
              class_names: Sequence[str] | None = None) -> Path:
    """:func:`to_records` as a CSV file (UTF-8, a header row; None written as an empty field, numbers as
    Python writes them, so that they read back exactly).

    Raises:
      OSError: the file cannot be written.
      ValueError: predictions with different class lists (their columns would differ).
    """
    rows = to_records(results, per_frame, class_names)
    columns = list(rows[0]) if rows else list(RECORD_FIELDS + RECORD_TAIL)
    if any(list(r) != columns for r in rows):
        raise ValueError("the predictions have different class lists: write them to separate files")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)
    return path


def to_dataframe(results: Sequence[Prediction], per_frame: bool = False,
                 class_names: Sequence[str] | None = None) -> Any:
    """:func:`to_records` as a ``pandas.DataFrame`` (pandas is optional: installed by the user).

    Raises:
      ImportError: pandas is not installed (the message says what to use instead).
    """
    try:
        import pandas
    except ImportError:
        raise ImportError("to_dataframe needs pandas (pip install pandas); to_records() gives the same rows as "
                          "dicts, write_csv() as a CSV file") from None
    return pandas.DataFrame(to_records(results, per_frame, class_names))


def input_names(results: Sequence[Prediction]) -> list[str]:
    """A short name per result (:func:`distinct_names` of the inputs), the faces of one input
    (faces="all": consecutive results of one source) sharing its name, with `` [face k]`` added."""
    first = [k for k, r in enumerate(results)
             if r.face in (None, 0) or k == 0 or results[k - 1].source != r.source]
    short = dict(zip(first, distinct_names([results[k].source for k in first])))
    names: list[str] = []
    for k, r in enumerate(results):
        base = short[k] if k in short else names[-1].rsplit(" [face ", 1)[0]
        names.append(base if r.face is None else f"{base} [face {r.face}]")
    return names


def distinct_names(sources: Sequence[str | Path]) -> list[str]:
    """A short name per input that tells it from every other: its file name, or as many of its last
    path parts as it takes (``a/clip.mp4``, ``b/clip.mp4``); the same path given twice gets ``#2``."""
    parts = [Path(os.path.normpath(str(s))).parts or (str(s),) for s in sources]
    names = []
    for i, p in enumerate(parts):
        k = 1
        while k < len(p) and any(q != p and q[-k:] == p[-k:] for q in parts):
            k += 1
        names.append("/".join(p[-k:]))
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            names[i] = f"{name}#{seen[name]}"
    return names


def _width(text: str) -> int:
    """Terminal columns of ``text``: East Asian wide and full-width characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in text)


def _pad(text: str, width: int) -> str:
    return text + " " * max(width - _width(text), 0)


def _clip_left(text: str, width: int) -> str:
    """The end of ``text`` that fits in ``width`` columns (file names end in what tells them apart)."""
    while _width(text) > width:
        text = text[1:]
    return text


def format_predictions(results: Sequence[Prediction], class_names: Sequence[str], errors_below: bool = False) -> str:
    """The human-readable table: one row per input (named by :func:`distinct_names`) and per window,
    probabilities in columns; columns stay aligned for names in any script. An input without a result
    shows its error, or with ``errors_below`` (the command line, which prints each error once on
    stderr) only that it has none."""
    widths = [max(len(n), 6) for n in class_names]
    span_w = 17 if any(r.windows for r in results) else 0          # "  ss.ss- ss.ss s"
    names = input_names(results)
    name_w = max(min(max([_width(n) for n in names] + [5]), 40), span_w)
    label_w = max([len(n) for n in class_names] + [len("expression")])
    header = f"{'input':<{name_w}}  {'expression':<{label_w}}  " + "  ".join(
        f"{n:>{w}}" for n, w in zip(class_names, widths))
    lines = [header, "-" * len(header)]

    def row(first: str, p: np.ndarray) -> str:
        return (f"{_pad(first, name_w)}  {class_names[int(np.argmax(p))]:<{label_w}}  "
                + "  ".join(f"{v:>{w}.3f}" for v, w in zip(p, widths)))

    for r, full_name in zip(results, names):
        name = _clip_left(full_name, name_w)
        if r.error:
            lines.append(f"{_pad(name, name_w)}  " + ("no result: see the error below" if errors_below
                                                      else f"error: {r.error}"))
            continue
        lines.append(row(name, r.probabilities))
        for w in r.windows:
            span = f"  {w.start_s:6.2f}-{w.end_s:6.2f} s"
            lines.append(row(span, w.probabilities) if w.probabilities is not None
                         else f"{span:<{name_w}}  {w.error}")
        lines.extend(f"  note: {note}" for note in r.notes)
    return "\n".join(lines)


# --- drawing -----------------------------------------------------------------------------------

# One colour per key-point group (BGR for OpenCV): brows, eyes, nose, mouth, cheeks.
_GROUP_OF = {i: g for g, idx in enumerate(([0, 1, 2, 5, 6, 7], [3, 4, 8, 9], [10, 11], [12, 13, 14, 15], [16, 17]))
             for i in idx}
_COLOURS = [(0, 200, 255), (255, 160, 0), (0, 255, 0), (80, 80, 255), (255, 0, 255)]


DETECTED_COLOUR = (0, 255, 0)      # BGR: a face detected in the frame
FILLED_COLOUR = (0, 0, 255)        # BGR: no face detected in the frame (nothing drawn at the face)


def _draw_legend(image: np.ndarray, face: bool = True, rings: bool = True) -> None:
    """Bottom-left, on a dark band: what the marks mean. With ``face``, the box and the two kinds of key-point
    marks (dots: measured on a frame the preparation sampled; rings: interpolated between sampled frames,
    named only with ``rings``); without, that no face was detected in this frame (nothing drawn at it)."""
    h, w = image.shape[:2]
    scale = max(0.4, min(h, w) / 900)
    if face:
        colour = DETECTED_COLOUR
        text = "box: face detected; dots: key-points" + (" (rings: between sampled frames)" if rings else "")
    else:
        colour, text = FILLED_COLOUR, "no face detected in this frame"
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    y1 = h - 4
    y0 = max(0, y1 - th - base - 6)
    band = image[y0:h, 0:min(w, tw + 12)]
    band[:] = (band * 0.35).astype(np.uint8)
    cv2.putText(image, text, (6, y1 - base - 1), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)


def _draw_points(image: np.ndarray, points: np.ndarray, radius: int, filled: bool = True) -> None:
    for i, (x, y) in enumerate(np.asarray(points)):
        if np.isfinite(x) and np.isfinite(y):
            cv2.circle(image, (int(round(x)), int(round(y))), radius, _COLOURS[_GROUP_OF[i]],
                       -1 if filled else max(1, radius // 2), cv2.LINE_AA)


def _bars_right(image: np.ndarray, boxes: Sequence[np.ndarray]) -> bool:
    """Whether the bars go top-right: the faces drawn lie mostly in the left half (their mean centre), so the
    panel does not cover them."""
    centres = [(b[0] + b[2]) / 2 for b in boxes if b is not None and np.all(np.isfinite(b))]
    return bool(centres) and float(np.mean(centres)) < image.shape[1] / 2


def _draw_bars(image: np.ndarray, probs: np.ndarray | None, class_names: Sequence[str], title: str = "",
               right: bool = False) -> None:
    """Class probabilities as horizontal bars with their numbers over a dark translucent panel, in the top-left
    corner (top-right with ``right``)."""
    h, w = image.shape[:2]
    row = max(10, min(22, h // 24))
    scale = row / 30.0
    text_w = int(max(cv2.getTextSize(n, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] for n in class_names)) + 6
    number_w = int(cv2.getTextSize("0.00", cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0]) + 8
    bar_w = max(20, min(w // 6, 120))
    if title:
        text_w = max(text_w, min(w // 2, int(cv2.getTextSize(title, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0])
                                 - bar_w - number_w + 8))
    rows = len(class_names) + (1 if title else 0)
    width, y1 = min(w, text_w + bar_w + number_w + 8), min(h, rows * row + 8)
    ox = w - width if right else 0
    panel = image[0:y1, ox:ox + width]
    panel[:] = (panel * 0.45).astype(np.uint8)
    y = 4
    if title:
        cv2.putText(image, title, (ox + 4, y + row - 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                    cv2.LINE_AA)
        y += row
    best = int(np.argmax(probs)) if probs is not None else -1
    for k, name in enumerate(class_names):
        colour = (0, 255, 255) if k == best else (230, 230, 230)
        cv2.putText(image, name, (ox + 4, y + row - 4), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)
        x = ox + text_w
        if probs is not None:
            cv2.rectangle(image, (x, y + 2), (x + int(round(bar_w * float(probs[k]))), y + row - 2), colour, -1)
        cv2.rectangle(image, (x, y + 2), (x + bar_w, y + row - 2), (120, 120, 120), 1)
        if probs is not None:                   # the number beside its bar
            cv2.putText(image, f"{float(probs[k]):.2f}", (x + bar_w + 4, y + row - 4), cv2.FONT_HERSHEY_SIMPLEX,
                        scale, colour, 1, cv2.LINE_AA)
        y += row


def frame_tracks(result: Prediction, num_frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Face square (F, 4) and key-points (F, 18, 2) in frame pixels for every source frame, a mask of the
    frames the preparation sampled, and a mask of the frames whose face was measured (not filled);
    frames in between are interpolated linearly (held at the ends)."""
    known: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    measured_at: dict[int, bool] = {}
    for clip in [result.clip] + [w.clip for w in result.windows]:
        if clip is None or clip.boxes is None:
            continue
        size = clip.frames.shape[1]
        squares = faces.crop_squares(clip.boxes)
        points = faces.crop_to_frame(clip.keypoints, clip.boxes, size)
        for i, f in enumerate(clip.frame_indices):
            known[int(f)] = (squares[i], points[i])
            measured_at[int(f)] = int(clip.sources[i]) in [int(m) for m in faces.MEASURED]
    boxes = np.full((num_frames, 4), np.nan, np.float32)
    points = np.full((num_frames, kp.NUM_KEYPOINTS, 2), np.nan, np.float32)
    sampled = np.zeros(num_frames, bool)
    measured = np.zeros(num_frames, bool)
    if not known:
        return boxes, points, sampled, measured
    idx = np.array(sorted(k for k in known if 0 <= k < num_frames))
    if len(idx) == 0:
        return boxes, points, sampled, measured
    kb = np.stack([known[i][0] for i in idx])
    kpts = np.stack([known[i][1] for i in idx]).reshape(len(idx), -1)
    frames = np.arange(num_frames)
    for c in range(4):
        boxes[:, c] = np.interp(frames, idx, kb[:, c])
    flat = np.stack([np.interp(frames, idx, kpts[:, c]) for c in range(kpts.shape[1])], axis=1)
    points[:] = flat.reshape(num_frames, kp.NUM_KEYPOINTS, 2)
    sampled[idx] = True
    # A frame between two sampled frames counts as measured only if both are (never a box drawn as a
    # face where the preparation filled one in).
    ok = np.array([measured_at[i] for i in idx])
    after = np.clip(np.searchsorted(idx, frames), 0, len(idx) - 1)
    before = np.clip(np.searchsorted(idx, frames, side="right") - 1, 0, len(idx) - 1)
    measured[:] = ok[after] & ok[before]
    return boxes, points, sampled, measured


def _probabilities_at(result: Prediction, frame: int) -> tuple[np.ndarray | None, str]:
    """The probabilities shown on ``frame``: the window centred nearest to it, else the clip's."""
    best, best_d = None, math.inf
    for w in result.windows:
        if w.probabilities is not None and w.start <= frame < w.stop:
            d = abs((w.start + w.stop) / 2 - frame)
            if d < best_d:
                best, best_d = w, d
    if best is not None:
        return best.probabilities, f"{best.start_s:.1f}-{best.end_s:.1f} s"
    return result.probabilities, "whole clip"


def _frames_of(source: str) -> tuple[Any, float]:
    """An iterator over (BGR frame, presentation time in seconds or None) of a video or frame folder, and
    its average frame rate (0 if unknown)."""
    path = Path(source)
    if path.is_dir():
        def folder():
            for file in clips.frame_files(path):
                image = clips.read_image(file)          # the preparation's reading rules
                if image is not None:
                    yield np.ascontiguousarray(image[..., ::-1]), None
        return folder(), 0.0
    cap = cv2.VideoCapture(str(path))
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)

    def video():
        try:
            while cap.grab():
                stamp = float(cap.get(cv2.CAP_PROP_POS_MSEC) or 0.0) / 1000.0
                ok, frame = cap.retrieve()
                if ok and frame is not None:
                    yield frame, stamp
        finally:
            cap.release()
    return video(), fps


class VideoOut:
    """Writes an annotated copy: ``.mp4`` with PyAV (H.264 where FFmpeg has it, else MPEG-4 part 2), each
    frame at its input's presentation time, so a variable-frame-rate video keeps its timing; ``.avi``
    (Motion JPEG) with OpenCV at the average rate."""

    def __init__(self, out: Path, width: int, height: int, fps: float):
        self.out, self.fps, self.container, self.writer = out, fps, None, None
        if out.suffix.lower() == ".mp4":
            import av                                   # FFmpeg's bindings: per-frame timestamps
            self.container = av.open(str(out), "w")
            codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
            self.stream = self.container.add_stream(codec, rate=max(1, round(fps)))
            self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, "yuv420p"
            self.time_base = fractions.Fraction(1, 1000)          # milliseconds
            self.stream.time_base = self.stream.codec_context.time_base = self.time_base
            self.stream.options = {"bf": "0"}                     # presentation order = decoding order
            self.last_pts = -1
        else:
            self.writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
            if not self.writer.isOpened():
                raise OSError(f"cannot write {out}: OpenCV has no writer for {out.suffix} here")

    def write(self, frame: np.ndarray, index: int, stamp: float | None) -> None:
        if self.container is None:
            self.writer.write(frame)
            return
        import av
        t = stamp if stamp is not None else index / self.fps
        pts = max(int(round(t * 1000)), self.last_pts + 1)         # strictly increasing
        self.last_pts = pts
        picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="bgr24")
        picture.pts, picture.time_base = pts, self.time_base
        for packet in self.stream.encode(picture):
            self.container.mux(packet)

    def close(self) -> None:
        if self.container is not None:
            for packet in self.stream.encode():
                self.container.mux(packet)
            self.container.close()
        elif self.writer is not None:
            self.writer.release()


def _faces_of(result: Prediction | Sequence[Prediction]) -> list[Prediction]:
    """One prediction, or the faces of one input (faces="all") that have a result."""
    return [result] if isinstance(result, Prediction) else [r for r in result if r.error is None]


def _face_label(image: np.ndarray, box: np.ndarray, text: str, thickness: int) -> None:
    """``text`` above a face box (the face's number and label, when several faces are drawn)."""
    x0, y0 = int(round(box[0])), int(round(box[1]))
    scale = max(0.4, (box[2] - box[0]) / 300)
    y = max(y0 - 6, 14)
    cv2.putText(image, text, (x0, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
    cv2.putText(image, text, (x0, y), cv2.FONT_HERSHEY_SIMPLEX, scale, DETECTED_COLOUR, thickness, cv2.LINE_AA)


def annotate_video(result: Prediction | Sequence[Prediction], out: str | Path, class_names: Sequence[str]) -> Path:
    """A copy of the input video with the face square, the 18 key-points and the probability bars.

    Same frame count and size as the input; an .mp4 copy (H.264 where FFmpeg has it) keeps every frame's
    presentation time (a variable-frame-rate input stays so), an .avi copy plays at the average rate.
    Key-points are drawn filled on the frames the preparation sampled, as rings on frames in between
    (interpolated); a frame where no face was detected gets no box and no key-points (the legend says
    so). The bars show the window centred nearest to the frame (with --window), else the clip-level
    result, with their numbers. ``result`` may be the faces of one input (faces="all"): each face is drawn
    with its number and label above its box; the bars are the first (largest) face's.
    """
    faces_ = _faces_of(result)
    if not faces_:
        raise ValueError("no face of this input has a result to draw")
    first = faces_[0]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    frames, fps = _frames_of(first.source)
    tracks = [frame_tracks(r, first.num_frames) for r in faces_]
    several = len(faces_) > 1 or first.face is not None
    seen = [b for boxes, _, _, measured in tracks for b in boxes[measured]]
    right = None                                # the bars' side, chosen once from the first frame's size
    writer = None
    try:
        for i, (frame, stamp) in enumerate(frames):
            if writer is None:
                h, w = frame.shape[:2]
                writer = VideoOut(out, w, h, fps if fps > 0 else first.fps)
            radius = max(1, round(min(frame.shape[:2]) / 200))
            drawn = False
            for r, (boxes, points, sampled, measured) in zip(faces_, tracks):
                if not (i < len(boxes) and bool(measured[i]) and bool(np.all(np.isfinite(boxes[i])))):
                    continue                    # no face detected here: no box, no key-points
                drawn = True
                x0, y0, x1, y1 = (int(round(v)) for v in boxes[i])
                cv2.rectangle(frame, (x0, y0), (x1, y1), DETECTED_COLOUR, max(1, radius), cv2.LINE_AA)
                _draw_points(frame, points[i], radius + 1, filled=bool(sampled[i]))
                if several:
                    probs, _ = _probabilities_at(r, i)
                    label = class_names[int(np.argmax(probs))] if probs is not None else "?"
                    _face_label(frame, boxes[i], f"face {r.face}: {label}", max(1, radius))
            _draw_legend(frame, drawn)
            probs, span = _probabilities_at(first, i)
            if right is None:
                right = _bars_right(frame, seen)
            _draw_bars(frame, probs, class_names, f"face {first.face}, {span}" if several else span, right)
            writer.write(frame, i, stamp)
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        raise OSError(f"{first.source}: no frame could be read to annotate")
    return out


def contact_sheet(result: Prediction, out: str | Path, class_names: Sequence[str], columns: int = 8,
                  tile: int = 160) -> Path:
    """The model's input frames with their key-points, in a grid, under a line with the result."""
    frames, points = result.inputs
    columns = min(columns, len(frames))
    size = frames.shape[1]
    scale = tile / size
    rows = math.ceil(len(frames) / columns)
    header = 28
    sheet = np.full((header + rows * tile, columns * tile, 3), 255, np.uint8)
    for i, (frame, pts) in enumerate(zip(frames, points)):
        image = cv2.resize(np.ascontiguousarray(frame[..., ::-1]), (tile, tile), interpolation=cv2.INTER_LINEAR)
        if int(result.clip.sources[result.take[i]]) in [int(m) for m in faces.MEASURED]:
            _draw_points(image, pts * scale, max(2, tile // 60))
        else:                                   # no face detected in this frame: say so, draw no key-points
            cv2.rectangle(image, (1, 1), (tile - 2, tile - 2), FILLED_COLOUR, 3)
            cv2.putText(image, "no face: filled", (4, tile - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.4, FILLED_COLOUR, 1,
                        cv2.LINE_AA)
        r, c = divmod(i, columns)
        sheet[header + r * tile:header + (r + 1) * tile, c * tile:(c + 1) * tile] = image
        stored = int(result.clip.frame_indices[result.take[i]])
        cv2.putText(sheet, f"{stored}", (c * tile + 4, header + r * tile + 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (255, 255, 255), 1, cv2.LINE_AA)
    p = result.probabilities
    order = np.argsort(p)[::-1][:3]
    text = f"{Path(result.source).name}: " + ", ".join(f"{class_names[k]} {p[k]:.2f}" for k in order)
    cv2.putText(sheet, text, (6, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), sheet):
        raise OSError(f"cannot write {out}")
    return out


def annotate_image(result: Prediction | Sequence[Prediction], out: str | Path,
                   class_names: Sequence[str] | None = None, image: np.ndarray | None = None) -> Path:
    """A copy of a still image, full size, with the face square, the 18 key-points and the probability bars.

    The square is the region the model's crop was cut from (``Prediction.box``), green, where a face was
    found; the key-points are ``Prediction.keypoints``, coloured by group (brows, eyes, nose, mouth,
    cheeks); the bars (top-left) are the probabilities, with their numbers. A model that weighs facial
    regions (``lnlj``) adds each region's window in its own colour, its line the wider the larger its
    weight, and a legend of the regions' weights at the bottom right (``Prediction.regions``). ``result`` may be the faces
    of one image (faces="all"): each is drawn with its number and label above its box; the bars are the
    first (largest) face's.

    Args:
      result: a still image's prediction (``result.is_image``), without error, or the faces of one image.
      out: the image to write (.png, or .jpg with JPEG's losses); its folder is created.
      class_names: the model's class names; default ``result.class_names``.
      image: the input image, uint8 RGB (H, W, 3) or grey (H, W), as given to predict; default: read
        again from ``result.source`` (``clips.read_image``: EXIF orientation applied).
    Returns:
      ``out`` as a Path; the image written has the input's size.
    Raises:
      ValueError: ``result`` is a clip or has no result, or it came from an array and ``image`` is not given.
      OSError: the input cannot be read again, or ``out`` cannot be written.
    """
    faces_ = _faces_of(result)
    if not faces_:
        raise ValueError("no face of this input has a result to draw")
    first = faces_[0]
    if not first.still:
        raise ValueError(f"{first.source}: is a clip, not a still image: use annotate_video or contact_sheet")
    if first.probabilities is None or first.clip is None:
        raise ValueError(f"{first.source}: has no result to draw ({first.error})")
    if image is None:
        if first.source.startswith("<"):
            raise ValueError(f"{first.source}: an array input: pass the image (image=...) to draw on")
        image = clips.read_image(first.source)
        if image is None:
            raise OSError(f"{first.source}: cannot be read again to annotate")
    canvas = np.ascontiguousarray(faces.to_rgb(np.asarray(image))[..., ::-1])        # BGR for OpenCV
    names = list(class_names if class_names is not None else first.class_names or [])
    radius = max(1, round(min(canvas.shape[:2]) / 200))
    drawn = False
    right = _bars_right(canvas, [r.box for r in faces_])
    for r in faces_:
        box, points = r.box, r.keypoints
        if box is None or not np.all(np.isfinite(box)) or int(r.clip.sources[0]) not in [int(m) for m in faces.MEASURED]:
            continue
        drawn = True
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        cv2.rectangle(canvas, (x0, y0), (x1, y1), DETECTED_COLOUR, max(1, radius), cv2.LINE_AA)
        _draw_regions(canvas, r, max(1, radius))
        _draw_points(canvas, points, radius + 1)
        if r.face is not None:
            _face_label(canvas, box, f"face {r.face}: {r.label}", max(1, radius))
    _draw_legend(canvas, drawn, rings=False)
    _draw_bars(canvas, first.probabilities, names, f"face {first.face}" if first.face is not None else "", right)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), canvas):
        raise OSError(f"cannot write {out}")
    return out


REGION_COLOURS = ((255, 140, 0), (255, 0, 255), (0, 200, 255), (0, 0, 255), (0, 220, 120), (220, 220, 0))
"""BGR colours of a region model's windows on an annotated image, in its region order (one each)."""


def _draw_regions(canvas: np.ndarray, result: Prediction, thickness: int) -> None:
    """A region model's windows on ``canvas`` (BGR, in place): each region's box in its colour
    (``REGION_COLOURS``), its line 1 to 2 x ``thickness`` pixels wide by its weight relative to the largest;
    and a legend at the bottom right: colour, name (left/right as seen in the image) and weight, largest
    weight first (the windows overlap, so the numbers are not written on the face)."""
    regions = result.regions
    if not regions:
        return
    top = max(r["weight"] for r in regions.values()) or 1.0
    colours = dict(zip(regions, REGION_COLOURS * (len(regions) // len(REGION_COLOURS) + 1)))
    for name, r in regions.items():
        if r["box"] is None or not np.all(np.isfinite(r["box"])):
            continue
        x0, y0, x1, y1 = (int(round(v)) for v in r["box"])
        width = max(1, round(thickness * 2 * r["weight"] / top))
        cv2.rectangle(canvas, (x0, y0), (x1, y1), colours[name], width, cv2.LINE_AA)
    scale = max(0.35, min(canvas.shape[:2]) / 1200)
    rows = [(f"{name.replace('_', ' ')}  {r['weight']:.2f}", colours[name])
            for name, r in sorted(regions.items(), key=lambda item: -item[1]["weight"])]
    sizes = [cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0] for text, _ in rows]
    line = max(h for _, h in sizes) + 6
    width = max(w for w, _ in sizes) + line + 10
    x, y = canvas.shape[1] - width - 4, canvas.shape[0] - line * (len(rows) + 1) - 4
    panel = canvas[max(0, y):, max(0, x):]
    panel[:] = (panel * 0.4).astype(canvas.dtype)                   # a darkened panel under the legend
    cv2.putText(canvas, "region weights", (x + 4, y + line - 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255),
                1, cv2.LINE_AA)
    for k, (text, colour) in enumerate(rows, start=1):
        yy = y + line * (k + 1) - 4
        cv2.rectangle(canvas, (x + 4, yy - line + 8), (x + line - 2, yy), colour, -1)
        cv2.putText(canvas, text, (x + line + 4, yy), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                    cv2.LINE_AA)


def image_folder(folder: str | Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The still images of a folder given with ``--images``, and its other entries with the reason.

    Args:
      folder: a folder of loose images; sub-folders are not searched.
    Returns:
      (images, skipped): the image files (``clips.IMAGE_EXTENSIONS``, any case) in natural order
      (img2 before img10), and (path, reason) for every other entry, by name.
    Raises:
      clips.ClipError: the folder holds no image file (the message names it and what it skipped).
    """
    folder = Path(folder)
    images = clips.frame_files(folder)
    chosen = set(images)
    skipped = [(p, "a folder: --images does not search sub-folders" if p.is_dir() else
                f"not an image file ({', '.join(clips.IMAGE_EXTENSIONS)})")
               for p in sorted(folder.iterdir()) if p not in chosen]
    if not images:
        others = f"; {len(skipped)} other entries skipped" if skipped else " (it is empty)"
        raise clips.ClipError(str(folder), f"--images: the folder holds no image file "
                                           f"({', '.join(clips.IMAGE_EXTENSIONS)}){others}")
    return images, skipped


PLOT_OUT = (".png", ".svg", ".pdf")


def plot_timeline(result: Prediction | Sequence[Prediction], out: str | Path,
                  class_names: Sequence[str] | None = None, kind: str = "lines") -> Path:
    """The probability of each class over the windows of ``result``'s timeline (``figures.probability_timeline``):
    windows without a face shaded, times in seconds; the faces of one input (faces="all") in one panel each.

    Raises:
      ValueError: no timeline (predict with ``window=``), or ``out`` has another suffix than .png, .svg, .pdf.
    """
    faces_ = [r for r in _faces_of(result) if r.windows]
    if not faces_:
        first = _faces_of(result)[0] if _faces_of(result) else None
        where = first.source if first is not None else "this input"
        raise ValueError(f"{where}: no timeline to plot: predict with a window (--window SECONDS)")
    first = faces_[0]
    names = list(class_names if class_names is not None else first.class_names or [])
    spans = [[(w.start_s, w.end_s) for w in r.windows] for r in faces_]
    probs = [[w.probabilities for w in r.windows] for r in faces_]
    title = Path(first.source).name
    if first.face is None:
        return figures.probability_timeline(spans[0], probs[0], names, out, title=title, kind=kind)
    return figures.probability_timeline(spans, probs, names, out, title=title, kind=kind,
                                        track_labels=[f"face {r.face}" for r in faces_])


def annotation_paths(out: str | Path, sources: Sequence[str | Path]) -> list[Path]:
    """One output path per input, never the same for two: ``out`` for a single input; for several,
    ``out``'s stem + '-' + the input's :func:`distinct_names` name (path parts joined by '_')."""
    out = Path(out)
    if len(sources) == 1:
        return [out]
    paths: list[Path] = []
    for name in distinct_names(sources):
        stem = Path(name).with_suffix("").as_posix().replace("/", "_").replace("#", "_")
        path, k = out.with_name(f"{out.stem}-{stem}{out.suffix}"), 2
        while path in paths:
            path, k = out.with_name(f"{out.stem}-{stem}_{k}{out.suffix}"), k + 1
        paths.append(path)
    return paths


# --- command line ------------------------------------------------------------------------------

def _expand(inputs: Sequence[str], images: bool) -> tuple[list[str], dict[int, Prediction], list[tuple[Path, str]]]:
    """The command line's inputs as sources: with ``images``, every folder argument becomes its image
    files (``image_folder``). Returns the sources, the failed folders (by position in the sources, a
    Prediction with the error) and the skipped entries with their reasons."""
    sources: list[str] = []
    failed: dict[int, Prediction] = {}
    skipped: list[tuple[Path, str]] = []
    for arg in inputs:
        if images and Path(arg).is_dir():
            try:
                found, passed = image_folder(arg)
            except clips.ClipError as error:
                failed[len(sources)] = Prediction(arg, error=str(error), exception=error)
                sources.append(arg)
                continue
            sources.extend(str(f) for f in found)
            skipped.extend(passed)
        else:
            sources.append(arg)
    return sources, failed, skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dferjax.predict", description=__doc__.split("\n")[0],
        epilog="An input with an image suffix (" + ", ".join(clips.IMAGE_EXTENSIONS) + ") is a still image; "
               "other files are videos; a folder is the frames of one clip, or with --images a folder of "
               "still images (one row each).")
    parser.add_argument("--checkpoint", required=True, help="run directory (its best checkpoint), a step directory "
                                                            "(RUN/best/<step>, RUN/checkpoints/<step>) or a model "
                                                            "file (python -m dferjax.export)")
    parser.add_argument("inputs", nargs="+", help="videos, images, and folders: the frames of one clip each, "
                                                  "or with --images folders of still images")
    parser.add_argument("--images", action="store_true",
                        help="every folder argument is a folder of loose still images: one row per image (natural "
                             "order, sub-folders not searched, other files listed as skipped); without it a "
                             "folder is the frames of one clip")
    parser.add_argument("--which", choices=("best", "latest", "last"), default="best",
                        help="for a run directory: its best checkpoint (default) or the latest (last: the same, as "
                             "evaluate spells it)")
    parser.add_argument("--config", help="PATH[:ARG] of a config the checkpoint must match (else the run's own)")
    parser.add_argument("--json", action="store_true", help="one JSON object per input on stdout")
    parser.add_argument("--window", type=float, help="also classify windows of this many seconds (a timeline); "
                                                     "not applied to still images (a note says so)")
    parser.add_argument("--stride", type=float, help="seconds between window starts (default: half a window)")
    parser.add_argument("--fps", type=float, default=DEFAULT_FPS,
                        help=f"frame rate assumed for frame folders (default {DEFAULT_FPS:g})")
    parser.add_argument("--annotate", metavar="OUT",
                        help="write an annotated copy: OUT.mp4/.avi (the video) or OUT.png/.jpg (a contact sheet "
                             "of a clip; the image itself, full size, for a still image); several inputs: "
                             "OUT-<input>")
    parser.add_argument("--precropped", choices=("yes", "no"), default=None,
                        help="yes: the inputs are face crops like pre-cropped training shards (no face search); "
                             "default: faces are searched for in every input, also for a run trained on crops")
    parser.add_argument("--faces", choices=FACES, default="largest",
                        help="largest (default): the largest face, followed through the clip, never switching "
                             "person; all: every face followed and classified on its own (a row per face)")
    parser.add_argument("--plot", metavar="OUT.png", help="with --window: the probability of each class over time "
                                                          "(.png, .svg, .pdf); several inputs: OUT-<input>")
    parser.add_argument("--csv", metavar="OUT.csv", help="also write the results as a table: a row per input and per "
                                                         "window (to_records)")
    parser.add_argument("--per-frame", action="store_true", help="with --csv: a row per source frame too (its face "
                                                                 "box, a face detected or not, the probabilities "
                                                                 "shown on it)")
    parser.add_argument("--batch-size", type=int, default=8, help="inputs per model call (default 8)")
    parser.add_argument("--upsample", type=int, choices=(0, 1, 2), default=None,
                        help="dlib detector upsampling: 1 finds faces down to about 40 pixels (4x slower); default: "
                             "the training shards' setting, retried at 1 for an input with no face found")
    args = parser.parse_intermixed_args(argv)      # inputs may come before and after flags
    args.which = "latest" if args.which == "last" else args.which
    if args.annotate and Path(args.annotate).suffix.lower() not in VIDEO_OUT + IMAGE_OUT:
        parser.error(f"--annotate {args.annotate}: use a name ending in one of {', '.join(VIDEO_OUT + IMAGE_OUT)}")
    if args.stride and not args.window:
        parser.error("--stride needs --window")
    if args.per_frame and not args.csv:
        parser.error("--per-frame needs --csv OUT.csv")
    if args.plot and not args.window:
        parser.error("--plot needs --window (the probabilities over time are those of the windows)")
    if args.plot and Path(args.plot).suffix.lower() not in PLOT_OUT:
        parser.error(f"--plot {args.plot}: use a name ending in one of {', '.join(PLOT_OUT)}")
    if (args.window is not None and args.window <= 0) or (args.stride is not None and args.stride <= 0):
        parser.error("--window and --stride must be positive numbers of seconds")
    start = time.perf_counter()
    try:
        predictor = Predictor(args.checkpoint, args.which, args.config, args.batch_size, args.upsample,
                              None if args.precropped is None else args.precropped == "yes")
    except (ckpt.CheckpointError, DataConfigError, ModelConfigError, FileNotFoundError, ValueError,
            KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    if not args.json:
        print(predictor.describe(), flush=True)
    sources, failed, skipped = _expand(args.inputs, args.images)
    names = predictor.class_names
    found = predict(predictor, [s for k, s in enumerate(sources) if k not in failed], args.window, args.stride,
                    args.fps, progress=not args.json, faces=args.faces)
    groups, at = [], 0                      # the results of each source (with --faces all: one per face)
    for k, source in enumerate(sources):
        if k in failed:
            groups.append([failed[k]])
            continue
        group = [found[at]]
        at += 1
        while at < len(found) and found[at].source == group[0].source and (found[at].face or 0) > 0:
            group.append(found[at])
            at += 1
        groups.append(group)
    results = [r for group in groups for r in group]
    if args.json:
        for r in results:
            print(json.dumps(r.to_dict(names)), flush=True)
    else:
        print(format_predictions(results, names, errors_below=True))
    for path, reason in skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr if args.json else sys.stdout)
    status = 0
    out_paths = annotation_paths(args.annotate, [g[0].source for g in groups]) if args.annotate else []
    if args.csv:
        try:
            path = write_csv(results, args.csv, args.per_frame, names)
            print(f"wrote {path}", file=sys.stderr if args.json else sys.stdout)
        except OSError as error:
            print(f"error: cannot write {args.csv}: {error.strerror or error}", file=sys.stderr)
            status = EXIT_ERROR
    plot_paths = annotation_paths(args.plot, [g[0].source for g in groups]) if args.plot else []
    for k, group in enumerate(groups):
        good = [r for r in group if r.error is None]
        for r in group:
            if r.error and good:                # one face of several without a result: the input has results
                print(f"note: face {r.face}: {r.error}", file=sys.stderr)
            elif r.error:
                print(f"error: {r.error}", file=sys.stderr)     # once: the table's row points here
                status = EXIT_NO_FACE if r.no_face else (status or EXIT_ERROR)
        if not good:
            continue
        if args.plot and any(r.windows for r in good):
            path = plot_timeline(good, plot_paths[k], names)
            print(f"wrote {path}", file=sys.stderr if args.json else sys.stdout)
        if args.annotate:
            path, first = out_paths[k], good[0]
            try:
                if first.still and path.suffix.lower() in VIDEO_OUT:
                    raise ValueError(f"{first.source}: --annotate {path.name}: a still image is annotated as an "
                                     f"image ({', '.join(IMAGE_OUT)}), not as a video")
                if first.still:
                    annotate_image(good, path, names)
                elif path.suffix.lower() in VIDEO_OUT:
                    annotate_video(good, path, names)
                else:
                    for r in good:              # a contact sheet of each face's input frames
                        sheet = path if r.face is None else path.with_name(f"{path.stem}-face{r.face}{path.suffix}")
                        contact_sheet(r, sheet, names)
                        if sheet != path:
                            print(f"wrote {sheet}", file=sys.stderr if args.json else sys.stdout)
                    if first.face is not None:
                        continue
            except (OSError, ValueError) as error:
                print(f"error: {error}", file=sys.stderr)
                status = status or EXIT_ERROR
                continue
            print(f"wrote {path}", file=sys.stderr if args.json else sys.stdout)
    if not args.json:
        count = sum(any(r.error is None for r in g) for g in groups)
        faces_found = sum(r.error is None for r in results)
        found_faces = f" ({faces_found} face{'s' if faces_found != 1 else ''})" if args.faces == "all" else ""
        print(f"{count} of {len(groups)} input{'s' if len(groups) != 1 else ''} classified{found_faces} in "
              f"{time.perf_counter() - start:.1f} s")
    return status


if __name__ == "__main__":
    sys.exit(main())
