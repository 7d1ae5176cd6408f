"""Run directories and checkpoints: one layout for train, evaluate, plots and predict.

This module owns every file name of a run directory (``--workdir``)::

    config.json                 the full config the run was started with (checked on resume)
    data.json                   the shards' clip preparation (classes, PrepConfig, JPEG quality)
    checkpoints/<step>          latest checkpoints (orbax): {"state": train state, "meta": epoch, position, best}
    best/<step>                 the checkpoint of the best evaluation so far (by WAR, as the peers select)
    metrics.jsonl               one JSON object per log line: {"kind": "train"|"eval", "epoch", "step", ...}
    results.json                the best and the last evaluation (metrics.report plus "epoch")
    confusion.png               the best epoch's confusion matrix
    eval-<splits>.json / -confusion.png   ``python -m dferjax.evaluate --checkpoint`` results
    figures/                    ``python -m dferjax.plots --run`` figures
    tb/                         TensorBoard event files

The train state is the pytree ``{"step", "params", "rest", "opt_state"}``: ``params`` and ``rest`` (batch
norm statistics) are the two ``nnx.State`` halves of the model, so a model is rebuilt from the config
and ``nnx.merge``. Whether a checkpoint fits a configured model is decided by comparing the parameter
trees (paths and shapes) stored in the checkpoint with the model's; the error names the parameters
that differ and the model settings that changed.

A model file (``python -m dferjax.export RUN model.safetensors``) holds one checkpoint's model halves
and what using it needs (config, preparation, classes, scores) in one safetensors file, with a sha256
that loading checks (:func:`save_model_file`, :func:`load_model_file`). :func:`load_trained` takes a
run directory, a step directory or a model file: wherever a run is accepted, a model file is.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import hashlib
import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import safetensors
import safetensors.numpy
from flax import nnx

from dferjax import models
from dferjax.config import base_config
from dferjax.data import clips
from dferjax.data.dataset import INFO_FILE

DFERJAX_VERSION: str = sys.modules["dferjax"].__version__
"""dferjax's version (``dferjax.__version__``), as model files record it. Read from the package already
imported, not imported by name: the package's lazy ``Predictor`` attribute would make the import linter
see the engine importing the predict application."""

CONFIG_FILE = "config.json"
DATA_FILE = "data.json"
"""What a run needs to know of its data to be used on new clips: classes, PrepConfig, JPEG quality."""
LATEST_DIR = "checkpoints"
BEST_DIR = "best"
METRICS_FILE = "metrics.jsonl"
RESULTS_FILE = "results.json"
CONFUSION_FILE = "confusion.png"
FIGURES_DIR = "figures"
TENSORBOARD_DIR = "tb"


def eval_files(run_dir: str | Path, splits: list[str] | tuple[str, ...],
               data_dir: str | Path | None = None) -> tuple[Path, Path]:
    """``RUN/eval-<splits>.json`` and ``RUN/eval-<splits>-confusion.png`` of a checkpoint evaluation; for a
    model file ``DIR/NAME.safetensors``, ``DIR/NAME.eval-[<data dir name>-]<splits>.json`` and
    ``...-confusion.png`` beside it (a model file is evaluated on shards of any data set: their folder's name
    keeps two evaluations apart)."""
    name = "eval-" + "+".join(splits)
    if is_model_file(run_dir):
        file = Path(run_dir)
        if data_dir:
            name = f"eval-{Path(os.path.normpath(str(data_dir))).name}-" + "+".join(splits)
        return file.with_name(f"{file.stem}.{name}.json"), file.with_name(f"{file.stem}.{name}-confusion.png")
    return Path(run_dir) / f"{name}.json", Path(run_dir) / f"{name}-confusion.png"


class CheckpointError(ValueError):
    """A checkpoint or run directory that cannot be used as asked."""


def config_to_dict(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """The config as plain JSON-able data (tuples become lists)."""
    return json.loads(config.to_json())


def save_config(workdir: str | Path, config: ml_collections.ConfigDict) -> None:
    """Write ``RUN/config.json`` (sorted keys), creating the run directory.

    Args:
      workdir: the run directory.
      config: the run's full config.
    """
    path = Path(workdir) / CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config_to_dict(config), indent=2, sort_keys=True) + "\n")


def load_run_config(run_dir: str | Path) -> ml_collections.ConfigDict:
    """The config a run was trained with (``RUN/config.json``), in today's layout.

    Raises:
      CheckpointError: no ``config.json`` there.
    """
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{path} not found: {run_dir} is not a dferjax run directory "
                              "(python -m dferjax.train --workdir makes one)")
    return ml_collections.ConfigDict(_tuples(with_new_keys(upgrade_config(json.loads(path.read_text())))))


def with_new_keys(values: dict[str, Any]) -> dict[str, Any]:
    """A run's config dict with the ``data``, ``train`` and ``runtime`` keys added since it was made, at their
    defaults (``config.base_config``), and each model section's (``ADDED_KEYS`` of its class).

    A key is only ever added with a default that keeps the old behaviour (e.g. ``data.crop_padding = 0``,
    off), so the run computes what it computed, and resuming it is not refused for a key it never had.
    """
    values = json.loads(json.dumps(values))
    defaults = json.loads(json.dumps(base_config(ml_collections.ConfigDict()).to_dict()))
    for section in ("data", "train", "runtime"):
        have = values.setdefault(section, {})
        for key, value in defaults[section].items():
            have.setdefault(key, value)
    return _with_added_model_keys(values)


def _with_added_model_keys(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with each model section's keys added since a run was made at the value that keeps what it
    computed (the class's ``ADDED_KEYS``, e.g. ``model.dfer.heatmap_norm = "peak"``), where the section lacks
    them; in place, returned."""
    model = values.get("model")
    if isinstance(model, dict):
        for name, cls in models.MODELS.items():
            section = model.get(name)
            if isinstance(section, dict):
                for key, value in (getattr(cls, "ADDED_KEYS", {}) or {}).items():
                    section.setdefault(key, value)
    return values


