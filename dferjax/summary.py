"""Model summary: parameters per component and forward FLOPs per sample (a clip or a still image).

    python -m dferjax.summary --config configs/dfew.py [--config.model.dtype=bfloat16]

Any registered model (``--config.model.name=frame_mean``). Prints a table of the parameters of each
component (the paper reports "17M" for ``dfer``, Table 8) and, as the last line, one JSON object with
``params`` and ``flops_per_sample``: the forward FLOPs of one sample of the model's declared input
(inference mode) from XLA's cost analysis of the compiled function.
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

from dferjax import keypoints, models
from dferjax.config import add_config_arguments, parse_args_with_config


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


def summarize(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """Build the config's model and return its parameter counts and forward FLOPs per clip."""
    spec = models.input_spec(config.model)
    model = models.build_model(config.model)
    components = component_params(model)
    return {
        "model": config.model.name,
        "params": sum(components.values()),
        "flops_per_sample": forward_flops(model, zero_inputs(spec)),
        "components": components,
        "num_frames": spec.num_frames,
        "image_size": spec.image_size,
        "dtype": config.model.dtype,
        "backend": jax.default_backend(),
    }


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
