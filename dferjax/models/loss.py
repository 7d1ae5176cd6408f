"""The training loss of Eq. (13): L = lambda * L_S + (1 - lambda) * L_T.

L_T (Eq. 12) is the cross-entropy of the temporal classifier's logits v_class, L_S (Eq. 5) that of the
auxiliary spatial head; lambda = 0.2 in the paper (its Fig. 8). A model without a temporal module
(Table 9, models A and B) has only one classifier and the loss is its cross-entropy.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from dferjax.models.base import Outputs


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean multi-class cross-entropy (L_class) of float logits (B, K) against integer labels (B,)."""
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels))


def dfer_loss(outputs: Outputs, labels: jax.Array, aux_weight: float = 0.2) -> tuple[jax.Array, dict]:
    """Eq. (13). Returns the loss and its parts {"loss_t", "loss_s"} (loss_s absent without aux head)."""
    loss_t = cross_entropy(outputs.logits, labels)
    if outputs.aux_logits is None:
        return loss_t, {"loss_t": loss_t}
    loss_s = cross_entropy(outputs.aux_logits, labels)
    return aux_weight * loss_s + (1.0 - aux_weight) * loss_t, {"loss_t": loss_t, "loss_s": loss_s}
