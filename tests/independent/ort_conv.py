#!/usr/bin/env python3
"""Reference results for tests/independent.rs from ONNX Runtime's Conv / ConvTranspose.

Usage: ort_conv.py CASE.json [CASE.json ...]

Each CASE.json describes one PyTorch-style convolution and where its tensors live:
  {"op": "conv" | "conv_transpose",
   "strides": [sh, sw], "pads": [ph, pw], "dilations": [dh, dw], "group": g,
   "output_padding": [oh, ow],            # conv_transpose only
   "input": "x.npy", "weight": "w.npy", "bias": "b.npy" | null, "output": "y.npy"}
Weights use PyTorch's layouts, which are also ONNX's: Conv [C_out, C_in/g, kH, kW],
ConvTranspose [C_in, C_out/g, kH, kW]. Padding is symmetric, so ONNX's pads are [ph, pw, ph, pw].
One model with a single node is built per case and run on ORT's CPU provider; the result is
written to "output" as float32. Several cases per call save the interpreter's start-up time.
`ort_conv` is the same convolution on arrays (python/tests uses it too).
"""
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

OPSET = 17


def ort_conv(x, w, b, op, strides, pads, dilations, group, output_padding=(0, 0)):
    """ONNX Runtime's CPU Conv (op "conv") or ConvTranspose ("conv_transpose") of float32 NCHW
    `x` by `w` (and bias `b`, or None), PyTorch's parameters per axis; the float32 output."""
    feeds = {"x": x, "w": w}
    if b is not None:
        feeds["b"] = b

    pads_begin = list(pads)
    pads_end = list(pads)
    appended = [0, 0]  # rows, columns of bias-only output appended after ORT ran (see below)
    attrs = dict(strides=list(strides), dilations=list(dilations), group=group, kernel_shape=list(w.shape[2:]))
    if op == "conv_transpose":
        node_op = "ConvTranspose"
        output_padding = list(output_padding)
        for axis, s in enumerate(strides):
            # PyTorch allows output_padding < max(stride, dilation); ORT refuses output_padding
            # >= stride. The same output without it: output_padding only extends the output at
            # its end, so first un-crop up to output_padding of the end padding (pads may be
            # asymmetric in ONNX); what is left lies past every input's reach and holds bias only.
            if output_padding[axis] >= s:
                uncrop = min(output_padding[axis], pads_end[axis])
                pads_end[axis] -= uncrop
                appended[axis] = output_padding[axis] - uncrop
                output_padding[axis] = 0
        attrs["output_padding"] = output_padding
    elif op == "conv":
        node_op = "Conv"
    else:
        raise ValueError(f"unknown op {op!r}")
    attrs["pads"] = pads_begin + pads_end

    node = helper.make_node(node_op, list(feeds), ["y"], **attrs)
    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, list(v.shape)) for name, v in feeds.items()]
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None] * 4)  # ORT infers the sizes
    graph = helper.make_graph([node], "case", inputs, [output])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8  # opset 17's IR version: any ORT from 1.13 on loads it
    onnx.checker.check_model(model)

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    (y,) = session.run(None, feeds)
    if any(appended):
        n, c, h, w_ = y.shape
        bias = feeds.get("b", np.zeros(c, np.float32))
        padded = np.broadcast_to(bias[None, :, None, None], (n, c, h + appended[0], w_ + appended[1])).copy()
        padded[:, :, :h, :w_] = y
        y = padded
    return np.ascontiguousarray(y, dtype=np.float32)


def run_case(case):
    bias = np.load(case["bias"]).astype(np.float32) if case.get("bias") else None
    y = ort_conv(np.load(case["input"]).astype(np.float32), np.load(case["weight"]).astype(np.float32), bias, case["op"],
                 case["strides"], case["pads"], case["dilations"], case["group"], case.get("output_padding", [0, 0]))
    np.save(case["output"], y)


def main(paths):
    if not paths:
        sys.exit(__doc__)
    for path in paths:
        with open(path) as f:
            run_case(json.load(f))


if __name__ == "__main__":
    main(sys.argv[1:])
