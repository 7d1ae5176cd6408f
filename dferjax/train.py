"""Train and evaluate the model: ``python -m dferjax.train --config configs/dfew.py:fold=1 --workdir runs/dfew-1``.

Any registered model (``config.model.name``, default ``dfer``, the paper's). Section 4.2 of the paper:
batch 64, 80 epochs, Adam (b1 0.9, b2 0.99), learning rate 1e-3 times 0.1 at epochs 40 and 60, the
model's loss (Eq. 13 for ``dfer``); evaluated on the test split after every epoch, the best epoch
chosen by WAR as the peers do. All of these are config values (dferjax/config.py, dferjax/models).

Where the weights start from is said when training starts (printed; kept in every checkpoint's meta and in
results.json as ``weights``): random initialisation from ``train.seed``; a pretrained file
(``model.dfer.backbone_weights``: its path and sha256); or, fine-tuning, the checkpoint of
``train.init_checkpoint``. The paper does not say how its backbone starts (README, "Reproducing the paper").

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

On a shared cluster (dferjax.jobs, README "Runs on a shared cluster"): the workdir is locked for one
run; SIGTERM/SIGINT stop after the current step with a save and exit status 75 (re-queue); a failed
background save stops the run at the next step in one line; a record that fails is named with its clip.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import resource
import signal
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
from tqdm import tqdm

from dferjax import jobs, models
from dferjax.config import MAY_CHANGE_ON_RESUME, add_config_arguments, check_values, parse_args_with_config
from dferjax.data import dataset
from dferjax.data import input_pipeline as ip
from dferjax.data.dataset import DataConfigError
from dferjax.data.records import CorruptRecordError
from dferjax.engine import checkpoints as ckpt
from dferjax.engine.evaluation import evaluate_split
from dferjax.engine.inputs import clip_of_record, example_spec, open_data, record_metadata
from dferjax.engine.mesh import initialize_distributed, make_mesh, replicate, set_cpu_devices, to_global
from dferjax.engine.steps import (initial_model, initial_state, jit_eval_step, jit_train_step,
                                  learning_rate_schedule, make_optimizer)
from dferjax.figures import plot_confusion
from dferjax.models import VARIANTS, ModelConfigError, apply_variant, check_config, variant_of

FAULT_ENV = "DFERJAX_KILL_AFTER_CHECKPOINT"
"""Fault injection for tests: SIGKILL the process right after the checkpoint of this step is written."""
SIGNAL_ENV = "DFERJAX_SIGTERM_AFTER_STEP"
"""Fault injection for tests: the process sends itself SIGTERM after this step (as a scheduler would)."""
FILE_SIZE_ENV = "DFERJAX_FILE_SIZE_LIMIT_AFTER_CHECKPOINT"
"""Fault injection for tests, ``STEP:BYTES``: once the checkpoint of STEP is written, the kernel refuses
to grow any file of this process beyond BYTES (RLIMIT_FSIZE; the write fails with EFBIG, as a full
disk fails with ENOSPC)."""


class TrainingError(RuntimeError):
    """The run cannot go on (diverged loss, inconsistent workdir)."""


# --- the run ------------------------------------------------------------------------------------

class Logger:
    """metrics.jsonl and TensorBoard (process 0 only); lines past ``resume_step`` are dropped on resume."""

    def __init__(self, workdir: Path, resume_step: int, enabled: bool, drop_eval_at_resume: bool = False):
        self.enabled = enabled
        self.path = workdir / ckpt.METRICS_FILE
        self.tb = None
        if not enabled:
            return
        if self.path.exists():
            kept = []
            for line in self.path.read_text().splitlines():
                try:
                    record = json.loads(line)
                    if record.get("step", 0) < resume_step or record.get("step", 0) == resume_step and not (
                            drop_eval_at_resume and record.get("kind") == "eval"):
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


def check_labels(config: ml_collections.ConfigDict, variant_given: bool = False) -> None:
    """``fold`` and ``variant`` label a run's results (results.json, k-fold summaries).

    ``fold`` is set by a config file's argument (``configs/dfew.py:fold=3``), which sets the splits
    too; an override that would only relabel the run is refused. ``variant`` (Table 9) is derived
    from the switches ``model.dfer.gcn`` and ``model.dfer.temporal`` (and ``fusion = 'structure'``),
    so it can never disagree with them: an override ``--config.variant=A`` applies A's switches,
    after any other override.

    Args:
      config: the parsed config (its ``variant`` is set here).
      variant_given: ``--config.variant`` was given on the command line.
    Raises:
      ValueError: naming the key, what it disagrees with and how to set it.
    """
    if config.fold and tuple(config.data.test_splits) != (f"fold{config.fold}",):
        raise ValueError(f"config key fold = {config.fold} does not match data.test_splits = "
                         f"{tuple(config.data.test_splits)}: set the fold as the config file's argument "
                         f"(e.g. configs/dfew.py:fold={config.fold}), which sets the splits too")
    if config.model.name != "dfer":
        config.variant = ""
        return
    if variant_given and config.variant:
        if config.variant not in VARIANTS:
            raise ValueError(f"config key variant = {config.variant!r} is not one of {sorted(VARIANTS)} (Table 9)")
        apply_variant(config.model.dfer, config.variant)
    config.variant = variant_of(config.model.dfer)


# --- where the weights start from ----------------------------------------------------------------

WEIGHTS_KEY_SUFFIX = "_weights"
"""A model section's keys naming a pretrained weights file end so (``model.dfer.backbone_weights``); a model
class may instead list them in ``WEIGHTS_KEYS`` (its section's keys)."""


def weights_keys(config: ml_collections.ConfigDict) -> dict[str, str]:
    """The selected model's settings that name pretrained weights files: {config key: value ("" = unset)}.

    The keys are the model class's ``WEIGHTS_KEYS`` where it declares them, else its section's keys
    ending in ``_weights`` (``model.dfer.backbone_weights``).
    """
    section = models.model_section(config.model)
    keys = getattr(models.model_class(config.model), "WEIGHTS_KEYS", None)
    if keys is None:
        keys = [k for k in section if k.endswith(WEIGHTS_KEY_SUFFIX)]
    return {f"model.{config.model.name}.{k}": str(section.get(k) or "") for k in keys}


def file_sha256(path: str | Path) -> str:
    """The hex sha256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with Path(path).expanduser().open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_origin(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """Where the model's starting weights come from, as training reports it (engine.steps.initial_model
    loads them).

    Returns:
      ``{"init": "random" | "pretrained" | "checkpoint", "seed": train.seed, "files": [{"key", "path",
      "sha256"}], "checkpoint": RUN/best/STEP or None, "text": the sentence printed}``. ``checkpoint``
      (``train.init_checkpoint``, fine-tuning) replaces every parameter, so a weights file is then
      listed but said to be overridden; the text names what that run itself started from where its
      results.json says.
    Raises:
      FileNotFoundError: a weights file is missing. CheckpointError: no checkpoint at init_checkpoint.
    """
    seed = int(config.train.seed)
    keys = weights_keys(config)
    files = [{"key": key, "path": str(Path(path).expanduser().resolve()), "sha256": file_sha256(path)}
             for key, path in keys.items() if path]
    named = "; ".join(f"{f['key'].rsplit('.', 1)[-1].removesuffix(WEIGHTS_KEY_SUFFIX) or 'weights'} from "
                      f"{f['path']} (sha256 {f['sha256']}, {f['key']})" for f in files)
    if config.train.init_checkpoint:
        run_dir, directory, step = ckpt.find_checkpoint(config.train.init_checkpoint, "best")
        where = f"{directory}/{step}"
        earlier = recorded_origin(run_dir)
        text = f"fine-tuned: every parameter from the checkpoint {where} (train.init_checkpoint)"
        if files:
            text += f", which overrides {', '.join(f['key'] for f in files)}"
        if earlier is not None:
            text += f"; that run started from: {earlier.get('text', '?')}"
        return {"init": "checkpoint", "seed": seed, "files": files, "checkpoint": where, "text": text}
    if files:
        return {"init": "pretrained", "seed": seed, "files": files, "checkpoint": None,
                "text": f"{named}; every other parameter random (train.seed {seed})"}
    unset = f" ({', '.join(k + ' is empty' for k in keys)})" if keys else ""
    return {"init": "random", "seed": seed, "files": [], "checkpoint": None,
            "text": f"random initialisation (train.seed {seed}), no pretrained weights{unset}"}


def recorded_origin(run_dir: str | Path) -> dict[str, Any] | None:
    """The weights origin a run recorded (``weights`` in its results.json), or None (none, or a run made before)."""
    path = Path(run_dir) / ckpt.RESULTS_FILE
    try:
        weights = json.loads(path.read_text()).get("weights")
    except (OSError, ValueError, AttributeError):
        return None
    return weights if isinstance(weights, dict) else None


def build_demo_set(config: ml_collections.ConfigDict) -> None:
    """Draw the synthetic demo set into data.dir when the config has a ``synthetic`` section and the
    directory has no dataset_info.json yet; where it has one drawn with other counts or sizes than the
    config asks for, say in one line that the set there is used as it is (and how to draw the other)."""
    data_dir = Path(config.data.dir)
    if "synthetic" not in config or not config.data.dir:
        return
    if (data_dir / dataset.INFO_FILE).is_file():
        s, info = config.synthetic, dataset.read_info(data_dir)
        splits, prep = info.get("splits") or {}, info.get("prep") or {}
        have = (splits.get("train", {}).get("records"), splits.get("test", {}).get("records"), prep.get("image_size"))
        want = (s.num_train, s.num_test, s.image_size)
        if info.get("dataset") == "synthetic" and have != want:
            print(f"note: {data_dir} holds a synthetic set of {have[0]} train / {have[1]} test samples at "
                  f"{have[2]} px; the config asks for {want[0]} / {want[1]} at {want[2]} px: training on the set that is there "
                  f"(remove {data_dir}, or pass --config.data.dir=ANOTHER_FOLDER, to draw the one asked for)",
                  flush=True)
        return
    from dferjax.data.clips import PrepConfig
    from dferjax.data.synthetic import make_demo_set
    s = config.synthetic
    print(f"building the synthetic demo set in {data_dir} ...", flush=True)
    still = bool(s.get("still", False))
    make_demo_set(data_dir, num_train=s.num_train, num_test=s.num_test, seed=s.seed,
                  prep=PrepConfig(image_size=s.image_size, max_frames=1 if still else s.max_frames,
                                  min_frames=1 if still else min(s.max_frames, 16)),
                  workers=s.workers, progress=config.runtime.progress, still=still)


class Stopped(Exception):
    """The run stopped on SIGTERM/SIGINT after saving its state (exit status jobs.EXIT_REQUEUE)."""


class SaveFailed(TrainingError):
    """An asynchronous checkpoint save failed (e.g. a full disk): the run stops at the next step."""


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__


def _save_error(error: BaseException | str, directory: Path) -> SaveFailed:
    """One line for a failed save: the path, why, the free space there, the last complete checkpoint.

    Args:
      error: what failed (an OSError; orbax's error, whose tensorstore message holds the file and the
        OS error code; or a message).
      directory: ``RUN/checkpoints`` or ``RUN/best``.
    """
    if isinstance(error, str):
        what = error
    else:
        cause: BaseException | None = error
        while cause is not None and not isinstance(cause, OSError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:           # tensorstore: '... Failed writing: "FILE" ... [os_error_code='27']'
            code = re.search(r"os_error_code='(\d+)'", str(error))
            path = re.search(r'Failed (?:writing|to write)[^"]*"([^"]+)"', str(error))
            if code:
                cause = OSError(int(code.group(1)), os.strerror(int(code.group(1))),
                                path.group(1) if path else str(directory))
        what = jobs.disk_error(cause, directory) if cause is not None else \
            f"writing {directory} failed: {_first_line(error)}"
    steps = ckpt.complete_steps(directory.parent / ckpt.LATEST_DIR)
    kept = f"the last complete checkpoint is step {steps[0]}" if steps else "no checkpoint is complete yet"
    return SaveFailed(f"saving a checkpoint: {what}; the run stopped and {kept}: fix this and run the same "
                      "command to resume")


def resume(workdir: Path, config: ml_collections.ConfigDict, state: Any, main_process: bool
           ) -> tuple[Any, dict[str, Any], Any, Any]:
    """Open the run's checkpoint managers and restore the newest complete latest checkpoint, if any.

    A save interrupted by a crash is set aside (the newest complete step is used); a checkpoint that
    cannot be restored is set aside and the next older one tried. The best evaluation is the one
    ``best/`` holds (a best save that failed is not named).

    Returns:
      (state, meta, latest manager, best manager); meta ``{"epoch", "position", "best", "last"}``.
    Raises:
      TrainingError: the workdir holds a run of another config, or none of its checkpoints restores.
    """
    if (workdir / ckpt.CONFIG_FILE).is_file() and (workdir / ckpt.LATEST_DIR).is_dir():
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
    if latest.latest_step() is None:
        return state, meta, latest, best_mngr
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
    while latest.latest_step() is not None:
        step0 = latest.latest_step()
        try:
            state, meta = ckpt.restore(latest, step0, abstract)
            break
        except (OSError, ValueError, KeyError, RuntimeError) as error:      # damaged: the next older one
            latest.close()
            target = ckpt.set_aside(workdir / ckpt.LATEST_DIR, step0)
            ckpt.note(f"{workdir / ckpt.LATEST_DIR / str(step0)} cannot be restored ({_first_line(error)[:160]}); "
                      f"set aside as {target.name}")
            latest = ckpt.manager(workdir / ckpt.LATEST_DIR, max_to_keep=2)
    else:
        raise TrainingError(f"no checkpoint in {workdir / ckpt.LATEST_DIR} can be restored: use a new --workdir")
    best_step = best_mngr.latest_step()
    meta["best"] = ckpt.restore_meta(best_mngr, best_step).get("best") if best_step is not None else None
    print(f"resuming {workdir} from step {step0} (epoch {meta['epoch'] + 1}, batch {meta['position']})",
          flush=True)
    return state, meta, latest, best_mngr


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | Path,
                       stop: jobs.StopSignals | None = None) -> dict[str, Any]:
    """The whole run; returns results.json's content. Resumes from ``workdir`` if it holds a run.

    Args:
      config: the checked config.
      workdir: the run directory (checked and locked by :func:`main`).
      stop: the signal handler whose first signal stops the run after the current step, with a save.
    Raises:
      Stopped: after a signal, once the state is saved.
      TrainingError: a diverged loss (SaveFailed: a checkpoint save failed), a workdir of another run.
      DataConfigError, CorruptRecordError: the data cannot be used.
    """
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
    test_meta = record_metadata(data["test"], int(config.model.num_classes))
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

    state, meta, latest, best_mngr = resume(workdir, config, state, main_process)
    if latest.latest_step() is None and main_process:
        ckpt.save_config(workdir, config)
    if main_process:
        ckpt.save_data_info(workdir, data["info"])
    step = int(jax.device_get(state["step"]))
    logger = Logger(workdir, step, main_process,
                    drop_eval_at_resume=meta["position"] == steps_per_epoch)
    # Where the weights started from, said at every start and kept in the checkpoints' meta: a resumed run
    # repeats what its start recorded (the files may have changed since; its weights did not come from them).
    recorded = isinstance(meta.get("weights"), dict) and step > 0
    if not recorded:
        meta["weights"] = weights_origin(config)
    origin = meta["weights"]
    if main_process:
        print(f"weights: {origin['text']}{' (recorded when the run started)' if recorded else ''}", flush=True)
    schedule = learning_rate_schedule(config, steps_per_epoch)
    last_saved = step if latest.latest_step() is not None else None
    kill_at = int(os.environ.get(FAULT_ENV, "0") or 0)
    signal_at = int(os.environ.get(SIGNAL_ENV, "0") or 0)
    limit_at, limit_bytes = map(int, (os.environ.get(FILE_SIZE_ENV) or "0:0").split(":"))
    results_due = False         # results.json waits until the best checkpoint it names is complete

    def check_saves() -> None:
        """Raise SaveFailed for a finished background save that failed; write results.json once the
        best checkpoint it names is complete."""
        nonlocal results_due
        for mngr, directory in ((latest, ckpt.LATEST_DIR), (best_mngr, ckpt.BEST_DIR)):
            try:
                mngr.check_for_errors()
            except Exception as error:  # noqa: BLE001 - orbax re-raises the writer thread's error as it was
                raise _save_error(error, workdir / directory) from error
        if results_due and not best_mngr.is_saving_in_progress():
            results_due = False
            if main_process:
                write_results(workdir, config, class_names, meta, weights=origin)

    def start_save(mngr: Any, directory: str) -> None:
        """Check the disk has room, then start saving ``state`` and ``meta`` as ``step``."""
        problem = ckpt.save_problem(workdir / directory, state)
        if problem:
            raise _save_error(problem, workdir / directory)
        try:
            ckpt.save(mngr, step, state, meta)           # finishes in the background
        except Exception as error:  # noqa: BLE001 - the save's synchronous part, or the previous save's error
            raise _save_error(error, workdir / directory) from error

    def save_latest(epoch: int, position: int, evaluated: bool = True) -> None:
        """Save the state as the latest checkpoint with its data position (an epoch trained to its end
        and evaluated is saved as the start of the next; not evaluated, as its end: resuming evaluates)."""
        nonlocal last_saved
        if position == steps_per_epoch and evaluated:
            epoch, position = epoch + 1, 0
        meta.update(epoch=epoch, position=position)
        if step in latest.all_steps():      # this step saved before its evaluation: now after it
            latest.wait_until_finished()
            latest.delete(step)
        start_save(latest, ckpt.LATEST_DIR)
        last_saved = step
        if kill_at and step == kill_at:
            latest.wait_until_finished()
            os.kill(os.getpid(), signal.SIGKILL)
        if limit_at and step == limit_at:
            latest.wait_until_finished()
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    synced: dict[int, bool] = {}

    def stop_requested() -> bool:
        """A signal asks to stop. Several processes ask JAX's preemption sync point, once per step (as
        its protocol requires), so that all of them stop after the same step."""
        if processes > 1:
            if step not in synced:
                synced.clear()
                synced[step] = multihost_utils.reached_preemption_sync_point(step)
            return synced[step]
        return stop is not None and stop.received is not None

    pending: list[dict[str, jax.Array]] = []      # step metrics on the devices
    fetched: list[dict[str, np.ndarray]] = []       # ... fetched and checked, for the next log line

    def check_pending(epoch: int) -> None:
        """Fetch the step metrics since the last check; stop on a non-finite loss."""
        if not pending:
            return
        new = jax.device_get(pending)
        pending.clear()
        bad = [i for i, m in enumerate(new) if not bool(m["ok"])]
        if bad:
            first = step - len(new) + bad[0] + 1
            where = (f"the last good checkpoint is step {last_saved} in {workdir / ckpt.LATEST_DIR}"
                     if last_saved is not None else "no checkpoint had been saved yet")
            raise TrainingError(
                f"step {first} (epoch {epoch + 1}) gave a non-finite loss, gradient or parameters "
                f"(loss {float(new[bad[0]]['loss'])}); training stopped and that step was not applied; "
                f"{where}. Lower train.learning_rate or check the shards in {config.data.dir}.")
        fetched.extend(new)

    def log_train(epoch: int, tick: float, tick_step: int, bar: tqdm) -> None:
        """One train line: the mean of every step's metrics since the last line (its loss on the bar)."""
        check_pending(epoch)
        if not fetched:
            return
        logged = {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0] if k not in ("ok", "correct")}
        logged["train_accuracy"] = float(sum(m["correct"] for m in fetched)) / (len(fetched) * t.batch_size)
        fetched.clear()
        rate = (step - tick_step) * t.batch_size / max(time.perf_counter() - tick, 1e-9)
        logged.update(kind="train", epoch=epoch + 1, step=step, lr=float(schedule(step - 1)), samples_per_s=rate)
        logger.write(logged)
        bar.set_postfix(loss=f"{logged['loss']:.3f}")

    def evaluate_epoch(epoch: int) -> None:
        """Evaluate on the test splits, log, and save the best checkpoint; results.json follows once
        that save is complete (check_saves)."""
        nonlocal results_due
        try:
            report, _, _ = evaluate_split(eval_step, state, eval_data, mesh, test_meta, class_names,
                                          r.progress and main_process)
        except Exception as error:
            named = describe_record_error(data["test"], eval_data.indices(), spec, config.data.dir)
            if named is None:
                raise
            raise named from error
        report["epoch"] = epoch + 1
        meta["last"] = report
        improved = meta["best"] is None or report["war"] > meta["best"]["war"]
        if improved:
            meta["best"] = report
        logger.write({"kind": "eval", "epoch": epoch + 1, "step": step, "war": report["war"], "uar": report["uar"]})
        print(f"epoch {epoch + 1}: WAR {100 * report['war']:.2f}  UAR {100 * report['uar']:.2f}"
              f"{'  (best)' if improved else ''}", flush=True)
        if improved:            # best/ holds its own step's position: the start of the next epoch
            meta.update(epoch=epoch + 1, position=0)
            if step in best_mngr.all_steps():       # saved before a crash that came before the latest save
                best_mngr.delete(step)
            start_save(best_mngr, ckpt.BEST_DIR)
        results_due = True

    resumed_unevaluated = meta["position"] == steps_per_epoch   # stopped at an epoch's end before its evaluation
    start_epoch, position = meta["epoch"], meta["position"]
    started = time.perf_counter()
    stopped = False
    try:
        for epoch in range(start_epoch, t.epochs):
            if step >= total_steps and position < steps_per_epoch:
                break
            remaining = train_data.dataset(epoch, position) if position < steps_per_epoch else []
            batches = ip.prefetch(iter(remaining), 2, lambda b: to_global(b, mesh))
            ahead = train_data.order(epoch)[position * train_data.local_batch:][:64 * train_data.local_batch]
            batches = named_record_errors(batches, data["train"], ahead, spec, config.data.dir)
            bar = tqdm(total=steps_per_epoch, initial=position, desc=f"epoch {epoch + 1}/{t.epochs}",
                       disable=not (r.progress and main_process), leave=False)
            tick, tick_step = time.perf_counter(), step
            try:
                for batch in batches:
                    state, step_metrics = train_step(state, batch)
                    pending.append(step_metrics)
                    step += 1
                    position += 1
                    bar.update()
                    if signal_at and step == signal_at:
                        os.kill(os.getpid(), signal.SIGTERM)
                    check_saves()
                    stopped = stop_requested()
                    if stopped or step % r.log_every == 0 or position == steps_per_epoch or step == total_steps:
                        log_train(epoch, tick, tick_step, bar)
                        tick, tick_step = time.perf_counter(), step
                    if stopped or step >= total_steps:
                        break
                    if t.checkpoint_every and step % t.checkpoint_every == 0 and position < steps_per_epoch:
                        check_pending(epoch)
                        save_latest(epoch, position)
            finally:
                batches.close()
                bar.close()
            check_pending(epoch)
            finished_epoch = position == steps_per_epoch
            eval_due = finished_epoch and ((epoch + 1) % t.eval_every == 0 or epoch + 1 == t.epochs)
            if eval_due and stopped:
                # Stopped at the epoch's last step: save it as trained, not evaluated; resuming evaluates.
                save_latest(epoch, position, evaluated=False)
                break
            if eval_due:
                evaluate_epoch(epoch)
                stopped = stop_requested()
            if last_saved != step or finished_epoch and resumed_unevaluated:
                save_latest(epoch, position)
            resumed_unevaluated = False
            if stopped:
                break
            if finished_epoch:
                position = 0
        latest.wait_until_finished()
        best_mngr.wait_until_finished()
        check_saves()               # and results.json, now that no save is in progress
    finally:
        for mngr in (latest, best_mngr):
            try:
                mngr.wait_until_finished()
                mngr.close()
            except Exception:  # noqa: BLE001 - already reported by check_saves, or the run failed first
                pass
        logger.close()
    if stopped:
        raise Stopped(f"stopped at step {step} (epoch {meta['epoch'] + 1}, batch {meta['position']}); its "
                      f"checkpoint is saved in {workdir / ckpt.LATEST_DIR}: run the same command to resume")
    elapsed = time.perf_counter() - started
    if main_process and meta["best"] is not None:
        write_results(workdir, config, class_names, meta, figure=True, weights=origin)
    results = results_dict(config, class_names, meta, origin)
    results["train_seconds"] = elapsed
    return results


