"""Build verified, indexed TFRecord shards from a dataset as its authors ship it.

    python -m data_prep.build --dataset {dfew,ferv39k,mafw,afew,folder,csv} --root DIR --out DIR [--workers N]

Every clip the dataset adapter (data_prep.adapters) finds goes through ``dferjax.clips.prepare_clip``
(the same preparation predict uses) and becomes one record (dferjax.records.encode_clip) of a shard
of its split: ``OUT/<split>-00000.tfrecord`` with its offset index beside it. OUT also gets

- ``manifest.jsonl``: one line per input clip, ``{"clip_id", "status": "written", "shard", "record",
  ...}`` or ``{"clip_id", "status": "skipped", "reason", ...}``: nothing is lost silently;
- ``dataset_info.json``: classes, counts per split and class, shard files, the preparation settings,
  heat-map resolution, key-point definition and record versions.

Clips are prepared by worker processes; the main process writes the shards in a fixed order, so the
same input gives byte-identical shards whatever the worker count. A shard is complete when its file,
index and ``.manifest.jsonl`` part exist: an interrupted build run again skips complete shards.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import cv2
from tqdm import tqdm

from data_prep.adapters import ADAPTERS, ClipEntry, Listing, list_clips
from dferjax import keypoints, records
from dferjax.clips import ClipError, PrepConfig, PreparedClip, prepare_clip

INFO_FILE = "dataset_info.json"
MANIFEST_FILE = "manifest.jsonl"


def prepare_entry(entry: ClipEntry, prep: PrepConfig) -> PreparedClip:
    """The default clip maker: the shared preparation of the entry's video or frame folder."""
    return prepare_clip(entry.source, prep)


def _work(job: tuple[Callable[[ClipEntry, PrepConfig], PreparedClip], ClipEntry, PrepConfig, int]
          ) -> tuple[bytes | None, list[str], str | None]:
    """In a worker: (record bytes, notes, None) or (None, [], reason the clip was skipped)."""
    make_clip, entry, prep, quality = job
    try:
        clip = make_clip(entry, prep)
        data = records.encode_clip(entry.clip_id, entry.label, entry.split, entry.scene, clip, quality)
        return data, list(clip.notes), None
    except ClipError as exc:
        return None, [], exc.reason
    except (OSError, ValueError, RuntimeError, cv2.error) as exc:   # a damaged file must not end the build
        return None, [], f"{type(exc).__name__}: {exc}"


def plan_shards(clips: list[ClipEntry], shard_size: int) -> list[tuple[str, list[ClipEntry]]]:
    """Group clips by split (in listing order) and cut each group into shards of ``shard_size``."""
    by_split: dict[str, list[ClipEntry]] = {}
    for clip in clips:
        by_split.setdefault(clip.split, []).append(clip)
    plan = []
    for split in sorted(by_split):
        group = by_split[split]
        for start in range(0, len(group), shard_size):
            plan.append((f"{split}-{start // shard_size:05d}{records.SHARD_SUFFIX}", group[start:start + shard_size]))
    return plan


def _part_path(out: Path, shard: str) -> Path:
    return out / f"{shard}.manifest.jsonl"


def _is_complete(out: Path, shard: str) -> bool:
    return (out / shard).is_file() and Path(records.index_path(out / shard)).is_file() \
        and _part_path(out, shard).is_file()


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _results(jobs: list[Any], workers: int) -> Iterator[tuple[bytes | None, list[str], str | None]]:
    if workers <= 1:
        yield from map(_work, jobs)
        return
    # "spawn": worker processes never inherit a parent's JAX or dlib state.
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap(_work, jobs, chunksize=1)


