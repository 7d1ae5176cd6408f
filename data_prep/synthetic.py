"""A synthetic labelled demo set: procedurally drawn faces (data_prep.synthetic_faces) as shards.

    python -m data_prep.synthetic --out DIR [--train 420] [--test 140] [--frames 16] [--image-size 112]

The faces' 68 landmarks are known from the drawing, so no detector runs; the clips go through the
same key-point, heat-map and shard-writing code as real datasets (dferjax.clips.from_crops,
data_prep.build) and come out as ``train-*.tfrecord`` / ``test-*.tfrecord`` shards with a manifest and
dataset_info.json. Classes are balanced (round-robin over the 7 classes); the same arguments give
byte-identical shards.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from data_prep import synthetic_faces
from data_prep.adapters import ClipEntry, Listing
from data_prep.build import add_prep_arguments, build, prep_config_from_args, print_summary
from dferjax.clips import PrepConfig, PreparedClip, from_crops, pad_to_min_frames
from dferjax.faces import FaceSource
from dferjax.labels import BASIC_CLASSES

SOURCE_PREFIX = "synthetic:"


def synthetic_listing(num_train: int, num_test: int, seed: int = 0) -> Listing:
    """Entries for a balanced synthetic set; each entry's source names its (label, seed)."""
    clips = []
    for split, count in (("train", num_train), ("test", num_test)):
        for i in range(count):
            label = i % len(BASIC_CLASSES)
            clip_seed = synthetic_faces.clip_seed(seed, split, i)
            clips.append(ClipEntry(clip_id=f"{split}_{i:05d}", source=f"{SOURCE_PREFIX}{label}:{clip_seed}",
                                   label=label, split=split))
    return Listing(dataset="synthetic", class_names=BASIC_CLASSES, clips=clips, skipped=[])


def render_entry(entry: ClipEntry, prep: PrepConfig) -> PreparedClip:
    """Draw the entry's clip (``max_frames`` frames) and prepare it from its known landmarks."""
    label, seed = (int(v) for v in entry.source[len(SOURCE_PREFIX):].split(":"))
    frames, landmarks = synthetic_faces.render_clip(label, seed, num_frames=prep.max_frames, size=prep.image_size)
    sources = np.full(len(frames), FaceSource.DRAWN, np.int8)
    return pad_to_min_frames(from_crops(frames, landmarks, sources, prep), prep.min_frames)


def make_demo_set(out: str | Path, *, num_train: int = 420, num_test: int = 140, seed: int = 0,
                  prep: PrepConfig | None = None, workers: int = 1, shard_size: int = 256,
                  progress: bool = True) -> dict:
    """Build the synthetic set into ``out`` (resuming if it is partly there); return dataset_info."""
    prep = prep or PrepConfig(max_frames=16)
    return build(synthetic_listing(num_train, num_test, seed), out, prep, workers=workers,
                 shard_size=shard_size, make_clip=render_entry, progress=progress)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_prep.synthetic", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--train", type=int, default=420, help="training clips (60 per class)")
    parser.add_argument("--test", type=int, default=140, help="held-out clips (20 per class)")
    parser.add_argument("--seed", type=int, default=0)
    add_prep_arguments(parser)
    parser.set_defaults(max_frames=16)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    info = make_demo_set(args.out, num_train=args.train, num_test=args.test, seed=args.seed,
                         prep=prep_config_from_args(args), workers=args.workers, shard_size=args.shard_size)
    print_summary(info, Path(args.out), time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
