"""TDRAG (Liu, Tao, Yang, Wang 2024): keyframes, a 3D ResNet18 with 3D residual attention, and a GRU.

"Dynamic facial expression recognition integrating spatiotemporal features", Journal of Xi'an
Polytechnic University (2024). Only the abstract is public (../shared/paper/liu2024_tdrag_abstract.txt):
"three-dimensional resnet and attention mechanism with GRU", on keyframes chosen by "redundancy
coefficients"; +4.27 WAR and +4.16 UAR over the 3D-ResNet18 baseline on DFEW. Where it is silent the
construction below is OUR READING, each choice a setting of ``config.model.tdrag``:

1. **Keyframes** (``keyframes``, ``keyframe_threshold``): the input pipeline keeps the stored frames
   whose redundancy coefficient against the last kept frame is at most the threshold (SSIM above 0.99 by
   default: held and repeated frames go, frames where the face moves stay; ``data.keyframes`` gives the
   measures and why), then samples the model's frames among them. Declared in the InputSpec, so
   training, evaluation and predict choose the same frames.
2. **3D ResNet18** (``models.r3d.R3D18``, torchvision's r3d_18 layout, ``widths``) with **3D residual
   attention** (``attention_stages``, default stages 1-3): in such a stage the first block's output x
   feeds both the trunk T (the second block) and a soft mask branch M (down-up in space, sigmoid,
   ``models.r3d.MaskBranch``), and the stage outputs (1 + M(x)) * T(x), the attention residual learning
   of the Residual Attention Network (Wang et al. 2017). Stages 1-3 as Wang et al., who put attention
   modules in every stage but the last (7x7 leaves nothing to pool down).
3. **Temporal strides** (``temporal_strides``, default (1, 2, 1, 1)): r3d_18 halves time in stages 2, 3
   and 4, so 16 frames leave 2 time steps, which gives a GRU nothing to do. Here only stage 2 halves
   time: the GRU sees 8 steps of a 16-frame clip (4 of the demo's 8), at 1.3x r3d_18's FLOPs; (1, 1, 1, 1)
   gives 16 steps at about 2x.
4. **GRU** (``gru_hidden`` units, default 512 = the trunk's width; Flax ``nnx.GRUCell``) over the
   per-time-step features, each the spatial average of the trunk's map (B, T', h, w, C) -> (B, T', C);
   its last state (``gru_output = "last"``, default) or the mean of its states (``"mean"``) is the
   clip's embedding and a linear layer gives the logits. The loss is the cross-entropy.

The training recipe is the DFEW baseline's (``models.r3d.DFEW_BASELINE_RECIPE``), as for ``r3d18``.
Torchvision r3d_18 weights (e.g. Kinetics-400) load into the trunk (``backbone_weights``): the attention
branches and the GRU keep their initialisation. Registered as ``tdrag``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from dferjax.models.base import InputSpec, Outputs, compute_dtype
from dferjax.models.loss import cross_entropy
from dferjax.models.r3d import DFEW_BASELINE_RECIPE, KEYFRAME_MEASURES, R3D18

GRU_OUTPUTS = ("last", "mean")
"""``model.tdrag.gru_output``: the GRU's last state or the mean of its states."""


class GRUHead(nnx.Module):
    """A single-layer GRU over time: (B, T, C) -> the last state or the mean of the states, (B, hidden).

    Flax's ``GRUCell`` (Cho et al. 2014 with the reset gate on the recurrent term, as PyTorch's, but
    without PyTorch's recurrent biases): r = sigmoid(W_ir x + b_ir + W_hr h), z = sigmoid(W_iz x + b_iz
    + W_hz h), n = tanh(W_in x + b_in + r * (W_hn h)), h' = (1 - z) * n + z * h, from h = 0. It runs in
    float32 whatever the compute dtype (short sequences, negligible cost).
    """

    def __init__(self, in_dim: int, hidden: int, output: str = "last", *, rngs: nnx.Rngs):
        if output not in GRU_OUTPUTS:
            raise ValueError(f"model.tdrag.gru_output must be one of {GRU_OUTPUTS}, got {output!r}")
        self.output = output
        self.hidden = hidden
        self.rnn = nnx.RNN(nnx.GRUCell(in_dim, hidden, rngs=rngs), rngs=False)   # no key in the state: h0 = 0

    def __call__(self, xs: jax.Array) -> jax.Array:
        h0 = jnp.zeros((xs.shape[0], self.hidden), jnp.float32)
        states = self.rnn(xs.astype(jnp.float32), initial_carry=h0)             # (B, T, hidden)
        return states[:, -1] if self.output == "last" else jnp.mean(states, axis=1)