def named_record_errors(batches: Iterator[Any], source: Any, order: np.ndarray, spec: ip.ExampleSpec,
                        data_dir: str) -> Iterator[Any]:
    """``batches``, with an error of reading a record replaced by one that names the record (see
    :func:`describe_record_error`); other errors pass as they are."""
    try:
        yield from batches
    except Exception as error:
        named = describe_record_error(source, order, spec, data_dir)
        if named is None:
            raise
        raise named from error
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()


def describe_record_error(source: Any, order: np.ndarray, spec: ip.ExampleSpec, data_dir: str
                          ) -> TrainingError | None:
    """The record the input pipeline could not use, found and named: shard, record, clip (from the
    manifest), what is wrong and what to do; None when every record of ``order`` reads well.

    The pipeline reads ahead, so the record that failed is found again by reading the records of
    ``order`` (record indices in reading order, -1 for padding) as the pipeline does, until one fails.
    """
    found = ip.find_bad_record(source, order, spec)
    if found is None:
        return None
    index, problem = found
    shard, record = source.locate(index)
    clip = clip_of_record(data_dir, shard, record)
    return TrainingError(f"shard {shard}, record {record}{f' (clip {clip})' if clip else ''}: "
                         f"{_first_line(problem)}; rebuild the shards with data_prep (the same command resumes "
                         "and rebuilds the damaged shards only)")


