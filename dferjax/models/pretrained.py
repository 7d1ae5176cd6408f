"""Initialise the ResNet18 backbone from a PyTorch (torchvision-named) state dict on disk.

Huang et al. (2024) do not say how their ResNet18 starts: their text names no pre-training and no
pre-training data set, so the default here is random initialisation (``model.<name>.backbone_weights``
empty), and training says at its start which it was (``dferjax.train.weights_origin``). Our reading, for
reproduction (README, "Reproducing the paper"): ImageNet-pretrained torchvision weights
(``resnet18-f37072fd.pth``), which ADGC (Wang et al. 2020b), the work the paper's GCN is simplified
from (its section 3.1.2), starts from; peers differ (Former-DFER trains from scratch with its own
recipe). Such weights are PyTorch state dicts with torchvision's ``resnet18`` names (``conv1.weight``,
``layer1.0.bn1.running_mean``, ``layer2.0.downsample.0.weight``, ...), and face-recognition checkpoints
of the same architecture usually use them too. Our ``dferjax.models.resnet.ResNet18`` uses the same
layer names, so the copy is one to one:

* convolution ``weight`` (PyTorch O, I, kH, kW) -> ``kernel`` (Flax kH, kW, I, O);
* BatchNorm ``weight`` -> ``scale``, ``bias`` -> ``bias``, ``running_mean`` -> ``mean``,
  ``running_var`` -> ``var`` (the last two are ``nnx.BatchStat``, used when ``train=False``);
* ``num_batches_tracked`` and the classifier ``fc.*`` are not used (the model's heads replace fc).

The input normalisation does not need converting: torchvision models expect ImageNet-normalised
[0, 1] images and our model applies the same normalisation to [0, 255] inputs itself.

Files are read without running pickled code: ``.safetensors`` with the safetensors package,
``.npz`` with ``allow_pickle=False``, and PyTorch pickles (``.pt``, ``.pth``, ``.bin``, ``.tar``)
only through ``torch.load(..., weights_only=True)``, which refuses anything but tensors and plain
containers. PyTorch is an optional dependency (``pip install 'dferjax[torch]'``), needed only for
those pickles.

ConvNeXt (``mfer``'s backbone, ``dferjax.models.convnext``) loads a torchvision ``convnext_{tiny,small,base}``
state dict the same way (:func:`load_convnext_weights`): ``features.*`` and the LayerNorm ``classifier.0``
map one to one (``convnext.torchvision_key``); convolutions OIHW -> HWIO, Linear (out, in) -> (in, out),
layer scale (C, 1, 1) -> (C,). The ImageNet classifier ``classifier.2`` is not used. The checkpoints of
ConvNeXt's authors (facebookresearch/ConvNeXt: ``downsample_layers.*``, ``stages.S.I.dwconv``, ``gamma``,
e.g. the ImageNet-22k ``convnext_base_22k_1k_224.pth`` the MFER code starts from) and timm's
(``stem.*``, ``stages.S.blocks.I.conv_dw``, ``head.norm``) are renamed to torchvision's first
(:func:`convnext_torchvision_names`).

The 3D ResNet18 of ``r3d18`` and ``tdrag`` (``dferjax.models.r3d``) loads a torchvision ``r3d_18`` state
dict (e.g. the Kinetics-400 weights) by :func:`load_r3d18_weights`: the same names (``stem.0.weight``,
``layer2.0.conv1.0.weight``, ...), convolutions O, I, kT, kH, kW -> kT, kH, kW, I, O; the Kinetics
classifier ``fc`` is not used, and TDRAG's attention branches keep their initialisation.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

import jax.numpy as jnp
import numpy as np
from flax import nnx

from dferjax.models import convnext
from dferjax.models.r3d import R3D18
from dferjax.models.resnet import ResNet18


TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".tar")
SUFFIXES = (".safetensors", ".npz") + TORCH_SUFFIXES

_CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "weights", "params")
"""Keys under which training scripts commonly nest the state dict of a checkpoint."""

_LEAF_TO_TORCH = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean",
                  "var": "running_var"}
"""Our nnx variable name -> the PyTorch state-dict suffix it is read from."""


def _torchvision_resnet18_keys() -> frozenset[str]:
    """The backbone keys of torchvision's resnet18 (classifier excluded)."""
    bn = ("weight", "bias", "running_mean", "running_var")
    keys = {"conv1.weight", *(f"bn1.{b}" for b in bn)}
    for stage in range(1, 5):
        for block in range(2):
            p = f"layer{stage}.{block}."
            keys |= {p + "conv1.weight", p + "conv2.weight", *(p + f"bn1.{b}" for b in bn),
                     *(p + f"bn2.{b}" for b in bn)}
        keys |= {f"layer{stage}.0.downsample.0.weight", *(f"layer{stage}.0.downsample.1.{b}" for b in bn)}
    keys -= {k for k in keys if k.startswith("layer1.0.downsample")}   # same width, stride 1: none
    return frozenset(keys)


