"""Build verified, indexed TFRecord shards from a dataset as its authors ship it.

    python -m data_prep.build --dataset {dfew,ferv39k,mafw,afew,folder,csv,rafdb,affectnet,ferplus} --root DIR
        --out DIR [--workers N] [--num-classes {7,8,11}] [--images {aligned,original}] [--layout {sets,csv}]
        [--vote {plurality,majority}]

The adapter options (``--csv``, ``--num-classes``, ``--images``, ``--layout``, ``--vote``) go to the
adapters that take them (data_prep.adapters: each adapter's docstring); one given to an adapter that
does not take it is a usage error. Still images (rafdb, affectnet, ferplus, images in folder / csv) are
samples of one frame: ``--max-frames`` / ``--min-frames`` do not apply to them (never padded).

Every clip the dataset adapter (data_prep.adapters) finds goes through ``dferjax.data.clips.prepare_clip``
(the same preparation predict uses) and becomes one record (dferjax.data.records.encode_clip) of a shard
of its split, written by ``dferjax.data.dataset.build``: ``OUT/<split>-00000.tfrecord`` with its offset
index beside it. OUT also gets

- ``manifest.jsonl``: one line per input clip, ``{"clip_id", "status": "written", "shard", "record",
  ...}`` or ``{"clip_id", "status": "skipped", "reason", ...}``: nothing is lost silently;
- ``dataset_info.json``: classes, counts per split and class, shard files, the preparation settings,
  key-point definition and record versions.

The same input gives byte-identical shards whatever the worker count, and an interrupted build run
again resumes at the first unfinished shard (dferjax.data.dataset).

On a shared machine (dferjax.jobs): one build per OUT (a second one is refused, naming the first's
process); SIGTERM or SIGINT discards the shard in progress and exits with status 75 (re-queue the same
command: it resumes); a full disk stops the build in one line (exit 1), keeping the complete shards.
Exit statuses: 0 done; 1 an error to fix (one line on stderr; OUT unusable, in use, a full disk, no
clip written); 2 a usage error; 75 stopped by a signal (run the same command to resume); 128 + N a
second signal N (exited at once; the same command resumes).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from data_prep.adapters import ADAPTERS, Listing, list_clips
from dferjax import jobs
from dferjax.data.clips import PrepConfig
from dferjax.data.dataset import INFO_FILE, MANIFEST_FILE, BuildSettingsError, WorkerError, build  # noqa: F401


def _int_in(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high] (high None: no upper bound), else a usage error."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low or (high is not None and value > high):
            bound = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"{value} is not {bound}")
        return value
    return parse


def add_prep_arguments(parser: argparse.ArgumentParser) -> None:
    """The PrepConfig options, shared by build and synthetic (values that cannot work are usage errors)."""
    d = PrepConfig()
    parser.add_argument("--image-size", type=_int_in(8), default=d.image_size, help="face crop side in pixels")
    parser.add_argument("--max-frames", type=_int_in(1), default=d.max_frames, help="frames stored per clip at most")
    parser.add_argument("--min-frames", type=_int_in(1), default=d.min_frames, help="shorter clips repeat frames")
    parser.add_argument("--shard-size", type=_int_in(1), default=256, help="samples per shard")
    parser.add_argument("--jpeg-quality", type=_int_in(0, 100), default=95, help="JPEG quality of the stored frames")
    parser.add_argument("--workers", type=_int_in(1), default=max(1, (os.cpu_count() or 1)), help="worker processes")


def prep_config_from_args(args: argparse.Namespace, **extra: Any) -> PrepConfig:
    return PrepConfig(image_size=args.image_size, max_frames=args.max_frames, min_frames=args.min_frames, **extra)


def print_summary(info: dict[str, Any], out: Path, seconds: float) -> None:
    media = info.get("media") or {}
    kind = "images" if media.get("image") and not media.get("clip") else "clips"
    if media.get("image") and media.get("clip"):
        kind = f"samples ({media['clip']} clips, {media['image']} images)"
    print(f"{info['clips_written']} of {info['clips_in']} {kind} written, {info['clips_skipped']} skipped "
          f"(reasons in {out / MANIFEST_FILE}) in {seconds:.1f} s")
    for split, s in info["splits"].items():
        per_class = ", ".join(f"{k} {v}" for k, v in s["per_class"].items())
        n = len(s["shards"])
        noun = kind.split()[0] if s["records"] != 1 else kind.split()[0][:-1]
        print(f"  {split}: {s['records']} {noun} in {n} shard{'s' if n != 1 else ''} ({per_class})")
    if set(info["splits"]) == {"train"}:            # (k-fold sets write fold1..fold5: each is a test split)
        hint = (": the folder adapter holds out about a fifth of the clips by the hash of their ids (a few clips "
                "can all fall in train), or takes ROOT/train/<label>/ and ROOT/test/<label>/ as given"
                if info.get("dataset") == "folder" else "")
        print(f"  no test split: training evaluates on one (data.test_splits){hint}")
    reasons = skipped_reasons(out)
    for reason in reasons[:SHOW_SKIPPED]:
        print(f"  skipped: {reason}")
    if len(reasons) > SHOW_SKIPPED:
        print(f"  ... and {len(reasons) - SHOW_SKIPPED} more skipped (all in {out / MANIFEST_FILE})")


SHOW_SKIPPED = 10
"""The skipped inputs a build names on the console (all are in the manifest)."""


def skipped_reasons(out: Path) -> list[str]:
    """Each skipped input's reason from a build's manifest, in its order, naming the input."""
    reasons = []
    for line in map(json.loads, (out / MANIFEST_FILE).read_text().splitlines()):
        if line.get("status") == "skipped":
            reason, source = line.get("reason", ""), str(line.get("source", ""))
            reasons.append(reason if source in reason else f"{source}: {reason}")
    return reasons


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_prep.build", description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", required=True, choices=sorted(ADAPTERS))
    parser.add_argument("--root", required=True, help="the dataset's folder as its authors ship it")
    parser.add_argument("--out", required=True, help="folder for the shards, manifest and dataset_info.json")
    parser.add_argument("--precropped-detect", choices=["yes", "no"], default="yes",
                        help="pre-cropped media: fit the landmarks in the face detected inside each crop (the whole "
                             "frame where none is found; default); no: always the whole frame, as builds made "
                             "before this option (to resume one)")
    parser.add_argument("--precropped", choices=["auto", "yes", "no"], default="auto",
                        help="frames are face crops already (auto: DFEW frame folders, FERV39k, RAF-DB aligned, "
                             "FERPlus, AffectNet train_set/val_set)")
    parser.add_argument("--upsample", type=_int_in(0, 2), default=0, help="dlib detector upsampling (small faces: 1)")
    parser.add_argument("--fast-detect", type=int, default=0, metavar="SIDE",
                        help="search faces on shrunken frames first (a region around the face followed, then the "
                             "frame at a longer side of SIDE px, e.g. 320; full size where neither finds one): "
                             "with --detect-every 2, 2.8-4.1x the frames/s per worker on the test videos, "
                             "key-points within 2%% of the face size (median; 0: off, default)")
    parser.add_argument("--detect-every", type=_int_in(1), default=1, metavar="N",
                        help="run the face detector on every N-th stored frame; the boxes between two detections of "
                             "the same face are interpolated and landmarks fitted in them (default 1: every frame)")
    parser.add_argument("--csv", help="label file for --dataset csv (default ROOT/labels.csv)")
    parser.add_argument("--num-classes", type=int, choices=[7, 8, 11],
                        help="classes: 7 (default; mafw: 11), 8 with contempt (affectnet, ferplus, folder, csv), "
                             "11 MAFW's (mafw, folder, csv)")
    parser.add_argument("--images", choices=["aligned", "original"],
                        help="rafdb: Image/aligned (100x100 face crops, default) or Image/original")
    parser.add_argument("--layout", choices=["sets", "csv"],
                        help="affectnet: train_set/val_set folders or the original csv file lists (default: detected)")
    parser.add_argument("--vote", choices=["plurality", "majority"],
                        help="ferplus: FERPlus's majority rule (default: more than half of the votes once single "
                             "votes are dropped, as its authors' code) or the emotion with the most votes")
    add_prep_arguments(parser)
    args = parser.parse_args(argv)
    options = {name: getattr(args, name) for name in ("csv", "num_classes", "images", "layout", "vote")
               if getattr(args, name) is not None}
    accepted = inspect.signature(ADAPTERS[args.dataset]).parameters
    for name in options:
        if name not in accepted:
            parser.error(f"--{name.replace('_', '-')} does not apply to --dataset {args.dataset}")
    try:                                # before the listing and any clip: a folder that cannot be written
        jobs.check_output_folder(args.out, "--out")
    except jobs.FolderError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    try:
        listing = list_clips(args.dataset, args.root, **options)
    except (FileNotFoundError, ValueError) as error:     # a root without the layout, a value the adapter refuses
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.precropped == "auto":
        precropped = auto_precropped(args.dataset, listing, options)
    else:
        precropped = args.precropped == "yes"
    if args.fast_detect and args.fast_detect < 80:
        parser.error(f"--fast-detect {args.fast_detect}: the shrunken frame's side must be >= 80 px (dlib's window), "
                     "or 0 for off")
    prep = prep_config_from_args(args, upsample=args.upsample, precropped=precropped,
                                 precropped_detect=precropped and args.precropped_detect == "yes",
                                 fast_detect=args.fast_detect, detect_every=args.detect_every)
    return run_build(lambda: build(listing, args.out, prep, workers=args.workers, shard_size=args.shard_size,
                                   jpeg_quality=args.jpeg_quality), Path(args.out))


def auto_precropped(dataset: str, listing: Listing, options: dict[str, Any]) -> bool:
    """``--precropped auto``: whether a data set's media are face crops already (landmarks fitted in the
    whole frame, no face search).

    Args:
      dataset: the ``--dataset`` name.
      listing: what its adapter listed.
      options: the adapter options given.
    Returns:
      True for FERV39k, DFEW's frame folders (clip_224x224), FERPlus (48x48 face crops), RAF-DB's aligned
      images (100x100 face crops; not ``--images original``) and AffectNet's train_set/val_set layout
      (224x224 face crops: its entries carry no face box); False otherwise (AffectNet's csv layout gives
      a face box per image, which ``prepare_clip`` uses whatever this says).
    """
    if dataset in ("ferv39k", "ferplus"):
        return True
    if dataset == "dfew":
        return bool(listing.clips) and Path(listing.clips[0].source).is_dir()
    if dataset == "rafdb":
        return options.get("images", "aligned") == "aligned"
    if dataset == "affectnet":
        return bool(listing.clips) and all(clip.face_box is None for clip in listing.clips)
    return False


def run_build(start: Callable[[], dict[str, Any]], out: Path, *, require_clips: bool = True) -> int:
    """Run a build (``dferjax.data.dataset.build`` through ``start``) as a command: its summary, or one line
    on stderr for a build that could not run or did not finish.

    Args:
      start: runs the build, returns its dataset_info.json content.
      out: the build's folder (``--out``).
      require_clips: a build that wrote no clip is an error (exit status 1, with the first reasons).
    Returns:
      The exit status: 0 done; 1 ``out`` unusable or in use, a disk error or a worker process that died
      (the complete shards stay), or no clip written; ``jobs.EXIT_REQUEUE`` (75) stopped by SIGTERM/SIGINT (the same command resumes).
    Raises:
      OSError: an error of the machine that is no disk error (with its traceback).
    """
    begin = time.perf_counter()
    try:
        info = start()
    except (jobs.FolderError, WorkerError, BuildSettingsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except jobs.Interrupted as stop:
        print(stop, file=sys.stderr)
        return jobs.EXIT_REQUEUE
    except OSError as error:
        if not jobs.is_disk_error(error):
            raise
        print(f"error: {jobs.disk_error(error)}; the complete shards stay: run the same command to resume",
              file=sys.stderr)
        return 1
    print_summary(info, out, time.perf_counter() - begin)
    return 0 if info["clips_written"] or not require_clips else no_clip_written(out)


def no_clip_written(out: Path, show: int = 3) -> int:
    """Say that a build wrote nothing, with the first reasons from its manifest; the exit status 1."""
    print(f"error: no clip was written to {out}; the first reasons:", file=sys.stderr)
    for reason in skipped_reasons(out)[:show]:
        print(f"  {reason}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
