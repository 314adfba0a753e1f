"""Shared helpers: random convolution cases and ONNX Runtime as the independent reference.

GPU tests run on whatever adapter wgpu finds (Mesa's lavapipe in CI). A machine without one
makes them fail (atrous.GpuError), never skip.
"""
import os

import numpy as np
import pytest

# As the CLI tests (tests/cli.rs): the kernels the rule picks, no timing of candidates (which
# would make the run slower and its kernels depend on the machine's cache); opt in with
# ATROUS_AUTOTUNE=1. Read when the GPU is first opened, after this.
os.environ.setdefault("ATROUS_AUTOTUNE", "0")

import atrous  # noqa: E402

OPSET = 17
DEVICES = ["gpu", "cpu"]


def random_case(rng, transposed):
    """A random PyTorch-style (transposed) convolution: shapes and parameters, per axis."""
    groups = int(rng.choice([1, 1, 2, 3, 4]))
    per_group_in = int(rng.integers(1, 6))
    per_group_out = int(rng.integers(1, 6))
    if rng.random() < 0.2:  # depthwise
        per_group_in, per_group_out, groups = 1, int(rng.integers(1, 3)), int(rng.integers(2, 9))
    c_in, c_out = groups * per_group_in, groups * per_group_out
    kernel = [int(rng.integers(1, 5)) for _ in range(2)]
    stride = [int(rng.integers(1, 4)) for _ in range(2)]
    dilation = [int(rng.integers(1, 5)) for _ in range(2)]
    padding, size, output_padding = [], [], []
    for axis in range(2):
        effective = dilation[axis] * (kernel[axis] - 1) + 1
        p = int(rng.integers(0, 4))
        if transposed:
            n = int(rng.integers(1, 10))
            op = int(rng.integers(0, max(stride[axis], dilation[axis])))
            # The output must have at least one element.
            p = min(p, ((n - 1) * stride[axis] + effective + op - 1) // 2)
            output_padding.append(op)
        else:
            n = int(rng.integers(max(1, effective - 2 * p), effective - 2 * p + 12))
        padding.append(p)
        size.append(n)
    batch = int(rng.integers(1, 3))
    x = rng.standard_normal((batch, c_in, *size)).astype(np.float32)
    if transposed:
        w = rng.standard_normal((c_in, per_group_out, *kernel)).astype(np.float32)
    else:
        w = rng.standard_normal((c_out, per_group_in, *kernel)).astype(np.float32)
    b = rng.standard_normal(c_out).astype(np.float32) if rng.random() < 0.6 else None
    params = dict(stride=tuple(stride), padding=tuple(padding), dilation=tuple(dilation), groups=groups)
    if transposed:
        params["output_padding"] = tuple(output_padding)
    return x, w, b, params


def ort_reference(x, w, b, params, transposed):
    """The same convolution by ONNX Runtime's CPU Conv / ConvTranspose (a single-node graph)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    feeds = {"x": x, "w": w}
    if b is not None:
        feeds["b"] = b
    pads_begin = list(params["padding"])
    pads_end = list(params["padding"])
    appended = [0, 0]
    attrs = dict(strides=list(params["stride"]), dilations=list(params["dilation"]), group=params["groups"],
                 kernel_shape=list(w.shape[2:]))
    if transposed:
        op = "ConvTranspose"
        output_padding = list(params["output_padding"])
        for axis, s in enumerate(params["stride"]):
            # PyTorch allows output_padding < max(stride, dilation), ORT only < stride: un-crop the
            # end padding instead, and append what lies past every input's reach (bias only), as
            # tests/independent/ort_conv.py does.
            if output_padding[axis] >= s:
                uncrop = min(output_padding[axis], pads_end[axis])
                pads_end[axis] -= uncrop
                appended[axis] = output_padding[axis] - uncrop
                output_padding[axis] = 0
        attrs["output_padding"] = output_padding
    else:
        op = "Conv"
    attrs["pads"] = pads_begin + pads_end
    node = helper.make_node(op, list(feeds), ["y"], **attrs)
    inputs = [helper.make_tensor_value_info(k, TensorProto.FLOAT, list(v.shape)) for k, v in feeds.items()]
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None] * 4)
    graph = helper.make_graph([node], "case", inputs, [output])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    (y,) = session.run(None, feeds)
    if any(appended):
        n, c, h, w_ = y.shape
        bias = b if b is not None else np.zeros(c, np.float32)
        padded = np.broadcast_to(bias[None, :, None, None], (n, c, h + appended[0], w_ + appended[1])).copy()
        padded[:, :, :h, :w_] = y
        y = padded
    return y


@pytest.fixture(scope="session")
def gpu_adapter():
    """The adapter the GPU tests run on; raises (the test fails) when there is none."""
    return atrous.adapter()