_RUNTIME_KEYS = {"train": ("progress", "log_every", "cpu_devices"), "data": ("num_workers", "cache_decoded")}


def upgrade_config(values: dict[str, Any]) -> dict[str, Any]:
    """A ``config.json`` of a run made before the model registry, in today's layout (others unchanged).

    Before it, ``model`` held the paper's model's settings directly: they move to ``model.dfer``
    with ``data.image_size``, ``data.heatmap_sigma`` and ``loss.aux_weight``; progress, logging,
    workers, cache and CPU devices move to ``runtime``. The parameters of such a run are the
    ``dfer`` model's, unchanged.
    """
    model = values.get("model")
    if not isinstance(model, dict) or "name" in model:
        return values
    values = json.loads(json.dumps(values))
    model = values["model"]
    dfer = {k: v for k, v in model.items() if k not in ("num_classes", "dtype")}
    data, loss = values.get("data", {}), values.pop("loss", {})
    for key in ("image_size", "heatmap_sigma"):
        if key in data:
            dfer[key] = data.pop(key)
    if "aux_weight" in loss:
        dfer["aux_weight"] = loss["aux_weight"]
    values["model"] = {"name": "dfer", "num_classes": model.get("num_classes", 7),
                       "dtype": model.get("dtype", "float32"), "dfer": dfer}
    runtime = values.setdefault("runtime", {})
    for section, keys in _RUNTIME_KEYS.items():
        for key in keys:
            if key in values.get(section, {}):
                runtime[key] = values[section].pop(key)
    return values


def save_data_info(workdir: str | Path, info: dict[str, Any]) -> None:
    """Keep the shards' clip preparation with the run, so predict prepares new clips identically.

    Args:
      workdir: the run directory; ``RUN/data.json`` is written.
      info: the shards' ``dataset_info.json`` content (dataset, classes, prep, JPEG quality, versions).
    """
    keep = {k: info.get(k) for k in ("dataset", "classes", "prep", "jpeg_quality", "clip_record_version",
                                     "keypoint_definition_version")}
    path = Path(workdir) / DATA_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(keep, indent=2, sort_keys=True) + "\n")


def load_data_info(run_dir: str | Path, config: ml_collections.ConfigDict | None = None) -> dict[str, Any]:
    """The run's ``data.json``; for runs without one, the ``dataset_info.json`` of its ``data.dir``.

    Args:
      run_dir: the run directory.
      config: the run's config (read from the run when None).
    Returns:
      The recorded data settings: classes, prep (PrepConfig fields), jpeg_quality, versions.
    Raises:
      CheckpointError: neither file exists (the message says which file to copy where).
    """
    path = Path(run_dir) / DATA_FILE
    if path.is_file():
        return json.loads(path.read_text())
    config = config or load_run_config(run_dir)
    fallback = Path(config.data.dir) / INFO_FILE
    if fallback.is_file():
        return json.loads(fallback.read_text())
    raise CheckpointError(f"{path} not found, nor the run's data ({fallback}): the clip preparation the "
                          "model was trained with is unknown. Copy the training set's dataset_info.json "
                          f"to {path}")


