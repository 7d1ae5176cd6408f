"""Inference and training throughput of a registered model, the paper's against its Table 8.

    python benchmarks/throughput.py [--model dfer] [--batch-sizes 2,8,32] [--dtypes float32,bfloat16]
                                    [--repeats 5] [--frames N] [--image-size S] [--no-train]
                                    [--matmul-size N] [--cpu-devices -1]

The default model is the paper's full model (configs' defaults: ResNet18 with triplet attention,
key-point GCN, region fusion, temporal transformer; 16 frames of 112x112, Sec. 4.2); ``--model``
takes any registered one (``r3d18``, ``tdrag``, ``mfer``, ``lnlj``...), at its own section's frames
and image size unless ``--frames`` / ``--image-size`` say otherwise. For each dtype (the compute
dtype; parameters stay float32) and batch size it times

- inference: the jitted forward in eval mode, the clip's frames (uint8) and heat-maps (float16) already
  on the device, as predict and evaluation run it;
- training: engine.steps.make_train_step (forward, backward, Adam update, the non-finite guard) with
  the state donated, as train.py runs it;

Without an accelerator the host is split into one JAX CPU device per core (``--cpu-devices``, as
``runtime.cpu_devices=-1``) and the batch is data parallel over them. After a warm-up (compile plus
two calls), each repeat times about ``--seconds`` of calls, ending with ``block_until_ready``; the
median repeat is reported. FLOPs per sample come from XLA's cost analysis
of the compiled computation; achieved FLOP/s = FLOPs per sample x samples/s; the peak is a square
matrix product of the same dtype, timed beside the model in each repeat (a shared VM's speed drifts
within a minute), so MFU = achieved / measured peak, the median over the repeats.

Prints a table with, for ``dfer``, the paper's Table 8 row (RTX 3090: 52 samples/s inference; 6 h for
80 epochs of DFEW fold 1) beside ours, and for every model the time one training recipe would take at
the best training rate (its data set's training split: DFEW fold 1 for a video model, RAF-DB for a
still-image one; the model's recipe epochs, else the base config's 80); then one JSON line:
infer_samples_per_s, train_samples_per_s, flops_per_sample (inference), peak_flops, mfu (of the best
inference row), train_mfu (of the best training row), model, backend, device, recipe_hours (with
recipe_workload), and every row measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dferjax import models  # noqa: E402
from dferjax.config import base_config  # noqa: E402
from dferjax.engine.checkpoints import split_model  # noqa: E402
from dferjax.engine.mesh import cpu_device_count, make_mesh, replicate, to_global  # noqa: E402
from dferjax.engine.steps import initial_state, jit_eval_step, jit_train_step, make_optimizer  # noqa: E402

PAPER = {"device": "RTX 3090", "params_m": 17, "infer_samples_per_s": 52, "train_hours_80_epochs": 6}
DFEW_FOLD1_TRAIN = 9_356     # DFEW's 11,697 labelled clips, one fold (about a fifth) held out
RAFDB_TRAIN = 12_271         # RAF-DB basic's training images
EPOCHS = 80                  # Table 8's epochs, and the base config's


def workload(model_name: str, frames: int) -> tuple[str, int, int]:
    """(data set, training samples per epoch, epochs) of one training recipe of ``model_name`` at
    ``frames`` per sample: DFEW fold 1 for a video model, RAF-DB for a still-image one (one frame);
    the model's RECIPE epochs, else 80."""
    epochs = int(getattr(models.MODELS[model_name], "RECIPE", {}).get("train.epochs", EPOCHS))
    still = frames == 1
    return ("RAF-DB train", RAFDB_TRAIN, epochs) if still else ("DFEW fold 1", DFEW_FOLD1_TRAIN, epochs)


def machine() -> str:
    d = jax.devices()[0]
    if d.platform == "cpu":
        return f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores ({len(jax.devices())} JAX device)"
    return f"{len(jax.devices())} x {d.device_kind}"


def _flops(cost: Any) -> float:
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    return float((cost or {}).get("flops", 0.0) or 0.0)


def cost_flops(lowered: Any, compiled: Any, devices: int) -> float:
    """FLOPs of one call of the whole (global) computation, from XLA's cost analysis.

    The compiled program's analysis is of ONE device's partition of the SPMD program (the demo's eval
    step: 0.630 GFLOP on 1 device, 0.315 on 2, 0.157 on 4), so it is not used alone: the analysis of
    the lowered, unpartitioned program gives the global count (0.622 GFLOP for any device count).
    Where that is unavailable, the compiled count times the devices.
    """
    try:
        flops = _flops(lowered.cost_analysis())
    except Exception:  # noqa: BLE001 - not every backend analyses unoptimised HLO
        flops = 0.0
    return flops or _flops(compiled.cost_analysis()) * devices


def calls_for(call: Callable[[], Any], seconds: float) -> int:
    """Two warm-up calls of ``call`` (compilation, first-touch), then how many calls take about ``seconds``."""
    jax.block_until_ready(call())
    start = time.perf_counter()
    jax.block_until_ready(call())
    return max(1, int(seconds / max(time.perf_counter() - start, 1e-6)))


