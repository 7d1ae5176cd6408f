"""MFER: Xu, Li, Yang, He, Luo (2024), "Multiscale Facial Expression Recognition Based on Dynamic Global and
Static Local Attention", IEEE Transactions on Affective Computing 16(2) 683-696. Registered as ``mfer``.

A still-image model: per image,

1. a ConvNeXt backbone (``models.convnext``; ConvNeXt-Base in the paper) with
2. DS attention (Dynamic global and Static local attention, :class:`DSAttention`) after stage 3 and after
   stage 4, each on the stage's tokens x (B, HW, C):

   * key K = (Linear(C, C/8) -> GELU -> Linear(C/8, C))(x) * x      (dynamic global: a gate on x itself)
   * query Q = LayerNorm(GELU(Conv_kxk(x)))  (static local; k = 7; ``query_order``, see below)
   * value V = Linear(C, C)(x)
   * out = softmax over the HW positions, per channel, of (Q + K), times V, plus x;

3. f = LayerNorm(GAP(x)), the embedding (C = 1024 for Base), and
4. the multiscale classifier Msc (:class:`MultiscaleClassifier`): three heads on f[:, :C/2], f[:, :3C/4]
   and f (512, 768 and 1024 dimensions for Base), each Linear(d, d) -> GELU -> Linear(d, K); the prediction
   is the sum of their logits.

Loss (:meth:`MFERModel.loss`): the label-smoothed (0.1) cross-entropy of each head, summed, plus
``dsf_weight`` (0.001) times the DSF feature loss on f with learnable class centres (:class:`DSFLoss`).

Our reading, where the paper or its public reference code leave a choice (each a config value of
``config.model.mfer``):

* ``query_order``: the paper's figure puts LayerNorm before GELU in the static-local branch, the authors'
  public code GELU before LayerNorm. Default ``gelu_norm``, the code's: it is what produced the reported
  accuracies, and LayerNorm last keeps the logits Q added to K normalised (a GELU after the LayerNorm would
  cut every negative query to about 0, making the softmax far less peaked on that side).
* ``query_conv``: the k x k convolution is ``full`` (C -> C, as in the public code: 51.4M parameters at
  C = 1024, 12.8M at C = 512) or ``depthwise`` (one k x k filter per channel: 51k at C = 1024). Default
  ``full``, the reference's.
* Msc at other widths: the heads see the first C/2, 3C/4 and C dimensions (512/768/1024 of 1024 for
  Base; 384/576/768 for tiny and small); C must be a multiple of 4.
* DSF ("Deep Smooth Feature" loss): the paper describes its aim (pull each feature towards a learnable
  centre of its class, balance the intra-class probability differences), not its formula. ``dsf`` picks one
  of three forms (:func:`dsf_loss`), ``smooth`` by default because it does both things the paper names.
* A clip of N frames (``num_frames`` > 1; the still-image configs set 1): the embeddings f of the frames are
  averaged before the classifier (the frame-mean reading of a still-image model on video).

The recipe of the authors (:attr:`MFERModel.RECIPE`, applied by ``models.select``): AdamW at lr 1e-3 with
PyTorch's default weight decay 0.01 and betas (0.9, 0.999) (the reference builds ``AdamW(params, lr)``),
the learning rate x 0.95 after every epoch, batch 32, 100 epochs, 224 x 224 faces, stochastic depth 0.25.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from dferjax.models import convnext
from dferjax.models.base import InputSpec, Outputs, compute_dtype

QUERY_CONVS = ("full", "depthwise")
QUERY_ORDERS = ("gelu_norm", "norm_gelu")
DSF_FORMS = ("smooth", "center", "lgm")
SIZES = (*convnext.SIZES, "custom")


def smoothed_cross_entropy(logits: jax.Array, labels: jax.Array, smoothing: float) -> jax.Array:
    """Mean cross-entropy of (B, K) logits against labels (B,) smoothed to (1 - e) one-hot + e / K
    (Szegedy et al. 2016; the reference's LabelSmoothingCrossEntropy)."""
    k = logits.shape[-1]
    targets = optax.smooth_labels(jax.nn.one_hot(labels, k, dtype=jnp.float32), smoothing)
    return jnp.mean(optax.softmax_cross_entropy(logits.astype(jnp.float32), targets))


class DSAttention(nnx.Module):
    """DS attention (section 3.2 of the paper): (B, H, W, C) -> (B, H, W, C)."""

    def __init__(self, dim: int, *, kernel: int = 7, conv: str = "full", order: str = "gelu_norm",
                 dtype: Any = jnp.float32, rngs: nnx.Rngs):
        if conv not in QUERY_CONVS:
            raise ValueError(f"model.mfer.query_conv must be one of {QUERY_CONVS}, got {conv!r}")
        if order not in QUERY_ORDERS:
            raise ValueError(f"model.mfer.query_order must be one of {QUERY_ORDERS}, got {order!r}")
        if dim < 8:
            raise ValueError(f"DS attention needs at least 8 channels (its key is C -> C/8 -> C), got {dim}")
        init = convnext.weight_init
        self.order = order
        self.key_in = nnx.Linear(dim, dim // 8, kernel_init=init, dtype=dtype, rngs=rngs)
        self.key_out = nnx.Linear(dim // 8, dim, kernel_init=init, dtype=dtype, rngs=rngs)
        self.value = nnx.Linear(dim, dim, kernel_init=init, dtype=dtype, rngs=rngs)
        pad = kernel // 2
        self.query = nnx.Conv(dim, dim, (kernel, kernel), padding=((pad, pad), (pad, pad)),
                              feature_group_count=dim if conv == "depthwise" else 1, kernel_init=init,
                              dtype=dtype, rngs=rngs)
        self.norm = convnext.layer_norm(dim, epsilon=1e-5, dtype=dtype, rngs=rngs)   # nn.LayerNorm's eps

    def weights(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The attention weights (B, HW, C) float32, each channel's summing to 1 over the HW positions, and
        the values (B, HW, C)."""
        b, h, w, c = x.shape
        q = self.query(x)
        q = self.norm(convnext.gelu(q)) if self.order == "gelu_norm" else convnext.gelu(self.norm(q))
        tokens = x.reshape(b, h * w, c)
        k = self.key_out(convnext.gelu(self.key_in(tokens))) * tokens
        logits = q.reshape(b, h * w, c).astype(jnp.float32) + k.astype(jnp.float32)
        return jax.nn.softmax(logits, axis=1), self.value(tokens)

    def __call__(self, x: jax.Array) -> jax.Array:
        attention, value = self.weights(x)
        return x + (attention.astype(value.dtype) * value).reshape(x.shape)


def head_dims(width: int) -> tuple[int, int, int]:
    """The Msc heads' input dimensions: C/2, 3C/4, C (512, 768, 1024 of ConvNeXt-Base's 1024)."""
    if width % 4:
        raise ValueError(f"the multiscale classifier splits the last width into quarters: it must be a "
                         f"multiple of 4, got {width} (model.mfer.widths)")
    return width // 2, 3 * width // 4, width


class Head(nnx.Module):
    """Linear(d, d) -> GELU -> Linear(d, K)."""

    def __init__(self, dim: int, num_classes: int, *, rngs: nnx.Rngs):
        self.fc1 = nnx.Linear(dim, dim, rngs=rngs)
        self.fc2 = nnx.Linear(dim, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(convnext.gelu(self.fc1(x)))


class MultiscaleClassifier(nnx.Module):
    """Msc (section 3.4): f (B, C) -> the three heads' logits, each (B, K), on f's first C/2, 3C/4, C dims."""

    def __init__(self, width: int, num_classes: int, *, rngs: nnx.Rngs):
        self.dims = head_dims(width)
        self.heads = nnx.List([Head(d, num_classes, rngs=rngs) for d in self.dims])

    def __call__(self, f: jax.Array) -> list[jax.Array]:
        return [head(f[:, :d]) for head, d in zip(self.heads, self.dims)]


def dsf_loss(features: jax.Array, centres: jax.Array, labels: jax.Array, form: str = "smooth", *,
             margin: float = 0.3, pull: float = 0.1, smoothing: float = 0.1) -> jax.Array:
    """The DSF feature loss (our reading) of features (B, d) against class centres (K, d), mean over the batch.

    With d_k = ||f - c_k||^2 / 2 and y the label:

    * ``center`` (Wen et al. 2016, Eq. 2): d_y, pulling each feature to its class centre.
    * ``lgm`` (Wan et al. 2018, the large-margin Gaussian mixture loss with identity covariances and equal
      priors): CE(-d_k (1 + margin [k = y]), y) + pull * d_y (its classification and likelihood terms).
    * ``smooth`` (default): CE_smoothing(-d_k, y) + pull * d_y: the probabilities a distance-based
      classifier gives the classes are trained towards the label smoothed by ``smoothing`` (0.1), which keeps
      a class's features from being pushed to ever more extreme, uneven probabilities, and the pull term
      draws them to their centre. It is ``lgm`` with no margin and smoothed labels.
    """
    f = features.astype(jnp.float32)
    c = centres.astype(jnp.float32)
    d = 0.5 * jnp.sum(jnp.square(f[:, None, :] - c[None, :, :]), axis=-1)      # (B, K)
    d_y = jnp.take_along_axis(d, labels[:, None], axis=1)[:, 0]
    if form == "center":
        return jnp.mean(d_y)
    onehot = jax.nn.one_hot(labels, c.shape[0], dtype=jnp.float32)
    if form == "lgm":
        ce = optax.softmax_cross_entropy(-d * (1.0 + margin * onehot), onehot)
    elif form == "smooth":
        ce = optax.softmax_cross_entropy(-d, optax.smooth_labels(onehot, smoothing))
    else:
        raise ValueError(f"model.mfer.dsf must be one of {DSF_FORMS}, got {form!r}")
    return jnp.mean(ce + pull * d_y)


class DSFLoss(nnx.Module):
    """The DSF loss's learnable class centres (K, d) (parameters, trained with the model) and its form."""

    def __init__(self, dim: int, num_classes: int, *, form: str = "smooth", margin: float = 0.3,
                 pull: float = 0.1, smoothing: float = 0.1):
        if form not in DSF_FORMS:
            raise ValueError(f"model.mfer.dsf must be one of {DSF_FORMS}, got {form!r}")
        self.form, self.margin, self.pull, self.smoothing = form, margin, pull, smoothing
        self.centres = nnx.Param(jnp.zeros((num_classes, dim), jnp.float32))

    def __call__(self, features: jax.Array, labels: jax.Array) -> jax.Array:
        return dsf_loss(features, self.centres[...], labels, self.form, margin=self.margin, pull=self.pull,
                        smoothing=self.smoothing)


def stage_shape(section: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The (widths, depths) the section describes: its ``size``'s, or its own ``widths``/``depths`` for
    ``size = 'custom'``.

    Raises:
      ValueError: an unknown size, widths or depths that are not 4 positive integers, or widths/depths set
        while ``size`` names another preset (they would be ignored).
    """
    size = section.get("size", "base")
    widths, depths = tuple(section.get("widths", ())), tuple(section.get("depths", ()))
    if size not in SIZES:
        raise ValueError(f"model.mfer.size must be one of {SIZES}, got {size!r}")
    for key, value in (("widths", widths), ("depths", depths)):
        if len(value) != 4 or not all(isinstance(v, int) and v > 0 for v in value):
            raise ValueError(f"model.mfer.{key} = {value!r} is not 4 positive integers")
    if size == "custom":
        return widths, depths
    preset, default = convnext.SIZES[size], convnext.SIZES["base"]
    if (widths, depths) not in (preset, default):
        raise ValueError(f"model.mfer.widths = {widths} and depths = {depths} are used only with "
                         f"model.mfer.size = 'custom'; size {size!r} has widths {preset[0]} and depths "
                         f"{preset[1]}. Set size=custom, or leave widths and depths alone.")
    return preset


class MFERModel(nnx.Module):
    """inputs {"frames" (B, N, H, W, 3) in [0, 255]} -> Outputs(summed Msc logits, None, f = LayerNorm(GAP))."""

    TINY: ClassVar[dict[str, Any]] = dict(image_size=64, size="custom", widths=(16, 32, 64, 128),
                                          depths=(1, 1, 2, 1), drop_path=0.0)
    """ConvNeXt shrunk for two CPU cores (the demo; tests shrink the image further)."""

    CHOICES: ClassVar[dict[str, tuple[Any, ...]]] = {
        "size": SIZES, "query_conv": QUERY_CONVS, "query_order": QUERY_ORDERS, "dsf": DSF_FORMS}
    POSITIVE: ClassVar[tuple[str, ...]] = ("num_frames", "image_size", "query_kernel")

    RECIPE: ClassVar[dict[str, Any]] = {
        "train.optimizer": "adamw", "train.learning_rate": 1e-3, "train.weight_decay": 0.01,
        "train.b1": 0.9, "train.b2": 0.999, "train.lr_schedule": "exponential", "train.lr_decay_factor": 0.95,
        "train.batch_size": 32, "train.eval_batch_size": 32, "train.epochs": 100}
    """The authors' training (their train.py): torch.optim.AdamW(lr=1e-3) (PyTorch's defaults: weight decay
    0.01, betas 0.9, 0.999), ExponentialLR(gamma=0.95) stepped per epoch, batch 32, 100 epochs."""

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        """Section ``config.model.mfer``: the paper's MFER (ConvNeXt-Base, 224 x 224)."""
        c = ml_collections.ConfigDict()
        c.num_frames = 1                   # one image per sample (a clip's frames: their embeddings averaged)
        c.image_size = 224                 # face crop side (the paper's 224 x 224)
        c.size = "base"                    # ConvNeXt tiny | small | base (the paper's), or custom: widths, depths
        c.widths = convnext.SIZES["base"][0]   # stage widths, used with size = 'custom'
        c.depths = convnext.SIZES["base"][1]   # blocks per stage, used with size = 'custom'
        c.drop_path = 0.25                 # stochastic depth of the last block (the reference's drop_path_rate)
        c.layer_scale = 1e-6               # ConvNeXt's layer-scale initial value
        c.query_conv = "full"              # DS attention's k x k query convolution: full (reference) | depthwise
        c.query_kernel = 7                 # its k
        c.query_order = "gelu_norm"        # GELU then LayerNorm (reference code) | norm_gelu (the paper's figure)
        c.label_smoothing = 0.1            # of each Msc head's cross-entropy
        c.dsf = "smooth"                   # DSF feature loss form (our reading): smooth | center | lgm
        c.dsf_weight = 1e-3                # its weight in the total loss
        c.dsf_margin = 0.3                 # lgm's margin alpha
        c.dsf_pull = 0.1                   # weight of the pull term d_y inside lgm and smooth
        c.backbone_weights = ""            # optional torchvision convnext_<size> state dict to start from
        return c

    @classmethod
    def from_config(cls, section: Any, *, num_classes: int, dtype: str, rngs: nnx.Rngs) -> MFERModel:
        widths, depths = stage_shape(section)
        return cls(num_classes=num_classes, widths=widths, depths=depths, drop_path=float(section.drop_path),
                   layer_scale=float(section.layer_scale), query_conv=str(section.query_conv),
                   query_kernel=int(section.query_kernel), query_order=str(section.query_order),
                   label_smoothing=float(section.label_smoothing), dsf=str(section.dsf),
                   dsf_weight=float(section.dsf_weight), dsf_margin=float(section.dsf_margin),
                   dsf_pull=float(section.dsf_pull), dtype=dtype, rngs=rngs)

    @classmethod
    def input_spec(cls, section: Any, num_classes: int) -> InputSpec:
        return InputSpec(num_frames=int(section.num_frames), image_size=int(section.image_size),
                         heatmap_size=None, heatmap_sigma=0.0, num_classes=num_classes)

    def __init__(self, *, num_classes: int = 7, widths: tuple[int, ...] = convnext.SIZES["base"][0],
                 depths: tuple[int, ...] = convnext.SIZES["base"][1], drop_path: float = 0.25,
                 layer_scale: float = 1e-6, query_conv: str = "full", query_kernel: int = 7,
                 query_order: str = "gelu_norm", label_smoothing: float = 0.1, dsf: str = "smooth",
                 dsf_weight: float = 1e-3, dsf_margin: float = 0.3, dsf_pull: float = 0.1,
                 dtype: str = "float32", rngs: nnx.Rngs):
        compute = compute_dtype(dtype)
        self.label_smoothing = label_smoothing
        self.dsf_weight = dsf_weight
        self.backbone = convnext.ConvNeXt(widths=widths, depths=depths, drop_path=drop_path,
                                          layer_scale=layer_scale, dtype=compute, rngs=rngs)
        self.attention = nnx.List([DSAttention(widths[s], kernel=query_kernel, conv=query_conv, order=query_order,
                                               dtype=compute, rngs=rngs) for s in (2, 3)])
        self.classifier = MultiscaleClassifier(widths[3], num_classes, rngs=rngs)
        self.feature_loss = DSFLoss(widths[3], num_classes, form=dsf, margin=dsf_margin, pull=dsf_pull,
                                    smoothing=label_smoothing)

    def features(self, images: jax.Array, train: bool) -> jax.Array:
        """images (B, H, W, 3) in [0, 255] -> f = LayerNorm(GAP(x)) (B, C) float32, DS attention after
        stages 3 and 4."""
        x = self.backbone(images, train, after_stage={2: self.attention[0], 3: self.attention[1]})
        return self.backbone.pool(x)

    def __call__(self, inputs: Mapping[str, jax.Array], *, train: bool = False) -> Outputs:
        frames = inputs["frames"]
        b, n = frames.shape[:2]
        f = self.features(frames.reshape(b * n, *frames.shape[2:]), train)
        embedding = jnp.mean(f.reshape(b, n, -1), axis=1)
        logits = sum(self.classifier(embedding))
        return Outputs(logits, None, embedding)

    def loss(self, outputs: Outputs, labels: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Sum over the three Msc heads of their label-smoothed cross-entropy, plus dsf_weight x DSF(f).

        The heads' logits are recomputed from the embedding (three small MLPs; the train step's compiled
        program computes them once). Parts: {"loss_msc", "loss_dsf" (unweighted)}.
        """
        msc = sum(smoothed_cross_entropy(logits, labels, self.label_smoothing)
                  for logits in self.classifier(outputs.embedding))
        dsf = self.feature_loss(outputs.embedding, labels)
        return msc + self.dsf_weight * dsf, {"loss_msc": msc, "loss_dsf": dsf}
