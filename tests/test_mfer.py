"""MFER (models/mfer.py) and its ConvNeXt backbone (models/convnext.py): the backbone against torchvision on
the same weights, DS attention, the multiscale classifier and the DSF forms against NumPy, gradients, dtypes,
the weight import, the configs, and a tiny run trained, then used by predict."""

from __future__ import annotations

import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dferjax import models, train
from dferjax.config import base_config, config_file_module
from dferjax.models import convnext
from dferjax.models.mfer import (DSAttention, DSFLoss, MFERModel, MultiscaleClassifier, dsf_loss, head_dims,
                                 smoothed_cross_entropy, stage_shape)
from dferjax.models.pretrained import init_backbone_from, load_convnext_weights
from dferjax.summary import count_params

from .conftest import TESTDATA

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(0)
TEST_WIDTHS, TEST_DEPTHS = (8, 16, 24, 32), (1, 2, 1, 1)


def randn(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def np_gelu(x):
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def np_layer_norm(x, scale, bias, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * scale + bias


def np_softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def np_linear(x, layer):
    return x @ np.asarray(layer.kernel[...], np.float64) + np.asarray(layer.bias[...], np.float64)


def randomise(module: nnx.Module, scale: float = 0.3, seed: int = 0) -> None:
    """Every parameter of ``module`` replaced by a random normal (LayerNorm scales around 1), in place."""
    rng = np.random.default_rng(seed)
    flat = list(nnx.to_flat_state(nnx.state(module, nnx.Param)))
    new = [(path, v.replace(jnp.asarray(rng.standard_normal(v.shape) * scale + (path[-1] == "scale"),
                                        jnp.float32))) for path, v in flat]
    nnx.update(module, nnx.from_flat_state(new))


def mfer_config(**section):
    """The tiny MFER (its TINY, one block a stage, narrower) at 64x64: stage 4 is 2x2, so its attention's
    softmax has positions to weigh."""
    config = base_config(models.default_config())
    models.apply_tiny(config.model)
    config.model.name = "mfer"
    config.model.mfer.update(widths=(8, 16, 32, 64), depths=(1, 1, 1, 1), **section)
    return config


def random_batch(config, batch=4, seed=0):
    rng = np.random.default_rng(seed)
    spec = models.input_spec(config.model)
    frames = rng.integers(0, 256, (batch, spec.num_frames, spec.image_size, spec.image_size, 3), dtype=np.uint8)
    labels = np.arange(batch) % config.model.num_classes
    return {"frames": jnp.asarray(frames)}, jnp.asarray(labels, jnp.int32)


def loss_and_grads(model, inputs, labels, train_mode=True):
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss_fn(p):
        m = nnx.merge(graphdef, p, rest, copy=True)
        return m.loss(m(inputs, train=train_mode), labels)[0]

    return jax.jit(jax.value_and_grad(loss_fn))(params)


# --- ConvNeXt -------------------------------------------------------------------------------------

def test_convnext_equals_torchvision_on_the_same_weights():
    torch = pytest.importorskip("torch")
    tv = pytest.importorskip("torchvision.models.convnext")
    settings = [tv.CNBlockConfig(TEST_WIDTHS[i], TEST_WIDTHS[i + 1] if i < 3 else None, TEST_DEPTHS[i])
                for i in range(4)]
    torch.manual_seed(0)
    reference = tv.ConvNeXt(settings, stochastic_depth_prob=0.3, num_classes=5).eval()
    with torch.no_grad():
        for parameter in reference.parameters():          # layer scales far from 1e-6: every block counts
            parameter.copy_(torch.randn_like(parameter) * 0.3)
    ours = convnext.ConvNeXt(widths=TEST_WIDTHS, depths=TEST_DEPTHS, drop_path=0.3, rngs=nnx.Rngs(0))
    report = load_convnext_weights(ours, reference.state_dict())
    assert report["missing"] == [] and report["ignored"] == ["classifier.2.bias", "classifier.2.weight"]
    images = RNG.integers(0, 256, (2, 67, 64, 3), dtype=np.uint8)     # 67: the stem's floor, as PyTorch's
    x = (images / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    with torch.no_grad():
        maps = reference.features(torch.tensor(x, dtype=torch.float32).permute(0, 3, 1, 2))
        pooled = reference.classifier[:2](reference.avgpool(maps)).numpy()
    ours_maps = ours(jnp.asarray(images), False)
    expected = maps.permute(0, 2, 3, 1).numpy()
    assert ours_maps.shape == expected.shape == (2, 2, 2, 32)
    np.testing.assert_allclose(np.asarray(ours_maps), expected, atol=2e-5 * np.abs(expected).max())
    np.testing.assert_allclose(np.asarray(ours.pool(ours_maps)), pooled, atol=1e-4)


def _meta_names(timm_state: dict) -> dict:
    """timm's ConvNeXt names -> those of ConvNeXt's authors (facebookresearch/ConvNeXt), written here from
    their checkpoints' key list; the test checks it against timm's own converter in the other direction."""
    import re
    out = {}
    for k, v in timm_state.items():
        k = k.replace("stem.", "downsample_layers.0.")
        k = re.sub(r"stages\.(\d)\.downsample\.", r"downsample_layers.\1.", k)
        k = re.sub(r"stages\.(\d)\.blocks\.", r"stages.\1.", k)
        k = k.replace("conv_dw", "dwconv").replace("mlp.fc", "pwconv").replace("head.norm.", "norm.")
        out[k.replace("head.fc.", "head.")] = v
    return out


def test_convnext_of_timm_and_of_its_authors_load_to_the_same_network():
    """timm's ConvNeXt names (``stages.S.blocks.I``, ``head.norm``) and the authors' checkpoints' names
    (``downsample_layers``, ``stages.S.I.dwconv``, ``gamma`` (C,), ``norm``, here behind a "module."
    prefix) load to a network equal to timm's forward on the same weights."""
    torch = pytest.importorskip("torch")
    timm_convnext = pytest.importorskip("timm.models.convnext")
    torch.manual_seed(0)
    reference = timm_convnext.ConvNeXt(depths=TEST_DEPTHS, dims=TEST_WIDTHS, num_classes=5).eval()
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter.copy_(torch.randn_like(parameter) * 0.3)
    timm_state = {k: v for k, v in reference.state_dict().items()}
    meta_state = _meta_names(timm_state)
    converted = timm_convnext.checkpoint_filter_fn({"model": meta_state}, reference)   # timm's own converter
    assert converted.keys() == timm_state.keys()
    images = RNG.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    x = (images / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    with torch.no_grad():
        expected = reference.forward_features(torch.tensor(x, dtype=torch.float32).permute(0, 3, 1, 2))
    expected = expected.permute(0, 2, 3, 1).numpy()
    for layout, state in (("timm", timm_state), ("meta", {f"module.{k}": v for k, v in meta_state.items()})):
        ours = convnext.ConvNeXt(widths=TEST_WIDTHS, depths=TEST_DEPTHS, drop_path=0.0, rngs=nnx.Rngs(1))
        report = load_convnext_weights(ours, state)
        assert report["layout"] == layout and report["missing"] == []
        assert report["ignored"] == ["classifier.2.bias", "classifier.2.weight"]
        np.testing.assert_allclose(np.asarray(ours(jnp.asarray(images), False)), expected,
                                   atol=2e-5 * np.abs(expected).max())


@pytest.mark.parametrize("size", ["tiny", "base"])
def test_every_size_has_torchvisions_keys_and_shapes(size):
    torch = pytest.importorskip("torch")
    tv = pytest.importorskip("torchvision.models")
    widths, depths = convnext.SIZES[size]
    ours = nnx.eval_shape(lambda: convnext.ConvNeXt(widths=widths, depths=depths, rngs=nnx.Rngs(0)))
    mapped = {convnext.torchvision_key(path): convnext.torch_shape(path, v.shape)
              for path, v in nnx.to_flat_state(nnx.state(ours, nnx.Param))}
    with torch.device("meta"):
        reference = getattr(tv, f"convnext_{size}")()
    expected = {k: tuple(v.shape) for k, v in reference.state_dict().items() if not k.startswith("classifier.2")}
    assert mapped == expected


def test_stochastic_depth_is_linear_over_the_blocks_and_drops_whole_samples():
    probabilities = convnext.drop_probabilities((3, 3, 27, 3), 0.25)
    flat = [p for stage in probabilities for p in stage]
    np.testing.assert_allclose(flat, np.linspace(0.0, 0.25, 36))      # torchvision: p * i / (n - 1)
    block = convnext.Block(8, drop_prob=0.5, layer_scale=1.0, dtype=jnp.float32, rngs=nnx.Rngs(0))
    x = jnp.asarray(randn(64, 3, 3, 8))
    residual = np.asarray(block(x, None) - x)                          # evaluation: every residual kept
    out = np.asarray(block(x, jax.random.key(1)))
    dropped = np.all((out == np.asarray(x)).reshape(64, -1), axis=1)   # whole samples: the block is skipped
    np.testing.assert_allclose(out[~dropped], (np.asarray(x) + 2.0 * residual)[~dropped], rtol=1e-5, atol=1e-5)
    assert 10 < dropped.sum() < 54                                    # kept ones scaled by 1 / (1 - p) = 2


def test_the_drop_key_advances_in_training_only():
    config = mfer_config(drop_path=0.5, layer_scale=1.0)             # residuals that count
    model = models.build_model(config.model)
    inputs, _ = random_batch(config)
    key = np.asarray(model.backbone.drop_key[...])
    assert key.dtype == np.uint32
    first = model(inputs, train=False).logits
    np.testing.assert_array_equal(np.asarray(model(inputs, train=False).logits), np.asarray(first))
    np.testing.assert_array_equal(np.asarray(model.backbone.drop_key[...]), key)
    a = model(inputs, train=True).logits
    assert not np.array_equal(np.asarray(model.backbone.drop_key[...]), key)
    b = model(inputs, train=True).logits
    assert not np.allclose(np.asarray(a), np.asarray(b))              # other masks at the next step


# --- DS attention ---------------------------------------------------------------------------------

def np_conv(x, kernel, bias, groups):
    """x (B, H, W, C), kernel (k, k, C / groups, O) HWIO, zero 'same' padding -> (B, H, W, O)."""
    b, h, w, c = x.shape
    k = kernel.shape[0]
    padded = np.pad(x, ((0, 0), (k // 2, k // 2), (k // 2, k // 2), (0, 0)))
    out = np.zeros((b, h, w, kernel.shape[3]))
    for i in range(k):
        for j in range(k):
            window = padded[:, i:i + h, j:j + w, :]
            if groups == 1:
                out += np.einsum("bhwc,co->bhwo", window, kernel[i, j])
            else:                                                     # depthwise: one filter per channel
                out += window * kernel[i, j, 0]
    return out + bias


def np_ds_attention(x, module: DSAttention, conv: str, order: str):
    b, h, w, c = x.shape
    p = lambda v: np.asarray(v[...], np.float64)    # noqa: E731
    q = np_conv(x, p(module.query.kernel), p(module.query.bias), c if conv == "depthwise" else 1)
    ln = lambda v: np_layer_norm(v, p(module.norm.scale), p(module.norm.bias), 1e-5)   # noqa: E731
    q = ln(np_gelu(q)) if order == "gelu_norm" else np_gelu(ln(q))
    tokens = x.reshape(b, h * w, c)
    key = np_linear(np_gelu(np_linear(tokens, module.key_in)), module.key_out) * tokens
    weights = np_softmax(q.reshape(b, h * w, c) + key, axis=1)
    return weights, (weights * np_linear(tokens, module.value)).reshape(x.shape) + x


@pytest.mark.parametrize("conv,order", [("full", "gelu_norm"), ("depthwise", "gelu_norm"), ("full", "norm_gelu")])
def test_ds_attention_against_numpy(conv, order):
    module = DSAttention(16, kernel=5, conv=conv, order=order, rngs=nnx.Rngs(0))
    randomise(module, scale=0.2)
    x = randn(2, 3, 4, 16)
    weights, out = np_ds_attention(x.astype(np.float64), module, conv, order)
    ours_weights, _ = module.weights(jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(ours_weights), weights, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(module(jnp.asarray(x))), out, rtol=1e-4, atol=1e-4)
    # The softmax runs over the positions: each (sample, channel) has weights summing to 1 over the 12.
    np.testing.assert_allclose(np.asarray(ours_weights).sum(axis=1), np.ones((2, 16)), atol=1e-5)


def test_the_query_convolution_costs_51m_parameters_full_and_51k_depthwise_at_1024():
    def counts(conv):
        module = nnx.eval_shape(lambda: DSAttention(1024, conv=conv, rngs=nnx.Rngs(0)))
        return count_params(module.query), count_params(module)
    rest = (1024 * 128 + 128) + (128 * 1024 + 1024) + (1024 * 1024 + 1024) + 2 * 1024   # key, value, LayerNorm
    assert counts("full") == (51_381_248, 51_381_248 + rest) == (1024 * 1024 * 49 + 1024, 52_696_192)
    assert counts("depthwise") == (51_200, 51_200 + rest) == (1024 * 49 + 1024, 1_366_144)


# --- multiscale classifier and loss ---------------------------------------------------------------

def test_msc_heads_see_their_slices_and_the_logits_are_their_sum():
    assert head_dims(1024) == (512, 768, 1024) and head_dims(768) == (384, 576, 768)
    msc = MultiscaleClassifier(16, 5, rngs=nnx.Rngs(0))
    f = randn(3, 16)
    heads = [np.asarray(h) for h in msc(jnp.asarray(f))]
    for head, d, out in zip(msc.heads, (8, 12, 16), heads):
        expected = np_linear(np_gelu(np_linear(f[:, :d].astype(np.float64), head.fc1)), head.fc2)
        np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
    changed = f.copy()
    changed[:, 12:] += 5.0                           # only the last quarter: the first two heads do not see it
    after = [np.asarray(h) for h in msc(jnp.asarray(changed))]
    np.testing.assert_array_equal(after[0], heads[0])
    np.testing.assert_array_equal(after[1], heads[1])
    assert not np.allclose(after[2], heads[2])
    changed[:, 8:12] += 5.0
    assert not np.allclose(np.asarray(msc(jnp.asarray(changed))[1]), heads[1])
    # The model's logits are the heads' sum on its embedding; its loss sums their smoothed cross-entropies.
    config = mfer_config()
    model = models.build_model(config.model)
    inputs, labels = random_batch(config)
    outputs = model(inputs)
    per_head = model.classifier(outputs.embedding)
    np.testing.assert_allclose(np.asarray(outputs.logits), np.asarray(sum(per_head)), rtol=1e-6)
    loss, parts = model.loss(outputs, labels)
    np.testing.assert_allclose(float(parts["loss_msc"]), sum(float(smoothed_cross_entropy(h, labels, 0.1))
                                                             for h in per_head), rtol=1e-6)
    np.testing.assert_allclose(float(loss), float(parts["loss_msc"]) + 1e-3 * float(parts["loss_dsf"]), rtol=1e-6)


def test_label_smoothed_cross_entropy_against_numpy():
    logits, labels = randn(4, 6), np.array([0, 5, 2, 2])
    logp = np.log(np_softmax(logits.astype(np.float64), axis=1))
    expected = np.mean(0.9 * -logp[np.arange(4), labels] + 0.1 * -logp.mean(axis=1))   # the reference's form
    np.testing.assert_allclose(float(smoothed_cross_entropy(jnp.asarray(logits), jnp.asarray(labels), 0.1)),
                               expected, rtol=1e-5)


def np_dsf(f, c, y, form, margin, pull, smoothing):
    f, c = f.astype(np.float64), c.astype(np.float64)
    d = 0.5 * ((f[:, None, :] - c[None]) ** 2).sum(-1)
    d_y = d[np.arange(len(y)), y]
    if form == "center":
        return d_y.mean()
    k = c.shape[0]
    onehot = np.eye(k)[y]
    if form == "lgm":
        logits, target = -d * (1 + margin * onehot), onehot
    else:
        logits, target = -d, (1 - smoothing) * onehot + smoothing / k
    ce = -(target * np.log(np_softmax(logits, axis=1))).sum(1)
    return (ce + pull * d_y).mean()


@pytest.mark.parametrize("form", ["center", "lgm", "smooth"])
def test_each_dsf_form_against_numpy_and_the_centres_get_gradients(form):
    f, c, y = randn(6, 5) * 0.5, randn(4, 5) * 0.5, np.array([0, 1, 1, 3, 0, 1])
    expected = np_dsf(f, c, y, form, 0.3, 0.1, 0.1)
    value = dsf_loss(jnp.asarray(f), jnp.asarray(c), jnp.asarray(y), form, margin=0.3, pull=0.1, smoothing=0.1)
    np.testing.assert_allclose(float(value), expected, rtol=1e-5)
    module = DSFLoss(5, 4, form=form)
    module.centres[...] = jnp.asarray(c)
    graphdef, params = nnx.split(module)
    grads = jax.grad(lambda p: nnx.merge(graphdef, p)(jnp.asarray(f), jnp.asarray(y)))(params)
    g = np.asarray(grads["centres"][...])
    assert np.all(np.abs(g[[0, 1, 3]]).sum(1) > 0)
    # The centre loss pulls only the centres of the batch's classes; the other two also push class 2's.
    assert (np.abs(g[2]).sum() == 0) == (form == "center")


def test_dsf_form_is_checked():
    with pytest.raises(ValueError, match="model.mfer.dsf"):
        DSFLoss(4, 3, form="centre")


# --- the model ------------------------------------------------------------------------------------

def test_every_parameter_gets_a_nonzero_gradient():
    config = mfer_config()
    model = models.build_model(config.model, seed=1)
    inputs, labels = random_batch(config, batch=7)                      # every class in the batch
    loss, grads = loss_and_grads(model, inputs, labels)
    assert np.isfinite(float(loss))
    flat = nnx.to_flat_state(grads)
    dead = ["/".join(map(str, path)) for path, g in flat if not np.any(np.asarray(g[...]) != 0)]
    assert not dead, f"parameters without gradient: {dead}"
    assert any(path[:2] == ("feature_loss", "centres") for path, _ in flat)


def test_float32_and_bfloat16_compile_and_agree():
    logits = {}
    for dtype in ("float32", "bfloat16"):
        config = mfer_config()
        config.model.dtype = dtype
        model = models.build_model(config.model, seed=2)
        inputs, labels = random_batch(config)
        graphdef, state = nnx.split(model)
        out = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x, train=False))(state, inputs)
        assert out.logits.dtype == jnp.float32 and out.embedding.dtype == jnp.float32
        logits[dtype] = np.asarray(out.logits)
        loss, grads = loss_and_grads(model, inputs, labels)
        assert np.isfinite(float(loss))
        assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(grads))   # parameters stay float32
    scale = np.abs(logits["float32"]).max()
    np.testing.assert_allclose(logits["bfloat16"], logits["float32"], atol=0.05 * scale + 0.02)


def test_a_clip_averages_its_frames_embeddings():
    config = mfer_config(num_frames=2)
    model = models.build_model(config.model)
    inputs, _ = random_batch(config, batch=2)
    frames = inputs["frames"]
    both = model(inputs)
    single = [model({"frames": frames[:, i:i + 1]}).embedding for i in range(2)]
    np.testing.assert_allclose(np.asarray(both.embedding), np.asarray((single[0] + single[1]) / 2), atol=1e-5)
    assert models.input_spec(config.model).heatmap_size is None


def test_sizes_and_their_checks():
    section = MFERModel.default_config()
    assert stage_shape(section) == convnext.SIZES["base"]
    section.size = "tiny"
    assert stage_shape(section) == ((96, 192, 384, 768), (3, 3, 9, 3))
    section.widths = (16, 32, 64, 128)
    with pytest.raises(ValueError, match="used only with model.mfer.size = 'custom'"):
        stage_shape(section)
    section.size = "custom"
    assert stage_shape(section) == ((16, 32, 64, 128), (3, 3, 27, 3))
    config = mfer_config(query_conv="Full")
    with pytest.raises(models.ModelConfigError, match="model.mfer.query_conv = 'Full'"):
        models.check_config(config.model)


def test_base_model_parameters_by_query_convolution():
    def total(conv):
        config = base_config(models.default_config())
        models.select(config, "mfer")
        config.model.mfer.query_conv = conv
        return count_params(models.abstract_model(config.model))
    full, depthwise = total("full"), total("depthwise")
    assert full - depthwise == (1024 * 1024 + 512 * 512 - 1024 - 512) * 49
    assert 150e6 < full < 160e6 and 90e6 < depthwise < 95e6          # ConvNeXt-Base alone: 87.6M


# --- weight import --------------------------------------------------------------------------------

def torch_layout_state_dict(backbone: convnext.ConvNeXt) -> dict[str, np.ndarray]:
    """Our backbone's parameters under torchvision's names and layouts (the inverse of the import)."""
    out = {}
    for path, v in nnx.to_flat_state(nnx.state(backbone, nnx.Param)):
        value = np.asarray(v[...])
        if path[-1] == "gamma":
            value = value.reshape(-1, 1, 1)
        elif path[-1] == "kernel":
            value = value.transpose(3, 2, 0, 1) if value.ndim == 4 else value.T
        out[convnext.torchvision_key(path)] = np.ascontiguousarray(value)
    return out


def test_weights_travel_through_a_safetensors_file_into_the_model(tmp_path):
    from safetensors.numpy import save_file
    config = mfer_config()
    source = models.build_model(config.model, seed=3)
    randomise(source.backbone, scale=0.1, seed=3)
    state = {f"module.{k}": v for k, v in torch_layout_state_dict(source.backbone).items()}
    state["classifier.2.weight"] = np.zeros((1000, 64), np.float32)
    save_file(state, str(tmp_path / "convnext.safetensors"))
    target = models.build_model(config.model, seed=4)
    report = init_backbone_from(target, tmp_path / "convnext.safetensors")
    assert report["missing"] == [] and report["ignored"] == ["classifier.2.weight"]
    for (path, a), (_, b) in zip(nnx.to_flat_state(nnx.state(source.backbone, nnx.Param)),
                                 nnx.to_flat_state(nnx.state(target.backbone, nnx.Param))):
        np.testing.assert_array_equal(np.asarray(a[...]), np.asarray(b[...]), err_msg=str(path))


def test_weights_of_another_size_are_refused_naming_the_size():
    small = nnx.eval_shape(lambda: convnext.ConvNeXt(widths=TEST_WIDTHS, depths=TEST_DEPTHS, rngs=nnx.Rngs(0)))
    wider = convnext.ConvNeXt(widths=(8, 16, 24, 40), depths=TEST_DEPTHS, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="does model.<name>.size match"):
        load_convnext_weights(wider, {k: np.zeros(v.shape, np.float32) for k, v in
                                      ((convnext.torchvision_key(p), jax.ShapeDtypeStruct(
                                          convnext.torch_shape(p, v.shape), jnp.float32))
                                       for p, v in nnx.to_flat_state(nnx.state(small, nnx.Param)))})
    deeper = convnext.ConvNeXt(widths=TEST_WIDTHS, depths=(1, 2, 2, 1), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="lacks 9 ConvNeXt backbone keys: features.5.1.block.0.bias"):
        load_convnext_weights(deeper, torch_layout_state_dict(
            convnext.ConvNeXt(widths=TEST_WIDTHS, depths=TEST_DEPTHS, rngs=nnx.Rngs(0))))


# --- configs, training and predict ----------------------------------------------------------------

@pytest.mark.parametrize("file,arg,classes,image_size", [
    ("rafdb", "model=mfer", 7, 224), ("affectnet", "model=mfer,classes=8", 8, 224),
    ("ferplus", "model=mfer", 8, 224), ("demo_images", "model=mfer", 7, 64)])
def test_the_still_image_configs_select_mfer_with_its_recipe(file, arg, classes, image_size):
    config = config_file_module(str(ROOT / "configs" / f"{file}.py")).get_config(arg)
    t = config.train
    assert config.model.name == "mfer" and config.model.num_classes == classes
    assert (t.optimizer, t.learning_rate, t.weight_decay, t.lr_schedule, t.lr_decay_factor) == (
        "adamw", 1e-3, 0.01, "exponential", 0.95)
    assert (t.batch_size, t.epochs) == ((32, 100) if file != "demo_images" else (32, 16))
    spec = models.input_spec(config.model)
    assert (spec.num_frames, spec.image_size, spec.heatmap_size) == (1, image_size, None)
    assert config.data.num_segments == config.data.frames_per_segment == 1 and config.variant == ""
    given = config_file_module(str(ROOT / "configs" / f"{file}.py")).get_config(
        arg + (",batch=16,epochs=3" if file != "demo_images" else ",epochs=3"))
    assert given.train.epochs == 3 and given.train.batch_size == (16 if file != "demo_images" else 32)
    dfer = config_file_module(str(ROOT / "configs" / f"{file}.py")).get_config(None)
    assert dfer.model.name == "dfer" and dfer.train.optimizer == "adam" and dfer.variant == "B"


@pytest.fixture(scope="module")
def mfer_run(tmp_path_factory):
    """The still-image demo with MFER, tiny: 16 drawn faces, 2 epochs of batch 8."""
    tmp = tmp_path_factory.mktemp("mfer_demo")
    workdir = tmp / "run"
    args = ["--config", str(ROOT / "configs" / "demo_images.py") + ":model=mfer,train=16,test=7,epochs=2",
            "--workdir", str(workdir), f"--config.data.dir={tmp / 'data'}", "--config.train.batch_size=8",
            "--config.train.eval_batch_size=8", "--config.runtime.progress=False", "--config.runtime.cpu_devices=0",
            "--config.synthetic.workers=1", "--config.model.mfer.drop_path=0.1"]
    assert train.main(args) == 0
    return workdir


def test_the_still_image_demo_trains_mfer_end_to_end(mfer_run):
    results = json.loads((mfer_run / "results.json").read_text())
    assert results["last"]["epoch"] == 2 and 0.0 <= results["last"]["war"] <= 1.0
    config = json.loads((mfer_run / "config.json").read_text())
    assert config["model"]["name"] == "mfer" and config["train"]["optimizer"] == "adamw"


def test_predict_works_on_an_image_with_an_mfer_run(mfer_run):
    image = TESTDATA / "images" / "single_face.jpg"
    if not image.is_file():
        pytest.skip(f"real test photo not found at {image} (the team's shared/ folder)")
    from dferjax.predict import Predictor
    prediction = Predictor(mfer_run).predict(image)
    assert prediction.is_image and prediction.error is None and prediction.label in prediction.class_names
    assert prediction.probabilities.shape == (7,) and np.isclose(np.sum(prediction.probabilities), 1.0, atol=1e-5)
