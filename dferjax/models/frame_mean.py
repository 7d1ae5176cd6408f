"""Frame-mean baseline: ResNet18 on every frame, the mean over frames, a linear classifier.

The smallest honest video model beside the paper's: per frame, the ResNet18 feature map (He et al.
2016, torchvision layout, ``models.resnet``) is averaged over space into a 512-d vector; the clip's
embedding is the mean of its frames' vectors and one linear layer gives the logits. It is the
"average the frame features" baseline of the DFER literature, and close to Table 9's model A of Huang
et al. (2024) without triplet attention and key-point pooling. It takes no heat-maps, so none are
rendered for it; the loss is the cross-entropy of its logits. Registered as ``frame_mean``.
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
from dferjax.models.resnet import ResNet18


class FrameMeanModel(nnx.Module):
    """inputs {"frames" (B, N, H, W, 3) in [0, 255]} -> Outputs (no auxiliary logits)."""

    TINY: ClassVar[dict[str, Any]] = dict(num_frames=8, image_size=64, widths=(16, 32, 64, 64))
    CHOICES: ClassVar[dict[str, tuple[Any, ...]]] = {"output_stride": (8, 16, 32)}
    POSITIVE: ClassVar[tuple[str, ...]] = ("num_frames", "image_size")

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        """Section ``config.model.frame_mean``."""
        c = ml_collections.ConfigDict()
        c.num_frames = 16                  # frames per clip, as the paper's model (8 segments x 2)
        c.image_size = 112                 # face crop side
        c.widths = (64, 128, 256, 512)     # ResNet18 stage widths
        c.output_stride = 32               # the plain ResNet18 (8, 16 or 32)
        c.backbone_weights = ""            # optional PyTorch/safetensors ResNet18 state dict to start from
        return c

    @classmethod
    def from_config(cls, section: Any, *, num_classes: int, dtype: str, rngs: nnx.Rngs) -> FrameMeanModel:
        return cls(num_classes=num_classes, widths=tuple(section.widths), output_stride=int(section.output_stride),
                   dtype=dtype, rngs=rngs)

    @classmethod
    def input_spec(cls, section: Any, num_classes: int) -> InputSpec:
        return InputSpec(num_frames=int(section.num_frames), image_size=int(section.image_size),
                         heatmap_size=None, heatmap_sigma=0.0, num_classes=num_classes)

    def __init__(self, *, num_classes: int = 7, widths: tuple[int, int, int, int] = (64, 128, 256, 512),
                 output_stride: int = 32, dtype: str = "float32", rngs: nnx.Rngs):
        compute = compute_dtype(dtype)
        self.backbone = ResNet18(widths=tuple(widths), output_stride=output_stride, dtype=compute, rngs=rngs)
        self.head = nnx.Linear(self.backbone.out_channels, num_classes, rngs=rngs)

    def __call__(self, inputs: Mapping[str, jax.Array], *, train: bool = False) -> Outputs:
        frames = inputs["frames"]
        b, n = frames.shape[:2]
        maps = self.backbone(frames.reshape(b * n, *frames.shape[2:]), train)      # (B*N, h, w, C)
        per_frame = jnp.mean(maps.astype(jnp.float32), axis=(1, 2)).reshape(b, n, -1)
        embedding = jnp.mean(per_frame, axis=1)                                    # (B, C)
        return Outputs(self.head(embedding), None, embedding)

    def loss(self, outputs: Outputs, labels: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Cross-entropy of the logits."""
        loss = cross_entropy(outputs.logits, labels)
        return loss, {"loss_t": loss}
