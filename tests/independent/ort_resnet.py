#!/usr/bin/env python3
"""Reference ResNet backbone features for tests/independent_backbone.rs, from ONNX Runtime.

Usage:
  ort_resnet.py JOB.json [JOB.json ...]
  ort_resnet.py --arch resnet50 --output-stride 16 --weights W.safetensors --input X.npy --output F.npy
                [--prefix backbone.]

Each JOB.json is {"arch": "resnet50", "output_stride": 16, "weights": "W.safetensors",
"input": "X.npy", "output": "F.npy", "prefix": ""} ("prefix" optional). Several jobs per call
save ORT's import time.

The network is written here from torchvision's definition (torchvision/models/resnet.py), not
from atrous's builder:
  stem:   conv1 7x7/2 pad 3 (no bias) -> bn1 -> relu -> maxpool 3x3/2 pad 1
  layers: layer1..layer4 with planes 64, 128, 256, 512 and strides 1, 2, 2, 2;
          replace_stride_with_dilation = [layer2, layer3, layer4]:
            OS 32: [F, F, F]   OS 16: [F, F, T]   OS 8: [F, T, T]   OS 4: [T, T, T]
          _make_layer: previous_dilation = dilation; if dilate: dilation *= stride, stride = 1;
            downsample = conv1x1(inplanes, planes*expansion, stride) + BN when stride != 1 or
            inplanes != planes*expansion;
            block 0 gets (stride, downsample, previous_dilation), blocks 1.. get dilation.
  Bottleneck (expansion 4, v1.5): conv1 1x1 -> bn1 -> relu -> conv2 3x3 (stride, dilation d,
          padding d) -> bn2 -> relu -> conv3 1x1 -> bn3 -> (+ identity) -> relu
  BasicBlock (expansion 1): torchvision refuses dilation > 1 here; atrous extends it: block 0's
          conv1 (which carries the stride) uses previous_dilation and its conv2 the layer's new
          dilation; blocks 1.. use the new dilation on both. A 3x3 conv pads by its dilation.
  Batch-norm: inference mode, eps 1e-5, kept as BatchNormalization nodes (not folded into the
          convs), and ORT's graph optimisations are off so it does not fold them either.
The output is layer4's features (NCHW float32).

The .safetensors file is parsed here with NumPy alone (8-byte little-endian header length,
JSON header {name: {dtype, shape, data_offsets}}, raw little-endian data). Integer tensors
(num_batches_tracked) and fc.* are ignored, as a backbone never uses them; every other floating
tensor under the prefix must be used, and every tensor the network needs must be there with
torchvision's shape, or this script fails naming it.
"""
import argparse
import json
import struct
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

OPSET = 17
BN_EPS = 1e-5

# torchvision: resnet18 BasicBlock [2,2,2,2], resnet34 BasicBlock [3,4,6,3],
# resnet50 Bottleneck [3,4,6,3], resnet101 Bottleneck [3,4,23,3], resnet152 Bottleneck [3,8,36,3].
ARCHS = {
    "resnet18": ("basic", [2, 2, 2, 2]),
    "resnet34": ("basic", [3, 4, 6, 3]),
    "resnet50": ("bottleneck", [3, 4, 6, 3]),
    "resnet101": ("bottleneck", [3, 4, 23, 3]),
    "resnet152": ("bottleneck", [3, 8, 36, 3]),
}

REPLACE_STRIDE_WITH_DILATION = {
    32: [False, False, False],
    16: [False, False, True],
    8: [False, True, True],
    4: [True, True, True],
}

FLOAT_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2"}
OTHER_DTYPES = {"I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?",
                "U16": "<u2", "U32": "<u4", "U64": "<u8"}


def read_safetensors(path):
    """{name: float32 array} of the file's floating tensors, and the names of the others."""
    with open(path, "rb") as f:
        blob = f.read()
    (header_len,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + header_len].decode("utf-8"))
    data = memoryview(blob)[8 + header_len:]
    floats, others = {}, []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = data[begin:end]
        shape = tuple(info["shape"])
        dtype = info["dtype"]
        if dtype in FLOAT_DTYPES:
            array = np.frombuffer(raw, dtype=FLOAT_DTYPES[dtype])
        elif dtype == "BF16":
            array = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        elif dtype in OTHER_DTYPES:
            others.append(name)
            continue
        else:
            raise ValueError(f"{path}: tensor {name!r} has unknown dtype {dtype}")
        if array.size != int(np.prod(shape, dtype=np.int64)):
            raise ValueError(f"{path}: tensor {name!r} holds {array.size} values, shape {list(shape)}")
        floats[name] = array.astype(np.float32).reshape(shape)
    return floats, others


