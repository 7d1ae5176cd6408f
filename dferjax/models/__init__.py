"""The models and their registry: ``config.model.name`` selects one.

The config's ``model`` section holds ``name``, the settings every model takes (``num_classes``,
``dtype``) and one section per registered model with only its own settings::

    config.model.name = "dfer"            # a key of MODELS
    config.model.num_classes = 7
    config.model.dtype = "float32"        # compute dtype; parameters stay float32
    config.model.dfer.num_heads = 8       # the paper's model (models/dfer.py)
    config.model.frame_mean.widths = ...  # the frame-mean baseline (models/frame_mean.py)

Adding a model is one model file following the contract of ``models/base.py``, one line in
``MODELS`` and a config (docs/DESIGN.md, "Adding a model").
"""

from __future__ import annotations

from typing import Any

import jax
import ml_collections
from flax import nnx

from dferjax.config import one_frame
from dferjax.models.base import DTYPES, InputSpec, Model, Outputs
from dferjax.models.dfer import VARIANTS, DFERModel, apply_variant, variant_of
from dferjax.models.frame_mean import FrameMeanModel
from dferjax.models.lnlj import LNLJModel
from dferjax.models.loss import dfer_loss
from dferjax.models.mfer import MFERModel
from dferjax.models.r3d import R3D18Model
from dferjax.models.tdrag import TDRAGModel

MODELS: dict[str, type] = {
    "dfer": DFERModel,              # Huang et al. 2024: key-point GCN, region fusion, temporal MSA
    "frame_mean": FrameMeanModel,   # ResNet18 per frame, mean over frames, linear classifier
    "lnlj": LNLJModel,              # Shi et al. 2024: local region CNNs weighted by non-local attention, U-Net
    "mfer": MFERModel,              # Xu et al. 2024: ConvNeXt, DS attention, multiscale classifier, DSF loss
    "r3d18": R3D18Model,            # torchvision's r3d_18, the DFEW baseline (3D ResNet18)
    "tdrag": TDRAGModel,            # Liu et al. 2024: keyframes, 3D residual attention ResNet18, GRU
}

__all__ = ["DTYPES", "MODELS", "VARIANTS", "ModelConfigError", "UnknownModelError", "check_config", "DFERModel", "FrameMeanModel", "InputSpec", "Model", "Outputs",
           "abstract_model", "apply_tiny", "recipe_defaults", "select", "select_still_image", "apply_variant", "build_model", "variant_of", "default_config", "dfer_loss", "input_spec",
           "model_class", "model_section"]


class ModelConfigError(ValueError):
    """A ``model`` config value that no model accepts (the message names the key and the allowed values)."""


class UnknownModelError(ModelConfigError):
    """config.model.name names no registered model."""


def default_config() -> ml_collections.ConfigDict:
    """The ``model`` section: name ``dfer`` (the paper's model) and every registered model's defaults."""
    c = ml_collections.ConfigDict()
    c.name = "dfer"
    c.num_classes = 7
    c.dtype = "float32"
    for name, cls in MODELS.items():
        c[name] = cls.default_config()
    return c


def select(config: ml_collections.ConfigDict, name: str) -> None:
    """Select model ``name`` in a full config, in place, with its recipe: ``config.model.name = name`` and
    the class's ``RECIPE`` ({"section.key": value}, e.g. ``{"train.optimizer": "adamw"}``: the settings its
    authors trained it with, where they differ from the paper's model's defaults) applied.

    Config files call it for their ``model=`` argument (``configs/dfew.py:model=tdrag``); a plain
    ``--config.model.name=X`` override changes the model only.

    Raises:
      UnknownModelError: no registered model is called ``name`` (the known ones are listed).
    """
    cls = model_class({"name": name})
    config.model.name = name
    for key, value in (getattr(cls, "RECIPE", {}) or {}).items():
        section, _, leaf = key.rpartition(".")
        target = config
        for part in section.split("."):
            target = target[part]
        target[leaf] = value


RECIPE_ARGS = {"batch": "train.batch_size", "epochs": "train.epochs", "lr": "train.learning_rate"}
"""Config-file arguments whose default is the selected model's ``RECIPE`` value where it has one."""


def recipe_defaults(name: str, defaults: dict[str, Any]) -> dict[str, Any]:
    """A config file's argument ``defaults`` with ``batch``, ``epochs`` and ``lr`` taken from model ``name``'s
    ``RECIPE`` where it sets them (arguments given still win: they are parsed against these defaults).

    Raises:
      UnknownModelError: no registered model is called ``name``.
    """
    recipe = getattr(model_class({"name": name}), "RECIPE", {}) or {}
    return {**defaults, **{k: recipe[key] for k, key in RECIPE_ARGS.items() if key in recipe and k in defaults}}