def seconds_per_call(call: Callable[[], Any], iters: int) -> float:
    """Mean seconds per call over ``iters`` calls, synchronised at the end."""
    start = time.perf_counter()
    out = None
    for _ in range(iters):
        out = call()
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / iters


def time_calls(call: Callable[[], Any], seconds: float, repeats: int) -> float:
    """Median seconds per call over ``repeats`` runs of about ``seconds`` each, after two warm-up calls that
    also size the runs."""
    iters = calls_for(call, seconds)
    return statistics.median(seconds_per_call(call, iters) for _ in range(repeats))


def peak_matmul(dtype: str, size: int) -> tuple[Callable[[], Any], float]:
    """(a call of one N x N x N matrix product in ``dtype`` on the default device, its FLOPs)."""
    key = jax.random.key(0)
    a = jax.random.normal(key, (size, size), jnp.float32).astype(dtype)
    b = jax.random.normal(jax.random.fold_in(key, 1), (size, size), jnp.float32).astype(dtype)
    matmul = jax.jit(lambda x, y: x @ y)
    return (lambda: matmul(a, b)), 2.0 * size ** 3


def peak_flops(dtype: str, size: int, repeats: int) -> float:
    """FLOP/s of an N x N x N matrix product in ``dtype`` on the default device."""
    call, flops = peak_matmul(dtype, size)
    return flops / time_calls(call, 1.0, repeats)


