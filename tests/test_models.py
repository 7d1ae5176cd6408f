"""The model's equations against independent NumPy computations, gradients, dtypes and shapes."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dferjax import keypoints
from dferjax import models
from dferjax.models import VARIANTS, DFERModel, Outputs, build_model, dfer_loss
from dferjax.models.fusion import Fusion
from dferjax.models.gcn import KeypointGCN
from dferjax.models.landmark_pooling import landmark_pool
from dferjax.models.temporal import MultiHeadSelfAttention, TemporalTransformer
from dferjax.models.triplet_attention import TripletAttention
from dferjax.models.resnet import feature_map_size, max_pool_3x3_s2
from dferjax.summary import zero_inputs
from tests.conftest import tiny_config

RNG = np.random.default_rng(0)


def randn(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def np_relu(x):
    return np.maximum(x, 0.0)


def np_softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def np_layer_norm(x, scale, bias, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * scale + bias


def np_gelu(x):
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def np_linear(x, layer):
    y = x @ np.asarray(layer.kernel[...])
    return y + np.asarray(layer.bias[...]) if layer.bias is not None else y


# --- Eq. (1): triplet attention -------------------------------------------------------------------

def np_conv_same(planes, kernel):
    """planes (N, 2, R, S) as PyTorch's NCHW, kernel (2, kh, kw) -> (N, R, S), zero padding."""
    _, _, kh, kw = (None, *kernel.shape)
    ph, pw = kh // 2, kw // 2
    padded = np.pad(planes, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    out = np.zeros((planes.shape[0], planes.shape[2], planes.shape[3]), np.float64)
    for i in range(kh):
        for j in range(kw):
            out += np.einsum("ncrs,c->nrs", padded[:, :, i:i + planes.shape[2], j:j + planes.shape[3]],
                             kernel[:, i, j])
    return out


def test_triplet_attention_matches_reference_branches():
    """Eq. (1)'s Tri against the reference's permute-based formulation in NCHW (Misra et al. 2021)."""
    n, h, w, c = 2, 5, 6, 4
    module = TripletAttention(rngs=nnx.Rngs(0))
    gates = {}
    for name in ("cw", "hc", "hw"):
        gate = getattr(module, name)
        # Non-trivial running statistics and affine parameters, so batch norm is really exercised.
        gate.bn.mean[...] = jnp.asarray(randn(1) * 0.1)
        gate.bn.var[...] = jnp.asarray(1.0 + np.abs(randn(1)))
        gate.bn.scale[...] = jnp.asarray(1.0 + randn(1) * 0.1)
        gate.bn.bias[...] = jnp.asarray(randn(1) * 0.1)
        gates[name] = gate
    x = randn(n, h, w, c)
    got = np.asarray(module(jnp.asarray(x), train=False))

    def gate_np(gate, planes, transpose):
        k = np.asarray(gate.conv.kernel[...])[:, :, :, 0].transpose(2, 0, 1)  # (2, kh, kw)
        if transpose:                                   # our plane is (cols, rows) of PyTorch's
            k = k.transpose(0, 2, 1)
        y = np_conv_same(planes, k)
        bn = gate.bn
        y = (y - float(bn.mean[...][0])) / np.sqrt(float(bn.var[...][0]) + 1e-5) * float(bn.scale[...][0]) \
            + float(bn.bias[...][0])
        return 1.0 / (1.0 + np.exp(-y))

    def zpool(t):   # over dim 1 of an NCHW-like tensor, [max, mean]
        return np.stack([t.max(1), t.mean(1)], axis=1)

    xc = x.transpose(0, 3, 1, 2)                               # N C H W
    p1 = xc.transpose(0, 2, 1, 3)                              # N H C W: pool H, attend (C, W)
    o1 = (p1 * gate_np(gates["cw"], zpool(p1), transpose=True)[:, None]).transpose(0, 2, 1, 3)
    p2 = xc.transpose(0, 3, 2, 1)                              # N W H C: pool W, attend (H, C)
    o2 = (p2 * gate_np(gates["hc"], zpool(p2), transpose=False)[:, None]).transpose(0, 3, 2, 1)
    o3 = xc * gate_np(gates["hw"], zpool(xc), transpose=False)[:, None]
    expected = ((o1 + o2 + o3) / 3.0).transpose(0, 2, 3, 1)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


# --- Eq. (2): landmark-guided pooling ------------------------------------------------------------

def test_landmark_pooling_equation_2():
    f, a = randn(3, 4, 5, 6), np.abs(randn(3, 4, 5, 18))
    local, global_ = landmark_pool(jnp.asarray(f), jnp.asarray(a))
    expected_local = (f[:, :, :, None, :] * a[:, :, :, :, None]).mean(axis=(1, 2))   # GAP(F (.) A^j)
    np.testing.assert_allclose(np.asarray(local), expected_local, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(global_), f.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)


def test_one_hot_heatmap_picks_the_feature_at_its_cell():
    f = randn(1, 7, 7, 5)
    a = np.zeros((1, 7, 7, 18), np.float32)
    cells = [(i % 7, (3 * i) % 7) for i in range(18)]
    for j, (r, c) in enumerate(cells):
        a[0, r, c, j] = 1.0
    local, _ = landmark_pool(jnp.asarray(f), jnp.asarray(a))
    for j, (r, c) in enumerate(cells):
        # Eq. (2)'s global average pooling divides by the h*w cells.
        np.testing.assert_allclose(np.asarray(local[0, j]) * 49, f[0, r, c], rtol=1e-5, atol=1e-6)


def test_heatmaps_at_another_resolution_are_resized_to_the_feature_map():
    f = randn(2, 7, 7, 3)
    const = np.full((2, 28, 28, 18), 0.5, np.float32)
    local, global_ = landmark_pool(jnp.asarray(f), jnp.asarray(const))
    expected = np.broadcast_to(0.5 * np.asarray(global_)[:, None, :], local.shape)
    np.testing.assert_allclose(np.asarray(local), expected, rtol=1e-5, atol=1e-6)


# --- Eq. (3)-(4): key-point GCN ------------------------------------------------------------------

@pytest.mark.parametrize("graph", [True, False])
def test_gcn_equations_3_and_4(graph):
    c, d = 12, 5
    gcn = KeypointGCN(c, d, graph=graph, rngs=nnx.Rngs(1))
    if graph:
        gcn.w_learn[...] = jnp.asarray(randn(c, c) / c)   # a general W_learn, not the identity init
    v_l, v_g = np.abs(randn(2, 18, c)), np.abs(randn(2, c))
    got = np.asarray(gcn(jnp.asarray(v_l), jnp.asarray(v_g)))
    adj = keypoints.ADJACENCY
    expected_nodes = []
    for n in range(2):
        local = v_l[n]
        if graph:
            w = np.asarray(gcn.w_learn[...])
            w_a = np_relu(local @ w @ v_g[n][:, None])                  # (18, 1), Eq. (4)
            message = np.zeros_like(local)
            for i in range(18):                                        # (W_a (.) A) x V_l, row by row
                for j in range(18):
                    message[i] += w_a[i, 0] * adj[i, j] * local[j]
            local = message + local
        expected_nodes.append(np.concatenate([local, v_g[n][None]], axis=0))
    expected = np_relu(np_linear(np.stack(expected_nodes), gcn.f))       # f: FC with ReLU, Eq. (3)
    assert got.shape == (2, 19, d)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_gcn_scores_are_nonnegative_and_differ_per_keypoint():
    gcn = KeypointGCN(8, 4, rngs=nnx.Rngs(2))
    scores = np.asarray(gcn.scores(jnp.asarray(randn(3, 18, 8)), jnp.asarray(randn(3, 8))))
    assert scores.shape == (3, 18) and (scores >= 0).all() and len(np.unique(scores)) > 1


# --- Section 3.2 and Table 10: fusion ------------------------------------------------------------

def test_structure_fusion_means_three_regions_and_appends_global():
    nodes = randn(2, 19, 4)
    got = np.asarray(Fusion("structure", 4, rngs=nnx.Rngs(0))(jnp.asarray(nodes)))
    # The paper: 5 upper-left, 5 upper-right, 6 lower vectors; the two nose-bridge points in none.
    upper_left = [keypoints.KEYPOINT_NAMES.index(n) for n in keypoints.KEYPOINT_NAMES if n.startswith("left_")
                  and "cheek" not in n]
    upper_right = [keypoints.KEYPOINT_NAMES.index(n) for n in keypoints.KEYPOINT_NAMES if n.startswith("right_")
                   and "cheek" not in n]
    lower = [keypoints.KEYPOINT_NAMES.index(n) for n in keypoints.KEYPOINT_NAMES
             if n.startswith(("mouth", "upper_lip", "lower_lip")) or "cheek" in n]
    assert (len(upper_left), len(upper_right), len(lower)) == (5, 5, 6)
    expected = np.concatenate([nodes[:, upper_left].mean(1), nodes[:, upper_right].mean(1),
                               nodes[:, lower].mean(1), nodes[:, 18]], axis=1)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_mean_and_lstm_fusion():
    nodes = randn(2, 19, 4)
    mean = np.asarray(Fusion("mean", 4, rngs=nnx.Rngs(0))(jnp.asarray(nodes)))
    np.testing.assert_allclose(mean, nodes.mean(1), rtol=1e-5, atol=1e-6)
    assert Fusion("lstm", 4, rngs=nnx.Rngs(0))(jnp.asarray(nodes)).shape == (2, 16)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_last_step_lstm_matches_a_numpy_lstm_and_holds_no_key():
    """Hochreiter & Schmidhuber's LSTM with a forget gate, gates (i, f, g, o) from c = h = 0, against NumPy;
    its state holds parameters only (a PRNG key there broke data-parallel placement of the lstm ablations)."""
    from dferjax.models.recurrent import LastStepLSTM
    lstm = LastStepLSTM(5, 3, rngs=nnx.Rngs(1))
    xs = randn(2, 4, 5)
    got = np.asarray(lstm(jnp.asarray(xs)))
    cell = lstm.rnn.cell
    wi, wh = np.asarray(cell.dense_i.kernel[...]), np.asarray(cell.dense_h.kernel[...])
    b = np.asarray(cell.dense_h.bias[...])
    h = c = np.zeros((2, 3))
    for t in range(4):
        z = xs[:, t] @ wi + h @ wh + b
        i, f, g, o = np.split(z, 4, axis=-1)
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
    np.testing.assert_allclose(got, h, rtol=1e-5, atol=1e-6)
    leaves = jax.tree.leaves(nnx.state(lstm))
    assert leaves and all(jnp.issubdtype(x.dtype, jnp.floating) for x in leaves)


# --- Eq. (6)-(11): temporal self-attention --------------------------------------------------------

def np_attention(x, attn, heads, dk):
    """Eq. (7)-(10) without residual for one clip x (S, d), per head as the equations write it."""
    w_qkv = np.asarray(attn.qkv.kernel[...])
    hd = heads * dk
    q, k, v = x @ w_qkv[:, :hd], x @ w_qkv[:, hd:2 * hd], x @ w_qkv[:, 2 * hd:]
    outs = []
    for h in range(heads):
        sl = slice(h * dk, (h + 1) * dk)
        a = np_softmax(q[:, sl] @ k[:, sl].T / np.sqrt(dk))                      # Eq. (8)
        outs.append(a @ v[:, sl])                                                 # Eq. (9)
    return np_linear(np.concatenate(outs, axis=1), attn.out)                      # W_H [...], Eq. (10)


def test_multi_head_attention_equations_8_to_10():
    attn = MultiHeadSelfAttention(16, num_heads=4, head_dim=3, dtype=jnp.float32, rngs=nnx.Rngs(3))
    x = randn(2, 5, 16)
    got = np.asarray(attn(jnp.asarray(x)))
    expected = np.stack([np_attention(x[b], attn, 4, 3) for b in range(2)])
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_temporal_transformer_equations_6_to_11():
    dim, frames = 16, 5
    tt = TemporalTransformer(dim, frames, num_layers=2, num_heads=2, head_dim=4, mlp_dim=8, rngs=nnx.Rngs(4))
    tokens = randn(2, frames, dim)
    got = np.asarray(tt(jnp.asarray(tokens)))
    for b in range(2):
        z = np.concatenate([np.asarray(tt.class_token[...])[0], tokens[b]]) + np.asarray(tt.pos_embedding[...])[0]
        for blk in tt.blocks:
            ln1 = np_layer_norm(z, np.asarray(blk.norm1.scale[...]), np.asarray(blk.norm1.bias[...]))
            y = np_attention(ln1, blk.attn, 2, 4) + z                                            # Eq. (10)
            ln2 = np_layer_norm(y, np.asarray(blk.norm2.scale[...]), np.asarray(blk.norm2.bias[...]))
            z = np_linear(np_gelu(np_linear(ln2, blk.mlp1)), blk.mlp2) + y                       # Eq. (11)
        np.testing.assert_allclose(got[b], z[0], rtol=1e-4, atol=1e-4)


# --- Eq. (13): the loss --------------------------------------------------------------------------

def np_cross_entropy(logits, labels):
    logp = logits - logits.max(1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(1, keepdims=True))
    return -logp[np.arange(len(labels)), labels].mean()


@pytest.mark.parametrize("lam", [0.0, 0.2, 0.5])
def test_loss_equation_13(lam):
    logits, aux, labels = randn(6, 7), randn(6, 7), RNG.integers(0, 7, 6)
    loss, parts = dfer_loss(Outputs(jnp.asarray(logits), jnp.asarray(aux), None), jnp.asarray(labels), lam)
    l_t, l_s = np_cross_entropy(logits, labels), np_cross_entropy(aux, labels)
    np.testing.assert_allclose(float(loss), lam * l_s + (1 - lam) * l_t, rtol=1e-5)
    np.testing.assert_allclose(float(parts["loss_s"]), l_s, rtol=1e-5)


def test_loss_without_temporal_module_is_plain_cross_entropy():
    logits, labels = randn(4, 7), RNG.integers(0, 7, 4)
    loss, parts = dfer_loss(Outputs(jnp.asarray(logits), None, None), jnp.asarray(labels), 0.2)
    np.testing.assert_allclose(float(loss), np_cross_entropy(logits, labels), rtol=1e-5)
    assert set(parts) == {"loss_t"}


# --- The assembled model --------------------------------------------------------------------------

def random_batch(config, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    shapes = zero_inputs(models.input_spec(config.model), batch)
    frames, heatmaps = shapes["frames"], shapes["heatmaps"]
    frames = jnp.asarray(rng.integers(0, 256, frames.shape), jnp.uint8)
    heatmaps = jnp.asarray(rng.random(heatmaps.shape), jnp.float32)
    labels = jnp.asarray(rng.integers(0, config.model.num_classes, batch))
    return frames, heatmaps, labels


def loss_and_grads(model, frames, heatmaps, labels, aux_weight=0.2):
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss_fn(params):
        # copy=True: fresh Variables inside the trace, so train-mode batch norm may update its stats.
        outputs = nnx.merge(graphdef, params, rest, copy=True)({"frames": frames, "heatmaps": heatmaps}, train=True)
        return dfer_loss(outputs, labels, aux_weight)[0]

    return jax.jit(jax.value_and_grad(loss_fn))(params)


@pytest.mark.parametrize("variant", ["E", "C", "A"])
def test_every_parameter_gets_a_nonzero_gradient(variant):
    config = tiny_config(**VARIANTS[variant])
    model = build_model(config.model, seed=1)
    loss, grads = loss_and_grads(model, *random_batch(config, batch=3))
    assert np.isfinite(float(loss))
    flat = nnx.to_flat_state(grads)
    dead = ["/".join(map(str, path)) for path, g in flat if not np.any(np.asarray(g[...]) != 0)]
    assert not dead, f"parameters without gradient: {dead}"
    assert len(flat) > 60


def test_jitted_forward_and_gradient_compile_in_both_dtypes_and_agree():
    config = tiny_config()
    frames, heatmaps, labels = random_batch(config)
    logits = {}
    for dtype in ("float32", "bfloat16"):
        config.model.dtype = dtype
        model = build_model(config.model, seed=2)
        graphdef, state = nnx.split(model)
        forward = jax.jit(lambda s, f, h: nnx.merge(graphdef, s)({"frames": f, "heatmaps": h}, train=False))
        out = forward(state, frames, heatmaps)
        assert out.logits.dtype == jnp.float32 and out.embedding.dtype == jnp.float32
        logits[dtype] = np.asarray(out.logits)
        loss, grads = loss_and_grads(model, frames, heatmaps, labels)
        assert np.isfinite(float(loss))
        assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(grads))   # parameters stay float32
    scale = np.abs(logits["float32"]).max()
    np.testing.assert_allclose(logits["bfloat16"], logits["float32"], atol=0.05 * scale + 0.02)


@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_output_shapes_for_each_output_stride(output_stride):
    config = tiny_config(output_stride=output_stride)
    model = build_model(config.model)
    frames, heatmaps, _ = random_batch(config)
    section = config.model.dfer
    side = feature_map_size(section.image_size, output_stride)
    assert side == {8: 6, 16: 3, 32: 2}[output_stride]
    assert models.input_spec(config.model).heatmap_size == side     # the one place it is derived
    feature_map = model.backbone(frames.reshape(-1, *frames.shape[2:]), train=False)
    assert feature_map.shape == (8, side, side, section.widths[-1])
    out = model({"frames": frames, "heatmaps": heatmaps})
    assert out.logits.shape == (2, 7) and out.aux_logits.shape == (2, 7)
    assert out.embedding.shape == (2, 4 * section.node_dim)


@pytest.mark.parametrize("overrides, nodes", [
    *[(dict(VARIANTS[v]), 4) for v in sorted(VARIANTS)],
    (dict(fusion="mean"), 1), (dict(fusion="lstm"), 4),
    (dict(fusion="mean", temporal="lstm"), 1),
    (dict(num_heads=3), 4), (dict(num_layers=2), 4), (dict(num_classes=11), 4),
])
def test_output_shapes_for_every_ablation(overrides, nodes):
    config = tiny_config(**overrides)
    model = build_model(config.model)
    frames, heatmaps, _ = random_batch(config)
    out = model({"frames": frames, "heatmaps": heatmaps})
    classes = config.model.num_classes
    dim = nodes * config.model.dfer.node_dim     # structure / lstm fusion: 4 region tokens; mean: 1
    assert out.logits.shape == (2, classes) and out.embedding.shape == (2, dim)
    if config.model.dfer.temporal == "none":
        assert out.aux_logits is None and model.temporal is None
    else:
        assert out.aux_logits.shape == (2, classes)


def test_paper_configuration_has_about_17m_parameters():
    model = nnx.eval_shape(lambda: DFERModel(rngs=nnx.Rngs(0)))
    params = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    # ResNet18 trunk 11,176,512 + triplet attention 300 + GCN 327,808 + temporal 6,312,960
    # + two 512 -> 7 heads 2 x 3,591: 17,824,762 (the paper: "17M").
    assert params == 17_824_762


def test_clip_length_must_match_the_position_embedding():
    config = tiny_config()
    model = build_model(config.model)
    frames, heatmaps, _ = random_batch(config)
    with pytest.raises(ValueError, match="num_frames"):
        model({"frames": frames[:, :3], "heatmaps": heatmaps[:, :3]})
    with pytest.raises(ValueError, match="heat-maps"):
        model({"frames": frames, "heatmaps": heatmaps[..., :17]})


def test_jitted_gradient_through_triplet_attention_equals_eager():
    """Regression: with jnp.max in Z-pool, the jitted gradient of backbone + triplet attention was 26%
    off the eager one on XLA:CPU (even in float64); the argmax form must agree to float32 rounding."""
    config = tiny_config()
    model = build_model(config.model, seed=0)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    frames = jnp.asarray(np.random.default_rng(0).integers(0, 256, (16, 48, 48, 3), dtype=np.uint8))

    def grads(params):
        def loss(params):
            m = nnx.merge(graphdef, params, rest, copy=True)
            return jnp.mean(jnp.sin(m.triplet_attention(m.backbone(frames, True), True)))
        return jax.grad(loss)(params)

    eager, jitted = grads(params), jax.jit(grads)(params)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(eager), jax.tree.leaves(jitted)):
        scale = float(jnp.max(jnp.abs(a))) + 1e-12
        assert float(jnp.max(jnp.abs(a - b))) / scale < 1e-3, jax.tree_util.keystr(path)


