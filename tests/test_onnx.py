"""ONNX import checked against onnx's reference evaluator."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

import lipcert as lc  # noqa: E402


def _model(nodes, input_shape, output_name, initializers, opset=18):
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N"] + list(input_shape))],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.asarray(v, dtype=np.float32), k) for k, v in initializers.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _check_matches_reference(model, tmp_path, input_shape, rtol=1e-5):
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    net = lc.load(path)
    x = np.random.default_rng(0).normal(size=(5,) + tuple(input_shape)).astype(np.float32)
    ref = ReferenceEvaluator(model).run(None, {"input": x})[0]
    ours = net(x.astype(np.float64)).reshape(ref.shape)
    np.testing.assert_allclose(ours, ref, rtol=rtol, atol=rtol * np.abs(ref).max())
    return net


def test_glipsdp_mnist_models_all_load_and_match_the_reference(shared_data):
    paths = sorted((shared_data / "glipsdp" / "mnist").glob("*.onnx"))
    assert len(paths) == 33
    rng = np.random.default_rng(1)
    for path in paths:
        net = lc.load(path)
        assert net.input_shape == (1, 28, 28) and net.output_size == 10
        x = rng.random((3, 1, 28, 28)).astype(np.float32)
        ref = ReferenceEvaluator(str(path)).run(None, {"input": x})[0]
        np.testing.assert_allclose(net(x.astype(np.float64)), ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max(),
                                   err_msg=path.name)


def test_normalisation_batchnorm_and_pooling_are_folded(tmp_path):
    rng = np.random.default_rng(2)
    init = {
        "mean": rng.normal(size=(1, 2, 1, 1)), "std": rng.uniform(0.5, 2, size=(1, 2, 1, 1)),
        "w1": rng.normal(size=(3, 2, 3, 3)), "b1": rng.normal(size=3),
        "bn_s": rng.uniform(0.5, 1.5, 3), "bn_b": rng.normal(size=3), "bn_m": rng.normal(size=3),
        "bn_v": rng.uniform(0.5, 2, 3), "w2": rng.normal(size=(4, 3, 2, 2)),
        "k": np.array(0.5), "fc": rng.normal(size=(5, 4 * 2 * 2)), "fcb": rng.normal(size=5),
        "mm": rng.normal(size=(5, 3)), "add": rng.normal(size=3),
    }
    nodes = [
        helper.make_node("Sub", ["input", "mean"], ["a"]),
        helper.make_node("Div", ["a", "std"], ["b"]),
        helper.make_node("Conv", ["b", "w1", "b1"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "bn_s", "bn_b", "bn_m", "bn_v"], ["d"], epsilon=1e-3),
        helper.make_node("Relu", ["d"], ["e"]),
        helper.make_node("AveragePool", ["e"], ["f"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["f", "w2"], ["g"], strides=[1, 1]),
        helper.make_node("Mul", ["g", "k"], ["h"]),
        helper.make_node("LeakyRelu", ["h"], ["i"], alpha=0.2),
        helper.make_node("Flatten", ["i"], ["j"]),
        helper.make_node("Gemm", ["j", "fc", "fcb"], ["l"], transB=1),
        helper.make_node("Tanh", ["l"], ["m"]),
        helper.make_node("MatMul", ["m", "mm"], ["n"]),
        helper.make_node("Add", ["n", "add"], ["o"]),
        helper.make_node("Identity", ["o"], ["p"]),
        helper.make_node("Sigmoid", ["p"], ["out"]),
    ]
    net = _check_matches_reference(_model(nodes, (2, 6, 6), "out", init), tmp_path, (2, 6, 6))
    assert {type(l).__name__ for l in net.layers} <= {"Conv2d", "ReLU", "AvgPool2d", "LeakyReLU", "Flatten",
                                                       "Dense", "Tanh", "Sigmoid"}


def test_global_pooling_and_pytorch_flatten_pattern(tmp_path):
    rng = np.random.default_rng(3)
    init = {"w": rng.normal(size=(4, 1, 3, 3)), "axes": np.array([2, 3]), "tail": np.array([-1]),
            "fc": rng.normal(size=(4, 2)), "two": np.array(2.0)}
    init_int = {"axes", "tail"}
    nodes = [
        helper.make_node("Shape", ["input"], ["shape"], start=0, end=1),
        helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("ReduceMean", ["c", "axes"], ["r"], keepdims=1),
        helper.make_node("Concat", ["shape", "tail"], ["target"], axis=0),
        helper.make_node("Reshape", ["r", "target"], ["flat"]),
        helper.make_node("Constant", [], ["half"], value=numpy_helper.from_array(np.array(0.5, dtype=np.float32))),
        helper.make_node("Mul", ["fc", "half"], ["fc_half"]),  # a constant subgraph
        helper.make_node("MatMul", ["flat", "fc_half"], ["out"]),
    ]
    model = _model(nodes, (1, 5, 5), "out", {k: v for k, v in init.items() if k not in init_int})
    model.graph.initializer.extend([numpy_helper.from_array(init[k].astype(np.int64), k) for k in init_int])
    _check_matches_reference(model, tmp_path, (1, 5, 5))
    nodes2 = [helper.make_node("Conv", ["input", "w"], ["c"]), helper.make_node("GlobalAveragePool", ["c"], ["g"]),
              helper.make_node("Flatten", ["g"], ["out"])]
    _check_matches_reference(_model(nodes2, (1, 5, 5), "out", {"w": init["w"]}), tmp_path, (1, 5, 5))


def test_unsupported_operator_names_the_node_and_op(tmp_path):
    nodes = [helper.make_node("MaxPool", ["input"], ["out"], kernel_shape=[2, 2], name="pool1")]
    path = tmp_path / "m.onnx"
    onnx.save(_model(nodes, (1, 4, 4), "out", {}), str(path))
    with pytest.raises(lc.UnsupportedLayerError, match=r"'pool1' \(MaxPool\).*unsupported operator MaxPool"):
        lc.load(path)


def test_branching_graph_is_rejected(tmp_path):
    w = np.eye(3)
    nodes = [helper.make_node("MatMul", ["input", "w"], ["a"]), helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("Add", ["a", "b"], ["out"], name="residual")]
    path = tmp_path / "m.onnx"
    onnx.save(_model(nodes, (3,), "out", {"w": w}), str(path))
    with pytest.raises(lc.UnsupportedLayerError, match="residual.*branches"):
        lc.load(path)


def test_grouped_convolution_is_rejected(tmp_path):
    nodes = [helper.make_node("Conv", ["input", "w"], ["out"], group=2, name="dw")]
    path = tmp_path / "m.onnx"
    onnx.save(_model(nodes, (2, 4, 4), "out", {"w": np.ones((2, 1, 3, 3))}), str(path))
    with pytest.raises(lc.UnsupportedLayerError, match="'dw'.*grouped"):
        lc.load(path)


def test_malformed_onnx_file_is_rejected(tmp_path):
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"\x08\x07garbage that is not a protobuf model \xff\xff")
    with pytest.raises(lc.InvalidNetworkError, match="not a readable ONNX model"):
        lc.load(path)


def test_missing_external_data_is_rejected(tmp_path, shared_data):
    import shutil

    shutil.copy(shared_data / "glipsdp" / "mnist" / "mlp_L3_W16.onnx", tmp_path / "m.onnx")
    with pytest.raises(lc.InvalidNetworkError):
        lc.load(tmp_path / "m.onnx")