def make_batch(batch: int, spec: models.InputSpec, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A random batch of what the model declares it takes (heat-maps only where it takes them)."""
    n, size = spec.num_frames, spec.image_size
    out = {"frames": rng.integers(0, 256, (batch, n, size, size, 3), dtype=np.uint8),
           "label": rng.integers(0, spec.num_classes, batch).astype(np.int32), "valid": np.ones(batch, bool)}
    if spec.heatmap_size is not None:
        heat = spec.heatmap_size
        out["heatmaps"] = rng.random((batch, n, heat, heat, 18)).astype(np.float16)
    return out


def bench(config: Any, model: Any, batch: int, mode: str, seconds: float, repeats: int,
          peak: tuple[Callable[[], Any], float]) -> dict[str, Any]:
    """One row: the model's samples/s and its share of the matmul peak ``peak`` (a call and its FLOPs).

    Each of ``repeats`` rounds times about ``seconds / 2`` of the peak matmul and then about ``seconds`` of
    the model, back to back: the share of peak of a round compares the two at the same moment (this VM's
    speed drifts by +-20% within a minute), and the row reports the median round (``mfu``, ``peak_flops``,
    ``samples_per_s``: medians over the rounds)."""
    mesh = make_mesh()
    devices = len(jax.devices())
    if batch % devices:
        raise SystemExit(f"batch {batch} is not a multiple of the {devices} devices")
    graphdef, params, rest = split_model(model)
    host = make_batch(batch, models.input_spec(config.model), np.random.default_rng(0))
    data = to_global(host, mesh)
    if mode == "infer":
        state = replicate({"params": params, "rest": rest}, mesh)
        step = jit_eval_step(graphdef, mesh)
        lowered = step.lower(state, data)
        compiled = lowered.compile()

        def call():
            return compiled(state, data)["logits"]
    else:
        tx = make_optimizer(config, steps_per_epoch=1000)
        params, rest = jax.tree.map(jnp.array, (params, rest))       # copies: the step donates them
        box = {"state": replicate(initial_state(params, rest, tx), mesh)}
        step = jit_train_step(graphdef, tx, mesh)
        lowered = step.lower(box["state"], data)
        compiled = lowered.compile()

        def call():
            box["state"], metrics = compiled(box["state"], data)
            return metrics["loss"]

    flops = cost_flops(lowered, compiled, devices) / batch
    peak_call, peak_per_call = peak
    iters, peak_iters = calls_for(call, seconds), calls_for(peak_call, seconds / 2)
    per_call, peaks, shares = [], [], []
    for _ in range(repeats):
        peaks.append(peak_per_call / seconds_per_call(peak_call, peak_iters))
        per_call.append(seconds_per_call(call, iters))
        shares.append(flops * batch / per_call[-1] / peaks[-1])
    t = statistics.median(per_call)
    return {"mode": mode, "dtype": config.model.dtype, "batch": batch, "samples_per_s": batch / t,
            "ms_per_batch": 1e3 * t, "flops_per_sample": flops, "achieved_flops": flops * batch / t,
            "peak_flops": statistics.median(peaks), "mfu": statistics.median(shares),
            "mfu_rounds": shares, "best_samples_per_s": batch / min(per_call),
            "mfu_best": flops * batch / min(per_call) / max(peaks)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-sizes", default="", help="comma-separated (default 2,8,32 on CPU; 8,64,256,512 else)")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--model", default="dfer", choices=sorted(models.MODELS),
                        help="registered model (default dfer, the paper's)")
    parser.add_argument("--frames", type=int, default=0, help="frames per sample (default: the model's)")
    parser.add_argument("--image-size", type=int, default=0, help="image side (default: the model's)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0, help="about this long per timed repeat")
    parser.add_argument("--no-train", action="store_true", help="inference only")
    parser.add_argument("--matmul-size", type=int, default=0, help="peak matmul side (default 2048 CPU, 8192 else)")
    parser.add_argument("--cpu-devices", type=int, default=-1,
                        help="JAX CPU devices without an accelerator (runtime.cpu_devices; -1: one per core)")
    args = parser.parse_args(argv)
    cpu_batches = [int(b) for b in (args.batch_sizes or "2,8,32").split(",")]
    n = cpu_device_count(args.cpu_devices, os.cpu_count() or 1, tuple(cpu_batches))
    if n:
        jax.config.update("jax_num_cpu_devices", n)     # before JAX starts its backends
    backend = jax.default_backend()
    on_cpu = backend == "cpu"
    batches = cpu_batches if on_cpu else [int(b) for b in (args.batch_sizes or "8,64,256,512").split(",")]
    dtypes = [d for d in args.dtypes.split(",") if d]
    size = args.matmul_size or (2048 if on_cpu else 8192)
    print(f"backend {backend}; device: {machine()}; jax {jax.__version__}", flush=True)

    peaks = {d: peak_matmul(d, size) for d in dtypes}
    for d in dtypes:
        print(f"peak ({size}x{size} matmul, {d}) at the start: {peak_flops(d, size, args.repeats) / 1e9:,.1f} "
              "GFLOP/s (each row's share of peak is against the peak timed beside it)", flush=True)
    rows = []
    for dtype in dtypes:
        config = base_config(models.default_config())
        config.model.name = args.model
        section = models.model_section(config.model)
        args.frames, args.image_size = args.frames or section.num_frames, args.image_size or section.image_size
        section.update(num_frames=args.frames, image_size=args.image_size)
        config.data.num_segments = max(1, args.frames // config.data.frames_per_segment)
        config.model.dtype = dtype
        model = models.build_model(config.model, seed=0)
        for mode in ("infer",) + (() if args.no_train else ("train",)):
            for batch in batches:
                row = bench(config, model, batch, mode, args.seconds, args.repeats, peaks[dtype])
                rows.append(row)
                print(f"  {mode:5s} {dtype:8s} batch {batch:4d}: {row['samples_per_s']:9.1f} samples/s  "
                      f"{row['flops_per_sample'] / 1e9:6.2f} GFLOP/sample  "
                      f"{row['achieved_flops'] / 1e9:9.1f} GFLOP/s  {100 * row['mfu']:5.1f}% of peak "
                      f"({row['peak_flops'] / 1e9:,.0f} GFLOP/s beside it; rounds "
                      f"{', '.join(f'{100 * m:.0f}' for m in row['mfu_rounds'])}%)", flush=True)

    infer = max((r for r in rows if r["mode"] == "infer"), key=lambda r: r["samples_per_s"])
    trains = [r for r in rows if r["mode"] == "train"]
    best_train = max(trains, key=lambda r: r["samples_per_s"]) if trains else None
    data_name, per_epoch, epochs = workload(args.model, args.frames)
    hours = (epochs * per_epoch / best_train["samples_per_s"] / 3600) if best_train else None
    params_m = sum(x.size for x in jax.tree.leaves(split_model(model)[1])) / 1e6

    print()
    print(f"| | device | params (M) | inference (samples/s) | training (samples/s) | {epochs} epochs {data_name} |")
    print("|---|---|---|---|---|---|")
    if args.model == "dfer":
        paper_train = EPOCHS * DFEW_FOLD1_TRAIN / (PAPER["train_hours_80_epochs"] * 3600)
        print(f"| paper, Table 8 | {PAPER['device']} | {PAPER['params_m']} | {PAPER['infer_samples_per_s']} | "
              f"~{paper_train:.0f} (derived) | {PAPER['train_hours_80_epochs']} h |")
    train_txt = (f"{best_train['samples_per_s']:,.1f} ({best_train['dtype']}, batch {best_train['batch']})"
                 if best_train else "not run")
    hours_txt = (f"{hours:.2f} h ({60 * hours:.0f} min)" if hours is not None else "-")
    print(f"| dferjax {args.model} | {machine()} | {params_m:.2f} | {infer['samples_per_s']:,.1f} ({infer['dtype']}, batch "
          f"{infer['batch']}) | {train_txt} | {hours_txt} |")
    print(json.dumps({
        "infer_samples_per_s": infer["samples_per_s"],
        "train_samples_per_s": best_train["samples_per_s"] if best_train else None,
        "flops_per_sample": infer["flops_per_sample"],
        "peak_flops": infer["peak_flops"],
        "mfu": infer["mfu"],
        "train_mfu": best_train["mfu"] if best_train else None,
        "model": args.model,
        "backend": backend,
        "device": machine(),
        "frames": args.frames, "image_size": args.image_size, "params_m": params_m,
        "recipe_hours": hours, "recipe_workload": f"{epochs} epochs of {data_name} ({per_epoch} samples)",
        "dfew_fold1_80_epochs_hours": hours if (args.model, epochs) == ("dfer", EPOCHS) else None,
        "rows": rows,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