class Graph:
    """Builds an ONNX graph of the backbone, pulling initializers from a state dict."""

    def __init__(self, state, prefix, path):
        self.state, self.prefix, self.path = state, prefix, path
        self.used = set()
        self.nodes, self.inputs, self.feeds = [], [], {}
        self.initializers = []  # small constants (shapes, indices) other builders may add
        self.counter = 0

    def fresh(self, hint):
        self.counter += 1
        return f"{hint}__{self.counter}"

    def param(self, name, shape):
        full = self.prefix + name
        if full not in self.state:
            raise KeyError(f"{self.path} has no tensor {full!r} (torchvision shape {list(shape)})")
        value = self.state[full]
        if tuple(value.shape) != tuple(shape):
            raise ValueError(f"{self.path}: tensor {full!r} has shape {list(value.shape)}, torchvision's is {list(shape)}")
        self.used.add(full)
        # A graph input fed at run time rather than an initializer: the model stays small
        # (serialising 100 MB of initializers is most of the time otherwise).
        self.inputs.append(helper.make_tensor_value_info(full, TensorProto.FLOAT, list(shape)))
        self.feeds[full] = np.ascontiguousarray(value, dtype=np.float32)
        return full

    def conv(self, x, name, c_in, c_out, kernel, stride, padding, dilation):
        w = self.param(f"{name}.weight", (c_out, c_in, kernel, kernel))
        y = self.fresh(name)
        self.nodes.append(helper.make_node(
            "Conv", [x, w], [y], kernel_shape=[kernel, kernel], strides=[stride, stride],
            pads=[padding] * 4, dilations=[dilation, dilation], group=1))
        return y

    def bn(self, x, name, channels):
        inputs = [x] + [self.param(f"{name}.{field}", (channels,)) for field in ("weight", "bias", "running_mean", "running_var")]
        y = self.fresh(name)
        self.nodes.append(helper.make_node("BatchNormalization", inputs, [y], epsilon=BN_EPS))
        return y

    def relu(self, x):
        y = self.fresh("relu")
        self.nodes.append(helper.make_node("Relu", [x], [y]))
        return y

    def add(self, a, b):
        y = self.fresh("add")
        self.nodes.append(helper.make_node("Add", [a, b], [y]))
        return y

    def maxpool(self, x, kernel, stride, padding):
        y = self.fresh("maxpool")
        self.nodes.append(helper.make_node("MaxPool", [x], [y], kernel_shape=[kernel, kernel], strides=[stride, stride], pads=[padding] * 4))
        return y

    # torchvision's conv3x3 / conv1x1: padding = dilation for 3x3, no bias.
    def conv3x3(self, x, name, c_in, c_out, stride, dilation):
        return self.conv(x, name, c_in, c_out, 3, stride, dilation, dilation)

    def conv1x1(self, x, name, c_in, c_out, stride):
        return self.conv(x, name, c_in, c_out, 1, stride, 0, 1)


def basic_block(g, x, name, inplanes, planes, stride, downsample, first_dilation, dilation):
    out = g.conv3x3(x, f"{name}.conv1", inplanes, planes, stride, first_dilation)
    out = g.relu(g.bn(out, f"{name}.bn1", planes))
    out = g.conv3x3(out, f"{name}.conv2", planes, planes, 1, dilation)
    out = g.bn(out, f"{name}.bn2", planes)
    identity = downsample(x) if downsample else x
    return g.relu(g.add(out, identity))


