"""The synthetic demo set: procedurally drawn faces (``synthetic_faces``) as a dataset directory.

The faces' 68 landmarks are known from the drawing, so no detector runs; the clips go through the
same key-point and shard-writing code as real datasets (``clips.from_crops``, ``dataset.build``) and
come out as ``train-*.tfrecord`` / ``test-*.tfrecord`` shards with a manifest and dataset_info.json.
Classes are balanced (round-robin over the 7 classes); the same arguments give byte-identical shards.

A data source of the library (the demo command builds it on first use); ``python -m
data_prep.synthetic`` is its command line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dferjax.data import synthetic_faces
from dferjax.data.clips import PrepConfig, PreparedClip, from_crops, pad_to_min_frames
from dferjax.data.dataset import ClipEntry, Listing, build
from dferjax.data.faces import FaceSource
from dferjax.labels import BASIC_CLASSES

SOURCE_PREFIX = "synthetic:"


STILL_SUFFIX = ":still"
STILL_FRAMES = 8
"""A still image is the apex (most intense) frame of its clip drawn with this many frames."""


def synthetic_listing(num_train: int, num_test: int, seed: int = 0, still: bool = False) -> Listing:
    """Entries for a balanced synthetic set; each entry's source names its (label, seed), and ``:still``
    for a still image."""
    clips = []
    suffix = STILL_SUFFIX if still else ""
    for split, count in (("train", num_train), ("test", num_test)):
        for i in range(count):
            label = i % len(BASIC_CLASSES)
            clip_seed = synthetic_faces.clip_seed(seed, split, i)
            clips.append(ClipEntry(clip_id=f"{split}_{i:05d}", source=f"{SOURCE_PREFIX}{label}:{clip_seed}{suffix}",
                                   label=label, split=split))
    return Listing(dataset="synthetic", class_names=BASIC_CLASSES, clips=clips, skipped=[])


def render_entry(entry: ClipEntry, prep: PrepConfig) -> PreparedClip:
    """Draw the entry's clip (``max_frames`` frames) or still image (the apex frame of its clip) and prepare
    it from its known landmarks."""
    still = entry.source.endswith(STILL_SUFFIX)
    label, seed = (int(v) for v in entry.source[len(SOURCE_PREFIX):].removesuffix(STILL_SUFFIX).split(":"))
    if still:
        spec = synthetic_faces.sample_clip(label, seed, num_frames=STILL_FRAMES)
        frames, landmarks = synthetic_faces.render_spec(spec, prep.image_size)
        apex = int(np.argmax(spec.intensity))
        clip = from_crops(frames[apex:apex + 1], landmarks[apex:apex + 1], np.full(1, FaceSource.DRAWN, np.int8), prep)
        clip.still = True
        return clip
    frames, landmarks = synthetic_faces.render_clip(label, seed, num_frames=prep.max_frames, size=prep.image_size)
    sources = np.full(len(frames), FaceSource.DRAWN, np.int8)
    return pad_to_min_frames(from_crops(frames, landmarks, sources, prep), prep.min_frames)


def make_demo_set(out: str | Path, *, num_train: int = 420, num_test: int = 140, seed: int = 0,
                  prep: PrepConfig | None = None, workers: int = 1, shard_size: int = 256,
                  progress: bool = True, still: bool = False) -> dict[str, Any]:
    """Build the synthetic set into ``out`` (resuming if it is partly there).

    Args:
      out: the dataset directory to write (created if missing).
      num_train, num_test: clips (or images) of the ``train`` and ``test`` splits.
      seed: the set's seed; the same arguments give byte-identical shards.
      prep: frames stored per clip (``max_frames``) and crop side (``image_size``); 16 frames of 112x112
        by default.
      workers: worker processes drawing clips.
      still: still images (one frame each, the apex of the clip the same seed draws) instead of clips.
    Returns:
      The written ``dataset_info.json`` content.
    Raises:
      ValueError: ``out`` holds shards built with other settings.
    """
    prep = prep or PrepConfig(max_frames=16)
    return build(synthetic_listing(num_train, num_test, seed, still), out, prep, workers=workers,
                 shard_size=shard_size, make_clip=render_entry, progress=progress)
