"""Model summary: parameters per component and forward FLOPs per sample (a clip or a still image).

    python -m dferjax.summary --config configs/dfew.py [--config.model.dtype=bfloat16]

Any registered model (``--config.model.name=frame_mean``). Prints a table of the parameters of each
component (the paper reports "17M" for ``dfer``, Table 8) and, as the last line, one JSON object with
``params`` and ``flops_per_sample``: the forward FLOPs of one sample of the model's declared input
(inference mode) from XLA's cost analysis of the compiled function.

For a model that takes heat-maps it also reports how distinct its 18 key-points are to it:

- ``heatmap_overlap``: the cosine similarity of neighbouring key-points' heat-maps (the pairs joined
  in ``keypoints.ADJACENCY``, 25 edges), mean and max, at the model's heat-map size and sigma, on the
  canonical face (``canonical_keypoints``). The scale of a map (``model.dfer.heatmap_norm``) does not
  change a cosine. At 7x7 and sigma = 1 cell (112x112, output stride 16) neighbours are 84% alike on
  average: the GCN and the region fusion see far fewer distinct descriptors than 18. The levers:
  ``model.dfer.heatmap_sigma``, ``model.dfer.output_stride=8`` (14x14), ``model.dfer.image_size=224``.
- ``local_similarity`` (models with ``local_vectors``, i.e. ``dfer``): the mean cosine similarity of
  the local vectors v^j (Eq. 2) within each region of ``keypoints.REGIONS`` (all pairs, averaged over
  the regions and frames) in the untrained model (seed 0, inference mode) on frames of the synthetic
  demo set at the model's image size, and the mean norm of v^j over that of v_g.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from dferjax import keypoints, models
from dferjax.config import add_config_arguments, parse_args_with_config
from dferjax.data import synthetic_faces

CANONICAL_SCALE = 0.69
"""Face units per crop side of the canonical face: the mean of the synthetic set's scale draw (0.64-0.74)."""


def count_params(module: nnx.Module) -> int:
    """Number of trainable parameters (nnx.Param leaves) of a module."""
    return sum(int(x.size) for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


def component_params(model: nnx.Module) -> dict[str, int]:
    """Parameters of each top-level component of the model, in forward order."""
    counts = {}
    for name, child in vars(model).items():
        if isinstance(child, nnx.Module):
            counts[name] = count_params(child)
    return counts


def zero_inputs(spec: models.InputSpec, batch: int = 1) -> dict[str, jax.Array]:
    """Zero frames (uint8) and, where the model takes them, heat-maps, as its InputSpec declares them."""
    size, n = spec.image_size, spec.num_frames
    inputs = {"frames": jnp.zeros((batch, n, size, size, 3), jnp.uint8)}
    if spec.heatmap_size is not None:
        side = spec.heatmap_size
        inputs["heatmaps"] = jnp.zeros((batch, n, side, side, keypoints.NUM_KEYPOINTS), jnp.float32)
    return inputs


def forward_flops(model: nnx.Module, inputs: dict[str, jax.Array]) -> float:
    """XLA's FLOP count of the compiled inference forward pass on these inputs."""
    graphdef, state = nnx.split(model)

    def forward(state: Any, inputs: dict[str, jax.Array]) -> jax.Array:
        return nnx.merge(graphdef, state)(inputs, train=False).logits

    compiled = jax.jit(forward).lower(state, inputs).compile()
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0]
    return float(analysis["flops"])


def canonical_keypoints(image_size: int) -> np.ndarray:
    """The 18 key-points (18, 2), pixels, of the canonical face in an ``image_size`` crop.

    The synthetic demo set's average face (``synthetic_faces.FaceShape()``) at rest, at the mean of
    that set's pose draw: centred (its centre 0.035 face units below the crop's), 0.69 of the crop
    per face unit, upright and frontal. The set frames its faces as the data pipeline crops real ones
    (dlib's box plus 25% on each side); every key-point of this layout lies within 0.025 of the crop
    side of the mean dlib shape so framed (keypoints.py's table), which gives the same mean overlap
    to 0.01.
    """
    size = float(image_size)
    pose = synthetic_faces.FacePose(cx=0.5 * size, cy=(0.5 + 0.035 * CANONICAL_SCALE) * size,
                                    scale=CANONICAL_SCALE * size)
    landmarks = synthetic_faces.face_landmarks(synthetic_faces.NEUTRAL, 0.0, pose=pose)
    return keypoints.keypoints_from_landmarks(landmarks)


def heatmap_overlap(spec: models.InputSpec) -> dict[str, Any]:
    """Cosine similarity of neighbouring key-points' heat-maps (``keypoints.ADJACENCY``'s edges) on the
    canonical face at the spec's image size, heat-map size and sigma: {"mean", "max", "size", "sigma"}."""
    side = spec.heatmap_size
    maps = keypoints.render_heatmaps(canonical_keypoints(spec.image_size), (spec.image_size, spec.image_size),
                                     (side, side), spec.heatmap_sigma)
    cosine = _cosine_matrix(maps.reshape(side * side, keypoints.NUM_KEYPOINTS).T)
    rows, cols = np.nonzero(np.triu(keypoints.ADJACENCY))
    pairs = cosine[rows, cols]
    return {"mean": float(pairs.mean()), "max": float(pairs.max()), "size": side, "sigma": spec.heatmap_sigma}