def _tuples(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def config_differences(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """Keys whose values differ between two config dicts, as ``key: a != b`` lines.

    Args:
      a, b: nested config dicts (``config_to_dict``); lists and tuples compare equal.
      prefix: prepended to every key (used for the recursion).
    Returns:
      Sorted ``"dotted.key: value_a != value_b"`` lines; ``<absent>`` for a key on one side only.
    """
    out = []
    for key in sorted(set(a) | set(b)):
        name = f"{prefix}{key}"
        va, vb = a.get(key, "<absent>"), b.get(key, "<absent>")
        if isinstance(va, dict) and isinstance(vb, dict):
            out.extend(config_differences(va, vb, name + "."))
        elif _tuples(va) != _tuples(vb):
            out.append(f"{name}: {va!r} != {vb!r}")
    return out


def _leaf_name(path: tuple[Any, ...]) -> str:
    """``params/backbone/conv1/kernel``: a state leaf's tree path as one name (checkpoint messages, model files)."""
    return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def _shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    """{"params/backbone/conv1/kernel": shape, ...} of a state tree (arrays, ShapeDtypeStructs or metadata)."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        shape = getattr(leaf, "shape", None)
        if shape is not None:
            out[_leaf_name(path)] = tuple(shape)
    return out


def model_shapes(config: ml_collections.ConfigDict) -> dict[str, tuple[int, ...]]:
    """Paths and shapes of the configured model's ``params`` and ``rest`` (nothing is computed)."""
    _, params, rest = split_model(models.abstract_model(config.model))
    return _shapes({"params": params, "rest": rest})


def saved_shapes(directory: str | Path, step: int) -> dict[str, tuple[int, ...]]:
    """Paths and shapes of the model halves stored in the checkpoint ``directory/step`` (its metadata)."""
    try:
        metadata = ocp.StandardCheckpointHandler().metadata(Path(directory).absolute() / str(step) / "state")
    except (FileNotFoundError, ValueError, KeyError) as error:
        raise CheckpointError(f"{directory}/{step}: no readable checkpoint metadata ({error}); "
                              "the checkpoint is damaged or was not written by dferjax") from None
    tree = getattr(metadata, "tree", metadata)
    return _shapes({"params": tree["params"], "rest": tree["rest"]})


def check_same_model(directory: str | Path, step: int, saved: ml_collections.ConfigDict | None,
                     config: ml_collections.ConfigDict, where: str) -> None:
    """Raise CheckpointError unless the checkpoint's parameter tree is the configured model's.

    Args:
      directory, step: the checkpoint (a checkpoint manager directory and a step).
      saved: the config the checkpoint was trained with (for the message), or None.
      config: the config whose model is to be loaded.
      where: what to call the checkpoint in the message (a run directory).
    Raises:
      CheckpointError: naming the parameters whose shapes differ (or that exist on one side only)
        and the model settings in which the two configs differ.
    """
    have, want = saved_shapes(directory, step), model_shapes(config)
    if have == want:
        return
    diff = [f"{k}: {have.get(k, '<absent>')} != {want.get(k, '<absent>')}"
            for k in sorted(set(have) | set(want)) if have.get(k) != want.get(k)]
    more = f" and {len(diff) - 3} more" if len(diff) > 3 else ""
    shapes = f"parameter shapes differ (checkpoint != requested) at {'; '.join(diff[:3])}{more}"
    if saved is not None and saved.model.get("name", "dfer") != config.model.name:
        raise CheckpointError(f"the checkpoint in {where} is of model {saved.model.get('name', 'dfer')!r}, the "
                              f"config asks for {config.model.name!r} (config key model.name); {shapes}")
    settings = ""
    if saved is not None:
        changed = model_differences(saved, config)
        if changed:
            settings = f"; settings that differ (checkpoint != requested): {'; '.join(changed)}"
    raise CheckpointError(f"the checkpoint in {where} is of another model: {shapes}{settings}")


def model_differences(a: ml_collections.ConfigDict, b: ml_collections.ConfigDict) -> list[str]:
    """``key: a != b`` lines for the model settings that differ: ``model.name``, ``model.num_classes``,
    ``model.dtype`` and the selected model's own section (other models' sections do not count)."""
    return config_differences({"model": _selected_model(config_to_dict(a))["model"]},
                              {"model": _selected_model(config_to_dict(b))["model"]})


def run_differences(saved: ml_collections.ConfigDict, config: ml_collections.ConfigDict,
                    may_change: tuple[str, ...]) -> list[str]:
    """``key: saved != config`` lines that keep ``config`` from resuming the run ``saved`` describes.

    Args:
      saved, config: the run's config and the requested one.
      may_change: keys (or whole sections) that may differ (dferjax.config.MAY_CHANGE_ON_RESUME).
    Returns:
      The differences outside ``may_change``; the sections of models other than the selected one do
      not count (registering a new model, or editing another's defaults, leaves a run resumable).
    """
    diff = config_differences(_selected_model(config_to_dict(saved)), _selected_model(config_to_dict(config)))
    return [d for d in diff if not d.startswith(tuple(k + "." for k in may_change) + tuple(k + ":" for k in may_change))]


def _selected_model(values: dict[str, Any]) -> dict[str, Any]:
    """The config dict with only the selected model's section under ``model``."""
    model = values.get("model", {})
    name = model.get("name", "dfer")
    keep = {k: v for k, v in model.items() if not isinstance(v, dict) or k == name}
    return {**values, "model": keep}


def split_model(model: nnx.Module) -> tuple[nnx.GraphDef, nnx.State, nnx.State]:
    """graphdef, params, rest (batch-norm statistics), the two states pure: arrays, not nnx.Variables.

    Pure states cross a jit boundary as plain pytrees; a state of Variable objects costs a Python
    object per leaf and call (the train state's ~300 leaves: ~50 ms of Python per call of the demo's
    train step in a profile, on cores the CPU devices need too). ``nnx.merge`` takes either.
    """
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return graphdef, nnx.as_pure(params), nnx.as_pure(rest)


@contextlib.contextmanager
def _quiet_absl_warnings():
    """Hide orbax's absl warnings while a read-only manager opens ("Given directory is read only")."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def manager(directory: str | Path, max_to_keep: int, read_only: bool = False) -> ocp.CheckpointManager:
    """An orbax CheckpointManager of ``{"state", "meta"}`` items in ``directory``.

    Args:
      directory: ``RUN/checkpoints`` or ``RUN/best`` (created unless ``read_only``).
      max_to_keep: steps kept; older ones are deleted after each save.
      read_only: open without creating or deleting anything.
    """
    # Two managers (latest, best) save the same step in one run: their processes' barriers need
    # keys of their own, or with several processes one manager's barrier meets the other's and both wait.
    options = ocp.CheckpointManagerOptions(
        max_to_keep=None if read_only else max_to_keep, save_interval_steps=0 if read_only else 1,
        create=not read_only, read_only=read_only,
        multiprocessing_options=ocp.options.MultiprocessingOptions(barrier_sync_key_prefix=Path(directory).name))
    with _quiet_absl_warnings() if read_only else contextlib.nullcontext():
        return ocp.CheckpointManager(Path(directory).absolute(), options=options, item_names=("state", "meta"))


class _DropFailedSaveTracebacks(logging.Filter):
    """orbax logs a failed background save with its whole traceback from every writer thread, and
    asyncio each failed write's future that nobody read; the run reports the failure once, in one
    line (train.check_saves)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "asyncio":        # the failed writes' futures, garbage-collected unread
            return "exception was never retrieved" not in record.getMessage()
        return not (record.levelno >= logging.ERROR and "orbax" in record.pathname)


@contextlib.contextmanager
def quiet_failed_saves():
    """While saving in the background: a failed save is reported by the caller in one line, not as
    orbax's logged tracebacks and tensorstore's "Event loop is closed" ones (its write callbacks
    arriving after orbax closed the failed save's event loop; tensorstore prints them through
    ``sys.unraisablehook``)."""
    logger, log_filter = logging.getLogger("absl"), _DropFailedSaveTracebacks()
    previous_hook, previous_unraisable = sys.excepthook, sys.unraisablehook

    def closed_loop(value: BaseException | None) -> bool:
        return isinstance(value, RuntimeError) and str(value) == "Event loop is closed"

    def hook(kind: type, value: BaseException, tb: Any) -> None:
        if not closed_loop(value):
            previous_hook(kind, value, tb)

    def unraisable(report: Any) -> None:
        if not closed_loop(report.exc_value):
            previous_unraisable(report)

    loggers = (logger, logging.getLogger("asyncio"))
    for each in loggers:
        each.addFilter(log_filter)
    sys.excepthook, sys.unraisablehook = hook, unraisable
    try:
        yield
    except BaseException:
        gc.collect()        # the failed writes' futures, while their reports are filtered
        raise               # the filters stay: more of them may be collected as the process ends
    for each in loggers:
        each.removeFilter(log_filter)
    sys.excepthook, sys.unraisablehook = previous_hook, previous_unraisable


def save_problem(directory: str | Path, state: Any, margin: float = 1.25) -> str | None:
    """Why a checkpoint of ``state`` would not fit on the disk of ``directory`` (None: it fits).

    Checked before each save, so that a full disk stops the run cleanly, naming the space needed,
    before orbax starts writing.

    Args:
      directory: ``RUN/checkpoints`` or ``RUN/best``.
      state: the train state to be saved.
      margin: room asked for on top of the arrays' bytes (metadata, the next save's temporary copy).
    """
    need = margin * sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(state)
                        if hasattr(x, "shape")) + 2**20
    probe = Path(directory)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free >= need:
        return None
    return (f"{directory} has {free / 2**20:.1f} MiB free, a checkpoint needs about {need / 2**20:.1f} MiB: "
            "free some space")


def host_copy(tree: Any) -> Any:
    """Fully replicated jax arrays -> numpy copies of this process's replica; other leaves unchanged.

    orbax saves a tree of ~1,000 small replicated device arrays slowly: it slices and transfers each
    replica separately (1.6 s per save of the demo's 4.4 MB state on 2 CPU devices, ~70% of it per-array
    overhead). Host arrays save in 0.45 s and restore into the same shardings. The copy also
    decouples an asynchronous save from the device buffers the next (donating) train step reuses.
    """
    def leaf(x: Any) -> Any:
        if isinstance(x, jax.Array) and x.sharding.is_fully_replicated:
            return np.array(x.addressable_data(0), copy=True)   # on the CPU asarray would be a view
        return x

    return jax.tree.map(leaf, tree)


def save(mngr: ocp.CheckpointManager, step: int, state: Any, meta: dict[str, Any]) -> None:
    """Start saving ``state`` (its host copy) and ``meta`` as ``step``; orbax finishes in the background
    (``mngr.wait_until_finished()`` waits).

    Args:
      mngr: a manager from :func:`manager`.
      step: the global step, the checkpoint's name.
      state: the train state ``{"step", "params", "rest", "opt_state"}``.
      meta: JSON data saved beside it (epoch, position, best and last reports).
    """
    mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(host_copy(state)),
                                            meta=ocp.args.JsonSave(json.loads(json.dumps(meta)))))


