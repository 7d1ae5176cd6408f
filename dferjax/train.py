"""Train and evaluate the model: ``python -m dferjax.train --config configs/dfew.py:fold=1 --workdir runs/dfew-1``.

Any registered model (``config.model.name``, default ``dfer``, the paper's). Section 4.2 of the paper:
batch 64, 80 epochs, Adam (b1 0.9, b2 0.99), learning rate 1e-3 times 0.1 at epochs 40 and 60, the
model's loss (Eq. 13 for ``dfer``); evaluated on the test split after every epoch, the best epoch
chosen by WAR as the peers do. All of these are config values (dferjax/config.py, dferjax/models).

Data parallel (docs/DESIGN.md, dferjax.engine): one ``jax.sharding.Mesh`` over every device of every
process with a single ``data`` axis; the global batch is sharded over it, the train state is
replicated, and the jitted step donates the old state. Several hosts: ``jax.distributed.initialize``
runs when a cluster is detected or ``--coordinator/--num-processes/--process-id`` are given; each
process reads its own slice of every global batch (input_pipeline.TrainData). A config with a
``synthetic`` section (configs/demo.py) draws the demo set into ``data.dir`` when it is not there.

Checkpoints (orbax, dferjax.checkpoints): the latest ones every ``train.checkpoint_every`` steps and at
each epoch's end, and the best by WAR; each holds the data position, so running the same command
again resumes where the run stopped, with the same data order. A step whose loss is not finite is
not applied; the run stops at the next check, says where, and keeps the last good checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
from tqdm import tqdm

from dferjax.config import MAY_CHANGE_ON_RESUME, add_config_arguments, parse_args_with_config
from dferjax.data import dataset
from dferjax.data import input_pipeline as ip
from dferjax.data.dataset import DataConfigError
from dferjax.data.records import CorruptRecordError
from dferjax.engine import checkpoints as ckpt
from dferjax.engine.evaluation import evaluate_split
from dferjax.engine.inputs import open_data, record_metadata
from dferjax.engine.mesh import initialize_distributed, make_mesh, replicate, set_cpu_devices, to_global
from dferjax.engine.steps import (initial_model, initial_state, jit_eval_step, jit_train_step,
                                  learning_rate_schedule, make_optimizer)
from dferjax.figures import plot_confusion
from dferjax.models import VARIANTS, ModelConfigError, check_config

FAULT_ENV = "DFERJAX_KILL_AFTER_CHECKPOINT"
"""Fault injection for tests: SIGKILL the process right after the checkpoint of this step is written."""


class TrainingError(RuntimeError):
    """The run cannot go on (diverged loss, inconsistent workdir)."""


# --- the run ------------------------------------------------------------------------------------

class Logger:
    """metrics.jsonl and TensorBoard (process 0 only); lines past ``resume_step`` are dropped on resume."""

    def __init__(self, workdir: Path, resume_step: int, enabled: bool):
        self.enabled = enabled
        self.path = workdir / ckpt.METRICS_FILE
        self.tb = None
        if not enabled:
            return
        if self.path.exists():
            kept = []
            for line in self.path.read_text().splitlines():
                try:
                    if json.loads(line).get("step", 0) <= resume_step:
                        kept.append(line)
                except json.JSONDecodeError:
                    continue
            self.path.write_text("".join(k + "\n" for k in kept))
        try:
            from tensorboardX import SummaryWriter
            self.tb = SummaryWriter(str(workdir / ckpt.TENSORBOARD_DIR), purge_step=resume_step or None)
        except ImportError:
            print("note: tensorboardX is not installed; TensorBoard files are not written "
                  "(pip install tensorboardX)", file=sys.stderr)

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for key, value in record.items():
                if key not in ("kind", "epoch", "step") and isinstance(value, (int, float)) and value is not None:
                    self.tb.add_scalar(f"{record['kind']}/{key}", value, record["step"])
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def check_labels(config: ml_collections.ConfigDict) -> None:
    """``fold`` and ``variant`` label a run's results (results.json, k-fold summaries); they are set by
    a config file's argument (``configs/dfew.py:fold=3,variant=D``), which also sets the splits and the
    switches. Refuse an override that would only relabel the run.

    Raises:
      ValueError: naming the key, what it disagrees with and how to set it.
    """
    if config.fold and tuple(config.data.test_splits) != (f"fold{config.fold}",):
        raise ValueError(f"config key fold = {config.fold} does not match data.test_splits = "
                         f"{tuple(config.data.test_splits)}: set the fold as the config file's argument "
                         f"(e.g. configs/dfew.py:fold={config.fold}), which sets the splits too")
    if config.variant and config.model.name == "dfer":
        if config.variant not in VARIANTS:
            raise ValueError(f"config key variant = {config.variant!r} is not one of {sorted(VARIANTS)} (Table 9)")
        switches = {k: config.model.dfer[k] for k in VARIANTS[config.variant]}
        if switches != VARIANTS[config.variant]:
            raise ValueError(f"config key variant = {config.variant!r} (Table 9: {VARIANTS[config.variant]}) does not "
                             f"match model.dfer {switches}: set the variant as the config file's argument (e.g. "
                             f"configs/dfew.py:variant={config.variant}), which sets the switches too, or "
                             "--config.variant='' for a combination of your own")


def build_demo_set(config: ml_collections.ConfigDict) -> None:
    """Draw the synthetic demo set into data.dir when the config has a ``synthetic`` section and the
    directory has no dataset_info.json yet."""
    data_dir = Path(config.data.dir)
    if "synthetic" not in config or not config.data.dir or (data_dir / dataset.INFO_FILE).is_file():
        return
    from dferjax.data.clips import PrepConfig
    from dferjax.data.synthetic import make_demo_set
    s = config.synthetic
    print(f"building the synthetic demo set in {data_dir} ...", flush=True)
    make_demo_set(data_dir, num_train=s.num_train, num_test=s.num_test, seed=s.seed,
                  prep=PrepConfig(image_size=s.image_size, max_frames=s.max_frames, min_frames=min(s.max_frames, 16)),
                  workers=s.workers, progress=config.runtime.progress)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | Path) -> dict[str, Any]:
    """The whole run; returns results.json's content. Resumes from ``workdir`` if it holds a run."""
    workdir = Path(workdir)
    t, r = config.train, config.runtime
    build_demo_set(config)
    data = open_data(config)
    process, processes = jax.process_index(), jax.process_count()
    main_process = process == 0
    mesh = make_mesh()
    if t.batch_size % len(jax.devices()) or t.eval_batch_size % len(jax.devices()):
        raise DataConfigError(f"train.batch_size ({t.batch_size}) and train.eval_batch_size "
                                 f"({t.eval_batch_size}) must be multiples of the {len(jax.devices())} devices")
    spec = data["spec"]
    cache = bool(r.cache_decoded)
    if cache and r.num_workers:
        print("note: runtime.cache_decoded keeps decoded frames in this process; with runtime.num_workers > 0 "
              "each worker decodes afresh every epoch (set runtime.num_workers = 0 to use the cache)", flush=True)
    train_data = ip.TrainData(data["train"], spec, t.batch_size, seed=t.seed, process_index=process,
                              process_count=processes, num_workers=r.num_workers, cache=cache)
    eval_data = ip.EvalData(data["test"], spec, t.eval_batch_size, process_index=process,
                            process_count=processes, num_workers=r.num_workers, cache=cache)
    class_names = data["class_names"]
    test_meta = record_metadata(data["test"])
    steps_per_epoch = train_data.steps_per_epoch
    total_steps = steps_per_epoch * t.epochs
    if t.max_steps:
        total_steps = min(total_steps, t.max_steps)

    # Model, optimizer and state.
    graphdef, params, rest = initial_model(config)
    tx = make_optimizer(config, steps_per_epoch)
    state = replicate(initial_state(params, rest, tx), mesh)
    train_step = jit_train_step(graphdef, tx, mesh)
    eval_step = jit_eval_step(graphdef, mesh)

    # Resume.
    saved_config = workdir / ckpt.CONFIG_FILE
    if saved_config.is_file() and (workdir / ckpt.LATEST_DIR).is_dir():
        diff = ckpt.run_differences(ckpt.load_run_config(workdir), config, MAY_CHANGE_ON_RESUME)
        if diff:
            raise TrainingError(f"{workdir} holds a run with another config ({'; '.join(diff)}): "
                                "use a new --workdir, or the same config to resume")
    if main_process:        # a save interrupted by a crash: resume from the newest complete step
        for directory in (ckpt.LATEST_DIR, ckpt.BEST_DIR):
            ckpt.set_aside_incomplete(workdir / directory)
    latest = ckpt.manager(workdir / ckpt.LATEST_DIR, max_to_keep=2)
    best_mngr = ckpt.manager(workdir / ckpt.BEST_DIR, max_to_keep=1)
    meta: dict[str, Any] = {"epoch": 0, "position": 0, "best": None, "last": None}
    if latest.latest_step() is not None:
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
        while latest.latest_step() is not None:
            step0 = latest.latest_step()
            try:
                state, meta = ckpt.restore(latest, step0, abstract)
                break
            except (OSError, ValueError, KeyError, RuntimeError) as error:      # damaged: the next older one
                latest.close()
                target = ckpt.set_aside(workdir / ckpt.LATEST_DIR, step0)
                ckpt.note(f"{workdir / ckpt.LATEST_DIR / str(step0)} cannot be restored "
                          f"({str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__}); "
                          f"set aside as {target.name}")
                latest = ckpt.manager(workdir / ckpt.LATEST_DIR, max_to_keep=2)
        else:
            raise TrainingError(f"no checkpoint in {workdir / ckpt.LATEST_DIR} can be restored: "
                                "use a new --workdir")
        print(f"resuming {workdir} from step {step0} (epoch {meta['epoch'] + 1}, batch {meta['position']})",
              flush=True)
    elif main_process:
        ckpt.save_config(workdir, config)
    if main_process:
        ckpt.save_data_info(workdir, data["info"])
    step = int(jax.device_get(state["step"]))
    logger = Logger(workdir, step, main_process)
    schedule = learning_rate_schedule(config, steps_per_epoch)
    last_saved = step if latest.latest_step() is not None else None
    kill_at = int(os.environ.get(FAULT_ENV, "0") or 0)

    def save_latest(epoch: int, position: int) -> None:
        nonlocal last_saved
        if position == steps_per_epoch:
            epoch, position = epoch + 1, 0
        meta.update(epoch=epoch, position=position)
        ckpt.save(latest, step, state, meta)         # finishes in the background
        last_saved = step
        if kill_at and step == kill_at:
            latest.wait_until_finished()
            os.kill(os.getpid(), signal.SIGKILL)

    pending: list[dict[str, jax.Array]] = []

    def check_pending(epoch: int) -> dict[str, float] | None:
        """Fetch the step metrics since the last check; stop on a non-finite loss."""
        if not pending:
            return None
        fetched = jax.device_get(pending)
        pending.clear()
        bad = [i for i, m in enumerate(fetched) if not bool(m["ok"])]
        if bad:
            first = step - len(fetched) + bad[0] + 1
            where = (f"the last good checkpoint is step {last_saved} in {workdir / ckpt.LATEST_DIR}"
                     if last_saved is not None else "no checkpoint had been saved yet")
            raise TrainingError(
                f"step {first} (epoch {epoch + 1}) gave a non-finite loss, gradient or parameters "
                f"(loss {float(fetched[bad[0]]['loss'])}); training stopped and that step was not applied; "
                f"{where}. Lower train.learning_rate or check the shards in {config.data.dir}.")
        n = len(fetched)
        out = {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0] if k not in ("ok", "correct")}
        out["train_accuracy"] = float(sum(m["correct"] for m in fetched)) / (n * t.batch_size)
        return out

    start_epoch, position = meta["epoch"], meta["position"]
    started = time.perf_counter()
    try:
        for epoch in range(start_epoch, t.epochs):
            if step >= total_steps:
                break
            batches = ip.prefetch(iter(train_data.dataset(epoch, position)), 2, lambda b: to_global(b, mesh))
            bar = tqdm(total=steps_per_epoch, initial=position, desc=f"epoch {epoch + 1}/{t.epochs}",
                       disable=not (r.progress and main_process), leave=False)
            tick, tick_step = time.perf_counter(), step
            for batch in batches:
                state, step_metrics = train_step(state, batch)
                pending.append(step_metrics)
                step += 1
                position += 1
                bar.update()
                if step % r.log_every == 0 or position == steps_per_epoch or step == total_steps:
                    logged = check_pending(epoch)
                    now = time.perf_counter()
                    rate = (step - tick_step) * t.batch_size / max(now - tick, 1e-9)
                    tick, tick_step = now, step
                    logged.update(kind="train", epoch=epoch + 1, step=step, lr=float(schedule(step - 1)),
                                  samples_per_s=rate)
                    logger.write(logged)
                    bar.set_postfix(loss=f"{logged['loss']:.3f}")
                if t.checkpoint_every and step % t.checkpoint_every == 0 and position < steps_per_epoch:
                    check_pending(epoch)
                    save_latest(epoch, position)
                if step >= total_steps:
                    break
            bar.close()
            finished_epoch = position == steps_per_epoch
            if finished_epoch and ((epoch + 1) % t.eval_every == 0 or epoch + 1 == t.epochs):
                report, _, _ = evaluate_split(eval_step, state, eval_data, mesh, test_meta, class_names,
                                              r.progress and main_process)
                report["epoch"] = epoch + 1
                meta["last"] = report
                improved = meta["best"] is None or report["war"] > meta["best"]["war"]
                if improved:
                    meta["best"] = report
                logger.write({"kind": "eval", "epoch": epoch + 1, "step": step, "war": report["war"],
                              "uar": report["uar"]})
                print(f"epoch {epoch + 1}: WAR {100 * report['war']:.2f}  UAR {100 * report['uar']:.2f}"
                      f"{'  (best)' if improved else ''}", flush=True)
                if main_process:
                    write_results(workdir, config, class_names, meta)
                if improved:
                    ckpt.save(best_mngr, step, state, meta)
            check_pending(epoch)
            if last_saved != step:
                save_latest(epoch, position)
            if finished_epoch:
                position = 0
    finally:
        latest.wait_until_finished()
        best_mngr.wait_until_finished()
        latest.close()
        best_mngr.close()
        logger.close()
    elapsed = time.perf_counter() - started
    if main_process and meta["best"] is not None:
        write_results(workdir, config, class_names, meta, figure=True)
    results = results_dict(config, class_names, meta)
    results["train_seconds"] = elapsed
    return results


