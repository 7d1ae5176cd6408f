"""Data preparation throughput: clip preparation on the real test videos and shard reading.

    python benchmarks/data_prep.py [--testdata ../shared/testdata] [--max-frames 16] [--repeats 3]
                                   [--fast-detect 320] [--detect-every 2]

Prints a table and, as its last line, one JSON object:
- per video: clips/s and frames/s of ``dferjax.data.clips.prepare_clip`` (decode, detect, fit landmarks,
  crop, heat-maps) in one process, i.e. per worker; a build with N workers scales about N-fold; the
  full-size detector (the default path) and the fast one (``PrepConfig.fast_detect``, data_prep's
  ``--fast-detect SIDE``, with ``--detect-every N``: the detector on every N-th stored frame, the boxes between
  interpolated) side by side, with the fast path's key-point distance to the full path's (mean and median over
  the frames where the full path detected a face and the fast one detected or tracked it, % of the face size)
  and the frames each path found a face in;
- shard reading: records/s and MB/s through ``records.ShardedDataSource`` (random order, CRC checked),
  and with the clip decoded (``records.decode_clip``, 16 of the stored frames as the model takes them).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from dferjax.data import clips, faces, records

VIDEOS = ("single_face.mp4", "fer_test.mp4", "woman2.mp4", "WolfgangLanger_Pexels.mp4")


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}"


def bench_prepare(path: Path, prep: clips.PrepConfig, repeats: int) -> tuple[dict, clips.PreparedClip]:
    times, stored = [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        clip = clips.prepare_clip(path, prep)
        times.append(time.perf_counter() - start)
        stored = len(clip.frames)
    t = statistics.median(times)
    return {"video": path.name, "source_frames": clip.num_source_frames, "stored_frames": stored,
            "seconds_per_clip": t, "clips_per_s": 1 / t, "frames_per_s": stored / t}, clip


FOUND = (faces.FaceSource.DETECTED, faces.FaceSource.TRACKED)


def keypoint_distance(full: clips.PreparedClip, fast: clips.PreparedClip) -> np.ndarray:
    """Per frame the full path detected a face in and the fast path detected or tracked one: the mean distance of
    the 18 key-points in frame pixels, as a share of the face size (the full path's dlib box side: its crop side
    / (1 + 2 margin))."""
    both = (full.sources == faces.FaceSource.DETECTED) & np.isin(fast.sources, FOUND)
    size = full.frames.shape[1]
    a = faces.crop_to_frame(full.keypoints, full.boxes, size)
    b = faces.crop_to_frame(fast.keypoints, fast.boxes, size)
    face = (full.boxes[:, 2] - full.boxes[:, 0]) / (1 + 2 * clips.PrepConfig().margin)
    return (np.linalg.norm(a - b, axis=-1).mean(-1) / face)[both]


def bench_read(shard_dir: Path, passes: int = 3) -> dict:
    source = records.ShardedDataSource(shard_dir)
    n = len(source)
    order = np.random.default_rng(0).permutation(np.tile(np.arange(n), passes))
    start = time.perf_counter()
    nbytes = sum(len(source[int(i)]) for i in order)
    raw = time.perf_counter() - start
    start = time.perf_counter()
    for i in order:
        rec = source[int(i)]
        records.decode_clip(rec, frames=clips.segment_indices(len(records.decode_example(rec)["sources"])))
    decoded = time.perf_counter() - start
    return {"records": int(len(order)), "records_per_s": len(order) / raw, "mb_per_s": nbytes / raw / 1e6,
            "decoded_clips_per_s": len(order) / decoded, "mean_record_kb": nbytes / len(order) / 1e3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--testdata", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "testdata"))
    parser.add_argument("--max-frames", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fast-detect", type=int, default=320, help="the fast path's frame side (0: skip it)")
    parser.add_argument("--detect-every", type=int, default=2,
                        help="the fast path's detect_every (the detector on every N-th stored frame)")
    args = parser.parse_args()
    videos = Path(args.testdata) / "videos"
    if not videos.is_dir():
        raise SystemExit(f"test videos not found in {videos}; pass --testdata")
    prep = clips.PrepConfig(max_frames=args.max_frames, min_frames=min(16, args.max_frames))
    clips.prepare_clip(videos / VIDEOS[0], prep)        # load dlib's models outside the timing
    rows = []
    for name in VIDEOS:
        if not (videos / name).exists():
            continue
        row, full = bench_prepare(videos / name, prep, args.repeats)
        if args.fast_detect:
            fast_prep = dataclasses.replace(prep, fast_detect=args.fast_detect, detect_every=args.detect_every)
            fast_row, fast = bench_prepare(videos / name, fast_prep, args.repeats)
            d = keypoint_distance(full, fast)
            row.update(fast_frames_per_s=fast_row["frames_per_s"],
                       face_frames=int(np.isin(full.sources, FOUND).sum()),
                       fast_face_frames=int(np.isin(fast.sources, FOUND).sum()),
                       speedup=fast_row["frames_per_s"] / row["frames_per_s"],
                       fast_keypoint_mean_pct=float(d.mean() * 100) if d.size else None,
                       fast_keypoint_median_pct=float(np.median(d) * 100) if d.size else None,
                       both_detected=int(d.size))
        rows.append(row)
    with tempfile.TemporaryDirectory() as tmp:
        for k, name in enumerate(VIDEOS):
            clip = clips.prepare_clip(videos / name, prep)
            with records.ShardWriter(Path(tmp) / f"bench-{k:05d}.tfrecord") as writer:
                for r in range(8):
                    writer.write(records.encode_clip(f"{name}-{r}", 0, "train", "", clip))
        read = bench_read(Path(tmp))

    print(f"machine: {machine()}; one worker process; {args.max_frames} frames stored per clip, "
          f"{prep.image_size}x{prep.image_size} crops")
    if args.fast_detect:
        print(f"fast path: --fast-detect {args.fast_detect} --detect-every {args.detect_every}; faces: frames with "
              "a face found (full / fast)")
    fast = f"{'fast f/s':>9}{'x':>6}{'kp mean%':>9}{'median%':>8}{'faces':>9}" if args.fast_detect else ""
    print(f"{'video':<28}{'frames':>8}{'s/clip':>9}{'clips/s':>9}{'frames/s':>10}{fast}")
    for r in rows:
        more = (f"{r['fast_frames_per_s']:>9.1f}{r['speedup']:>6.2f}{r['fast_keypoint_mean_pct'] or 0:>9.2f}"
                f"{r['fast_keypoint_median_pct'] or 0:>8.2f}"
                f"{str(r['face_frames']) + '/' + str(r['fast_face_frames']):>9}") if args.fast_detect else ""
        print(f"{r['video']:<28}{r['source_frames']:>8}{r['seconds_per_clip']:>9.3f}{r['clips_per_s']:>9.2f}"
              f"{r['frames_per_s']:>10.1f}{more}")
    print(f"shard read: {read['records_per_s']:.0f} records/s, {read['mb_per_s']:.0f} MB/s "
          f"({read['mean_record_kb']:.0f} kB/record); with 16-frame JPEG decode: "
          f"{read['decoded_clips_per_s']:.0f} clips/s")
    print(json.dumps({"machine": machine(), "prepare": rows, "read": read,
                      "frames_per_s_per_worker": statistics.median(r["frames_per_s"] for r in rows),
                      "fast_frames_per_s_per_worker": statistics.median(r["fast_frames_per_s"] for r in rows)
                      if args.fast_detect else None, "fast_detect": args.fast_detect,
                      "detect_every": args.detect_every}))


if __name__ == "__main__":
    main()
