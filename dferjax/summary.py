"""Model summary: parameters per component and forward FLOPs per clip.

    python -m dferjax.summary --config configs/dfew.py [--config.model.dtype=bfloat16]

Prints a table of the parameters of each component (the paper reports "17M", Table 8) and, as the
last line, one JSON object with ``params`` and ``flops_per_sample``: the forward FLOPs of one clip
of ``model.num_frames`` frames (inference mode) from XLA's cost analysis of the compiled function.
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
from flax import nnx

from dferjax import keypoints
from dferjax.config import add_config_arguments, parse_args_with_config
from dferjax.models import DFERModel, build_model
from dferjax.models.resnet import feature_map_size


def count_params(module: nnx.Module) -> int:
    """Number of trainable parameters (nnx.Param leaves) of a module."""
    return sum(int(x.size) for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


def component_params(model: DFERModel) -> dict[str, int]:
    """Parameters of each top-level component of the model, in forward order."""
    counts = {}
    for name, child in vars(model).items():
        if isinstance(child, nnx.Module):
            counts[name] = count_params(child)
    return counts


def example_inputs(config: ml_collections.ConfigDict, batch: int = 1) -> tuple[jax.Array, jax.Array]:
    """Zero frames (uint8) and heat-maps shaped as the config's model expects them."""
    size = config.data.image_size
    side = feature_map_size(size, config.model.output_stride)
    frames = jnp.zeros((batch, config.model.num_frames, size, size, 3), jnp.uint8)
    heatmaps = jnp.zeros((batch, config.model.num_frames, side, side, keypoints.NUM_KEYPOINTS), jnp.float32)
    return frames, heatmaps


def forward_flops(model: DFERModel, frames: jax.Array, heatmaps: jax.Array) -> float:
    """XLA's FLOP count of the compiled inference forward pass on these inputs."""
    graphdef, state = nnx.split(model)

    def forward(state: Any, frames: jax.Array, heatmaps: jax.Array) -> jax.Array:
        return nnx.merge(graphdef, state)(frames, heatmaps, train=False).logits

    compiled = jax.jit(forward).lower(state, frames, heatmaps).compile()
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0]
    return float(analysis["flops"])


def summarize(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """Build the config's model and return its parameter counts and forward FLOPs per clip."""
    model = build_model(config.model)
    components = component_params(model)
    frames, heatmaps = example_inputs(config)
    return {
        "params": sum(components.values()),
        "flops_per_sample": forward_flops(model, frames, heatmaps),
        "components": components,
        "num_frames": config.model.num_frames,
        "image_size": config.data.image_size,
        "dtype": config.model.dtype,
        "backend": jax.default_backend(),
    }


def format_table(summary: dict[str, Any]) -> str:
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
    lines.append(f"forward FLOPs per clip ({summary['num_frames']} frames of {summary['image_size']}x"
                 f"{summary['image_size']}, {summary['dtype']}): {summary['flops_per_sample'] / 1e9:.2f} GFLOPs")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dferjax.summary", description=__doc__.split("\n")[0])
    add_config_arguments(parser)
    _, config = parse_args_with_config(parser, argv)
    start = time.perf_counter()
    summary = summarize(config)
    print(format_table(summary))
    print(f"(built and compiled in {time.perf_counter() - start:.1f} s on {jax.default_backend()})")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