def bottleneck(g, x, name, inplanes, planes, stride, downsample, dilation):
    width = planes  # groups 1, base_width 64
    out = g.relu(g.bn(g.conv1x1(x, f"{name}.conv1", inplanes, width, 1), f"{name}.bn1", width))
    out = g.relu(g.bn(g.conv3x3(out, f"{name}.conv2", width, width, stride, dilation), f"{name}.bn2", width))
    out = g.bn(g.conv1x1(out, f"{name}.conv3", width, planes * 4, 1), f"{name}.bn3", planes * 4)
    identity = downsample(x) if downsample else x
    return g.relu(g.add(out, identity))


def build_backbone(g, x, arch, output_stride):
    kind, layers = ARCHS[arch]
    expansion = 4 if kind == "bottleneck" else 1
    if output_stride not in REPLACE_STRIDE_WITH_DILATION:
        raise ValueError(f"output stride {output_stride} is not one of {sorted(REPLACE_STRIDE_WITH_DILATION)}")
    replace = REPLACE_STRIDE_WITH_DILATION[output_stride]

    # Stem.
    x = g.conv(x, "conv1", 3, 64, 7, 2, 3, 1)
    x = g.relu(g.bn(x, "bn1", 64))
    x = g.maxpool(x, 3, 2, 1)

    inplanes, dilation = 64, 1
    for index, (planes, blocks) in enumerate(zip([64, 128, 256, 512], layers)):
        stride = 1 if index == 0 else 2
        dilate = index > 0 and replace[index - 1]
        previous_dilation = dilation
        if dilate:
            dilation *= stride
            stride = 1
        for block in range(blocks):
            name = f"layer{index + 1}.{block}"
            downsample = None
            if block == 0 and (stride != 1 or inplanes != planes * expansion):
                def downsample(v, name=name, c_in=inplanes, c_out=planes * expansion, s=stride):
                    return g.bn(g.conv1x1(v, f"{name}.downsample.0", c_in, c_out, s), f"{name}.downsample.1", c_out)
            s = stride if block == 0 else 1
            first = previous_dilation if block == 0 else dilation
            if kind == "bottleneck":
                x = bottleneck(g, x, name, inplanes, planes, s, downsample, first)
            else:
                x = basic_block(g, x, name, inplanes, planes, s, downsample, first, dilation)
            inplanes = planes * expansion
    return x


def run_job(job):
    state, _integers = read_safetensors(job["weights"])
    prefix = job.get("prefix", "") or ""
    x = np.load(job["input"]).astype(np.float32)
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"{job['input']}: expected an N x 3 x H x W input, got {list(x.shape)}")

    g = Graph(state, prefix, job["weights"])
    y = build_backbone(g, "x", job["arch"], int(job["output_stride"]))
    unused = sorted(n for n in state if n.startswith(prefix) and n not in g.used and not n[len(prefix):].startswith("fc."))
    if unused:
        raise ValueError(f"{job['weights']}: {len(unused)} tensor(s) a torchvision {job['arch']} has no use for, e.g. {unused[:5]}")

    features = run_graph(g, x, y, f"{job['arch']}_os{job['output_stride']}")
    np.save(job["output"], np.ascontiguousarray(features, dtype=np.float32))
    return features.shape


def run_graph(g, x, y, name):
    """Runs g's nodes on ORT's CPU provider with graph input "x" = x and returns output y."""
    graph = helper.make_graph(
        g.nodes, name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))] + g.inputs,
        [helper.make_tensor_value_info(y, TensorProto.FLOAT, [None] * 4)], initializer=g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8  # opset 17's IR version: any ORT from 1.13 on loads it
    onnx.checker.check_model(model)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep BN unfolded
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"x": x, **g.feeds})
    return out


def run_job_files(argv, run_job):
    """Runs `run_job` on every JOB.json in argv; False when argv is flags instead."""
    if not argv or argv[0].startswith("-"):
        return False
    for path in argv:
        with open(path) as f:
            run_job(json.load(f))
    return True


def main(argv):
    if run_job_files(argv, run_job):
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", required=True, choices=sorted(ARCHS))
    parser.add_argument("--output-stride", type=int, required=True, choices=sorted(REPLACE_STRIDE_WITH_DILATION))
    parser.add_argument("--weights", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--prefix", default="")
    args = parser.parse_args(argv)
    shape = run_job(vars(args))
    print(f"wrote layer4 features {list(shape)} to {args.output}")


if __name__ == "__main__":
    main(sys.argv[1:])
