"""Samples/s the grain input pipeline delivers with augmentation, by worker count.

    python benchmarks/input_pipeline.py [--data DIR] [--workers 0,1,2] [--cache] [--batch 64] [--batches 15]
                                        [--train-rate SAMPLES_PER_S | --throughput-json FILE]

Reads training batches exactly as train.py does (``input_pipeline.TrainData``: global shuffle, 8
segments x 2 frames at random offsets, random resized crop and flip, heat-maps re-rendered at the
feature-map size) at the paper's settings (112x112, 16 frames). Without ``--data`` it first builds a
synthetic set in a temporary folder (112x112 crops, 32 stored frames per clip, as a stand-in for real
shards, whose JPEG frames cost the same to decode). The first batch of each setting (worker start-up)
is not timed.

The training rate to compare with is ``--train-rate`` or the ``train_samples_per_s`` of a
``benchmarks/throughput.py`` JSON line saved to ``--throughput-json``. Prints a table and one JSON line.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dferjax.data.synthetic import make_demo_set  # noqa: E402
from dferjax.data import input_pipeline as ip  # noqa: E402
from dferjax.data import records  # noqa: E402
from dferjax import models  # noqa: E402
from dferjax.config import base_config  # noqa: E402
from dferjax.data import dataset  # noqa: E402
from dferjax.data.clips import PrepConfig  # noqa: E402
from dferjax.engine.inputs import example_spec  # noqa: E402


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}"


def measure(source: records.ShardedDataSource, spec: ip.ExampleSpec, batch: int, workers: int,
            batches: int, cache: bool = False) -> dict:
    """Samples/s over ``batches`` batches, epoch after epoch. With ``cache`` (runtime.cache_decoded) the
    first epoch, which fills the cache, is read before the clock starts."""
    data = ip.TrainData(source, spec, batch, seed=0, num_workers=workers, cache=cache)
    epoch = 0
    iterator = iter(data.dataset(epoch, 0))
    if cache:
        for _ in iterator:
            pass
        epoch += 1
        iterator = iter(data.dataset(epoch, 0))
    next(iterator)                        # start-up: worker processes, first decode
    start = time.perf_counter()
    n = 0
    for _ in range(batches):
        try:
            next(iterator)
        except StopIteration:             # a small set: go on with the next epoch
            epoch += 1
            iterator = iter(data.dataset(epoch, 0))
            next(iterator)
        n += batch
    seconds = time.perf_counter() - start
    return {"workers": workers, "cache": cache, "batch": batch, "samples_per_s": n / seconds, "batches": batches}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="shard directory (default: a synthetic set built in a temporary folder)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--model", default="dfer", choices=sorted(models.MODELS),
                        help="whose inputs to make (heat-maps only for a model that takes them)")
    parser.add_argument("--workers", default="0,1,2")
    parser.add_argument("--cache", action="store_true", help="also measure runtime.cache_decoded (0 workers)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batches", type=int, default=15)
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--clips", type=int, default=1024,
                        help="clips of the synthetic set (enough that the timed batches stay in one epoch)")
    parser.add_argument("--train-rate", type=float, help="training samples/s to compare with")
    parser.add_argument("--throughput-json", help="a saved JSON line of benchmarks/throughput.py")
    args = parser.parse_args(argv)
    train_rate = args.train_rate
    if train_rate is None and args.throughput_json:
        lines = [x for x in Path(args.throughput_json).read_text().splitlines() if x.startswith("{")]
        train_rate = json.loads(lines[-1]).get("train_samples_per_s")

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(args.data) if args.data else Path(tmp) / "synthetic"
        if not args.data:
            start = time.perf_counter()
            make_demo_set(data_dir, num_train=args.clips, num_test=7, workers=os.cpu_count() or 1,
                          prep=PrepConfig(image_size=args.image_size, max_frames=32), progress=False)
            print(f"built {args.clips} synthetic clips (112x112, 32 stored frames) in "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
        info = dataset.read_info(data_dir)
        source = records.ShardedDataSource(dataset.split_shards(data_dir, info, [args.split], "--split"))
        config = base_config(models.default_config())          # the paper's model and sampling
        config.model.name = args.model
        models.model_section(config.model).image_size = args.image_size
        spec = example_spec(config)
        rows = []
        print(f"machine: {machine()}; {len(source)} clips in {data_dir}; batch {args.batch}, "
              f"crop {spec.crop_scale}, flip {spec.flip}")
        print(f"| workers | decoded cache | samples/s | keeps up with training ({train_rate or '?'} samples/s) |")
        print("|---|---|---|---|")
        settings = [(int(w), False) for w in args.workers.split(",")] + ([(0, True)] if args.cache else [])
        for workers, cache in settings:
            row = measure(source, spec, args.batch, workers, args.batches, cache)
            row["keeps_up"] = None if train_rate is None else row["samples_per_s"] >= train_rate
            rows.append(row)
            keeps = "-" if train_rate is None else ("yes" if row["keeps_up"] else "no")
            print(f"| {workers} | {'yes' if cache else 'no'} | {row['samples_per_s']:,.1f} | {keeps} |", flush=True)
    best = max(rows, key=lambda r: r["samples_per_s"])
    print(json.dumps({"samples_per_s": best["samples_per_s"], "best_workers": best["workers"],
                      "train_samples_per_s": train_rate,
                      "keeps_up": None if train_rate is None else best["samples_per_s"] >= train_rate,
                      "machine": machine(), "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
