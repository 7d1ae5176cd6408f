"""The LSTM used by two ablations: Table 10's LSTM fusion (over a frame's nodes) and Table 9's
temporal LSTM (over a clip's frames). Both keep the output of the last step as the summary."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx


class LastStepLSTM(nnx.Module):
    """A single-layer LSTM over the middle axis: (N, T, D) -> output at step T, (N, hidden).

    The recurrence runs in float32 whatever the compute dtype (short sequences, negligible cost).
    """

    def __init__(self, in_dim: int, hidden: int, *, dtype: Any = jnp.float32, rngs: nnx.Rngs):
        self.dtype = dtype
        self.hidden = hidden
        # rngs=False: no PRNG key in the module's state (the initial carry is zeros anyway); with one,
        # the state holds a key-typed array that data-parallel placement and checkpoints cannot take.
        self.rnn = nnx.RNN(nnx.OptimizedLSTMCell(in_dim, hidden, rngs=rngs), rngs=False)

    def __call__(self, xs: jax.Array) -> jax.Array:
        zeros = jnp.zeros((xs.shape[0], self.hidden), jnp.float32)
        out = self.rnn(xs.astype(jnp.float32), initial_carry=(zeros, zeros))     # (c, h) from 0
        return out[:, -1, :].astype(self.dtype)
