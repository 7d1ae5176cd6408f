"""Configuration: the paper's defaults, the ablation variants, and loading config files.

Config files live in ``configs/`` and define ``get_config(arg)`` returning an ml_collections
ConfigDict built on :func:`base_config`. They are named on the command line as ``PATH[:ARG]``, e.g.
``configs/dfew.py:fold=3,variant=D``; single values are overridden with ``--config.KEY=VALUE``
(e.g. ``--config.model.num_heads=6``). The config comes back locked: a key that does not exist, in
the ARG string or an override, is an error that names it and lists the keys that do exist.

Defaults are the paper's (Huang et al. 2024, section 4.2 and Tables 9-12): 16 frames of 112x112,
ResNet18 at output stride 16, GCN on, structure fusion, 3 temporal layers with 8 heads, lambda 0.2.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
from pathlib import Path
from typing import Any

import ml_collections

# Table 9: which modules each ablation model has (E is the full model).
VARIANTS: dict[str, dict[str, Any]] = {
    "A": {"gcn": False, "temporal": "none"},
    "B": {"gcn": True, "temporal": "none"},
    "C": {"gcn": True, "temporal": "lstm"},
    "D": {"gcn": False, "temporal": "msa"},
    "E": {"gcn": True, "temporal": "msa"},
}


def base_config() -> ml_collections.ConfigDict:
    """The paper's settings, shared by every dataset config."""
    c = ml_collections.ConfigDict()
    c.dataset = ""                    # name of the dataset (dfew, ferv39k, mafw, afew, synthetic)
    c.fold = 0                        # test fold of a 5-fold dataset (1-5); 0 = fixed train/test split
    c.variant = "E"                   # Table 9 model the switches below describe (informational)

    c.data = ml_collections.ConfigDict()
    c.data.dir = ""                   # directory of shards written by data_prep (dataset_info.json)
    c.data.train_splits = ("train",)  # shard splits to train on (fold datasets: the other four folds)
    c.data.test_splits = ("test",)    # shard splits to evaluate on every epoch
    c.data.image_size = 112           # face crops are image_size x image_size (section 4.2, peers)
    c.data.num_segments = 8           # Former-DFER sampling: 8 segments ...
    c.data.frames_per_segment = 2     # ... x 2 consecutive frames = model.num_frames
    c.data.heatmap_sigma = 1.0        # Gaussian heat-map std in feature-map cells (section 3.1.1)
    c.data.crop_scale = (0.08, 1.0)   # random resized crop area fraction (peers' GroupRandomSizedCrop)
    c.data.crop_ratio = (0.75, 4 / 3)  # random resized crop aspect ratio range
    c.data.flip = True                # random horizontal flip (mirrors key-points, swaps left/right)
    c.data.num_workers = 0            # grain worker processes (0: threads in the training process)
    c.data.cache_decoded = False      # keep decoded frames in memory after epoch 1 (input_pipeline.DecodedCache)

    c.model = ml_collections.ConfigDict()
    c.model.num_classes = 7
    c.model.num_frames = 16           # N frames per clip (8 segments x 2 frames, as Former-DFER)
    c.model.widths = (64, 128, 256, 512)  # ResNet18 stage widths; tests shrink them
    c.model.output_stride = 16        # 8, 16 or 32 (DESIGN.md: last-stride trick at 16)
    c.model.gcn = True                # Table 9: key-point GCN (Eq. 3-4) on or off
    c.model.node_dim = 128            # f of Eq. (3): 512 -> 128 per node
    c.model.fusion = "structure"      # Table 10: structure | mean | lstm
    c.model.temporal = "msa"          # Table 9: msa | lstm | none
    c.model.num_layers = 3            # Table 12: L
    c.model.num_heads = 8             # Table 11: H
    c.model.head_dim = 64             # d_k of Eq. (8)
    c.model.mlp_dim = 1024            # hidden width of Eq. (11)'s MLP
    c.model.dtype = "float32"         # compute dtype: float32 | bfloat16 (parameters stay float32)

    c.model.backbone_weights = ""     # optional PyTorch/safetensors ResNet18 state dict to start from

    c.loss = ml_collections.ConfigDict()
    c.loss.aux_weight = 0.2           # lambda of Eq. (13)

    c.train = ml_collections.ConfigDict()
    c.train.batch_size = 64           # global batch (section 4.2), split over all devices
    c.train.eval_batch_size = 64
    c.train.epochs = 80               # section 4.2
    c.train.learning_rate = 1e-3      # Adam (section 4.2)
    c.train.b1 = 0.9
    c.train.b2 = 0.99
    c.train.weight_decay = 0.0
    c.train.lr_decay_epochs = (40, 60)  # lr x lr_decay_factor at each (section 4.2)
    c.train.lr_decay_factor = 0.1
    c.train.seed = 0                  # parameters, data order and augmentation
    c.train.log_every = 20            # steps between loss logs (and the NaN check)
    c.train.checkpoint_every = 0      # steps between mid-epoch checkpoints (0: at each epoch's end only)
    c.train.eval_every = 1            # epochs between evaluations on data.test_splits
    c.train.max_steps = 0             # stop after this many steps in all (0: train all epochs)
    c.train.init_checkpoint = ""      # fine-tune from another run's checkpoint (AFEW from DFEW)
    c.train.progress = True           # progress bars
    c.train.cpu_devices = 0           # without an accelerator: split the host's cores into this many JAX
                                      # devices for data parallelism (-1: as many as cores, dividing both
                                      # batch sizes; 0: JAX's default of one)
    return c