def restore(mngr: ocp.CheckpointManager, step: int, abstract_state: Any) -> tuple[Any, dict[str, Any]]:
    """The state and meta saved as ``step``.

    Args:
      mngr: a manager from :func:`manager`.
      step: a saved step.
      abstract_state: ``jax.ShapeDtypeStruct`` leaves with the shardings to restore into.
    Returns:
      (state, meta).
    """
    out = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                                     meta=ocp.args.JsonRestore()))
    return out["state"], out["meta"]


def restore_meta(mngr: ocp.CheckpointManager, step: int) -> dict[str, Any]:
    """Only the meta saved as ``step`` (epoch, position, best and last reports), not the state."""
    return mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]


COMMIT_MARKER = "commit_success.txt"
"""The file orbax writes last into a step directory and into each of its items."""

INCOMPLETE_SUFFIX = ".incomplete"
"""A step directory that cannot be restored is renamed ``<step>.incomplete`` when a run resumes past it."""


def incomplete_reason(step_dir: str | Path) -> str | None:
    """Why the step directory is not a complete checkpoint (its save was interrupted), or None.

    Complete: the step, its ``state`` and its ``meta`` each hold orbax's commit marker, and the state's
    metadata file exists.
    """
    step_dir = Path(step_dir)
    for where in (step_dir, step_dir / "state", step_dir / "meta"):
        if not (where / COMMIT_MARKER).is_file():
            return f"no {COMMIT_MARKER} in {where.relative_to(step_dir.parent)}"
    if not (step_dir / "state" / "_METADATA").is_file():
        return "no state/_METADATA"
    return None


_NOTED: set[str] = set()


def note(message: str) -> None:
    """One line for the person running the command (stderr), e.g. a checkpoint skipped; once per process."""
    if message not in _NOTED:
        _NOTED.add(message)
        print(f"note: {message}", file=sys.stderr, flush=True)


