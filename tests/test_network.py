import math

import numpy as np
import pytest

import lipcert as lc
from conftest import ACTIVATIONS, random_cnn, random_mlp, ref_forward


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_forward_matches_numpy_reference_on_random_mlps(activation):
    rng = np.random.default_rng(1)
    net = random_mlp(rng, [5, 7, 6, 3], activation)
    x = rng.normal(size=(9, 5))
    np.testing.assert_allclose(net(x), ref_forward(net, x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_forward_matches_numpy_reference_on_random_cnns(activation):
    rng = np.random.default_rng(2)
    net = random_cnn(rng, activation)
    x = rng.normal(size=(4, 2, 7, 7))
    np.testing.assert_allclose(net(x), ref_forward(net, x), rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_jacobian_matches_finite_differences(activation):
    rng = np.random.default_rng(3)
    for net, shape in ((random_mlp(rng, [4, 8, 5, 2], activation), (4,)),
                       (random_cnn(rng, activation), (2, 7, 7))):
        x = rng.normal(size=(3,) + shape)
        jac = net.jacobian(x)
        assert jac.shape == (3, net.output_size, net.input_size)
        h = 1e-6
        for b in range(3):
            fd = np.empty((net.output_size, net.input_size))
            for j in range(net.input_size):
                e = np.zeros(net.input_size)
                e[j] = h
                xp = x[b].ravel() + e
                xm = x[b].ravel() - e
                fd[:, j] = (net(xp[None]) - net(xm[None])).ravel() / (2 * h)
            np.testing.assert_allclose(jac[b], fd, rtol=1e-4, atol=1e-6)


def test_vjp_is_jacobian_transpose_times_u():
    rng = np.random.default_rng(4)
    net = random_cnn(rng, lc.Tanh)
    x = rng.normal(size=(5, 2, 7, 7))
    u = rng.normal(size=(5, 3))
    np.testing.assert_allclose(net.vjp(x, u), np.einsum("boi,bo->bi", net.jacobian(x), u), rtol=1e-12, atol=1e-13)


def test_forward_and_jacobian_match_pytorch():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.LeakyReLU(0.2),
        nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.Tanh(), nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(16, 8), nn.BatchNorm1d(8), nn.Sigmoid(), nn.Dropout(0.5), nn.Linear(8, 3), nn.ReLU(),
    ).double()
    with torch.no_grad():  # non-trivial running statistics
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    model.eval()
    net = lc.from_torch(model, (2, 8, 8))
    assert not any(type(l).__name__.startswith("Batch") for l in net.layers)
    x = torch.randn(6, 2, 8, 8, dtype=torch.float64)
    np.testing.assert_allclose(net(x.numpy()), model(x).detach().numpy(), rtol=1e-10, atol=1e-12)
    jac_torch = torch.autograd.functional.jacobian(lambda z: model(z[None])[0], x[0]).reshape(3, -1)
    np.testing.assert_allclose(net.jacobian(x[:1].numpy())[0], jac_torch.numpy(), rtol=1e-9, atol=1e-12)


def test_from_torch_rejects_unsupported_modules_by_name():
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.GELU())
    with pytest.raises(lc.UnsupportedLayerError, match=r"'1'.*GELU"):
        lc.from_torch(model, (3,))


def test_save_load_round_trip_preserves_outputs(tmp_path):
    rng = np.random.default_rng(5)
    for net in (random_mlp(rng, [3, 5, 2], lambda: lc.LeakyReLU(0.3)), random_cnn(rng, lc.Sigmoid)):
        path = tmp_path / "net.npz"
        net.save(path)
        again = lc.load(path)
        assert [type(l) for l in again.layers] == [type(l) for l in net.layers]
        x = rng.normal(size=(4,) + net.input_shape)
        np.testing.assert_array_equal(again(x), net(x))


def test_with_output_composes_a_matrix():
    rng = np.random.default_rng(6)
    net = random_mlp(rng, [3, 6, 4])
    c = rng.normal(size=(2, 4))
    x = rng.normal(size=(5, 3))
    np.testing.assert_allclose(net.with_output(c)(x), net(x) @ c.T, rtol=1e-12)


def test_with_output_merges_only_provably_exact_products():
    w = np.array([[1.0, 2.0], [3.0, -0.5], [1e-17, 0.25]])
    net = lc.Network([lc.Dense(np.eye(2)), lc.ReLU(), lc.Dense(w, np.array([0.5, 1.0, 2.0]))], (2,))
    selector = net.with_output(np.eye(3)[[1]])  # a row of the identity: a copy
    assert len(selector.layers) == 3 and np.array_equal(selector.layers[-1].weight, w[[1]])
    margin = net.with_output([[1.0, -1.0, 0.0]])  # exact differences: merged
    assert len(margin.layers) == 3 and np.array_equal(margin.layers[-1].weight, [[-2.0, 2.5]])
    inexact = net.with_output([[1.0, 0.0, -1.0]])  # 1 - 1e-17 rounds: kept as a separate layer
    assert len(inexact.layers) == 4 and np.array_equal(inexact.layers[-1].weight, [[1.0, 0.0, -1.0]])
    general = net.with_output([[0.3, 0.7, 0.0]])
    assert len(general.layers) == 4
    x = np.random.default_rng(0).normal(size=(4, 2))
    for c, out in [([[1.0, 0.0, -1.0]], inexact), ([[0.3, 0.7, 0.0]], general)]:
        np.testing.assert_allclose(out(x), net(x) @ np.array(c).T, rtol=1e-12)


# ---- validation -------------------------------------------------------------------------------

def test_empty_network_is_rejected():
    with pytest.raises(lc.InvalidNetworkError, match="no layers"):
        lc.Network([], (3,))


def test_dense_shape_mismatch_names_the_layer():
    with pytest.raises(lc.InvalidNetworkError, match=r"layer 2 \(Dense\).*5 columns.*4 features"):
        lc.Network([lc.Dense(np.ones((4, 3))), lc.ReLU(), lc.Dense(np.ones((2, 5)))], (3,))


def test_bias_mismatch_is_rejected():
    with pytest.raises(lc.InvalidNetworkError, match=r"layer 0 \(Dense\): bias"):
        lc.Network([lc.Dense(np.ones((4, 3)), np.ones(3))], (3,))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_are_rejected(bad):
    w = np.ones((2, 3))
    w[1, 2] = bad
    with pytest.raises(lc.InvalidNetworkError, match=r"layer 1 \(Dense\).*NaN or inf"):
        lc.Network([lc.Dense(np.ones((3, 3))), lc.Dense(w)], (3,))
    with pytest.raises(lc.InvalidNetworkError, match=r"layer 0 \(Conv2d\).*NaN or inf"):
        lc.Network([lc.Conv2d(np.full((1, 1, 2, 2), bad))], (1, 4, 4))


def test_dense_on_spatial_input_asks_for_flatten():
    with pytest.raises(lc.InvalidNetworkError, match="Flatten"):
        lc.Network([lc.Dense(np.ones((2, 16)))], (1, 4, 4))


def test_conv_channel_mismatch_and_oversized_kernel_are_rejected():
    with pytest.raises(lc.InvalidNetworkError, match=r"layer 0 \(Conv2d\).*2 input channels.*3"):
        lc.Network([lc.Conv2d(np.ones((4, 2, 3, 3)))], (3, 5, 5))
    with pytest.raises(lc.InvalidNetworkError, match="larger than"):
        lc.Network([lc.Conv2d(np.ones((1, 1, 5, 5)))], (1, 3, 3))
    with pytest.raises(lc.InvalidNetworkError, match=r"\(C, H, W\)"):
        lc.Network([lc.Conv2d(np.ones((1, 1, 1, 1)))], (4,))


def test_bad_input_shape_and_layer_types_are_rejected():
    with pytest.raises(lc.InvalidNetworkError):
        lc.Network([lc.ReLU()], (2, 3))
    with pytest.raises(lc.InvalidNetworkError):
        lc.Network([lc.ReLU()], (0,))
    with pytest.raises(TypeError, match="not a lipcert layer"):
        lc.Network([np.ones((2, 2))], (2,))


def test_forward_rejects_wrong_input_shapes_and_nan():
    net = random_mlp(np.random.default_rng(0), [3, 4, 2])
    with pytest.raises(ValueError, match=r"\(batch, 3\)"):
        net(np.ones((2, 4)))
    with pytest.raises(ValueError, match="NaN"):
        net(np.array([[1.0, np.nan, 0.0]]))


def test_malformed_npz_files_are_rejected(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"definitely not a zip file")
    with pytest.raises(lc.InvalidNetworkError, match="not a readable"):
        lc.load(junk)
    other = tmp_path / "other.npz"
    np.savez(other, a=np.ones(3))
    with pytest.raises(lc.InvalidNetworkError, match="not a lipcert network"):
        lc.load(other)
    net = random_mlp(np.random.default_rng(0), [3, 4, 2])
    good = tmp_path / "good.npz"
    net.save(good)
    data = dict(np.load(good))
    del data["layer2.weight"]
    broken = tmp_path / "broken.npz"
    np.savez(broken, **data)
    with pytest.raises(lc.InvalidNetworkError, match="missing"):
        lc.load(broken)
    data = dict(np.load(good))
    data["layer2.weight"] = np.full_like(data["layer2.weight"], np.nan)
    np.savez(broken, **data)
    with pytest.raises(lc.InvalidNetworkError, match="NaN"):
        lc.load(broken)


def test_unknown_extension_and_missing_file():
    with pytest.raises(FileNotFoundError):
        lc.load("/nonexistent/model.onnx")


def test_activation_slope_bounds():
    assert lc.ReLU().slope_bounds == (0.0, 1.0)
    assert lc.LeakyReLU(0.2).slope_bounds == (0.2, 1.0)
    assert lc.Sigmoid().slope_bounds == (0.0, 0.25)
    assert lc.Tanh().slope_bounds == (0.0, 1.0)
    assert not math.isnan(lc.LeakyReLU(2.0).slope_bounds[1])


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_from_sklearn_matches_the_fitted_mlp():
    sklearn = pytest.importorskip("sklearn.neural_network")
    rng = np.random.default_rng(7)
    x = rng.normal(size=(60, 4))
    y = x[:, 0] - 2 * x[:, 1] ** 2
    for activation in ("relu", "tanh", "logistic"):
        model = sklearn.MLPRegressor(hidden_layer_sizes=(8, 6), activation=activation, max_iter=50, random_state=0).fit(x, y)
        net = lc.from_sklearn(model)
        np.testing.assert_allclose(net(x)[:, 0], model.predict(x), rtol=1e-10, atol=1e-12)
    with pytest.raises(lc.UnsupportedLayerError, match="softsign"):
        lc.from_sklearn([np.ones((2, 2))], [np.zeros(2)], activation="softsign")