def apply_variant(config: ml_collections.ConfigDict, variant: str) -> None:
    """Set the model switches of Table 9's model ``variant`` (A-E) in place."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {sorted(VARIANTS)} (Table 9), got {variant!r}")
    config.model.update(VARIANTS[variant])


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
            raise TypeError(f"{config_file}: argument {key!r} takes a {type(default).__name__} "
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


def apply_override(config: ml_collections.ConfigDict, dotted_key: str, raw_value: str) -> None:
    """Set ``config.<dotted_key>`` from a command-line string; unknown keys and wrong types are errors."""
    node = config
    parts = dotted_key.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            where = ".".join(parts[:i]) or "the config"
            known = ", ".join(sorted(node.keys())) if isinstance(node, ml_collections.ConfigDict) else "none"
            raise KeyError(f"config key {dotted_key!r} does not exist: {where} has no {part!r} "
                           f"(its keys: {known})")
        if i < len(parts) - 1:
            node = node[part]
    old = node[parts[-1]]
    value = _parse_value(raw_value)
    if isinstance(old, tuple) and isinstance(value, list):
        value = tuple(value)
    if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if old is not None and type(value) is not type(old):
        raise TypeError(f"config key {dotted_key!r} takes a {type(old).__name__} (now {old!r}), "
                        f"got {raw_value!r}")
    node[parts[-1]] = value


def load_config(spec: str, overrides: list[str] | tuple[str, ...] = ()) -> ml_collections.ConfigDict:
    """Load ``PATH[:ARG]``, call its ``get_config(ARG)``, apply ``KEY=VALUE`` overrides, lock it."""
    path, _, arg = spec.partition(":")
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"config file {path!r} not found (expected e.g. configs/dfew.py)")
    module_spec = importlib.util.spec_from_file_location(f"dferjax_config_{file.stem}", file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise AttributeError(f"config file {path!r} defines no get_config(arg)")
    config = module.get_config(arg or None)
    config.lock()
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"config override {item!r} is not of the form KEY=VALUE")
        apply_override(config, key, raw)
    return config


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--config PATH[:ARG]``; overrides come as ``--config.KEY=VALUE`` (see parse_config_args)."""
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