def complete_steps(directory: str | Path) -> list[int]:
    """The steps of a checkpoint directory that are complete, newest first; each incomplete step newer
    than the newest complete one is named in a note line."""
    directory = Path(directory)
    steps = sorted(ocp.utils.checkpoint_steps(directory.absolute()), reverse=True) if directory.is_dir() else []
    complete = [s for s in steps if incomplete_reason(directory / str(s)) is None]
    for s in steps:
        if complete and s < complete[0]:
            break
        reason = incomplete_reason(directory / str(s))
        if reason:
            fallback = f"using step {complete[0]}" if complete else "no complete step left"
            note(f"{directory / str(s)} is incomplete ({reason}: its save was interrupted); {fallback}")
    return complete


def set_aside(directory: str | Path, step: int) -> Path:
    """Rename the step directory ``<step>`` to ``<step>.incomplete`` (kept for inspection, ignored by
    orbax), so that a resumed run can save that step again. Returns the new path."""
    source = Path(directory) / str(step)
    target = source.with_name(source.name + INCOMPLETE_SUFFIX)
    k = 1
    while target.exists():
        target = source.with_name(f"{source.name}{INCOMPLETE_SUFFIX}{k}")
        k += 1
    source.rename(target)
    return target


def set_aside_incomplete(directory: str | Path) -> list[int]:
    """Set aside (:func:`set_aside`) every incomplete step of a checkpoint directory, each named in a note.

    Returns:
      The steps set aside.
    """
    directory = Path(directory)
    moved = []
    for step in (ocp.utils.checkpoint_steps(directory.absolute()) if directory.is_dir() else []):
        reason = incomplete_reason(directory / str(step))
        if reason:
            target = set_aside(directory, step)
            note(f"{directory / str(step)} is incomplete ({reason}: its save was interrupted); "
                 f"set aside as {target.name}")
            moved.append(step)
    return moved


def find_checkpoint(path: str | Path, which: str = "best") -> tuple[Path, Path, int]:
    """Where the checkpoint a user names is.

    Args:
      path: a run directory (its best checkpoint, or the latest with ``which="latest"``; the latest when
        there is no best yet) or a step directory ``RUN/best/<step>`` / ``RUN/checkpoints/<step>``.
      which: "best" or "latest".
    Returns:
      (run directory, checkpoint manager directory, step).
    Raises:
      CheckpointError: ``path`` is neither, the run has no complete checkpoint yet, or the named step
        directory is incomplete. Incomplete steps newer than the one chosen are named in a note line.
    """
    path = Path(path)
    if (path / CONFIG_FILE).is_file():
        directory = path / (BEST_DIR if which == "best" else LATEST_DIR)
        steps = complete_steps(directory)
        if not steps and which == "best":          # no evaluation yet: the latest checkpoint
            directory = path / LATEST_DIR
            steps = complete_steps(directory)
        if not steps:
            raise CheckpointError(f"{path} has no complete saved checkpoint yet (looked in {directory})")
        return path, directory, steps[0]
    if path.name.isdigit() and (path.parent.parent / CONFIG_FILE).is_file():
        reason = incomplete_reason(path)
        if reason:
            raise CheckpointError(f"{path} is incomplete ({reason}: its save was interrupted); name the run "
                                  f"directory {path.parent.parent} to use its newest complete checkpoint")
        return path.parent.parent, path.parent, int(path.name)
    raise CheckpointError(f"{path} is neither a run directory (with {CONFIG_FILE}) nor a checkpoint step "
                          "directory inside one (RUN/best/<step> or RUN/checkpoints/<step>)")


def load_model(path: str | Path, config: ml_collections.ConfigDict | None = None, which: str = "best"
               ) -> tuple[nnx.Module, ml_collections.ConfigDict, dict[str, Any]]:
    """A trained model (eval-ready) from a run directory or step directory, with its config and meta.

    Args:
      path: a run directory (its ``which`` checkpoint: "best" or "latest") or ``RUN/best/<step>``.
      config: the config the caller wants; its model must fit the checkpoint's parameters, else the
        error names what differs. By default the run's own config is used.
    Returns:
      The model (parameters on the default device), the config, the checkpoint's meta (epoch, best...).
    Raises:
      CheckpointError: no run or checkpoint there, or a checkpoint of another model.
    """
    run_dir, directory, step = find_checkpoint(path, which)
    saved = load_run_config(run_dir)
    config = config or saved
    check_same_model(directory, step, saved, config, str(run_dir))
    params, rest, meta = load_model_state(directory, step, config)
    graphdef, _, _ = split_model(models.abstract_model(config.model))
    return nnx.merge(graphdef, params, rest), config, meta


def load_model_state(directory: Path, step: int, config: ml_collections.ConfigDict
                     ) -> tuple[nnx.State, nnx.State, dict[str, Any]]:
    """params and rest of the model saved at ``directory/step``, on the default device, and its meta.

    Works whatever devices the run was saved from (a multi-device or multi-host run loads on one).
    """
    _, params, rest = split_model(models.abstract_model(config.model))
    mngr = manager(directory, max_to_keep=1, read_only=True)
    try:
        meta = mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        # The optimizer state is not needed here: restore the model halves only.
        target = {"params": _to_abstract(params), "rest": _to_abstract(rest)}
        restored = mngr.restore(step, args=ocp.args.Composite(
            state=ocp.args.PyTreeRestore(item=target, partial_restore=True,
                                         restore_args=ocp.checkpoint_utils.construct_restore_args(target))))["state"]
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        first = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{Path(directory) / str(step)} cannot be restored ({first}); it is damaged: "
                              "delete it or name another checkpoint") from None
    finally:
        mngr.close()
    return restored["params"], restored["rest"], meta