@pytest.mark.parametrize("shape", [(2, 8, 8, 3), (1, 7, 9, 2)])
def test_stem_max_pool_equals_reduce_window_pool_and_its_gradient(shape):
    """The slice-wise 3x3/2 max pool against a direct numpy loop over the windows, and its gradient
    against jax's reduce_window pool (unique maxima); where a window's values tie, each output's
    gradient goes to one input: the first of its window in scan order."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape).astype(np.float32)
    n, h, w, c = shape
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
    expected = np.stack([np.stack([padded[:, 2 * i:2 * i + 3, 2 * j:2 * j + 3].max(axis=(1, 2))
                                   for j in range((w + 1) // 2)], 1) for i in range((h + 1) // 2)], 1)
    np.testing.assert_array_equal(max_pool_3x3_s2(jnp.asarray(x)), expected)
    weights = jnp.asarray(rng.normal(size=expected.shape), jnp.float32)
    ours = jax.grad(lambda v: jnp.sum(max_pool_3x3_s2(v) * weights))(jnp.asarray(x))
    reference = jax.grad(lambda v: jnp.sum(nnx.max_pool(v, (3, 3), (2, 2), ((1, 1), (1, 1))) * weights))(
        jnp.asarray(x))
    np.testing.assert_allclose(ours, reference, rtol=1e-6, atol=1e-6)
    tied = jax.grad(lambda v: jnp.sum(max_pool_3x3_s2(v) * weights))(jnp.zeros(shape, jnp.float32))
    first = np.zeros(shape, np.float32)                     # window (i, j) starts at input (2i-1, 2j-1)
    for i in range(expected.shape[1]):
        for j in range(expected.shape[2]):
            first[:, max(2 * i - 1, 0), max(2 * j - 1, 0)] += np.asarray(weights[:, i, j])
    np.testing.assert_allclose(tied, first, rtol=1e-6, atol=1e-6)