def build(listing: Listing, out: str | Path, prep: PrepConfig, *, workers: int = 1, shard_size: int = 256,
          jpeg_quality: int = 95, make_clip: Callable[[ClipEntry, PrepConfig], PreparedClip] = prepare_entry,
          progress: bool = True) -> dict[str, Any]:
    """Write the shards, manifest and dataset_info.json for ``listing`` into ``out``; return the info."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    info_path = out / INFO_FILE
    settings = {"dataset": listing.dataset, "prep": prep.to_dict(), "shard_size": shard_size,
                "jpeg_quality": jpeg_quality}
    if info_path.is_file():
        previous = json.loads(info_path.read_text())
        if {k: previous.get(k) for k in settings} != settings:
            raise ValueError(f"{out} holds shards built with other settings ({info_path}); "
                             "use a new --out directory or delete the old one")
    plan = plan_shards(listing.clips, shard_size)
    pending = [(shard, clips) for shard, clips in plan if not _is_complete(out, shard)]
    jobs = [(make_clip, clip, prep, jpeg_quality) for _, clips in pending for clip in clips]
    done = len(plan) - len(pending)
    if done:
        print(f"resuming: {done} of {len(plan)} shards already complete", file=sys.stderr)
    bar = tqdm(total=len(jobs), unit="clip", desc=f"{listing.dataset} -> {out}", disable=not progress)
    results = _results(jobs, workers)
    for shard, clips in pending:
        lines = []
        with records.ShardWriter(out / shard) as writer:
            for clip in clips:
                data, notes, reason = next(results)
                line = {"clip_id": clip.clip_id, "source": clip.source, "label": clip.label,
                        "split": clip.split, "scene": clip.scene}
                if data is None:
                    line.update(status="skipped", reason=reason)
                else:
                    line.update(status="written", shard=shard, record=writer.write(data), notes=notes)
                lines.append(json.dumps(line))
                bar.update()
        _write_text_atomic(_part_path(out, shard), "".join(line + "\n" for line in lines))
    bar.close()
    return _finish(out, listing, plan, settings)


def _finish(out: Path, listing: Listing, plan: list[tuple[str, list[ClipEntry]]], settings: dict) -> dict:
    """Merge the shard manifests with the adapter's skipped clips; write manifest.jsonl and the info."""
    lines = []
    for skipped in listing.skipped:
        lines.append({**asdict(skipped), "status": "skipped"})
    shards: dict[str, list[dict]] = {}
    counts: dict[str, Counter] = {}
    for shard, _ in plan:
        part = [json.loads(line) for line in _part_path(out, shard).read_text().splitlines()]
        lines.extend(part)
        written = [p for p in part if p["status"] == "written"]
        shards.setdefault(shard.split("-")[0], []).append({"file": shard, "records": len(written)})
        for p in written:
            counts.setdefault(p["split"], Counter())[listing.class_names[p["label"]]] += 1
    _write_text_atomic(out / MANIFEST_FILE, "".join(json.dumps(line) + "\n" for line in lines))
    skipped = sum(1 for line in lines if line["status"] == "skipped")
    info = {
        **settings,
        "classes": list(listing.class_names),
        "num_classes": len(listing.class_names),
        "splits": {split: {"records": sum(c.values()), "per_class": {n: c.get(n, 0) for n in listing.class_names},
                           "shards": shards.get(split, [])} for split, c in sorted(counts.items())},
        "clips_in": len(lines), "clips_written": len(lines) - skipped, "clips_skipped": skipped,
        "heatmap_resolution": [settings["prep"]["heatmap_size"]] * 2,
        "keypoint_definition_version": keypoints.DEFINITION_VERSION,
        "clip_record_version": records.CLIP_RECORD_VERSION,
    }
    _write_text_atomic(out / INFO_FILE, json.dumps(info, indent=2) + "\n")
    return info


def add_prep_arguments(parser: argparse.ArgumentParser) -> None:
    """The PrepConfig options, shared by build and synthetic."""
    d = PrepConfig()
    parser.add_argument("--image-size", type=int, default=d.image_size, help="face crop side in pixels")
    parser.add_argument("--max-frames", type=int, default=d.max_frames, help="frames stored per clip at most")
    parser.add_argument("--min-frames", type=int, default=d.min_frames, help="shorter clips repeat frames")
    parser.add_argument("--heatmap-size", type=int, default=d.heatmap_size,
                        help="heat-map side: image size / the model's output stride (7 for 112 at 16)")
    parser.add_argument("--heatmap-sigma", type=float, default=d.heatmap_sigma, help="in heat-map cells")
    parser.add_argument("--shard-size", type=int, default=256, help="clips per shard")
    parser.add_argument("--jpeg-quality", type=int, default=95)
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 1)), help="worker processes")


def prep_config_from_args(args: argparse.Namespace, **extra: Any) -> PrepConfig:
    return PrepConfig(image_size=args.image_size, max_frames=args.max_frames, min_frames=args.min_frames,
                      heatmap_size=args.heatmap_size, heatmap_sigma=args.heatmap_sigma, **extra)


def print_summary(info: dict[str, Any], out: Path, seconds: float) -> None:
    print(f"{info['clips_written']} of {info['clips_in']} clips written, {info['clips_skipped']} skipped "
          f"(reasons in {out / MANIFEST_FILE}) in {seconds:.1f} s")
    for split, s in info["splits"].items():
        per_class = ", ".join(f"{k} {v}" for k, v in s["per_class"].items())
        print(f"  {split}: {s['records']} clips in {len(s['shards'])} shards ({per_class})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_prep.build", description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", required=True, choices=sorted(ADAPTERS))
    parser.add_argument("--root", required=True, help="the dataset's folder as its authors ship it")
    parser.add_argument("--out", required=True, help="folder for the shards, manifest and dataset_info.json")
    parser.add_argument("--precropped", choices=["auto", "yes", "no"], default="auto",
                        help="frames are face crops already (auto: DFEW frame folders and FERV39k)")
    parser.add_argument("--upsample", type=int, default=0, help="dlib detector upsampling (small faces: 1)")
    parser.add_argument("--csv", help="label file for --dataset csv (default ROOT/labels.csv)")
    add_prep_arguments(parser)
    args = parser.parse_args(argv)
    options = {"csv": args.csv} if args.csv else {}
    listing = list_clips(args.dataset, args.root, **options)
    if args.precropped == "auto":
        precropped = args.dataset == "ferv39k" or (
            args.dataset == "dfew" and bool(listing.clips) and Path(listing.clips[0].source).is_dir())
    else:
        precropped = args.precropped == "yes"
    prep = prep_config_from_args(args, upsample=args.upsample, precropped=precropped)
    start = time.perf_counter()
    info = build(listing, args.out, prep, workers=args.workers, shard_size=args.shard_size,
                 jpeg_quality=args.jpeg_quality)
    print_summary(info, Path(args.out), time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
