"""The throughput benchmark's FLOP count: the whole computation's, whatever the device count."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import jax
jax.config.update("jax_num_cpu_devices", {devices})
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
sys_path = {root!r}
import sys; sys.path.insert(0, sys_path)
from benchmarks.throughput import cost_flops
mesh = Mesh(np.asarray(jax.devices()), ("data",))
x = jax.device_put(np.ones((8, 64), np.float32), NamedSharding(mesh, P("data")))
w = jax.device_put(np.ones((64, 32), np.float32), NamedSharding(mesh, P()))
f = jax.jit(lambda a, b: a @ b, out_shardings=NamedSharding(mesh, P("data")))
lowered = f.lower(x, w)
print(len(jax.devices()), cost_flops(lowered, lowered.compile(), len(jax.devices())))
"""


def test_flops_count_the_global_batch_on_any_number_of_devices():
    """A batch-sharded (8 x 64) @ (64 x 32) product is 2 * 8 * 64 * 32 FLOPs on 1 and on 4 devices
    (XLA's analysis of the compiled program alone counts one device's share)."""
    for devices in (1, 4):
        out = subprocess.run([sys.executable, "-c", SCRIPT.format(devices=devices, root=str(ROOT))],
                             capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert out.returncode == 0, out.stderr[-2000:]
        count, flops = out.stdout.split()
        assert int(count) == devices
        assert abs(float(flops) - 2 * 8 * 64 * 32) <= 1e-3 * 2 * 8 * 64 * 32   # XLA counts 32,767
