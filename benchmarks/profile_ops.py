"""Where a model's jitted forward or train step spends its time: XLA's per-op times from a profiler trace.

    python benchmarks/profile_ops.py [--model dfer] [--mode train|infer] [--batch 8] [--steps 2]
                                     [--cpu-devices -1] [--top 15]

Runs the step as ``benchmarks/throughput.py`` times it (the same batch, state and jitted programs; on a
CPU host one JAX device per core, data parallel), traces ``--steps`` calls after two warm-up calls with
``jax.profiler.trace(..., create_perfetto_trace=True)`` and sums the durations of the ops XLA ran, from
the trace's per-op events, by kind:

- ``convolution / dot``: XLA:CPU's ``ynn_fusion.*`` (YNNPACK convolutions and matrix products with their
  fused epilogues), ``convolution*``, ``dot*``;
- ``transpose / copy``: layout changes (e.g. activations transposed for a weight gradient);
- ``collectives and waits``: ``all-reduce*``, ``all-gather*`` (and the other collectives), ``Rendezvous``
  and ``Wait`` (one device waiting for the other at a collective: imbalance and the all-reduce itself);
- every other fusion kind by its name without the number.

The op events read are XLA:CPU's (those on its ``tf_XLAEigen`` threads); on a GPU, keep the trace
(``--trace-dir``) and open it in Perfetto or TensorBoard's profile plugin instead. Op time is summed over the
devices' threads, so shares are of the ops' total, not of wall time. Prints a
table of the kinds, the ``--top`` single ops, and one JSON line (machine, model, mode, batch, wall seconds
per step, op milliseconds per kind). The trace is left in ``--trace-dir`` (default: a temporary folder,
removed) for a look in Perfetto.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dferjax import models  # noqa: E402
from dferjax.config import base_config  # noqa: E402
from dferjax.engine.checkpoints import split_model  # noqa: E402
from dferjax.engine.mesh import cpu_device_count, make_mesh, replicate, to_global  # noqa: E402
from dferjax.engine.steps import initial_state, jit_eval_step, jit_train_step, make_optimizer  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import machine, make_batch  # noqa: E402


COLLECTIVES = ("all-reduce", "all-gather", "all-to-all", "reduce-scatter", "collective-permute")


def kind_of(name: str) -> str | None:
    """The kind an op event counts under (module docstring); None for an event that is not an op."""
    if name.startswith(("ThunkExecutor", "end:")):
        return None
    base = re.sub(r"[.\d]+$", "", name)
    if base.startswith(("ynn_fusion", "convolution", "dot", "wrapped_convolution", "wrapped_dot")):
        return "convolution / dot"
    if "transpose" in base or "copy" in base:
        return "transpose / copy"
    if base.startswith(COLLECTIVES) or base == "Rendezvous" or base.startswith("Wait"):
        return "collectives and waits"
    return base


def op_times(trace_dir: Path) -> tuple[collections.Counter, collections.Counter]:
    """(microseconds per kind, microseconds per op name) of the XLA op events of the newest trace."""
    trace = sorted(trace_dir.glob("plugins/profile/*/perfetto_trace.json.gz"))[-1]
    events = json.load(gzip.open(trace))
    events = events["traceEvents"] if isinstance(events, dict) else events
    threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in events
               if e.get("ph") == "M" and e.get("name") == "thread_name"}
    kinds, ops = collections.Counter(), collections.Counter()
    for e in events:
        if e.get("ph") != "X" or not threads.get((e["pid"], e["tid"]), "").startswith("tf_XLAEigen"):
            continue
        kind = kind_of(e["name"])
        if kind is not None:
            kinds[kind] += e["dur"]
            ops[e["name"]] += e["dur"]
    return kinds, ops


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="dfer", choices=sorted(models.MODELS))
    parser.add_argument("--mode", default="train", choices=["train", "infer"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2, help="calls traced")
    parser.add_argument("--cpu-devices", type=int, default=-1, help="as benchmarks/throughput.py")
    parser.add_argument("--top", type=int, default=15, help="single ops listed")
    parser.add_argument("--trace-dir", help="keep the trace here (default: a temporary folder)")
    args = parser.parse_args(argv)
    n = cpu_device_count(args.cpu_devices, os.cpu_count() or 1, (args.batch,))
    if n:
        jax.config.update("jax_num_cpu_devices", n)
    config = base_config(models.default_config())
    config.model.name = args.model
    model = models.build_model(config.model, seed=0)
    mesh = make_mesh()
    graphdef, params, rest = split_model(model)
    data = to_global(make_batch(args.batch, models.input_spec(config.model), np.random.default_rng(0)), mesh)
    if args.mode == "infer":
        state = replicate({"params": params, "rest": rest}, mesh)
        step = jit_eval_step(graphdef, mesh)

        def call():
            return step(state, data)["logits"]
    else:
        tx = make_optimizer(config, steps_per_epoch=1000)
        box = {"state": replicate(initial_state(params, rest, tx), mesh)}
        step = jit_train_step(graphdef, tx, mesh)

        def call():
            box["state"], metrics = step(box["state"], data)
            return metrics["loss"]

    for _ in range(2):
        jax.block_until_ready(call())
    with tempfile.TemporaryDirectory() as tmp:
        trace_dir = Path(args.trace_dir or tmp)
        start = time.perf_counter()
        with jax.profiler.trace(str(trace_dir), create_perfetto_trace=True):
            for _ in range(args.steps):
                jax.block_until_ready(call())
        wall = (time.perf_counter() - start) / args.steps
        kinds, ops = op_times(trace_dir)
    total = sum(kinds.values())
    devices = len(jax.devices())
    print(f"machine: {machine()}; {args.model} {args.mode}, batch {args.batch} over {devices} device(s); "
          f"{wall:.2f} s per step (traced), op time summed over the devices' threads: "
          f"{total / 1e3 / args.steps:.0f} ms per step")
    print(f"{'kind':<32}{'ms/step':>10}{'share':>8}")
    for kind, us in kinds.most_common():
        if us / total >= 0.001:
            print(f"{kind:<32}{us / 1e3 / args.steps:>10.1f}{100 * us / total:>7.1f}%")
    print(f"\nthe {args.top} longest ops:")
    for name, us in ops.most_common(args.top):
        print(f"  {name:<40}{us / 1e3 / args.steps:>10.1f} ms/step")
    print(json.dumps({"machine": machine(), "model": args.model, "mode": args.mode, "batch": args.batch,
                      "devices": devices, "seconds_per_step": wall,
                      "ms_per_step_by_kind": {k: v / 1e3 / args.steps for k, v in kinds.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