def _to_abstract(tree: Any) -> Any:
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


# ----------------------------------------------------------------------------------------------
# model files: one checkpoint as one shareable file (python -m dferjax.export)
# ----------------------------------------------------------------------------------------------

MODEL_FORMAT = "dferjax-model"
"""The ``format`` metadata entry of a model file: what tells it from other safetensors files."""
MODEL_FORMAT_VERSION = "1"
MODEL_SUFFIX = ".safetensors"
"""The suggested suffix: a model file is a safetensors file, which tools and model hubs open as such (and
know to run no code); dferjax tells its files by their ``format`` entry, not by their name."""
MODEL_JSON_KEYS = ("config", "data", "checkpoint", "card")
"""The metadata entries holding JSON (besides format, format_version, dferjax_version and sha256)."""
_HASH_DOMAIN = b"dferjax-model sha256 v1"


@dataclasses.dataclass
class TrainedModel:
    """A trained model and what using it needs, from a run directory or a model file (:func:`load_trained`).

    Attributes:
      model: the eval-ready model, parameters on the default device.
      config: the config it was trained with (or the one asked for, which fits it).
      meta: the checkpoint's meta: epoch, position, best and last evaluation reports.
      data_info: the training shards' preparation (``data.json``): dataset, classes, prep, jpeg_quality;
        None when not asked for.
      source: the checkpoint (``RUN/best/<step>``) or the model file, as messages name it.
      step: the checkpoint's step.
      run_dir: the run directory; None for a model file.
      model_file: the model file; None for a run.
      card: a model file's card (JSON: model, classes, data set, scores...); None for a run.
    """

    model: nnx.Module
    config: ml_collections.ConfigDict
    meta: dict[str, Any]
    data_info: dict[str, Any] | None
    source: str
    step: int | None
    run_dir: Path | None = None
    model_file: Path | None = None
    card: dict[str, Any] | None = None


def is_model_file(path: str | Path) -> bool:
    """A file where a run is expected: it is read as a model file (or refused as none, naming it)."""
    return Path(path).is_file()


def load_trained(path: str | Path, which: str = "best", config: ml_collections.ConfigDict | None = None,
                 with_data: bool = True) -> TrainedModel:
    """A trained model from wherever a run is accepted: a run directory, a step directory or a model file.

    Args:
      path: a run directory (its ``which`` checkpoint), ``RUN/best/<step>``, or a model file (``which``
        does not apply: the file holds one checkpoint).
      which: "best" or "latest".
      config: the config the caller wants (its model must fit the parameters); default: the model's own.
      with_data: also read the training shards' preparation (a run's ``data.json``; in a model file always).
    Raises:
      CheckpointError: no run, checkpoint or model file there, a checkpoint of another model, or a model
        file that is damaged, changed (its sha256 does not match) or of another format (each named).
    """
    if is_model_file(path):
        return load_model_file(path, config)
    run_dir, directory, step = find_checkpoint(path, which)
    model, config, meta = load_model(directory / str(step), config)
    data_info = load_data_info(run_dir, config) if with_data else None
    return TrainedModel(model, config, meta, data_info, f"{directory}/{step}", step, run_dir=run_dir)


def checkpoint_home(path: str | Path, which: str = "best") -> Path:
    """Where the results of evaluating ``path`` go: its run directory, or the model file itself
    (``eval_files`` then names files beside it)."""
    return Path(path) if is_model_file(path) else find_checkpoint(path, which)[0]


def checkpoint_report(meta: dict[str, Any]) -> dict[str, Any] | None:
    """The evaluation of the checkpoint whose meta this is, or None when it was saved between evaluations.

    A checkpoint saved after its epoch's evaluation (every best checkpoint; a latest one at an epoch's
    end) starts the next epoch (``position`` 0) and its last report is of the epoch it finished.
    """
    last = meta.get("last")
    if isinstance(last, dict) and meta.get("position") == 0 and last.get("epoch") == meta.get("epoch"):
        return last
    return None


def model_tensors(params: Any, rest: Any) -> dict[str, np.ndarray]:
    """The model halves as named host arrays: ``params/<path>`` and ``rest/<path>`` (batch-norm statistics)."""
    flat = jax.tree_util.tree_flatten_with_path({"params": params, "rest": rest})[0]
    return {_leaf_name(path): np.ascontiguousarray(np.asarray(leaf)) for path, leaf in flat}