def _cosine_matrix(vectors: np.ndarray) -> np.ndarray:
    """(K, D) -> (K, K) cosine similarities (a zero vector is similar to nothing)."""
    v = np.asarray(vectors, np.float64)
    norms = np.linalg.norm(v, axis=-1, keepdims=True)
    unit = v / np.where(norms > 0, norms, 1.0)
    return unit @ unit.T


def local_similarity(model: nnx.Module, spec: models.InputSpec, *, num_frames: int = 2, label: int = 0,
                     seed: int = 0) -> dict[str, Any]:
    """Mean cosine similarity of the local vectors within each region (module docstring) and the norm ratio
    |v^j| / |v_g|, from ``model.local_vectors`` on ``num_frames`` frames of the synthetic clip (label, seed)."""
    size, side = spec.image_size, spec.heatmap_size
    frames, landmarks = synthetic_faces.render_clip(label, seed, num_frames=num_frames, size=size)
    maps = keypoints.render_heatmaps(keypoints.keypoints_from_landmarks(landmarks), (size, size), (side, side),
                                     spec.heatmap_sigma)
    graphdef, state = nnx.split(model)

    def pool(state: Any, frames: jax.Array, maps: jax.Array) -> tuple[jax.Array, jax.Array]:
        return nnx.merge(graphdef, state).local_vectors(frames, maps, train=False)

    local, global_ = jax.jit(pool)(state, jnp.asarray(frames)[None], jnp.asarray(maps)[None])
    local, global_ = np.asarray(local, np.float64), np.asarray(global_, np.float64)
    regions = {}
    for name, members in keypoints.REGIONS.items():
        upper = np.triu_indices(len(members), 1)
        regions[name] = float(np.mean([_cosine_matrix(v[list(members)])[upper].mean() for v in local]))
    ratio = np.linalg.norm(local, axis=-1) / np.linalg.norm(global_, axis=-1)[:, None]
    return {"mean": float(np.mean(list(regions.values()))), "regions": regions,
            "local_to_global_norm": float(ratio.mean())}


def summarize(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """Build the config's model and return its parameter counts and forward FLOPs per clip, and for a model
    that takes heat-maps their overlap and (where it exposes ``local_vectors``) its local vectors' similarity."""
    spec = models.input_spec(config.model)
    model = models.build_model(config.model)
    components = component_params(model)
    summary = {
        "model": config.model.name,
        "params": sum(components.values()),
        "flops_per_sample": forward_flops(model, zero_inputs(spec)),
        "components": components,
        "num_frames": spec.num_frames,
        "image_size": spec.image_size,
        "dtype": config.model.dtype,
        "backend": jax.default_backend(),
    }
    if spec.heatmap_size is not None:
        summary["heatmap_overlap"] = heatmap_overlap(spec)
        if hasattr(model, "local_vectors"):
            summary["local_similarity"] = local_similarity(model, spec)
    return summary


def format_param_table(summary: dict[str, Any]) -> str:
    """The per-component parameter table as text."""
    rows = [("component", "params", "share")]
    total = summary["params"]
    for name, n in summary["components"].items():
        rows.append((name, f"{n:,}", f"{100 * n / total:.1f}%"))
    rows.append(("total", f"{total:,}", "100.0%"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}" for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    size = f"{summary['image_size']}x{summary['image_size']}"
    what = (f"image ({size}" if summary["num_frames"] == 1 else f"clip ({summary['num_frames']} frames of {size}")
    lines.append(f"forward FLOPs per {what}, {summary['dtype']}): {summary['flops_per_sample'] / 1e9:.2f} GFLOPs")
    overlap = summary.get("heatmap_overlap")
    if overlap:
        lines.append(f"heat-map overlap, neighbouring key-points at {overlap['size']}x{overlap['size']}, sigma "
                     f"{overlap['sigma']:g} cell(s), canonical face: cosine mean {overlap['mean']:.2f}, "
                     f"max {overlap['max']:.2f}")
    similar = summary.get("local_similarity")
    if similar:
        regions = ", ".join(f"{name} {value:.2f}" for name, value in similar["regions"].items())
        lines.append(f"local vectors within a region, untrained model, synthetic frames: cosine mean "
                     f"{similar['mean']:.2f} ({regions}); |v^j| / |v_g| = {similar['local_to_global_norm']:.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dferjax.summary", description=__doc__.split("\n")[0])
    add_config_arguments(parser)
    try:
        _, config = parse_args_with_config(parser, argv)
        models.check_config(config.model)
    except (KeyError, TypeError, ValueError, FileNotFoundError, AttributeError) as error:
        parser.error(str(error).strip('"'))
    start = time.perf_counter()
    summary = summarize(config)
    print(format_param_table(summary))
    print(f"(built and compiled in {time.perf_counter() - start:.1f} s on {jax.default_backend()})")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