class TDRAGModel(nnx.Module):
    """``tdrag``: inputs {"frames" (B, N, H, W, 3) in [0, 255]} -> Outputs (no auxiliary logits)."""

    TINY: ClassVar[dict[str, Any]] = dict(num_frames=8, image_size=64, widths=(16, 32, 64, 64), gru_hidden=64)
    """Shrunk for two CPU cores (the demo; tests shrink frames and size further)."""
    CHOICES: ClassVar[dict[str, tuple[Any, ...]]] = {"gru_output": GRU_OUTPUTS, "keyframes": KEYFRAME_MEASURES}
    POSITIVE: ClassVar[tuple[str, ...]] = ("num_frames", "image_size", "gru_hidden")
    RECIPE: ClassVar[dict[str, Any]] = DFEW_BASELINE_RECIPE

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        """Section ``config.model.tdrag`` (our reading where the abstract is silent; module docstring)."""
        c = ml_collections.ConfigDict()
        c.num_frames = 16                    # frames per clip, sampled among the keyframes
        c.image_size = 112                   # face crop side (r3d_18's 112x112)
        c.widths = (64, 128, 256, 512)       # 3D ResNet18 stage widths
        c.temporal_strides = (1, 2, 1, 1)    # only stage 2 halves time: 8 GRU steps of 16 frames
        c.attention_stages = (1, 2, 3)       # stages with 3D residual attention (Wang et al.: all but the last)
        c.gru_hidden = 512                   # GRU units
        c.gru_output = "last"                # last | mean: the GRU's last state or the mean of its states
        c.keyframes = "ssim"                 # redundancy measure: ssim | histogram | mad; "" = all frames
        c.keyframe_threshold = 0.99          # a frame more redundant than this with the last kept one is dropped
        c.backbone_weights = ""              # optional torchvision r3d_18 state dict for the trunk
        return c

    @classmethod
    def from_config(cls, section: Any, *, num_classes: int, dtype: str, rngs: nnx.Rngs) -> TDRAGModel:
        return cls(num_classes=num_classes, widths=tuple(section.widths),
                   temporal_strides=tuple(section.temporal_strides),
                   attention_stages=tuple(section.attention_stages), gru_hidden=int(section.gru_hidden),
                   gru_output=str(section.gru_output), dtype=dtype, rngs=rngs)

    @classmethod
    def input_spec(cls, section: Any, num_classes: int) -> InputSpec:
        return InputSpec(num_frames=int(section.num_frames), image_size=int(section.image_size),
                         heatmap_size=None, heatmap_sigma=0.0, num_classes=num_classes,
                         keyframes=str(section.keyframes), keyframe_threshold=float(section.keyframe_threshold))

    def __init__(self, *, num_classes: int = 7, widths: tuple[int, int, int, int] = (64, 128, 256, 512),
                 temporal_strides: tuple[int, int, int, int] = (1, 2, 1, 1),
                 attention_stages: tuple[int, ...] = (1, 2, 3), gru_hidden: int = 512, gru_output: str = "last",
                 dtype: str = "float32", rngs: nnx.Rngs):
        self.backbone = R3D18(widths=tuple(widths), temporal_strides=tuple(temporal_strides),
                              attention_stages=tuple(attention_stages), dtype=compute_dtype(dtype), rngs=rngs)
        self.gru = GRUHead(self.backbone.out_channels, gru_hidden, gru_output, rngs=rngs)
        self.head = nnx.Linear(gru_hidden, num_classes, rngs=rngs)

    def __call__(self, inputs: Mapping[str, jax.Array], *, train: bool = False) -> Outputs:
        maps = self.backbone(inputs["frames"], train)                          # (B, T', h, w, C)
        steps = jnp.mean(maps.astype(jnp.float32), axis=(2, 3))                # (B, T', C)
        embedding = self.gru(steps)                                            # (B, gru_hidden)
        return Outputs(self.head(embedding), None, embedding)

    def loss(self, outputs: Outputs, labels: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Cross-entropy of the logits."""
        loss = cross_entropy(outputs.logits, labels)
        return loss, {"loss_t": loss}
