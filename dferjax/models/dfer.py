"""The assembled network of Huang et al. (2024), Fig. 2.

Per frame (section 3.1): F = Tri(ResNet(x)) (Eq. 1); V_l, v_g = landmark pooling of F with the 18
heat-maps (Eq. 2); V_GCN = the key-point GCN (Eq. 3-4); one token = the region fusion (section 3.2).
Per clip: the auxiliary spatial head FC(mean over frames of the tokens) (Eq. 5), and the temporal
module (Eq. 6-11) whose class-token output a linear layer turns into the logits v_class (Eq. 12).

The switches of the paper's ablations are constructor arguments (and config values, see
dferjax.config): ``gcn`` (Table 9), ``fusion`` (Table 10), ``temporal`` (Table 9: msa, lstm, none),
``num_heads`` (Table 11), ``num_layers`` (Table 12). With ``temporal="none"`` (Table 9, models A
and B) the spatial head is the classifier: its logits are the model's logits and there is no
auxiliary output.

All frames of all clips go through the per-frame part as one batch of B*N images, so batch norm sees
B*N frames. Parameters are float32; ``dtype`` sets the compute dtype (float32 or bfloat16); logits
and embeddings come back in float32.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx
from jax._src.core import trace_state_clean

from dferjax import keypoints
from dferjax.models.fusion import Fusion
from dferjax.models.gcn import KeypointGCN
from dferjax.models.landmark_pooling import landmark_pool
from dferjax.models.resnet import ResNet18
from dferjax.models.temporal import TEMPORAL_KINDS, TemporalLSTM, TemporalTransformer
from dferjax.models.triplet_attention import TripletAttention

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


class Outputs(NamedTuple):
    """logits v_class (B, classes); aux_logits of Eq. (5) or None; embedding (B, d) of the clip."""

    logits: jax.Array
    aux_logits: jax.Array | None
    embedding: jax.Array


class DFERModel(nnx.Module):
    """Frames (B, N, H, W, 3) in [0, 255] and heat-maps (B, N, h, w, 18) -> Outputs."""

    def __init__(self, *, num_classes: int = 7, num_frames: int = 16,
                 widths: tuple[int, int, int, int] = (64, 128, 256, 512), output_stride: int = 16,
                 gcn: bool = True, node_dim: int = 128, fusion: str = "structure", temporal: str = "msa",
                 num_layers: int = 3, num_heads: int = 8, head_dim: int = 64, mlp_dim: int = 1024,
                 dtype: str = "float32", rngs: nnx.Rngs):
        if dtype not in DTYPES:
            raise ValueError(f"model.dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        if temporal not in TEMPORAL_KINDS:
            raise ValueError(f"model.temporal must be one of {TEMPORAL_KINDS}, got {temporal!r}")
        compute = DTYPES[dtype]
        self.num_frames = num_frames
        self.temporal_kind = temporal
        self.backbone = ResNet18(widths=tuple(widths), output_stride=output_stride, dtype=compute, rngs=rngs)
        self.triplet_attention = TripletAttention(dtype=compute, rngs=rngs)
        self.gcn = KeypointGCN(self.backbone.out_channels, node_dim, graph=gcn, dtype=compute, rngs=rngs)
        self.fusion = Fusion(fusion, node_dim, dtype=compute, rngs=rngs)
        dim = self.fusion.out_dim
        # Eq. (5)'s FC; the classifier itself when there is no temporal module.
        self.spatial_head = nnx.Linear(dim, num_classes, rngs=rngs)
        if temporal == "msa":
            self.temporal = TemporalTransformer(dim, num_frames, num_layers=num_layers, num_heads=num_heads,
                                                head_dim=head_dim, mlp_dim=mlp_dim, dtype=compute, rngs=rngs)
        elif temporal == "lstm":
            self.temporal = TemporalLSTM(dim, dtype=compute, rngs=rngs)
        else:
            self.temporal = None
        self.head = nnx.Linear(dim, num_classes, rngs=rngs) if self.temporal is not None else None

    def frame_tokens(self, frames: jax.Array, heatmaps: jax.Array, train: bool) -> jax.Array:
        """Section 3.1-3.2 for every frame: (B, N, H, W, 3), (B, N, h, w, 18) -> tokens (B, N, d)."""
        b, n = frames.shape[:2]
        if heatmaps.shape[:2] != (b, n) or heatmaps.shape[-1] != keypoints.NUM_KEYPOINTS:
            raise ValueError(f"heat-maps {heatmaps.shape} do not match frames {frames.shape}: expected "
                             f"({b}, {n}, h, w, {keypoints.NUM_KEYPOINTS})")
        f = self.triplet_attention(self.backbone(frames.reshape(b * n, *frames.shape[2:]), train), train)
        local, global_ = landmark_pool(f, heatmaps.reshape(b * n, *heatmaps.shape[2:]))
        tokens = self.fusion(self.gcn(local, global_))
        return tokens.reshape(b, n, -1)

    def __call__(self, frames: jax.Array, heatmaps: jax.Array, *, train: bool = False) -> Outputs:
        tokens = self.frame_tokens(frames, heatmaps, train)
        video = jnp.mean(tokens.astype(jnp.float32), axis=1)
        spatial_logits = self.spatial_head(video)                               # Eq. (5)
        if self.temporal is None:
            return Outputs(spatial_logits, None, video)
        embedding = self.temporal(tokens).astype(jnp.float32)                  # x_class^L
        return Outputs(self.head(embedding), spatial_logits, embedding)        # v_class, Eq. (12)


def build_model(model_config: Any, *, seed: int = 0) -> DFERModel:
    """The model described by a config's ``model`` section (see dferjax.config).

    The parameters are initialised by one compiled program instead of op by op (where every
    initializer is a compilation of its own: about 15 s for the full model on two CPU cores). On the
    CPU it is compiled without backend optimisation, which runs once and halves that time again.
    Under ``nnx.eval_shape`` nothing is computed and the constructor simply runs.
    """
    settings = {k: v for k, v in dict(model_config).items() if k not in NOT_ARCHITECTURE}

    def construct() -> DFERModel:
        return DFERModel(**settings, rngs=nnx.Rngs(seed))

    if not trace_state_clean():         # under a trace (nnx.eval_shape, jit): build as is
        return construct()
    graphdef, _ = nnx.split(nnx.eval_shape(construct))
    init = jax.jit(lambda: nnx.split(construct())[1]).lower()
    options = {"xla_backend_optimization_level": 0} if jax.default_backend() == "cpu" else None
    return nnx.merge(graphdef, init.compile(compiler_options=options)())


NOT_ARCHITECTURE = ("backbone_weights",)
"""model.* config keys that are not DFERModel arguments (where the weights come from)."""
