"""lipcert.torch: AOL layers are 1-Lipschitz for any parameters and export exactly as they run."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import lipcert as lc  # noqa: E402
from lipcert import _core  # noqa: E402
from lipcert.torch import AOLConv2d, AOLLinear, MaxMin, OffsetCrossEntropy  # noqa: E402

SCALES = [1.0, 1e-3, 1e3]


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("shape", [(7, 5), (5, 7), (1, 9), (9, 1)])
def test_aol_linear_is_1_lipschitz(shape, scale):
    torch.manual_seed(0)
    layer = AOLLinear(shape[1], shape[0])
    with torch.no_grad():
        layer.weight.copy_(torch.randn(*shape) * scale)
        layer.weight[:, 0] *= 1e4  # one adversarially large column
    (dense,) = layer.lipcert_layers()
    assert np.linalg.norm(dense.weight, 2) <= 1 + 1e-6
    assert torch.linalg.matrix_norm(layer.rescaled_weight().double(), 2) <= 1 + 1e-5


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("kernel,padding", [(3, 1), (3, 0), (1, 0), (5, 2)])
def test_aol_conv_unrolled_is_1_lipschitz(kernel, padding, scale):
    torch.manual_seed(1)
    layer = AOLConv2d(3, 4, kernel, padding=padding)
    with torch.no_grad():
        layer.weight.mul_(scale)
    net = lc.from_torch(torch.nn.Sequential(layer), (3, 7, 7))
    matrix = _core.layer_dense_matrix(net._core, 0)
    assert np.linalg.norm(matrix, 2) <= 1 + 1e-6


def test_exported_network_matches_torch_and_bounds_are_at_most_one():
    torch.manual_seed(2)
    model = torch.nn.Sequential(AOLConv2d(1, 4, 3, padding=1), torch.nn.ReLU(), AOLConv2d(4, 4, 3, padding=1),
                                torch.nn.ReLU(), torch.nn.Flatten(), AOLLinear(4 * 8 * 8, 10)).double()
    net = lc.from_torch(model, (1, 8, 8))
    x = np.random.default_rng(0).normal(size=(5, 1, 8, 8))
    with torch.no_grad():
        expected = model(torch.tensor(x)).numpy()
    assert np.allclose(net(x), expected, rtol=1e-10, atol=1e-12)
    for method in ("naive", "autolip"):
        b = lc.lipschitz(net, method=method)
        assert b.certified and b.upper <= 1 + 1e-6


def test_maxmin_module_exports_and_aol_maxmin_networks_are_1_lipschitz():
    torch.manual_seed(3)
    model = torch.nn.Sequential(AOLConv2d(2, 4, 3, padding=1), MaxMin(), torch.nn.Flatten(), AOLLinear(4 * 5 * 5, 8),
                                MaxMin(), AOLLinear(8, 3)).double()
    net = lc.from_torch(model, (2, 5, 5))
    assert [type(layer).__name__ for layer in net.layers].count("MaxMin") == 2
    x = np.random.default_rng(1).normal(size=(6, 2, 5, 5))
    with torch.no_grad():
        expected = model(torch.tensor(x)).numpy()
    np.testing.assert_allclose(net(x), expected, rtol=1e-10, atol=1e-12)
    for method in ("naive", "autolip", "sdp"):
        b = lc.lipschitz(net, method=method)
        assert b.certified and b.lower <= b.upper <= 1 + 1e-6, method
    with pytest.raises(ValueError, match="even"):
        MaxMin()(torch.ones(2, 3))


def test_offset_cross_entropy():
    logits = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    target = torch.tensor([0, 1])
    plain = OffsetCrossEntropy(offset=0.0, temperature=1.0)(logits, target)
    assert torch.isclose(plain, torch.nn.functional.cross_entropy(logits, target))
    assert OffsetCrossEntropy(offset=2.0)(logits, target) > OffsetCrossEntropy(offset=0.0)(logits, target)
    with pytest.raises(ValueError):
        OffsetCrossEntropy(temperature=0.0)


def _train_regression(lam, seed=0, steps=300):
    from lipcert.torch import CLIPRegularizer

    torch.manual_seed(seed)
    x = torch.linspace(-1, 1, 64).unsqueeze(1)
    y = torch.sin(4 * x) + 0.3 * torch.randn_like(x)
    model = torch.nn.Sequential(torch.nn.Linear(1, 32), torch.nn.ReLU(), torch.nn.Linear(32, 32), torch.nn.ReLU(),
                                torch.nn.Linear(32, 1))
    reg = CLIPRegularizer(model, n_pairs=16, lam=lam, ascent_steps=2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        if lam > 0:
            loss = loss + reg(x)
        loss.backward()
        opt.step()
    return model, reg


def test_clip_lowers_the_sampled_lipschitz_constant():
    plain, _ = _train_regression(lam=0.0)
    regularised, reg = _train_regression(lam=0.05)
    grid = np.linspace(-1, 1, 2001)[:, None]

    def sampled(model):
        net = lc.from_torch(model, (1,))
        return float(np.abs(net.jacobian(grid)).max())

    assert sampled(regularised) < sampled(plain)
    # a lower bound (up to float32 rounding of the difference quotient), below the certified upper bound
    assert 0 < reg.estimate() <= lc.lipschitz(lc.from_torch(regularised, (1,)), method="naive").upper * (1 + 1e-4)


def test_clip_adapts_lambda_to_a_target_accuracy():
    from lipcert.torch import CLIPRegularizer

    reg = CLIPRegularizer(torch.nn.Linear(2, 2), lam=1.0, target_accuracy=0.9, lam_factor=2.0)
    assert reg.update_lambda(0.95) == 2.0 and reg.update_lambda(0.5) == 1.0
    with pytest.raises(ValueError):
        CLIPRegularizer(torch.nn.Linear(2, 2), n_pairs=0)


def run_example(name, args, monkeypatch):
    """Runs examples/<name>.py's main(args) as a script would (its folder on sys.path)."""
    import importlib.util
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "examples"
    monkeypatch.syspath_prepend(str(folder))
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    threads = torch.get_num_threads()
    try:
        example.main(args)
    finally:
        torch.set_num_threads(threads)


def test_digits_example_runs(tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    run_example("train_lipschitz_digits", ["--epochs", "1", "--families", "MLP", "--bab-time", "0.2",
                                           "--out", str(tmp_path)], monkeypatch)
    table = (tmp_path / "digits.md").read_text()
    assert "AOL MLP (MaxMin)" in table and "CLIP" in table and "n/a" not in table  # bab bounds every model


def test_offset_tradeoff_example_runs(tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    run_example("aol_offset_tradeoff", ["--epochs", "1", "--offsets", "0,4", "--out", str(tmp_path)], monkeypatch)
    rows = (tmp_path / "offset.md").read_text().splitlines()[2:]
    assert [r.split("|")[1].strip() for r in rows] == ["0", "4"]


def test_clip_regression_example_runs(tmp_path, monkeypatch):
    run_example("clip_regression_1d", ["--steps", "20", "--bab-time", "2", "--out", str(tmp_path)], monkeypatch)
    rows = (tmp_path / "clip_1d.md").read_text().splitlines()[2:]
    assert len(rows) == 5 and all("True" in r for r in rows)  # bab is exact on the interval for each fit
