"""Devices, the mesh and moving data onto it (data parallelism, docs/DESIGN.md).

One ``jax.sharding.Mesh`` over every device of every process with a single ``data`` axis; the global
batch is sharded over it and the train state replicated. Several hosts: ``jax.distributed.initialize``
runs when a cluster is detected or coordinator arguments are given; each process reads its own slice
of every global batch and :func:`to_global` assembles the global arrays.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P


def initialize_distributed(coordinator: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None) -> bool:
    """``jax.distributed.initialize`` when several processes are asked for or a cluster is detected.

    Explicit arguments win; otherwise JAX's own environment variables (JAX_COORDINATOR_ADDRESS,
    JAX_NUM_PROCESSES, JAX_PROCESS_ID) or a SLURM / Open MPI job of more than one task trigger JAX's
    cluster auto-detection. A single process on one machine is left alone.

    Returns:
      True when the distributed runtime was initialised.
    """
    env = os.environ
    cluster = (int(env.get("SLURM_NTASKS", "1")) > 1 or int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1
               or "JAX_COORDINATOR_ADDRESS" in env)
    if not (coordinator or (num_processes or 1) > 1 or cluster):
        return False
    num_processes = num_processes or (int(env["JAX_NUM_PROCESSES"]) if "JAX_NUM_PROCESSES" in env else None)
    if process_id is None and "JAX_PROCESS_ID" in env:
        process_id = int(env["JAX_PROCESS_ID"])
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id)
    return True


def cpu_device_count(setting: int, cores: int, batch_sizes: tuple[int, ...]) -> int:
    """How many JAX CPU devices runtime.cpu_devices asks for on a host with ``cores`` cores (0: JAX's default).

    -1: the most devices, at most ``cores``, that divide every batch size (XLA:CPU runs one device's
    convolutions on about one core, so a device per core is data parallelism within the host).
    """
    if setting >= 0:
        return setting
    return max(d for d in range(1, max(cores, 1) + 1) if all(b % d == 0 for b in batch_sizes))


def set_cpu_devices(setting: int, batch_sizes: tuple[int, ...]) -> None:
    """Apply runtime.cpu_devices before JAX starts its backends; a note if they already run."""
    n = cpu_device_count(int(setting), os.cpu_count() or 1, tuple(int(b) for b in batch_sizes))
    if n == 0:
        return
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:                 # the backends are already initialised
        if jax.default_backend() == "cpu" and len(jax.devices()) != n:
            print(f"note: runtime.cpu_devices asks for {n} CPU devices, but JAX already runs with "
                  f"{len(jax.devices())}; using those", flush=True)


def make_mesh() -> Mesh:
    """All devices of all processes on one ``data`` axis."""
    return Mesh(np.asarray(jax.devices()), ("data",))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Place a host-identical pytree fully replicated over the mesh (works across processes).

    Args:
      tree: a pytree of arrays, the same in every process.
      mesh: the mesh to replicate over.
    Returns:
      The tree of global ``jax.Array`` with a replicated sharding.
    """
    sharding = NamedSharding(mesh, P())

    def place(x: Any) -> jax.Array:
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return jax.tree.map(place, tree)


def to_global(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """This process's slice of a batch (leading axis: its examples) -> global arrays sharded on ``data``."""
    sharding = NamedSharding(mesh, P("data"))
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}
