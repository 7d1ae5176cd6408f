"""Temporal feature extraction across the frames of a clip (section 3.3, Eq. 6-11; Table 9).

``msa`` (the paper's): a learnable class token x_class is prepended to the N frame tokens and a
learnable position embedding added (Eq. 6); L pre-norm blocks follow, each multi-head self-attention
(Eq. 7-10) then an MLP (Eq. 11), both with residuals:

    [q, k, v]^(l,h) = LN(z^(l-1)) [W_q, W_k, W_v]^(l,h)                      (7)
    A^(l,h)         = softmax(q k^T / sqrt(d_k))                            (8)
    s^(l,h)         = A^(l,h) v^(l,h)                                       (9)
    y^l             = W_H [s^(l,1); ...; s^(l,H)] + z^(l-1)                 (10)
    z^l             = MLP(LN(y^l)) + y^l                                    (11)

The class token's output x_class^L is the video embedding (the model's linear head turns it into
v_class). As in the peers' temporal transformer (Former-DFER), each head has d_k = 64 whatever H is
(so H = 6 or 10 of Table 11 are possible with a 512-wide token), q/k/v projections have no bias, and
the MLP has one hidden layer of 1024 with GELU.

``lstm`` (Table 9, model C): an LSTM over the frame tokens; its last output is the video embedding.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from dferjax.models.recurrent import LastStepLSTM

TEMPORAL_KINDS = ("msa", "lstm", "none")

_embed_init = nnx.initializers.truncated_normal(0.02)


class MultiHeadSelfAttention(nnx.Module):
    """Eq. (7)-(10) without the residual: LN'd tokens (B, S, d) -> W_H [s^1; ...; s^H] (B, S, d)."""

    def __init__(self, dim: int, num_heads: int, head_dim: int, *, dtype: Any, rngs: nnx.Rngs):
        self.num_heads, self.head_dim = num_heads, head_dim
        self.qkv = nnx.Linear(dim, 3 * num_heads * head_dim, use_bias=False, dtype=dtype, rngs=rngs)
        self.out = nnx.Linear(num_heads * head_dim, dim, dtype=dtype, rngs=rngs)     # W_H

    def attention_weights(self, q: jax.Array, k: jax.Array) -> jax.Array:
        """Eq. (8): softmax(q k^T / sqrt(d_k)) per head, in float32. q, k (B, S, H, d_k) -> (B, H, S, S)."""
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
        return jax.nn.softmax(logits / jnp.sqrt(jnp.float32(self.head_dim)), axis=-1)

    def __call__(self, x: jax.Array) -> jax.Array:
        b, s, _ = x.shape
        q, k, v = jnp.split(self.qkv(x).reshape(b, s, 3 * self.num_heads, self.head_dim), 3, axis=2)
        attn = self.attention_weights(q, k).astype(v.dtype)
        heads = jnp.einsum("bhqk,bkhd->bqhd", attn, v)                                   # Eq. (9)
        return self.out(heads.reshape(b, s, self.num_heads * self.head_dim))            # Eq. (10)


class TransformerBlock(nnx.Module):
    """One layer l: y = MSA(LN(z)) + z (Eq. 7-10); z' = MLP(LN(y)) + y (Eq. 11)."""

    def __init__(self, dim: int, num_heads: int, head_dim: int, mlp_dim: int, *, dtype: Any, rngs: nnx.Rngs):
        self.norm1 = nnx.LayerNorm(dim, epsilon=1e-5, dtype=dtype, rngs=rngs)
        self.attn = MultiHeadSelfAttention(dim, num_heads, head_dim, dtype=dtype, rngs=rngs)
        self.norm2 = nnx.LayerNorm(dim, epsilon=1e-5, dtype=dtype, rngs=rngs)
        self.mlp1 = nnx.Linear(dim, mlp_dim, dtype=dtype, rngs=rngs)
        self.mlp2 = nnx.Linear(mlp_dim, dim, dtype=dtype, rngs=rngs)

    def __call__(self, z: jax.Array) -> jax.Array:
        y = self.attn(self.norm1(z)) + z
        return self.mlp2(nnx.gelu(self.mlp1(self.norm2(y)), approximate=False)) + y


class TemporalTransformer(nnx.Module):
    """Eq. (6)-(11): frame tokens (B, N, d) -> x_class^L (B, d)."""

    def __init__(self, dim: int, num_frames: int, *, num_layers: int = 3, num_heads: int = 8,
                 head_dim: int = 64, mlp_dim: int = 1024, dtype: Any = jnp.float32, rngs: nnx.Rngs):
        self.dtype = dtype
        self.class_token = nnx.Param(_embed_init(rngs.params(), (1, 1, dim), jnp.float32))
        self.pos_embedding = nnx.Param(_embed_init(rngs.params(), (1, num_frames + 1, dim), jnp.float32))
        self.blocks = nnx.List([TransformerBlock(dim, num_heads, head_dim, mlp_dim, dtype=dtype, rngs=rngs)
                                for _ in range(num_layers)])

    def __call__(self, tokens: jax.Array) -> jax.Array:
        b, n, d = tokens.shape
        if n + 1 != self.pos_embedding.shape[1]:
            raise ValueError(f"the model was built for {self.pos_embedding.shape[1] - 1} frames "
                             f"(model.dfer.num_frames) but got clips of {n} frames")
        cls = jnp.broadcast_to(self.class_token[...], (b, 1, d))
        z = (jnp.concatenate([cls, tokens.astype(jnp.float32)], axis=1) + self.pos_embedding[...])  # Eq. (6)
        z = z.astype(self.dtype)
        for block in self.blocks:
            z = block(z)
        return z[:, 0]


class TemporalLSTM(nnx.Module):
    """Table 9's model C: an LSTM over the frame tokens (B, N, d) -> last output (B, d)."""

    def __init__(self, dim: int, *, dtype: Any = jnp.float32, rngs: nnx.Rngs):
        self.lstm = LastStepLSTM(dim, dim, dtype=dtype, rngs=rngs)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        return self.lstm(tokens)