def results_dict(config: ml_collections.ConfigDict, class_names: list[str], meta: dict[str, Any],
                 weights: dict[str, Any] | None = None) -> dict[str, Any]:
    """results.json's content; ``weights``: where the weights started from (:func:`weights_origin`)."""
    variant = config.variant if config.model.name == "dfer" else ""     # Table 9 labels the paper's model only
    return {"dataset": config.dataset, "fold": config.fold or None, "variant": variant,
            "model": config.model.name,
            "split": "+".join(config.data.test_splits), "class_names": class_names,
            "best": meta.get("best"), "last": meta.get("last"), "weights": weights}


def write_results(workdir: Path, config: ml_collections.ConfigDict, class_names: list[str],
                  meta: dict[str, Any], figure: bool = False, weights: dict[str, Any] | None = None) -> None:
    """results.json after every evaluation; with ``figure``, at the end of the run, the best epoch's
    confusion matrix as confusion.png (0.7 s of matplotlib, so not every epoch)."""
    results = results_dict(config, class_names, meta, weights)
    tmp = workdir / (ckpt.RESULTS_FILE + ".tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(workdir / ckpt.RESULTS_FILE)
    if figure and meta.get("best") is not None:
        plot_confusion(meta["best"]["confusion"], class_names, workdir / ckpt.CONFUSION_FILE,
                       title=f"{config.dataset} {' '.join(config.data.test_splits)}, "
                             f"epoch {meta['best']['epoch']}")


def main(argv: list[str] | None = None) -> int:
    """The command; returns the exit status (see dferjax.jobs: 0 done, 1 error, 2 usage, 75 stopped)."""
    parser = argparse.ArgumentParser(prog="python -m dferjax.train", description=__doc__.split("\n")[0])
    add_config_arguments(parser)
    parser.add_argument("--workdir", required=True, help="run directory: checkpoints, metrics, results")
    parser.add_argument("--coordinator", help="host:port of process 0 (several hosts)")
    parser.add_argument("--num-processes", type=int, help="number of processes (several hosts)")
    parser.add_argument("--process-id", type=int, help="this process's index (several hosts)")
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args, config = parse_args_with_config(parser, argv)
        check_config(config.model)
        check_values(config)
        check_labels(config, variant_given=any(a.startswith("--config.variant=") for a in argv))
        example_spec(config)
    except (KeyError, TypeError, ValueError, FileNotFoundError, AttributeError) as error:
        parser.error(str(error).strip('"'))
    workdir = Path(args.workdir)
    set_cpu_devices(config.runtime.cpu_devices, (config.train.batch_size, config.train.eval_batch_size))
    initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    print(f"{jax.process_count()} process(es), {len(jax.devices())} {jax.devices()[0].platform} device(s); "
          f"workdir {workdir}", flush=True)
    processes = jax.process_count()
    # One process writes the workdir: process 0 checks and locks it. Several processes stop on the
    # scheduler's SIGTERM through JAX's preemption sync point (all at the same step), not a handler.
    stop = jobs.StopSignals("finishing the current step, then saving a checkpoint and exiting",
                            signals=() if processes > 1 else (signal.SIGTERM, signal.SIGINT))
    try:
        if jax.process_index() == 0:
            jobs.check_output_folder(workdir, "--workdir")
            lock: Any = jobs.FolderLock(workdir, "--workdir")
        else:
            lock = contextlib.nullcontext()
        with lock, stop, ckpt.quiet_failed_saves():
            results = train_and_evaluate(config, workdir, stop)
    except ModelConfigError as error:
        parser.error(str(error))
    except Stopped as stopped:
        print(f"{stop.received or 'SIGTERM'}: {stopped} (exit status {jobs.EXIT_REQUEUE}: re-queue)",
              file=sys.stderr, flush=True)
        return jobs.EXIT_REQUEUE
    except jobs.Interrupted as interrupted:     # while the demo set was being built
        print(f"{interrupted} (exit status {jobs.EXIT_REQUEUE}: re-queue)", file=sys.stderr, flush=True)
        return jobs.EXIT_REQUEUE
    except (TrainingError, DataConfigError, ckpt.CheckpointError, jobs.FolderError, CorruptRecordError,
            dataset.WorkerError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        if not jobs.is_disk_error(error):
            raise
        print(f"error: {jobs.disk_error(error, workdir)}; the run stopped: fix this and run the same command to "
              "resume", file=sys.stderr)
        return 1
    best, last = results["best"], results["last"]
    if best is None:
        print(f"trained {results['train_seconds']:.0f} s; no evaluation yet")
        return 0
    print(f"done in {results['train_seconds']:.0f} s. best epoch {best['epoch']}: WAR {100 * best['war']:.2f}%  "
          f"UAR {100 * best['uar']:.2f}%; last epoch {last['epoch']}: WAR {100 * last['war']:.2f}%  "
          f"UAR {100 * last['uar']:.2f}%  ({workdir / ckpt.RESULTS_FILE})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