def results_dict(config: ml_collections.ConfigDict, class_names: list[str], meta: dict[str, Any]) -> dict[str, Any]:
    variant = config.variant if config.model.name == "dfer" else ""     # Table 9 labels the paper's model only
    return {"dataset": config.dataset, "fold": config.fold or None, "variant": variant,
            "model": config.model.name,
            "split": "+".join(config.data.test_splits), "class_names": class_names,
            "best": meta.get("best"), "last": meta.get("last")}


def write_results(workdir: Path, config: ml_collections.ConfigDict, class_names: list[str],
                  meta: dict[str, Any], figure: bool = False) -> None:
    """results.json after every evaluation; with ``figure``, at the end of the run, the best epoch's
    confusion matrix as confusion.png (0.7 s of matplotlib, so not every epoch)."""
    results = results_dict(config, class_names, meta)
    tmp = workdir / (ckpt.RESULTS_FILE + ".tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(workdir / ckpt.RESULTS_FILE)
    if figure and meta.get("best") is not None:
        plot_confusion(meta["best"]["confusion"], class_names, workdir / ckpt.CONFUSION_FILE,
                       title=f"{config.dataset} {' '.join(config.data.test_splits)}, "
                             f"epoch {meta['best']['epoch']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dferjax.train", description=__doc__.split("\n")[0])
    add_config_arguments(parser)
    parser.add_argument("--workdir", required=True, help="run directory: checkpoints, metrics, results")
    parser.add_argument("--coordinator", help="host:port of process 0 (several hosts)")
    parser.add_argument("--num-processes", type=int, help="number of processes (several hosts)")
    parser.add_argument("--process-id", type=int, help="this process's index (several hosts)")
    try:
        args, config = parse_args_with_config(parser, argv)
        check_config(config.model)
        check_labels(config)
    except (KeyError, TypeError, ValueError, FileNotFoundError, AttributeError) as error:
        parser.error(str(error).strip('"'))
    set_cpu_devices(config.runtime.cpu_devices, (config.train.batch_size, config.train.eval_batch_size))
    initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    print(f"{jax.process_count()} process(es), {len(jax.devices())} {jax.devices()[0].platform} device(s); "
          f"workdir {args.workdir}", flush=True)
    try:
        results = train_and_evaluate(config, args.workdir)
    except ModelConfigError as error:
        parser.error(str(error))
    except (TrainingError, DataConfigError, ckpt.CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except CorruptRecordError as error:       # damaged after the start-up check (the shards are checked first)
        print(f"error: {error}", file=sys.stderr)
        return 1
    best, last = results["best"], results["last"]
    if best is None:
        print(f"trained {results['train_seconds']:.0f} s; no evaluation yet")
        return 0
    print(f"done in {results['train_seconds']:.0f} s. best epoch {best['epoch']}: WAR {100 * best['war']:.2f}%  "
          f"UAR {100 * best['uar']:.2f}%; last epoch {last['epoch']}: WAR {100 * last['war']:.2f}%  "
          f"UAR {100 * last['uar']:.2f}%  ({Path(args.workdir) / ckpt.RESULTS_FILE})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
