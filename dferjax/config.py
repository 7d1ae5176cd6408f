"""Configuration: the shared defaults, the keys that may change on resume, and loading config files.

Config files live in ``configs/`` and define ``get_config(arg)`` returning an ml_collections
ConfigDict built on :func:`base_config`. They are named on the command line as ``PATH[:ARG]``, e.g.
``configs/dfew.py:fold=3,variant=D``; single values are overridden with ``--config.KEY=VALUE``
(e.g. ``--config.model.dfer.num_heads=6``, ``--config.model.name=frame_mean``), applied by
``ml_collections.config_flags``. The config comes back locked: a key that does not exist, in the ARG
string or an override, is an error that names it and the closest existing keys.

Sections: ``model`` (the registry's: ``name``, ``num_classes``, ``dtype`` and one section per model,
see dferjax.models), ``data`` (which shards, sampling, augmentation), ``train`` (optimisation, the
paper's section 4.2), ``runtime`` (how this process runs: progress bars, workers, caches, logging,
CPU devices). The keys in :data:`MAY_CHANGE_ON_RESUME` may differ when a run is resumed; any other
difference is refused.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import importlib.util
import re
from pathlib import Path
from typing import Any

import ml_collections
from absl import flags
from ml_collections import config_flags

MAY_CHANGE_ON_RESUME = ("runtime", "train.epochs", "train.max_steps")
"""Config keys (or whole sections) a resumed run may change: none of them alters the computation."""


def base_config(model: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The shared settings, with ``model`` (``dferjax.models.default_config()``) as the model section.

    Training defaults are the paper's (Huang et al. 2024, section 4.2): batch 64, 80 epochs, Adam lr
    1e-3 (b1 0.9, b2 0.99), x0.1 at epochs 40 and 60; 8 segments x 2 frames per clip.
    """
    c = ml_collections.ConfigDict()
    c.dataset = ""                    # name of the dataset (dfew, ferv39k, mafw, afew, synthetic)
    c.fold = 0                        # test fold of a 5-fold dataset (1-5); 0 = fixed train/test split
    c.variant = ""                    # Table 9 model the dfer switches describe (informational)

    c.model = model

    c.data = ml_collections.ConfigDict()
    c.data.dir = ""                   # directory of shards written by data_prep (dataset_info.json)
    c.data.train_splits = ("train",)  # shard splits to train on (fold datasets: the other four folds)
    c.data.test_splits = ("test",)    # shard splits to evaluate on every epoch
    c.data.num_segments = 8           # Former-DFER sampling: 8 segments ...
    c.data.frames_per_segment = 2     # ... x 2 consecutive frames = the model's frames per sample
    c.data.crop_scale = (0.08, 1.0)   # random resized crop area fraction (peers' GroupRandomSizedCrop)
    c.data.crop_ratio = (0.75, 4 / 3)  # random resized crop aspect ratio range
    c.data.flip = True                # random horizontal flip (mirrors key-points, swaps left/right)
    # Static-FER augmentations (torchvision's, training only, one draw for all frames; 0 = off):
    c.data.crop_padding = 0           # RandomCrop(size, padding=p): pad p stored-frame pixels, random window
                                      # of the frame's size (before the random resized crop, within it)
    c.data.padding_mode = "constant"  # what the padding holds: constant (zeros), edge, reflect, symmetric
    c.data.color_jitter = (0.0, 0.0, 0.0, 0.0)  # ColorJitter(brightness, contrast, saturation, hue), random order
    c.data.random_erasing = 0.0       # RandomErasing probability (one rectangle, after crop, flip and jitter)
    c.data.erasing_scale = (0.02, 0.33)  # erased area fraction range
    c.data.erasing_ratio = (0.3, 3.3)    # erased aspect ratio range (h / w)
    c.data.erasing_value = "mean"     # mean (ImageNet mean colour = torchvision's 0 after Normalize), zero, random

    c.train = ml_collections.ConfigDict()
    c.train.batch_size = 64           # global batch (section 4.2), split over all devices
    c.train.eval_batch_size = 64
    c.train.epochs = 80               # section 4.2
    c.train.learning_rate = 1e-3      # Adam (section 4.2)
    c.train.b1 = 0.9
    c.train.b2 = 0.99
    c.train.optimizer = "adam"        # adam (L2 decay added to the gradient) | adamw (decoupled decay)
    c.train.weight_decay = 0.0
    c.train.lr_schedule = "step"      # step: x lr_decay_factor at lr_decay_epochs | exponential: x it every epoch
    c.train.lr_decay_epochs = (40, 60)  # lr x lr_decay_factor at each (section 4.2)
    c.train.lr_decay_factor = 0.1
    c.train.seed = 0                  # parameters, data order and augmentation
    c.train.checkpoint_every = 0      # steps between mid-epoch checkpoints (0: at each epoch's end only)
    c.train.eval_every = 1            # epochs between evaluations on data.test_splits
    c.train.max_steps = 0             # stop after this many steps in all (0: train all epochs)
    c.train.init_checkpoint = ""      # fine-tune from another run's checkpoint (AFEW from DFEW)

    c.runtime = ml_collections.ConfigDict()
    c.runtime.progress = True         # progress bars
    c.runtime.log_every = 20          # steps between loss logs (and the NaN check)
    c.runtime.num_workers = 0         # grain worker processes (0: threads in the training process)
    c.runtime.cache_decoded = False   # keep decoded frames in memory after epoch 1 (input_pipeline.DecodedCache)
    c.runtime.cpu_devices = 0         # without an accelerator: split the host's cores into this many JAX
                                      # devices for data parallelism (-1: as many as cores, dividing both
                                      # batch sizes; 0: JAX's default of one)
    return c


