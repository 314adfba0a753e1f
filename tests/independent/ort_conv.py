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
"""
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

OPSET = 17


def run_case(case):
    x = np.load(case["input"]).astype(np.float32)
    w = np.load(case["weight"]).astype(np.float32)
    feeds = {"x": x, "w": w}
    if case.get("bias"):
        feeds["b"] = np.load(case["bias"]).astype(np.float32)

    pads_begin = list(case["pads"])
    pads_end = list(case["pads"])
    appended = [0, 0]  # rows, columns of bias-only output appended after ORT ran (see below)
    attrs = dict(strides=case["strides"], dilations=case["dilations"], group=case["group"],
                 kernel_shape=list(w.shape[2:]))
    if case["op"] == "conv_transpose":
        node_op = "ConvTranspose"
        output_padding = list(case.get("output_padding", [0, 0]))
        for axis, s in enumerate(case["strides"]):
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
    elif case["op"] == "conv":
        node_op = "Conv"
    else:
        raise ValueError(f"unknown op {case['op']!r}")
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
    np.save(case["output"], np.ascontiguousarray(y, dtype=np.float32))


def main(paths):
    if not paths:
        sys.exit(__doc__)
    for path in paths:
        with open(path) as f:
            run_case(json.load(f))


if __name__ == "__main__":
    main(sys.argv[1:])
