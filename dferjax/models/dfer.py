"""The assembled network of Huang et al. (2024), Fig. 2.

Per frame (section 3.1): F = Tri(ResNet(x)) (Eq. 1); V_l, v_g = landmark pooling of F with the 18
heat-maps (Eq. 2); V_GCN = the key-point GCN (Eq. 3-4); one token = the region fusion (section 3.2).
Per clip: the auxiliary spatial head FC(mean over frames of the tokens) (Eq. 5), and the temporal
module (Eq. 6-11) whose class-token output a linear layer turns into the logits v_class (Eq. 12).

The switches of the paper's ablations are constructor arguments (and config values of the section
``config.model.dfer``, see :meth:`DFERModel.default_config`): ``gcn`` (Table 9), ``fusion`` (Table
10), ``temporal`` (Table 9: msa, lstm, none), ``num_heads`` (Table 11), ``num_layers`` (Table 12).
With ``temporal="none"`` (Table 9, models A and B) the spatial head is the classifier: its logits
are the model's logits and there is no auxiliary output. The loss is Eq. (13) (``aux_weight`` =
lambda). The model follows the contract of ``dferjax.models.base``; it is registered as ``dfer``.

All frames of all clips go through the per-frame part as one batch of B*N images, so batch norm sees
B*N frames. Parameters are float32; ``dtype`` sets the compute dtype (float32 or bfloat16); logits
and embeddings come back in float32.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from dferjax import keypoints
from dferjax.models.base import InputSpec, Outputs, compute_dtype
from dferjax.models.fusion import Fusion
from dferjax.models.gcn import KeypointGCN
from dferjax.models.landmark_pooling import landmark_pool
from dferjax.models.loss import dfer_loss
from dferjax.models.resnet import ResNet18, feature_map_size
from dferjax.models.temporal import TEMPORAL_KINDS, TemporalLSTM, TemporalTransformer
from dferjax.models.triplet_attention import TripletAttention

# Table 9: which modules each ablation model has (E is the full model).
VARIANTS: dict[str, dict[str, Any]] = {
    "A": {"gcn": False, "temporal": "none"},
    "B": {"gcn": True, "temporal": "none"},
    "C": {"gcn": True, "temporal": "lstm"},
    "D": {"gcn": False, "temporal": "msa"},
    "E": {"gcn": True, "temporal": "msa"},
}

NOT_ARCHITECTURE = ("num_frames", "image_size", "heatmap_sigma", "aux_weight", "backbone_weights")
"""Keys of the section that are not constructor arguments (inputs, the loss, where weights come from)."""


class DFERModel(nnx.Module):
    """inputs {"frames" (B, N, H, W, 3) in [0, 255], "heatmaps" (B, N, h, w, 18)} -> Outputs."""

    TINY: ClassVar[dict[str, Any]] = dict(num_frames=8, image_size=64, widths=(16, 32, 64, 64), node_dim=32,
                                          num_layers=1, num_heads=2, head_dim=16, mlp_dim=64)
    """The paper's architecture shrunk for two CPU cores (the demo; tests shrink frames and size further)."""

    CHOICES: ClassVar[dict[str, tuple[Any, ...]]] = {
        "output_stride": (8, 16, 32), "fusion": ("structure", "mean", "lstm"), "temporal": ("msa", "lstm", "none")}
    """The values these keys of the section allow (checked when a config is used, models.check_config)."""
    POSITIVE: ClassVar[tuple[str, ...]] = ("num_frames", "image_size", "node_dim", "num_layers", "num_heads",
                                           "head_dim", "mlp_dim")
    """Keys of the section that must be positive integers."""

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        """Section ``config.model.dfer``: the paper's settings (section 4.2, Tables 9-12)."""
        c = ml_collections.ConfigDict()
        c.num_frames = 16                  # N frames per clip (8 segments x 2 frames, as Former-DFER)
        c.image_size = 112                 # face crops are image_size x image_size (section 4.2, peers)
        c.widths = (64, 128, 256, 512)     # ResNet18 stage widths
        c.output_stride = 16               # 8, 16 or 32 (the last-stride trick at 16, section 3.1.1)
        c.heatmap_sigma = 1.0              # Gaussian heat-map std in feature-map cells (section 3.1.1)
        c.gcn = True                       # Table 9: key-point GCN (Eq. 3-4) on or off
        c.node_dim = 128                   # f of Eq. (3): 512 -> 128 per node
        c.fusion = "structure"             # Table 10: structure | mean | lstm
        c.temporal = "msa"                 # Table 9: msa | lstm | none
        c.num_layers = 3                   # Table 12: L
        c.num_heads = 8                    # Table 11: H
        c.head_dim = 64                    # d_k of Eq. (8)
        c.mlp_dim = 1024                   # hidden width of Eq. (11)'s MLP
        c.aux_weight = 0.2                 # lambda of Eq. (13)
        c.backbone_weights = ""            # optional PyTorch/safetensors ResNet18 state dict to start from
        return c

    @classmethod
    def from_config(cls, section: Any, *, num_classes: int, dtype: str, rngs: nnx.Rngs) -> DFERModel:
        settings = {k: v for k, v in dict(section).items() if k not in NOT_ARCHITECTURE}
        return cls(**settings, num_classes=num_classes, num_frames=int(section.num_frames), dtype=dtype,
                   aux_weight=float(section.aux_weight), rngs=rngs)

    @classmethod
    def input_spec(cls, section: Any, num_classes: int) -> InputSpec:
        """Frames and heat-maps at the backbone's feature-map grid (7x7 for 112x112 at stride 16)."""
        side = feature_map_size(int(section.image_size), int(section.output_stride))
        return InputSpec(num_frames=int(section.num_frames), image_size=int(section.image_size),
                         heatmap_size=side, heatmap_sigma=float(section.heatmap_sigma), num_classes=num_classes)

    def __init__(self, *, num_classes: int = 7, num_frames: int = 16,
                 widths: tuple[int, int, int, int] = (64, 128, 256, 512), output_stride: int = 16,
                 gcn: bool = True, node_dim: int = 128, fusion: str = "structure", temporal: str = "msa",
                 num_layers: int = 3, num_heads: int = 8, head_dim: int = 64, mlp_dim: int = 1024,
                 dtype: str = "float32", aux_weight: float = 0.2, rngs: nnx.Rngs):
        if temporal not in TEMPORAL_KINDS:
            raise ValueError(f"model.dfer.temporal must be one of {TEMPORAL_KINDS}, got {temporal!r}")
        compute = compute_dtype(dtype)
        self.num_frames = num_frames
        self.aux_weight = aux_weight
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

    def __call__(self, inputs: Mapping[str, jax.Array], *, train: bool = False) -> Outputs:
        tokens = self.frame_tokens(inputs["frames"], inputs["heatmaps"], train)
        video = jnp.mean(tokens.astype(jnp.float32), axis=1)
        spatial_logits = self.spatial_head(video)                               # Eq. (5)
        if self.temporal is None:
            return Outputs(spatial_logits, None, video)
        embedding = self.temporal(tokens).astype(jnp.float32)                  # x_class^L
        return Outputs(self.head(embedding), spatial_logits, embedding)        # v_class, Eq. (12)

    def loss(self, outputs: Outputs, labels: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Eq. (13): aux_weight * L_S + (1 - aux_weight) * L_T (L_T alone without a temporal module)."""
        return dfer_loss(outputs, labels, self.aux_weight)


def variant_of(section: Any) -> str:
    """The Table 9 model (A-E) whose switches the section ``config.model.dfer`` has; "" for none
    (e.g. ``fusion = 'mean'`` is an ablation of its own)."""
    for name, switches in VARIANTS.items():
        if all(section[k] == v for k, v in switches.items()):
            return name if section.get("fusion", "structure") == "structure" else ""
    return ""


def apply_variant(section: Any, variant: str) -> None:
    """Set the switches of Table 9's model ``variant`` (A-E) in the section ``config.model.dfer``."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {sorted(VARIANTS)} (Table 9), got {variant!r}")
    section.update(VARIANTS[variant])
