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

Where the paper is open, the reading is a setting of the section (our readings; each changes only what
it names, ``tests/test_paper_readings.py``):

- ``heatmap_norm`` (Eq. 2): ``peak`` | ``sum`` | ``mean`` (default), how each heat-map is scaled on
  F's grid before the pooling (``landmark_pooling``). Default ``mean``: v^j is then the heat-map-weighted
  mean of F, on the scale of v_g (the plain mean) at every resolution and sigma. Peak-1 maps make
  v^j about 2 pi sigma^2 / (h w) of that (0.13 at 7x7, sigma 1; 0.03 at 14x14), so the local vectors
  are about a tenth of v_g in norm, the 19 nodes that the shared f and Eq. (4) see are dominated by
  the global one, and the resolution and sigma levers would rescale the local vectors as well as move
  them; the GCN's source work normalises its maps. The data pipeline renders peak-1 maps whatever
  this setting; the model scales them.
- ``score_weighting`` (Eq. 3): ``rows`` (default: W_a (18 x 1) broadcast over A as the equation is
  written, each node's incoming messages scaled by its score) | ``columns`` (each node's outgoing
  influence, as the occlusion motivation of section 3.1.2 suggests) (``gcn``).
- ``spatial_head_input`` (Eq. 5 and Table 9's models A and B): what the spatial head FC averages over
  the frames. ``fused`` (default, Eq. 5 as written): the fused tokens v_out. ``backbone``: the pooled
  feature map v_g = g(F) (ResNet18's kept average pooling and FC, section 3.1.1: model A read as
  "the mean of all frame features, then an FC", without key-points, region fusion or f; refused with
  the GCN on and no temporal module, where the GCN would reach no output). ``nodes``: the mean of the
  vectors the spatial network outputs (section 3.1): the FEM's V = {v^1..v^18, v_g} without the GCN
  (model A: "the mean value of all feature vectors for all frames", no f), Eq. (3)'s V^GCN with it
  (model B), no region fusion. With a temporal module only the auxiliary head changes. Modules whose
  output no longer reaches a logit (the fusion, the GCN's f) are not built.

Runs made before a reading was a setting lack its key: ``from_config`` builds them with the value they
were trained with (``ADDED_KEYS``).

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
from dferjax.models.gcn import SCORE_WEIGHTINGS, KeypointGCN
from dferjax.models.landmark_pooling import HEATMAP_NORMS, landmark_pool
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

SPATIAL_HEAD_INPUTS = ("fused", "backbone", "nodes")
"""Values of ``model.dfer.spatial_head_input``: what Eq. (5)'s FC averages over the frames."""

ADDED_KEYS: dict[str, Any] = {"heatmap_norm": "peak", "score_weighting": "rows", "spatial_head_input": "fused"}
"""Keys added to the section after runs were saved, each with the value those runs computed with (a run
or model file whose section lacks one is built with it; see DFERModel.from_config)."""


class DFERModel(nnx.Module):
    """inputs {"frames" (B, N, H, W, 3) in [0, 255], "heatmaps" (B, N, h, w, 18)} -> Outputs."""

    TINY: ClassVar[dict[str, Any]] = dict(num_frames=8, image_size=64, widths=(16, 32, 64, 64), node_dim=32,
                                          num_layers=1, num_heads=2, head_dim=16, mlp_dim=64)
    """The paper's architecture shrunk for two CPU cores (the demo; tests shrink frames and size further)."""

    CHOICES: ClassVar[dict[str, tuple[Any, ...]]] = {
        "output_stride": (8, 16, 32), "fusion": ("structure", "mean", "lstm"), "temporal": ("msa", "lstm", "none"),
        "heatmap_norm": HEATMAP_NORMS, "score_weighting": SCORE_WEIGHTINGS, "spatial_head_input": SPATIAL_HEAD_INPUTS}
    """The values these keys of the section allow (checked when a config is used, models.check_config)."""
    POSITIVE: ClassVar[tuple[str, ...]] = ("num_frames", "image_size", "node_dim", "num_layers", "num_heads",
                                           "head_dim", "mlp_dim")
    """Keys of the section that must be positive integers."""
    ADDED_KEYS: ClassVar[dict[str, Any]] = ADDED_KEYS
    """Keys added to the section after runs were saved, with the value that reproduces those runs."""

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        """Section ``config.model.dfer``: the paper's settings (section 4.2, Tables 9-12)."""
        c = ml_collections.ConfigDict()
        c.num_frames = 16                  # N frames per clip (8 segments x 2 frames, as Former-DFER)
        c.image_size = 112                 # face crops are image_size x image_size (section 4.2, peers)
        c.widths = (64, 128, 256, 512)     # ResNet18 stage widths
        c.output_stride = 16               # 8, 16 or 32 (the last-stride trick at 16, section 3.1.1)
        c.heatmap_sigma = 1.0              # Gaussian heat-map std in feature-map cells (section 3.1.1)
        c.heatmap_norm = "mean"            # Eq. (2), our reading: peak | sum | mean (module docstring)
        c.gcn = True                       # Table 9: key-point GCN (Eq. 3-4) on or off
        c.score_weighting = "rows"         # Eq. (3), our reading: W_a scales rows | columns of A
        c.node_dim = 128                   # f of Eq. (3): 512 -> 128 per node
        c.fusion = "structure"             # Table 10: structure | mean | lstm
        c.temporal = "msa"                 # Table 9: msa | lstm | none
        c.spatial_head_input = "fused"     # Eq. (5), Table 9 A/B, our reading: fused | backbone | nodes
        c.num_layers = 3                   # Table 12: L
        c.num_heads = 8                    # Table 11: H
        c.head_dim = 64                    # d_k of Eq. (8)
        c.mlp_dim = 1024                   # hidden width of Eq. (11)'s MLP
        c.aux_weight = 0.2                 # lambda of Eq. (13)
        c.backbone_weights = ""            # optional PyTorch/safetensors ResNet18 state dict to start from
        return c

    @classmethod
    def from_config(cls, section: Any, *, num_classes: int, dtype: str, rngs: nnx.Rngs) -> DFERModel:
        """The model of a section; a key of ``ADDED_KEYS`` it lacks (a run saved before the key existed)
        takes the value that run was trained with, not today's default."""
        settings = {**ADDED_KEYS, **{k: v for k, v in dict(section).items() if k not in NOT_ARCHITECTURE}}
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
                 heatmap_norm: str = "mean", score_weighting: str = "rows", spatial_head_input: str = "fused",
                 dtype: str = "float32", aux_weight: float = 0.2, rngs: nnx.Rngs):
        if temporal not in TEMPORAL_KINDS:
            raise ValueError(f"model.dfer.temporal must be one of {TEMPORAL_KINDS}, got {temporal!r}")
        for key, value, allowed in (("heatmap_norm", heatmap_norm, HEATMAP_NORMS),
                                    ("score_weighting", score_weighting, SCORE_WEIGHTINGS),
                                    ("spatial_head_input", spatial_head_input, SPATIAL_HEAD_INPUTS)):
            if value not in allowed:
                raise ValueError(f"model.dfer.{key} must be one of {allowed}, got {value!r}")
        if spatial_head_input == "backbone" and gcn and temporal == "none":
            raise ValueError("model.dfer.spatial_head_input = 'backbone' with model.dfer.gcn = True and "
                             "model.dfer.temporal = 'none' leaves the GCN out of every output: use 'nodes' "
                             "(Table 9's model B read as the mean of V^GCN) or 'fused', or gcn = False (model A)")
        compute = compute_dtype(dtype)
        self.num_frames = num_frames
        self.aux_weight = aux_weight
        self.temporal_kind = temporal
        self.heatmap_norm = heatmap_norm
        self.gcn_on = gcn
        self.spatial_head_input = spatial_head_input
        self.backbone = ResNet18(widths=tuple(widths), output_stride=output_stride, dtype=compute, rngs=rngs)
        self.triplet_attention = TripletAttention(dtype=compute, rngs=rngs)
        channels = self.backbone.out_channels
        # Only what reaches an output is built: the tokens feed the temporal module or the fused head.
        tokens = temporal != "none" or spatial_head_input == "fused"
        self.gcn = (KeypointGCN(channels, node_dim, graph=gcn, weighting=score_weighting, dtype=compute, rngs=rngs)
                    if tokens or (spatial_head_input == "nodes" and gcn) else None)
        self.fusion = Fusion(fusion, node_dim, dtype=compute, rngs=rngs) if tokens else None
        dim = self.fusion.out_dim if tokens else 0
        head_width = {"fused": dim, "backbone": channels, "nodes": node_dim if gcn else channels}[spatial_head_input]
        # Eq. (5)'s FC; the classifier itself when there is no temporal module.
        self.spatial_head = nnx.Linear(head_width, num_classes, rngs=rngs)
        if temporal == "msa":
            self.temporal = TemporalTransformer(dim, num_frames, num_layers=num_layers, num_heads=num_heads,
                                                head_dim=head_dim, mlp_dim=mlp_dim, dtype=compute, rngs=rngs)
        elif temporal == "lstm":
            self.temporal = TemporalLSTM(dim, dtype=compute, rngs=rngs)
        else:
            self.temporal = None
        self.head = nnx.Linear(dim, num_classes, rngs=rngs) if self.temporal is not None else None

    def local_vectors(self, frames: jax.Array, heatmaps: jax.Array, train: bool = False
                      ) -> tuple[jax.Array, jax.Array]:
        """Eq. (1)-(2) for every frame: (B, N, H, W, 3), (B, N, h, w, 18) -> V_l (B*N, 18, C), v_g (B*N, C)."""
        b, n = frames.shape[:2]
        if heatmaps.shape[:2] != (b, n) or heatmaps.shape[-1] != keypoints.NUM_KEYPOINTS:
            raise ValueError(f"heat-maps {heatmaps.shape} do not match frames {frames.shape}: expected "
                             f"({b}, {n}, h, w, {keypoints.NUM_KEYPOINTS})")
        f = self.triplet_attention(self.backbone(frames.reshape(b * n, *frames.shape[2:]), train), train)
        return landmark_pool(f, heatmaps.reshape(b * n, *heatmaps.shape[2:]), self.heatmap_norm)

    def frame_tokens(self, frames: jax.Array, heatmaps: jax.Array, train: bool) -> jax.Array:
        """Section 3.1-3.2 for every frame: (B, N, H, W, 3), (B, N, h, w, 18) -> tokens (B, N, d)."""
        b, n = frames.shape[:2]
        return self.fusion(self.gcn(*self.local_vectors(frames, heatmaps, train))).reshape(b, n, -1)

    def __call__(self, inputs: Mapping[str, jax.Array], *, train: bool = False) -> Outputs:
        frames, heatmaps = inputs["frames"], inputs["heatmaps"]
        b, n = frames.shape[:2]
        local, global_ = self.local_vectors(frames, heatmaps, train)
        nodes = self.gcn(local, global_) if self.gcn is not None else None          # V^GCN (B*N, 19, node_dim)
        tokens = self.fusion(nodes).reshape(b, n, -1) if self.fusion is not None else None
        if self.spatial_head_input == "fused":
            per_frame = tokens
        elif self.spatial_head_input == "backbone":
            per_frame = global_.reshape(b, n, -1)                                   # g(F)
        else:   # "nodes": the mean of the 19 vectors of V^GCN (Eq. 3), or of the FEM's V without the GCN
            if not self.gcn_on:
                nodes = jnp.concatenate([local, global_[:, None, :]], axis=1)
            per_frame = jnp.mean(nodes.astype(jnp.float32), axis=1).reshape(b, n, -1)
        video = jnp.mean(per_frame.astype(jnp.float32), axis=1)
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
    (e.g. ``fusion = 'mean'`` is an ablation of its own). ``spatial_head_input`` other than ``fused`` is a
    reading of models A and B (no temporal module) and an ablation of its own with one."""
    for name, switches in VARIANTS.items():
        if all(section[k] == v for k, v in switches.items()):
            if section.get("fusion", "structure") != "structure":
                return ""
            if section.get("spatial_head_input", "fused") != "fused" and section["temporal"] != "none":
                return ""
            return name
    return ""


def apply_variant(section: Any, variant: str) -> None:
    """Set the switches of Table 9's model ``variant`` (A-E) in the section ``config.model.dfer``."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {sorted(VARIANTS)} (Table 9), got {variant!r}")
    section.update(VARIANTS[variant])
