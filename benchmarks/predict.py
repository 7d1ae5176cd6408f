"""Prediction time on long videos: seconds per video-minute at 1x, 4x, 8x and 16x a test video's length.

    python benchmarks/predict.py [--checkpoint RUN] [--video ../shared/testdata/videos/woman2.mp4]
                                 [--lengths 1,4,8,16] [--window 2] [--stride 1] [--faces all]

The test video is looped N times into a temporary mp4 (OpenCV's mp4v writer) and ``predict`` is run on it
with a timeline (``--window``/``--stride``), as ``python -m dferjax.predict --window 2 --stride 1 VIDEO``
runs it: one decode pass, faces detected once per sampled frame and shared by the windows that take it,
all windows classified in batches (``--faces all``: every face followed, ``clips.read_track_timelines``'s
two decode passes). Without ``--checkpoint`` a demo-config model (configs/demo.py: 64x64,
8 frames) is trained for one epoch on 16 synthetic clips in a temporary folder: its weights do not matter
for the time, only its input size.

Prints a table (detector runs, the most decoded frames held at once, seconds, seconds per video-minute, times
faster than real time) and, as its last line, one
JSON object with the rows and a linear fit of seconds against video length: time linear in the length has
a small intercept and per-length seconds that stay flat. The target of issue 20: ``--window 2 --stride 1``
on a 2-minute 30-fps video in under 24 s with the demo model on 2 CPU cores (the 8x row: 124 s of video).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dferjax import predict, train  # noqa: E402
from dferjax.data import clips, faces, synthetic  # noqa: E402

DEFAULT_VIDEO = ROOT.parent / "shared" / "testdata" / "videos" / "woman2.mp4"


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}"


def looped(video: Path, times: int, out: Path) -> tuple[Path, float, int]:
    """``video`` looped ``times`` times into ``out`` (mp4v); returns (path, duration s, frames)."""
    cap = cv2.VideoCapture(str(video))
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    if not frames:
        raise SystemExit(f"{video}: no frame could be decoded")
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for _ in range(times):
        for frame in frames:
            writer.write(frame)
    writer.release()
    count = len(frames) * times
    return out, count / fps, count


class _Uncached(faces.FrameCache):
    """A FrameCache that keeps nothing: every window detects its frames' faces again."""

    def detect(self, key, rgb, upsample, threshold, fast_side=0, previous=None):
        if fast_side:
            return faces.detect_faces_fast(rgb, fast_side, previous, upsample=upsample, threshold=threshold)
        return faces.detect_faces(rgb, upsample=upsample, threshold=threshold)

    def fit(self, key, rgb, box):
        return faces.fit_landmarks(rgb, box)


def demo_run(workdir: Path) -> Path:
    """A demo-config run trained for one epoch on 16 synthetic clips (the demo model's input size)."""
    data = workdir / "data"
    synthetic.make_demo_set(data, num_train=16, num_test=8, progress=False,
                            prep=clips.PrepConfig(image_size=64, max_frames=8, min_frames=8))
    run = workdir / "run"
    args = ["--config", str(ROOT / "configs" / "demo.py"), f"--config.data.dir={data}", "--workdir", str(run),
            "--config.train.epochs=1", "--config.train.eval_batch_size=8", "--config.runtime.progress=False"]
    if train.main(args) != 0:
        raise SystemExit("training the demo model failed")
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="a run folder or exported model (default: a demo model "
                                                        "trained here for one epoch)")
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--lengths", default="1,4,8,16", help="loop counts of the video (default 1,4,8,16)")
    parser.add_argument("--window", type=float, default=2.0)
    parser.add_argument("--stride", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--faces", choices=("largest", "all"), default="largest",
                        help="predict's --faces: the largest face (default) or every face, each followed")
    parser.add_argument("--no-shared-detection", action="store_true",
                        help="detect faces again in every window (as before issue 20), to measure the cache")
    args = parser.parse_args(argv)
    if args.no_shared_detection:
        faces.FrameCache = _Uncached
    if not args.video.is_file():
        raise SystemExit(f"{args.video}: no such video (pass --video, or put the team's shared/ folder beside "
                         "the project)")
    lengths = [int(n) for n in args.lengths.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        checkpoint = args.checkpoint or demo_run(tmp)
        predictor = predict.Predictor(checkpoint, batch_size=args.batch_size)
        print(predictor.describe(), file=sys.stderr)
        # compile the forward once outside the timing (a fresh process pays it once per run, ~seconds)
        predict.predict(predictor, [str(args.video)], window_s=args.window, stride_s=args.stride, faces=args.faces)
        held = []
        name = "read_timeline" if args.faces == "largest" else "read_track_timelines"
        read = getattr(clips, name)

        def counting(*a, **k):               # records how many decoded frames the timeline held at most
            timelines = read(*a, **k)
            held.append(max(t.frames_held for t in ([timelines] if name == "read_timeline" else timelines)))
            return timelines

        setattr(clips, name, counting)
        for n in lengths:
            path, duration, count = looped(args.video, n, tmp / f"loop{n}.mp4")
            before = faces.detector_calls()
            start = time.perf_counter()
            results = predict.predict(predictor, [str(path)], window_s=args.window, stride_s=args.stride,
                                      faces=args.faces)
            seconds = time.perf_counter() - start
            result = results[0]
            if result.error:
                raise SystemExit(f"{path}: {result.error}")
            rows.append({"times": n, "video_s": round(duration, 2), "frames": count, "windows": len(result.windows),
                         "faces": len(results),
                         "detections": faces.detector_calls() - before, "frames_held": held[-1],
                         "seconds": round(seconds, 2),
                         "s_per_video_minute": round(seconds / duration * 60, 2),
                         "x_real_time": round(duration / seconds, 2)})
            path.unlink()
    x = np.array([r["video_s"] for r in rows])
    y = np.array([r["seconds"] for r in rows])
    slope, intercept = np.polyfit(x, y, 1) if len(rows) > 1 else (y[0] / x[0], 0.0)
    print(f"predict --window {args.window:g} --stride {args.stride:g} --faces {args.faces} on {args.video.name} looped; "
          f"{'' if not args.no_shared_detection else 'no shared detection; '}{machine()}")
    print(f"{'loops':>5} {'video s':>8} {'frames':>7} {'windows':>7} {'detects':>7} {'held':>5} {'seconds':>8} "
          f"{'s/video-min':>11} {'x real time':>11}")
    for r in rows:
        print(f"{r['times']:>5} {r['video_s']:>8.1f} {r['frames']:>7} {r['windows']:>7} {r['detections']:>7} "
              f"{r['frames_held']:>5} {r['seconds']:>8.2f} {r['s_per_video_minute']:>11.2f} {r['x_real_time']:>11.2f}")
    print(f"linear fit: {slope * 60:.2f} s per video-minute + {intercept:.2f} s")
    print(json.dumps({"benchmark": "predict", "machine": machine(), "video": args.video.name,
                      "window_s": args.window, "stride_s": args.stride, "faces": args.faces,
                      "model": predictor.model_description,
                      "shared_detection": not args.no_shared_detection,
                      "rows": rows, "fit_s_per_video_minute": round(float(slope) * 60, 3),
                      "fit_intercept_s": round(float(intercept), 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