def shareable_config(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """The config as a model file keeps it: the keys of ``config.base_config`` (a config file's extra
    sections, e.g. the demo's ``synthetic``, describe how its data were made and are left out), the
    selected model's section only, and the paths of the training machine (``data.dir``,
    ``train.init_checkpoint``, ``model.<name>.backbone_weights``) reduced to their last part: where the
    model came from, not the machine's folders (none is read when a model file is used)."""
    values = _selected_model(config_to_dict(config))
    known = base_config(ml_collections.ConfigDict()).to_dict()
    out = {k: v for k, v in values.items() if k in known}
    name = out["model"]["name"]
    for section, key in ((out.get("data", {}), "dir"), (out.get("train", {}), "init_checkpoint"),
                         (out["model"].get(name, {}), "backbone_weights")):
        if isinstance(section.get(key), str) and section[key]:
            section[key] = Path(section[key]).name
    return out


def shareable_data_info(info: dict[str, Any]) -> dict[str, Any]:
    """The preparation a model file keeps (``data.json``'s keys), its PrepConfig in today's fields
    (settings of record version 1 that no longer exist dropped, as ``PrepConfig.from_dict`` does)."""
    keep = {k: info.get(k) for k in ("dataset", "classes", "prep", "jpeg_quality", "clip_record_version",
                                     "keypoint_definition_version")}
    keep["prep"] = clips.PrepConfig.from_dict(dict(keep["prep"] or {})).to_dict()
    return keep


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def model_file_hash(tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> str:
    """The sha256 a model file carries, over its contents in canonical order.

    After the domain string ``dferjax-model sha256 v1``: each tensor by name (sorted): its name, dtype
    (numpy's, e.g. ``<f4``), shape (JSON) and C-order bytes; then each metadata entry but ``sha256`` by
    key (sorted): its key and value. Every part is preceded by its length (8 bytes, little-endian).
    Independent of how safetensors lays out the file.

    Returns:
      The hex digest.
    """
    digest = hashlib.sha256(_HASH_DOMAIN)

    def part(data: bytes) -> None:
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)

    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name])
        part(name.encode())
        part(array.dtype.newbyteorder("<").str.encode())
        part(json.dumps(list(array.shape)).encode())
        part(array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes())
    for key in sorted(metadata):
        if key != "sha256":
            part(key.encode())
            part(metadata[key].encode())
    return digest.hexdigest()


def save_model_file(path: str | Path, tensors: dict[str, np.ndarray], *, config: dict[str, Any],
                    data: dict[str, Any], checkpoint: dict[str, Any], card: dict[str, Any]) -> str:
    """Write a model file: a safetensors file of ``tensors`` whose metadata (str -> str) holds::

        format            "dferjax-model"
        format_version    "1"
        dferjax_version   the writing dferjax's version
        config            JSON: shareable_config (applied onto today's defaults when loaded)
        data              JSON: the training shards' preparation (shareable_data_info)
        checkpoint        JSON: step, which, run, epoch, position, best, last (the checkpoint's meta)
        card              JSON: the model card's facts (model, classes, data set, scores, preparation...)
        sha256            model_file_hash of the tensors and the other entries

    Written to ``PATH.tmp`` first, then renamed: a reader never sees half a file.

    Args:
      path: the file to write (its folder is created).
      tensors: ``model_tensors`` of the model's params and rest.
    Returns:
      The sha256 written.
    """
    metadata = {"format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION, "dferjax_version": DFERJAX_VERSION,
                "config": _canonical_json(config), "data": _canonical_json(data),
                "checkpoint": _canonical_json(checkpoint), "card": _canonical_json(card)}
    metadata["sha256"] = model_file_hash(tensors, metadata)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(safetensors.numpy.save(tensors, metadata=metadata))     # the umask's permissions, unlike save_file
    tmp.replace(path)
    return metadata["sha256"]