def select_still_image(config: ml_collections.ConfigDict, name: str) -> None:
    """Select model ``name`` for still images, in place: one frame per sample (``config.one_frame``), the
    paper's model as Table 9's model B (its Eq. 5 head classifies one frame), then ``select`` (the model
    and its recipe). The still-image configs (rafdb, affectnet, ferplus, demo_images) call it.

    Raises:
      UnknownModelError: no registered model is called ``name``.
    """
    one_frame(config)
    apply_variant(config.model.dfer, "B")
    config.variant = "B" if name == "dfer" else ""
    select(config, name)


def apply_tiny(model_config: ml_collections.ConfigDict) -> None:
    """Shrink every model's section in place to its ``TINY`` setting (the demo's and the tests' size)."""
    for name, cls in MODELS.items():
        model_config[name].update(cls.TINY)


def model_class(model_config: Any) -> type:
    """The registered class of ``model_config.name``; UnknownModelError listing the known names."""
    name = model_config.get("name", "dfer") if hasattr(model_config, "get") else model_config.name
    if name not in MODELS:
        raise UnknownModelError(f"config key model.name = {name!r} is not a registered model; "
                                f"known models: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def check_config(model_config: Any) -> None:
    """Check ``model.name``, ``model.dtype``, ``model.num_classes`` and every registered model's section
    against what each key allows (the class's ``CHOICES``, its ``POSITIVE`` integer keys, ``widths``).

    Raises:
      UnknownModelError: model.name names no registered model (the known ones are listed).
      ModelConfigError: a value outside a key's allowed set, e.g. ``model.dfer.fusion = 'Mean'``.
    """
    model_class(model_config)
    problems = []
    if model_config.dtype not in DTYPES:
        problems.append(f"model.dtype = {model_config.dtype!r} is not one of {_listed(DTYPES)}")
    if not isinstance(model_config.num_classes, int) or model_config.num_classes < 2:
        problems.append(f"model.num_classes = {model_config.num_classes!r} is not an integer of at least 2")
    for name, cls in MODELS.items():
        section = model_config.get(name) if hasattr(model_config, "get") else None
        if section is None:
            continue
        for key, allowed in (getattr(cls, "CHOICES", {}) or {}).items():
            if key in section and section[key] not in allowed:
                problems.append(f"model.{name}.{key} = {section[key]!r} is not one of {_listed(allowed)}")
        for key in getattr(cls, "POSITIVE", ()):
            value = section.get(key)
            if key in section and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                problems.append(f"model.{name}.{key} = {value!r} is not a positive integer")
        if "widths" in section:
            widths = section["widths"]
            if (not isinstance(widths, (tuple, list)) or len(widths) != 4
                    or not all(isinstance(w, int) and w > 0 for w in widths)):
                problems.append(f"model.{name}.widths = {widths!r} is not 4 positive integers (one per backbone stage)")
    if problems:
        raise ModelConfigError("config key " + "; ".join(problems))


def _listed(values: Any) -> str:
    return ", ".join(repr(v) for v in values)


def model_section(model_config: Any) -> Any:
    """The selected model's own settings, ``config.model.<name>``, checked (see :func:`check_config`)."""
    check_config(model_config)
    return model_config[model_config.name]


def input_spec(model_config: Any) -> InputSpec:
    """What the configured model consumes (frames, image size, heat-maps and their size, classes)."""
    return model_class(model_config).input_spec(model_section(model_config), int(model_config.num_classes))


def _constructor(model_config: Any, seed: int):
    cls = model_class(model_config)
    section = model_section(model_config)
    return lambda: cls.from_config(section, num_classes=int(model_config.num_classes),
                                   dtype=str(model_config.dtype), rngs=nnx.Rngs(seed))


def abstract_model(model_config: Any, seed: int = 0) -> nnx.Module:
    """The configured model with ``jax.ShapeDtypeStruct`` leaves: its structure, nothing computed."""
    return nnx.eval_shape(_constructor(model_config, seed))


def build_model(model_config: Any, *, seed: int = 0) -> nnx.Module:
    """The model described by a config's ``model`` section, its parameters initialised from ``seed``.

    The parameters are initialised by one compiled program instead of op by op (where every
    initializer is a compilation of its own: about 15 s for the full ``dfer`` model on two CPU cores).
    On the CPU it is compiled without backend optimisation, which runs once and halves that time again.

    Raises:
      UnknownModelError: ``model.name`` is not in MODELS (the message lists them).
      ValueError: a setting of the section has an unsupported value (named).
    """
    construct = _constructor(model_config, seed)
    graphdef, _ = nnx.split(nnx.eval_shape(construct))
    init = jax.jit(lambda: nnx.split(construct())[1]).lower()
    options = {"xla_backend_optimization_level": 0} if jax.default_backend() == "cpu" else None
    return nnx.merge(graphdef, init.compile(compiler_options=options)())