RESNET18_KEYS = _torchvision_resnet18_keys()


def _to_numpy(value: Any) -> np.ndarray | None:
    """A numpy array from a numpy array or a torch tensor (half precisions widened to float32)."""
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach") and hasattr(value, "numpy"):      # a torch.Tensor, without importing torch
        tensor = value.detach().cpu()
        if tensor.is_floating_point() and tensor.element_size() < 4:
            tensor = tensor.float()
        return tensor.numpy()
    return None


def _unwrap(obj: Any) -> Mapping[str, Any]:
    """Descend into {"state_dict": ...} / {"model": ...} style checkpoint containers."""
    while isinstance(obj, Mapping):
        inner = next((obj[k] for k in _CONTAINER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            return obj
        obj = inner
    raise TypeError(f"expected a mapping of parameter names to tensors, got {type(obj).__name__}")


def strip_prefix(state_dict: Mapping[str, Any], expected: frozenset[str] | set[str] = RESNET18_KEYS
                 ) -> dict[str, Any]:
    """Remove the key prefix ("module.", "backbone.", "module.encoder.", ...) that best matches ``expected``.

    The prefix is chosen among the ones that turn some key into an expected one, keeping the one
    under which most keys match; keys without that prefix are kept as they are (they end up in the
    loader's "ignored" list). Without any improvement over the keys as given, nothing is stripped.
    """
    def matches(prefix: str) -> int:
        return sum(1 for k in state_dict if k.startswith(prefix) and k[len(prefix):] in expected)

    candidates = {""}
    for key in state_dict:
        for name in expected:
            if key.endswith("." + name):
                candidates.add(key[: len(key) - len(name)])
    best = max(sorted(candidates), key=matches)
    if not best or matches(best) <= matches(""):
        return dict(state_dict)
    return {(k[len(best):] if k.startswith(best) else k): v for k, v in state_dict.items()}


def _load_torch(path: Path) -> Any:
    try:
        import torch
    except ImportError as err:
        raise ImportError(f"reading {path} needs PyTorch: pip install torch (or pip install 'dferjax[torch]'), "
                          f"or convert the file to .safetensors where torch is installed") from err
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        detail = next((line.strip() for line in str(err).splitlines() if "WeightsUnpickler error" in line), str(err))
        raise ValueError(f"{path} holds objects other than tensors and plain containers, so it was refused "
                         f"(torch.load with weights_only=True; loading it fully could run arbitrary code). "
                         f"If you trust the file, re-save its state_dict, or convert it to .safetensors. "
                         f"PyTorch said: {detail}") from err
    except RuntimeError as err:
        raise ValueError(f"could not read {path} with torch.load: {err}") from err


def load_state_dict(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read a state dict from ``path`` (.safetensors, .npz, or a PyTorch .pt/.pth/.bin/.tar) as numpy arrays.

    No pickled code is executed. Checkpoint containers ({"state_dict": ...}, {"model": ...}) are
    unwrapped and a common key prefix ("module.", "backbone.", ...) is stripped when that makes the
    keys torchvision ResNet18 keys. Non-tensor entries are dropped.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights file {path} not found (model.<name>.backbone_weights)")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.numpy import load_file
        try:
            raw: Any = load_file(str(path))
        except (SafetensorError, TypeError, ValueError) as err:
            raise ValueError(f"could not read {path} as safetensors with numpy: {err}") from err
    elif suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as npz:
                raw = {k: npz[k] for k in npz.files}
        except ValueError as err:
            raise ValueError(f"could not read {path} as .npz without pickle (object arrays are refused): "
                             f"{err}") from err
    elif suffix in TORCH_SUFFIXES:
        raw = _load_torch(path)
    else:
        raise ValueError(f"{path}: unknown weights format {suffix!r}; expected one of {', '.join(SUFFIXES)}")
    try:
        container = _unwrap(raw)
    except TypeError as err:
        raise ValueError(f"{path}: {err}") from err
    arrays = {str(k): a for k, v in container.items() if (a := _to_numpy(v)) is not None}
    if not arrays:
        raise ValueError(f"{path} holds no tensors (top-level keys: {sorted(map(str, container))[:10]})")
    return strip_prefix(arrays)


def _torch_key(path: tuple[Any, ...]) -> str:
    """('layer2', 0, 'downsample', 1, 'mean') -> 'layer2.0.downsample.1.running_mean'."""
    return ".".join(map(str, path[:-1] + (_LEAF_TO_TORCH[path[-1]],)))


def _copy_weights(backbone: Any, flat: list[tuple[Any, Any]], targets: dict[str, tuple[Any, Any]],
                  state_dict: Mapping[str, Any], *, strict: bool, torch_shape: Callable[[Any, tuple], tuple],
                  from_torch: Callable[[Any, np.ndarray], np.ndarray], none_found: tuple[str, str],
                  lacks: Callable[[list[str]], str], mismatch_hint: str,
                  missing_order: Callable[[str], Any] | None = None) -> dict[str, Any]:
    """The one copy of a PyTorch state dict into a backbone that every loader makes (in place).

    Args:
      backbone: the nnx module written to; flat: its flat state (path, variable) that is written back.
      targets: {PyTorch key: (path, variable)} of the variables the state dict may fill.
      state_dict: the arrays (a prefix such as "module." is stripped, ``strip_prefix``).
      strict: a missing key is an error (else the variable keeps its value and is listed).
      torch_shape: (path, our shape) -> the shape PyTorch stores; from_torch: (path, array) -> our layout.
      none_found: (what was not found, the question to the user): the error when no key matches, with the
        state dict's first keys between them.
      lacks: the sorted missing keys -> the error under ``strict``.
      mismatch_hint: appended to the error listing arrays of the wrong shape.
      missing_order: the sort key of the missing keys (default: alphabetical).
    Returns:
      {"loaded": arrays copied, "ignored": unused keys, "missing": targets absent from the state dict}.
    Raises:
      ValueError: no key matches, a missing key (``strict``), a shape mismatch or a non-float array; every
        array is checked before anything is written, so on an error the backbone is unchanged.
    """
    arrays = strip_prefix({str(k): a for k, v in state_dict.items() if (a := _to_numpy(v)) is not None},
                          set(targets))
    missing = sorted((k for k in targets if k not in arrays), key=missing_order)
    if len(missing) == len(targets):
        raise ValueError(f"{none_found[0]}, whose keys look like {sorted(arrays)[:5]}; {none_found[1]}")
    if strict and missing:
        raise ValueError(lacks(missing))
    new: dict[tuple[Any, ...], Any] = {}
    mismatched: list[str] = []
    for key in sorted(targets.keys() & arrays.keys(), key=list(arrays).index):     # in the file's order
        path, variable = targets[key]
        value = np.asarray(arrays[key])
        expected = torch_shape(path, tuple(variable.shape))
        if value.shape != expected:
            mismatched.append(f"{key} has shape {value.shape} but the backbone expects {expected}")
            continue
        if not np.issubdtype(value.dtype, np.floating):
            raise ValueError(f"{key}: expected floating-point values, got dtype {value.dtype}")
        new[path] = variable.replace(jnp.asarray(from_torch(path, value), dtype=variable.dtype))
    if mismatched:
        more = f"; and {len(mismatched) - 3} more" if len(mismatched) > 3 else ""
        raise ValueError(f"{len(mismatched)} arrays of the state dict do not fit the backbone (shapes in "
                         f"PyTorch layout): {'; '.join(mismatched[:3])}{more}. {mismatch_hint}")
    nnx.update(backbone, nnx.from_flat_state([(p, new.get(p, v)) for p, v in flat]))
    ignored = sorted(k for k in arrays if k not in targets)
    return {"loaded": len(new), "ignored": ignored, "missing": missing}


def _kernel_transposer(order: tuple[int, ...]) -> tuple[Callable[[Any, tuple], tuple],
                                                        Callable[[Any, np.ndarray], np.ndarray]]:
    """(torch_shape, from_torch) for backbones whose only layout change is a kernel's: ``order`` takes a
    PyTorch kernel (O, I, spatial...) to ours (spatial..., I, O)."""
    inverse = tuple(int(i) for i in np.argsort(order))

    def torch_shape(path: Any, shape: tuple) -> tuple:
        return tuple(shape[i] for i in inverse) if path[-1] == "kernel" else shape

    def from_torch(path: Any, value: np.ndarray) -> np.ndarray:
        return value.transpose(order) if path[-1] == "kernel" else value

    return torch_shape, from_torch


def load_resnet18_weights(backbone: ResNet18, state_dict: Mapping[str, Any], *, strict: bool = True
                          ) -> dict[str, Any]:
    """Copy a torchvision-named ResNet18 state dict into ``backbone`` (in place) and report what was used.

    ``state_dict`` maps names to numpy arrays or torch tensors (a prefix such as "module." is
    stripped). Every array is checked before anything is written, so on an error the backbone is
    unchanged. Raises ValueError on a shape mismatch (e.g. model.<name>.widths other than the checkpoint's)
    and, when ``strict``, if some backbone parameter or statistic has no entry; with
    ``strict=False`` those keep their current values and are listed under "missing". The backbone
    may be abstract (built under ``nnx.eval_shape``): a strict load makes every variable concrete.
    Returns {"loaded": number of arrays copied, "ignored": unused keys (fc.*, num_batches_tracked,
    ...), "missing": backbone keys absent from the state dict}.
    """
    flat = list(nnx.to_flat_state(nnx.state(backbone)))
    stages = (backbone.layer1, backbone.layer2, backbone.layer3, backbone.layer4)
    widths = tuple(int(stage[0].bn2.scale.shape[0]) for stage in stages)
    torch_shape, from_torch = _kernel_transposer((2, 3, 1, 0))                  # OIHW -> HWIO
    return _copy_weights(
        backbone, flat, {_torch_key(p): (p, v) for p, v in flat}, state_dict, strict=strict,
        torch_shape=torch_shape, from_torch=from_torch,
        none_found=(f"none of the {len(flat)} ResNet18 backbone keys (e.g. 'conv1.weight', "
                    "'layer1.0.bn1.running_mean') is in the state dict", "is it a torchvision-style ResNet18?"),
        lacks=lambda missing: (f"the state dict lacks {len(missing)} backbone keys: {', '.join(missing)}. "
                               "Pass strict=False to keep the current values for them."),
        mismatch_hint=(f"model.<name>.widths is {widths} here; does it match the checkpoint's (torchvision "
                       "ResNet18: (64, 128, 256, 512))?"))


_CONVNEXT_RENAMES: tuple[tuple[str, str, Callable[[re.Match], str]], ...] = (
    # (layout, pattern after any prefix, torchvision key); the prefix ("module.", ...) is kept.
    ("meta", r"downsample_layers\.0\.([01])\.(weight|bias)", lambda m: f"features.0.{m[1]}.{m[2]}"),
    ("meta", r"downsample_layers\.([123])\.([01])\.(weight|bias)",
     lambda m: f"features.{2 * int(m[1])}.{m[2]}.{m[3]}"),
    ("meta", r"stages\.(\d)\.(\d+)\.(dwconv|norm|pwconv1|pwconv2)\.(weight|bias)",
     lambda m: f"features.{2 * int(m[1]) + 1}.{m[2]}.block.{_BLOCK_INDEX[m[3]]}.{m[4]}"),
    ("meta", r"stages\.(\d)\.(\d+)\.gamma", lambda m: f"features.{2 * int(m[1]) + 1}.{m[2]}.layer_scale"),
    ("meta", r"norm\.(weight|bias)", lambda m: f"classifier.0.{m[1]}"),
    ("meta", r"head\.(weight|bias)", lambda m: f"classifier.2.{m[1]}"),
    ("timm", r"stem\.([01])\.(weight|bias)", lambda m: f"features.0.{m[1]}.{m[2]}"),
    ("timm", r"stages\.([123])\.downsample\.([01])\.(weight|bias)",
     lambda m: f"features.{2 * int(m[1])}.{m[2]}.{m[3]}"),
    ("timm", r"stages\.(\d)\.blocks\.(\d+)\.(conv_dw|norm|mlp\.fc1|mlp\.fc2)\.(weight|bias)",
     lambda m: f"features.{2 * int(m[1]) + 1}.{m[2]}.block.{_BLOCK_INDEX[m[3]]}.{m[4]}"),
    ("timm", r"stages\.(\d)\.blocks\.(\d+)\.gamma", lambda m: f"features.{2 * int(m[1]) + 1}.{m[2]}.layer_scale"),
    ("timm", r"head\.norm\.(weight|bias)", lambda m: f"classifier.0.{m[1]}"),
    ("timm", r"head\.fc\.(weight|bias)", lambda m: f"classifier.2.{m[1]}"),
)
_BLOCK_INDEX = {"dwconv": 0, "conv_dw": 0, "norm": 2, "pwconv1": 3, "mlp.fc1": 3, "pwconv2": 5, "mlp.fc2": 5}


def convnext_torchvision_names(state_dict: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """A ConvNeXt state dict in torchvision's names, and the layout it came in.

    Layouts: "torchvision" (``features.*``: returned as is); "meta", the checkpoints of Liu et al. 2022
    (facebookresearch/ConvNeXt: ``downsample_layers.0.0.weight``, ``stages.2.5.pwconv1.weight``,
    ``stages.2.5.gamma`` of shape (C,), ``norm.*``, ``head.*``); "timm" (``stem.0.weight``,
    ``stages.2.blocks.5.mlp.fc1.weight``, ``head.norm.*``, ``head.fc.*``). A block's layer scale becomes
    (C, 1, 1) as torchvision stores it; a prefix such as "module." is kept (``strip_prefix`` removes it
    later); keys that match no pattern (e.g. "epoch") are kept as they are.
    """
    keys = [str(k) for k in state_dict]
    if any(".block." in k and "features." in k for k in keys):
        return dict(state_dict), "torchvision"
    layout = ("meta" if any("downsample_layers." in k for k in keys)
              else "timm" if any(".blocks." in k and "stages." in k for k in keys) else "")
    if not layout:
        return dict(state_dict), "torchvision"
    out: dict[str, Any] = {}
    for key, value in state_dict.items():
        name = str(key)
        for which, pattern, rename in _CONVNEXT_RENAMES:
            m = re.fullmatch(r"((?:[A-Za-z_]\w*\.)*?)" + pattern, name) if which == layout else None
            if m:
                inner = re.fullmatch(pattern, name[len(m[1]):])
                name = m[1] + rename(inner)
                if name.endswith(".layer_scale") and _to_numpy(value) is not None:
                    value = _to_numpy(value).reshape(-1, 1, 1)
                break
        out[name] = value
    return out, layout


def load_convnext_weights(backbone: convnext.ConvNeXt, state_dict: Mapping[str, Any], *, strict: bool = True
                          ) -> dict[str, Any]:
    """Copy a ConvNeXt state dict into ``backbone`` (in place) and report what was used.

    torchvision's ``convnext_*`` names, or those of ConvNeXt's authors or timm, renamed first
    (:func:`convnext_torchvision_names`; the result's "layout" says which it was).

    As :func:`load_resnet18_weights`: a prefix ("module.", "backbone.") is stripped, every array is checked
    before anything is written (ValueError on a shape mismatch, e.g. model.<name>.size other than the
    checkpoint's, and, when ``strict``, on a missing key), and the result is {"loaded", "ignored" (e.g.
    ``classifier.2.*``, the ImageNet classifier), "missing"}. Only parameters are read: the stochastic-depth
    key is not.
    """
    flat = list(nnx.to_flat_state(nnx.state(backbone, nnx.Param)))
    targets = {convnext.torchvision_key(p): (p, v) for p, v in flat}
    state_dict, layout = convnext_torchvision_names(state_dict)

    def lacks(missing: list[str]) -> str:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        return (f"the state dict lacks {len(missing)} ConvNeXt backbone keys: {shown} (fewer blocks in the "
                f"checkpoint than model.<name>.depths = {backbone.depths}?). Pass strict=False to keep the current "
                "values for them.")

    return _copy_weights(
        backbone, flat, targets, state_dict, strict=strict, torch_shape=convnext.torch_shape,
        from_torch=convnext.from_torch_layout, missing_order=list(targets).index, lacks=lacks,
        none_found=(f"none of the {len(targets)} ConvNeXt backbone keys (e.g. 'features.0.0.weight', "
                    "'features.1.0.layer_scale') is in the state dict",
                    "is it a ConvNeXt of torchvision, timm or facebookresearch/ConvNeXt (tiny/small/base)?"),
        mismatch_hint=(f"The backbone has widths {backbone.widths} and depths {backbone.depths}; does "
                       "model.<name>.size match the checkpoint's (tiny, small: 96-768; base: 128-1024)?")
    ) | {"layout": layout}


def load_r3d18_weights(backbone: R3D18, state_dict: Mapping[str, Any], *, strict: bool = True) -> dict[str, Any]:
    """Copy a torchvision ``r3d_18`` state dict (e.g. its Kinetics-400 weights) into the 3D ResNet18 trunk
    of ``r3d18`` or ``tdrag`` (in place) and report what was used.

    As :func:`load_resnet18_weights`: names map one to one (``stem.0.weight``, ``layer2.0.conv1.0.weight``,
    ``layer2.0.downsample.1.running_var``, ...; convolutions O, I, kT, kH, kW -> kT, kH, kW, I, O), a
    prefix ("module.", "backbone.") is stripped, every array is checked before anything is written
    (ValueError on a shape mismatch, e.g. model.<name>.widths other than the checkpoint's, and, when
    ``strict``, on a missing key), and the result is {"loaded", "ignored" (``fc.*``, the Kinetics
    classifier; ``num_batches_tracked``), "missing"}. TDRAG's attention branches (``mask<stage>``) have no
    counterpart and keep their values; the temporal strides do not change any shape.
    """
    flat = list(nnx.to_flat_state(nnx.state(backbone)))
    widths = tuple(int(stage[0].conv2[1].scale.shape[0])
                   for stage in (backbone.layer1, backbone.layer2, backbone.layer3, backbone.layer4))
    torch_shape, from_torch = _kernel_transposer((2, 3, 4, 1, 0))               # OITHW -> THWIO
    targets = {_torch_key(p): (p, v) for p, v in flat if not str(p[0]).startswith("mask")}
    return _copy_weights(
        backbone, flat, targets, state_dict, strict=strict, torch_shape=torch_shape, from_torch=from_torch,
        none_found=(f"none of the {len(targets)} r3d_18 keys (e.g. 'stem.0.weight', 'layer1.0.conv1.0.weight') "
                    "is in the state dict", "is it a torchvision-style r3d_18?"),
        lacks=lambda missing: (f"the state dict lacks {len(missing)} r3d_18 keys: {', '.join(missing)}. "
                               "Pass strict=False to keep the current values for them."),
        mismatch_hint=(f"model.<name>.widths is {widths} here; does it match the checkpoint's (torchvision "
                       "r3d_18: (64, 128, 256, 512))?"))


def init_backbone_from(model: Any, path: str | os.PathLike[str], *, strict: bool = True) -> dict[str, Any]:
    """Load the file at ``path`` (see load_state_dict) into ``model.backbone``: the ResNet18 of ``dfer`` and
    ``frame_mean``, the ConvNeXt of ``mfer`` or the 3D ResNet18 of ``r3d18`` and ``tdrag``
    (:func:`load_r3d18_weights`); ValueError for a model without one of them."""
    backbone = getattr(model, "backbone", None)
    if isinstance(backbone, R3D18):                  # r3d18, tdrag: a torchvision r3d_18 state dict
        return load_r3d18_weights(backbone, load_state_dict(path), strict=strict)
    if isinstance(backbone, convnext.ConvNeXt):
        return load_convnext_weights(backbone, load_state_dict(path), strict=strict)
    if not isinstance(backbone, ResNet18):
        raise ValueError(f"{type(model).__name__} has no ResNet18 backbone (nor a ConvNeXt one) to load {path} "
                         f"into")
    return load_resnet18_weights(backbone, load_state_dict(path), strict=strict)
