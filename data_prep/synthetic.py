"""A synthetic labelled demo set: procedurally drawn faces as shards (dferjax.data.synthetic).

    python -m data_prep.synthetic --out DIR [--train 420] [--test 140] [--max-frames 16] [--image-size 112] [--still]

The faces' 68 landmarks are known from the drawing, so no detector runs; the clips go through the
same key-point and shard-writing code as real datasets and come out as ``train-*.tfrecord`` /
``test-*.tfrecord`` shards with a manifest and dataset_info.json. Classes are balanced (round-robin
over the 7 classes); the same arguments give byte-identical shards. ``--still`` draws still images
instead (one frame each: the apex of the clip the same seed draws), as ``configs/demo_images.py`` uses. The same exit statuses and stops
as ``python -m data_prep.build`` (a lock on OUT, SIGTERM/SIGINT -> 75, a full disk -> 1; see there).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from data_prep.build import add_prep_arguments, prep_config_from_args, run_build
from dferjax.data.synthetic import SOURCE_PREFIX, make_demo_set, render_entry, synthetic_listing  # noqa: F401


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_prep.synthetic", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--train", type=int, default=420, help="training clips (60 per class)")
    parser.add_argument("--test", type=int, default=140, help="held-out clips (20 per class)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--still", action="store_true", help="still images (one frame each) instead of clips")
    add_prep_arguments(parser)
    parser.set_defaults(max_frames=16)
    args = parser.parse_args(argv)
    return run_build(lambda: make_demo_set(args.out, num_train=args.train, num_test=args.test, seed=args.seed,
                                           prep=prep_config_from_args(args), workers=args.workers,
                                           shard_size=args.shard_size, still=args.still), Path(args.out),
                     require_clips=False)


if __name__ == "__main__":
    sys.exit(main())