def read_model_file(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The tensors and metadata of a model file, its format, version and sha256 checked.

    Only safetensors and JSON are read: nothing in the file is executed.

    Returns:
      (tensors by name, metadata with the MODEL_JSON_KEYS entries decoded).
    Raises:
      CheckpointError: (one line naming the file) not a safetensors file, a safetensors file of another
        format, a newer format version, a missing entry, or a sha256 that does not match the contents.
    """
    path = Path(path)
    try:
        with safetensors.safe_open(str(path), framework="numpy") as f:
            metadata = dict(f.metadata() or {})
            if metadata.get("format") != MODEL_FORMAT:
                found = f" (its format entry is {metadata['format']!r})" if "format" in metadata else ""
                raise _NotModelFile(f"{path} is not a dferjax model file: a safetensors file without "
                                    f"format {MODEL_FORMAT!r}{found}; python -m dferjax.export RUN FILE makes one")
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except _NotModelFile as error:
        raise CheckpointError(str(error)) from None
    except (safetensors.SafetensorError, OSError, ValueError, TypeError) as error:
        first = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path} is not a dferjax model file: not a readable safetensors file ({first}); "
                              "name a run directory or a file written by python -m dferjax.export") from None
    version = metadata.get("format_version")
    if version != MODEL_FORMAT_VERSION:
        raise CheckpointError(f"{path} is a dferjax model file of format version {version!r}, written by dferjax "
                              f"{metadata.get('dferjax_version')}; this dferjax ({DFERJAX_VERSION}) reads version "
                              f"{MODEL_FORMAT_VERSION}")
    missing = [k for k in (*MODEL_JSON_KEYS, "sha256") if k not in metadata]
    if missing:
        raise CheckpointError(f"{path}: its metadata lacks {', '.join(missing)}: the file is damaged or was not "
                              "written by python -m dferjax.export; refused")
    if model_file_hash(tensors, metadata) != metadata["sha256"]:
        raise CheckpointError(f"{path}: its sha256 does not match its contents (a tensor or metadata entry was "
                              "changed after export, or the file is damaged); refused")
    values: dict[str, Any] = dict(metadata)
    for key in MODEL_JSON_KEYS:
        try:
            values[key] = json.loads(metadata[key])
        except json.JSONDecodeError as error:
            raise CheckpointError(f"{path}: its {key!r} entry is not JSON ({error}); refused") from None
        if not isinstance(values[key], dict):
            raise CheckpointError(f"{path}: its {key!r} entry is not a JSON object; refused")
    return tensors, values


class _NotModelFile(Exception):
    pass


def config_from_values(values: dict[str, Any], where: str) -> ml_collections.ConfigDict:
    """A model file's config, applied onto today's defaults (``config.base_config`` with every registered
    model's section).

    A key the file lacks keeps today's default (keys are added with a default that keeps the old
    behaviour, as for resumed runs); a key this dferjax does not know is refused, as it may change what
    the model computes.

    Raises:
      CheckpointError: an unregistered model, an unknown key or a value of the wrong type, named.
    """
    values = _with_added_model_keys(json.loads(json.dumps(values)))
    name = (values.get("model") or {}).get("name") if isinstance(values.get("model"), dict) else None
    if name not in models.MODELS:
        raise CheckpointError(f"{where}: its model {name!r} (config key model.name) is not registered in dferjax "
                              f"{DFERJAX_VERSION} (known: {', '.join(sorted(models.MODELS))})")
    config = base_config(models.default_config())
    _apply_values(config, values, where, "")
    return config


def _apply_values(node: ml_collections.ConfigDict, values: dict[str, Any], where: str, prefix: str) -> None:
    for key, value in values.items():
        name = f"{prefix}{key}"
        if key not in node:
            raise CheckpointError(f"{where}: its config key {name!r} is unknown to dferjax {DFERJAX_VERSION} (a file "
                                  "of a newer version?); refused, as it may change what the model computes")
        if isinstance(node[key], ml_collections.ConfigDict):
            if not isinstance(value, dict):
                raise CheckpointError(f"{where}: its config key {name!r} must be a section, not {value!r}")
            _apply_values(node[key], value, where, name + ".")
            continue
        if isinstance(value, dict):
            raise CheckpointError(f"{where}: its config key {name!r} must be a value, not a section")
        try:
            node[key] = _tuples(value)
        except (TypeError, ValueError) as error:
            raise CheckpointError(f"{where}: its config key {name!r} = {value!r} does not fit today's "
                                  f"{node[key]!r}: {str(error).splitlines()[0]}") from None


def _check_data_info(info: dict[str, Any], where: str, num_classes: int) -> None:
    known = {f.name for f in dataclasses.fields(clips.PrepConfig)}
    prep = info.get("prep")
    if not isinstance(prep, dict):
        raise CheckpointError(f"{where}: its data entry has no preparation (prep); refused")
    unknown = sorted(set(prep) - known)
    if unknown:
        raise CheckpointError(f"{where}: its preparation setting(s) {', '.join(unknown)} are unknown to dferjax "
                              f"{DFERJAX_VERSION}; refused, as new clips could not be prepared as in training")
    classes = info.get("classes")
    if not (isinstance(classes, list) and len(classes) == num_classes and all(isinstance(c, str) for c in classes)):
        raise CheckpointError(f"{where}: its data entry names classes {classes!r}, the model has {num_classes}")


def _fill(tensors: dict[str, np.ndarray], abstract: dict[str, Any], where: str, what: str) -> dict[str, Any]:
    """``abstract`` (ShapeDtypeStruct leaves) with the file's arrays on the default device, after checking
    that names, shapes and dtypes are the model's (CheckpointError naming the parameters otherwise)."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(abstract)
    names = [_leaf_name(path) for path, _ in flat]
    problems = []
    for name, (_, leaf) in zip(names, flat):
        have = tensors.get(name)
        if have is None:
            problems.append(f"{name}: not in the file (the model's is {tuple(leaf.shape)})")
        elif tuple(have.shape) != tuple(leaf.shape) or have.dtype != leaf.dtype:
            problems.append(f"{name}: {tuple(have.shape)} {have.dtype} in the file != {tuple(leaf.shape)} "
                            f"{np.dtype(leaf.dtype)} in the model")
    problems += [f"{name}: in the file, not in the model" for name in sorted(set(tensors) - set(names))]
    if problems:
        more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
        raise CheckpointError(f"{where}: its parameters do not fit {what}: {'; '.join(problems[:3])}{more}")
    device = jax.devices()[0]
    return jax.tree_util.tree_unflatten(treedef, [jax.device_put(tensors[name], device) for name in names])


def load_model_file(path: str | Path, config: ml_collections.ConfigDict | None = None) -> TrainedModel:
    """A trained model from a model file (``python -m dferjax.export``): checked, then restored into the
    configured model (``models.abstract_model`` + ``nnx.merge``).

    Args:
      path: the model file.
      config: the config the caller wants (its model must fit the file's parameters); default: the file's.
    Returns:
      A TrainedModel: meta is the checkpoint's (epoch, position, best, last), data_info the file's
      preparation, card its model card.
    Raises:
      CheckpointError: see read_model_file and config_from_values; parameters whose names, shapes or
        dtypes are not the model's (named); a preparation or class list that cannot be used.
    """
    path = Path(path)
    tensors, values = read_model_file(path)
    saved = config_from_values(values["config"], str(path))
    wanted = config or saved
    graphdef, params, rest = split_model(models.abstract_model(wanted.model))
    what = f"its config's model {saved.model.name!r}"
    if config is not None:
        changed = model_differences(saved, config)
        what = "the requested config's model" + (f" (settings that differ, file != requested: {'; '.join(changed)})"
                                                 if changed else "")
    state = _fill(tensors, {"params": params, "rest": rest}, str(path), what)
    _check_data_info(values["data"], str(path), int(wanted.model.num_classes))
    checkpoint = values["checkpoint"]
    meta = {k: checkpoint.get(k) for k in ("epoch", "position", "best", "last")}
    return TrainedModel(nnx.merge(graphdef, state["params"], state["rest"]), wanted, meta, values["data"],
                        str(path), checkpoint.get("step"), model_file=path, card=values["card"])