def one_frame(config: ml_collections.ConfigDict) -> None:
    """Make a config take still images: one frame per sample (``data.num_segments`` =
    ``data.frames_per_segment`` = 1 and every model section's ``num_frames`` = 1), in place.

    The still-image configs (``configs/rafdb.py``, ``affectnet.py``, ``ferplus.py``, ``demo_images.py``)
    call it; a model without a frame count ignores it.
    """
    config.data.num_segments = 1
    config.data.frames_per_segment = 1
    for name in config.model:
        section = config.model[name]
        if isinstance(section, ml_collections.ConfigDict) and "num_frames" in section:
            section.num_frames = 1


AT_LEAST_ONE = ("train.batch_size", "train.eval_batch_size", "train.epochs", "train.eval_every",
                "data.num_segments", "data.frames_per_segment", "runtime.log_every")
"""Integer keys that must be >= 1 (checked by :func:`check_values` before a run writes anything)."""
AT_LEAST_ZERO = ("train.checkpoint_every", "train.max_steps", "runtime.num_workers", "data.crop_padding")
"""Integer keys that must be >= 0 (0 turns the feature off)."""


def check_values(config: ml_collections.ConfigDict) -> None:
    """Refuse values of the run's sections that cannot work (the model's section is checked by
    ``models.check_config``): counts below their minimum, a learning rate <= 0, crop and erasing
    ranges that are not ranges, a padding mode or erasing value not offered, colour jitter strengths
    outside torchvision's bounds, a probability outside [0, 1].

    Raises:
      ValueError: one line naming every bad key, its value and what it must be.
    """
    problems = []
    for keys, low in ((AT_LEAST_ONE, 1), (AT_LEAST_ZERO, 0)):
        for key in keys:
            value = _get(config, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                problems.append(f"{key} = {value!r} is not an integer of at least {low}")
    if not config.train.learning_rate > 0:
        problems.append(f"train.learning_rate = {config.train.learning_rate!r} is not positive")
    for key, allowed in (("optimizer", ("adam", "adamw")), ("lr_schedule", ("step", "exponential"))):
        if config.train[key] not in allowed:
            problems.append(f"train.{key} = {config.train[key]!r} is not one of {', '.join(allowed)}")
    if not config.train.lr_decay_factor > 0:
        problems.append(f"train.lr_decay_factor = {config.train.lr_decay_factor!r} is not positive")
    low, high = config.data.crop_scale
    if not 0 < low <= high <= 1:
        problems.append(f"data.crop_scale = {tuple(config.data.crop_scale)} is not a range within (0, 1]")
    low, high = config.data.crop_ratio
    if not 0 < low <= high:
        problems.append(f"data.crop_ratio = {tuple(config.data.crop_ratio)} is not a range of positive ratios")
    data = config.data
    for key, allowed in (("padding_mode", ("constant", "edge", "reflect", "symmetric")),
                         ("erasing_value", ("mean", "zero", "random"))):
        if data[key] not in allowed:
            problems.append(f"data.{key} = {data[key]!r} is not one of {', '.join(allowed)}")
    jitter = tuple(data.color_jitter)
    if len(jitter) != 4 or not min(jitter) >= 0 or not jitter[3] <= 0.5:
        problems.append(f"data.color_jitter = {jitter} is not 4 strengths (brightness, contrast, saturation, "
                        "hue), each >= 0, hue <= 0.5")
    if not 0 <= data.random_erasing <= 1:
        problems.append(f"data.random_erasing = {data.random_erasing!r} is not a probability in [0, 1]")
    low, high = data.erasing_scale
    if not 0 < low <= high <= 1:
        problems.append(f"data.erasing_scale = {tuple(data.erasing_scale)} is not a range within (0, 1]")
    low, high = data.erasing_ratio
    if not 0 < low <= high:
        problems.append(f"data.erasing_ratio = {tuple(data.erasing_ratio)} is not a range of positive ratios")
    if problems:
        raise ValueError("config key " + "; ".join(problems))


def parse_config_arg(arg: str | None, defaults: dict[str, Any], config_file: str = "config") -> dict[str, Any]:
    """Parse a config file's ``k=v,k=v`` argument against its allowed keys and their defaults.

    Values are cast to the type of the default. An unknown key is an error naming it.
    """
    values = dict(defaults)
    if not arg:
        return values
    for item in arg.split(","):
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep:
            raise ValueError(f"{config_file}: argument {item!r} is not of the form key=value "
                             f"(allowed keys: {', '.join(sorted(defaults))})")
        if key not in defaults:
            raise KeyError(f"{config_file}: unknown config argument {key!r}; "
                           f"allowed: {', '.join(sorted(defaults))}")
        default, raw = defaults[key], raw.strip()
        value = raw if isinstance(default, str) else _parse_value(raw)
        if default is not None and type(value) is not type(default):
            raise TypeError(f"{config_file}: argument {key!r} takes {'an' if type(default).__name__[0] in 'aeiou' else 'a'} {type(default).__name__} "
                            f"(default {default!r}), got {raw!r}")
        values[key] = value
    return values


def _parse_value(raw: str) -> Any:
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw


def fold_splits(fold: int, num_folds: int = 5) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Train and test shard splits of ``fold`` of a k-fold dataset (data_prep writes split fold<k>)."""
    return tuple(f"fold{k}" for k in range(1, num_folds + 1) if k != fold), (f"fold{fold}",)


def config_file_module(path: str) -> Any:
    """The config file at ``path`` as a module (FileNotFoundError / AttributeError naming it)."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"config file {path!r} not found (expected e.g. configs/dfew.py)")
    module_spec = importlib.util.spec_from_file_location(f"dferjax_config_{file.stem}", file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise AttributeError(f"config file {path!r} defines no get_config(arg)")
    return module


MOVED_KEYS = {"train.progress": "runtime.progress", "train.log_every": "runtime.log_every",
              "train.cpu_devices": "runtime.cpu_devices", "data.num_workers": "runtime.num_workers",
              "data.cache_decoded": "runtime.cache_decoded", "data.image_size": "model.<name>.image_size",
              "data.heatmap_sigma": "model.dfer.heatmap_sigma", "loss.aux_weight": "model.dfer.aux_weight"}
"""Keys of configs before the model registry and where they live now (model.X moved to model.<name>.X)."""


def _paths(node: Any, prefix: str = "") -> list[str]:
    out = []
    for key in node.keys():
        value = node[key]
        path = f"{prefix}{key}"
        out.extend(_paths(value, path + ".") if isinstance(value, ml_collections.ConfigDict) else [path])
    return out


def _missing_key(config: ml_collections.ConfigDict, dotted_key: str) -> str | None:
    """A message for the first part of ``dotted_key`` that does not exist, with the closest keys (a key
    that moved says where to; a leaf that exists elsewhere is named with its whole path); None when the
    whole key exists."""
    if dotted_key in MOVED_KEYS:
        return f"config key {dotted_key!r} moved to {MOVED_KEYS[dotted_key]}"
    node: Any = config
    parts = dotted_key.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            where = ".".join(parts[:i]) or "the config"
            keys = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
            close = difflib.get_close_matches(part, keys, n=3, cutoff=0.6)
            elsewhere = [p for p in _paths(config) if p.endswith("." + parts[-1])] if i < len(parts) else []
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            if elsewhere:                       # the same key one level down, e.g. model.num_heads
                hint += f"; that key is at {', '.join(elsewhere[:4])}"
            return (f"config key {dotted_key!r} does not exist: {where} has no {part!r}{hint} "
                    f"(its keys: {', '.join(keys) or 'none'})")
        node = node[part]
    return None


def apply_overrides(config: ml_collections.ConfigDict, overrides: list[str] | tuple[str, ...]
                    ) -> ml_collections.ConfigDict:
    """``KEY=VALUE`` overrides applied by ml_collections' config_flags; the config comes back locked.

    Raises:
      KeyError: a KEY that does not exist (the message names it and the closest existing keys).
      TypeError: a VALUE that does not parse as the key's type (named).
      ValueError: an override not of the form KEY=VALUE.
    """
    argv = ["dferjax"]
    for item in overrides:
        key, sep, _ = item.partition("=")
        if not sep:
            raise ValueError(f"config override {item!r} is not of the form KEY=VALUE")
        problem = _missing_key(config, key)
        if problem:
            raise KeyError(problem)
        argv.append(f"--config.{item}")
    values = flags.FlagValues()
    config.lock()
    config_flags.DEFINE_config_dict("config", config, flag_values=values, sys_argv=argv, lock_config=True)
    try:
        values(argv)
    except flags.Error as error:
        match = re.search(r"--config\.([\w.]+)=", str(error))
        key = match.group(1) if match else "?"
        old = _get(config, key)
        kind = type(old).__name__
        raise TypeError(f"config key {key!r} takes {'an' if kind[0] in 'aeiou' else 'a'} {kind} (now {old!r}): "
                        f"{str(error).splitlines()[0]}") from None
    return values.config


def _get(config: ml_collections.ConfigDict, dotted_key: str) -> Any:
    node: Any = config
    for part in dotted_key.split("."):
        node = node[part] if isinstance(node, ml_collections.ConfigDict) and part in node else None
    return node


def load_config(spec: str, overrides: list[str] | tuple[str, ...] = ()) -> ml_collections.ConfigDict:
    """Load ``PATH[:ARG]``, call its ``get_config(ARG)``, apply ``KEY=VALUE`` overrides, lock it.

    Raises:
      FileNotFoundError: no such config file.
      AttributeError: the file defines no get_config.
      KeyError, TypeError, ValueError: a bad ARG or override (the message names the key).
    """
    path, _, arg = spec.partition(":")
    config = config_file_module(path).get_config(arg or None)
    return apply_overrides(config, overrides)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--config PATH[:ARG]``; overrides come as ``--config.KEY=VALUE`` (see parse_args_with_config)."""
    parser.add_argument("--config", required=True, metavar="PATH[:ARG]",
                        help="config file and its argument, e.g. configs/dfew.py:fold=1,variant=D; "
                             "override single values with --config.KEY=VALUE")


def parse_args_with_config(parser: argparse.ArgumentParser, argv: list[str] | None = None
                           ) -> tuple[argparse.Namespace, ml_collections.ConfigDict]:
    """Parse ``argv``, load the config and apply every ``--config.KEY=VALUE`` override."""
    args, rest = parser.parse_known_args(argv)
    overrides = []
    for item in rest:
        if not item.startswith("--config."):
            parser.error(f"unrecognised argument {item!r}")
        overrides.append(item[len("--config."):])
    return args, load_config(args.config, overrides)
