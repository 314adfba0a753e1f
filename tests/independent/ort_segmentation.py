#!/usr/bin/env python3
"""Reference segmentation logits (DeepLabv3, FCN on a ResNet) from ONNX Runtime.

Usage:
  ort_segmentation.py JOB.json [JOB.json ...]
  ort_segmentation.py --model deeplabv3_resnet50 --output-stride 8 [--rates 12,24,36]
                      [--upsample bilinear|transposed] --weights W.safetensors --input X.npy
                      --output LOGITS.npy

Each JOB.json is {"model": "deeplabv3_resnet50", "output_stride": 8, "rates": [12, 24, 36],
"upsample": "bilinear", "weights": "W.safetensors", "input": "X.npy", "output": "logits.npy"}.
"rates" is optional (default [12, 24, 36] at output stride 8, [6, 12, 18] at 16; FCN has
none), "upsample" is optional (default "bilinear", torchvision's); other keys are refused.
Several jobs per call save ORT's import time. The output is the logits, NCHW float32, of shape
(N, classes, H, W) for an N x 3 x H x W input.

Models: deeplabv3_resnetNN and fcn_resnetNN, NN in 18, 34, 50, 101, 152 (torchvision ships 50
and 101; 18/34 give 512 backbone channels, the others 2048). The network is written here from
torchvision's definitions (torchvision/models/segmentation/{deeplabv3,fcn,_utils}.py), inference
mode, not from atrous's builder:
  backbone:   torchvision's ResNet via IntermediateLayerGetter, tensors "backbone.*", with
              replace_stride_with_dilation [F, T, T] at output stride 8, [F, F, T] at 16;
              features = layer4's output (built by ort_resnet.build_backbone).
  DeepLabHead(in, classes, rates) = Sequential(
      0: ASPP(in, rates): convs = ModuleList(
           0: Sequential(Conv2d(in, 256, 1, bias=False), BN(256), ReLU)
           1..: ASPPConv = Sequential(Conv2d(in, 256, 3, padding=r, dilation=r, bias=False), BN, ReLU)
           last: ASPPPooling = Sequential(AdaptiveAvgPool2d(1), Conv2d(in, 256, 1, bias=False), BN, ReLU)
                 then F.interpolate(size=feature size, mode="bilinear", align_corners=False))
         cat along channels -> project = Sequential(Conv2d(256 * (len(rates) + 2), 256, 1,
         bias=False), BN, ReLU, Dropout),
      1: Conv2d(256, 256, 3, padding=1, bias=False), 2: BN(256), 3: ReLU,
      4: Conv2d(256, classes, 1) with bias)
  FCNHead(in, classes) = Sequential(0: Conv2d(in, in // 4, 3, padding=1, bias=False),
      1: BN(in // 4), 2: ReLU, 3: Dropout, 4: Conv2d(in // 4, classes, 1) with bias)
  Dropout is the identity in inference mode and is left out. Batch-norm: eps 1e-5, kept as
  BatchNormalization nodes; ORT's graph optimisations are off.
  upsampling of the head's output to the input's H x W:
    "bilinear":   F.interpolate(size=(H, W), mode="bilinear", align_corners=False), as ONNX
                  Resize with RESIZE_ATTRS (mode linear, half_pixel coordinates); ORT's linear
                  Resize clamps the source coordinate to [0, in - 1], which with half_pixel is
                  PyTorch's rule src = max(in/out * (dst + 0.5) - 0.5, 0), i1 = min(i0 + 1, in - 1).
                  check_ort_semantics.py checks this against that rule in NumPy.
    "transposed": the FCN paper's learned upsampling at its bilinear initialisation:
                  ConvTranspose(group = classes, kernel 2f, stride f, padding f / 2, no bias;
                  f = output stride), weight [classes, 1, 2f, 2f] = upsample_filt(2f) per group,
                  then Slice to rows 0..H and columns 0..W (top-left crop of the H'f x W'f map).
The number of classes is the first dimension of classifier.4.weight. aux_classifier.* and
integer tensors (num_batches_tracked) are ignored; every other floating tensor in the file must be
used, and every tensor the network needs must be there with torchvision's shape, or this script
fails naming it.
"""
import argparse
import os
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ort_resnet  # noqa: E402  (the backbone, the .safetensors reader and the ORT runner)

HEADS = ("deeplabv3", "fcn")
MODELS = sorted(f"{head}_{arch}" for head in HEADS for arch in ort_resnet.ARCHS)
BACKBONE_CHANNELS = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, "resnet101": 2048, "resnet152": 2048}
DEFAULT_RATES = {8: [12, 24, 36], 16: [6, 12, 18]}
ASPP_CHANNELS = 256
UPSAMPLES = ("bilinear", "transposed")
IGNORED_PREFIXES = ("aux_classifier.",)
JOB_KEYS = {"model", "output_stride", "rates", "upsample", "weights", "input", "output"}

# F.interpolate(mode="bilinear", align_corners=False) as ONNX Resize (opset 17, no antialias).
RESIZE_ATTRS = dict(mode="linear", coordinate_transformation_mode="half_pixel")


def const_i64(g, hint, values):
    name = g.fresh(hint)
    g.initializers.append(numpy_helper.from_array(np.asarray(values, dtype=np.int64), name))
    return name


def node(g, op, inputs, hint, **attrs):
    y = g.fresh(hint)
    g.nodes.append(helper.make_node(op, inputs, [y], **attrs))
    return y


def conv_bias(g, x, name, c_in, c_out):
    """Conv2d(c_in, c_out, 1) with bias."""
    w = g.param(f"{name}.weight", (c_out, c_in, 1, 1))
    b = g.param(f"{name}.bias", (c_out,))
    return node(g, "Conv", [x, w, b], name, kernel_shape=[1, 1], strides=[1, 1], pads=[0] * 4, dilations=[1, 1], group=1)


def resize_bilinear(g, x, hw, attrs=None):
    """F.interpolate(x, size=hw, mode="bilinear", align_corners=False); hw: a 1-D int64 tensor
    name holding (H, W), or a pair of ints. attrs replaces RESIZE_ATTRS (for the checks only)."""
    if not isinstance(hw, str):
        hw = const_i64(g, "hw", list(hw))
    nc = node(g, "Shape", [x], "nc", start=0, end=2)
    sizes = node(g, "Concat", [nc, hw], "sizes", axis=0)
    return node(g, "Resize", [x, "", "", sizes], "resize", **(attrs or RESIZE_ATTRS))


def upsample_filt(size):
    """Caffe's / FCN's bilinear kernel (surgery.upsample_filt), size x size."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    i, j = np.ogrid[:size, :size]
    return (1 - abs(i - center) / factor) * (1 - abs(j - center) / factor)


def upsample_transposed(g, x, classes, f, hw):
    """The FCN paper's bilinear-initialised learned upsampling by f, cropped to hw (top-left)."""
    if f % 2:
        raise ValueError(f"transposed upsampling needs an even factor, got {f}")
    w = g.fresh("upsample_weight")
    kernel = np.broadcast_to(upsample_filt(2 * f), (classes, 1, 2 * f, 2 * f)).astype(np.float32)
    g.initializers.append(numpy_helper.from_array(np.ascontiguousarray(kernel), w))
    y = node(g, "ConvTranspose", [x, w], "upsample", group=classes, kernel_shape=[2 * f, 2 * f],
             strides=[f, f], pads=[f // 2] * 4, dilations=[1, 1])
    starts, ends, axes = const_i64(g, "starts", [0, 0]), const_i64(g, "ends", list(hw)), const_i64(g, "axes", [2, 3])
    return node(g, "Slice", [y, starts, ends, axes], "crop")


def cbr(g, x, conv, bn, c_in, c_out, kernel, padding=0, dilation=1):
    """Conv2d(bias=False) -> BatchNorm2d -> ReLU."""
    return g.relu(g.bn(g.conv(x, conv, c_in, c_out, kernel, 1, padding, dilation), bn, c_out))


def deeplab_head(g, x, c_in, classes, rates):
    c = ASPP_CHANNELS
    branches = [cbr(g, x, "classifier.0.convs.0.0", "classifier.0.convs.0.1", c_in, c, 1)]
    for k, rate in enumerate(rates, start=1):
        branches.append(cbr(g, x, f"classifier.0.convs.{k}.0", f"classifier.0.convs.{k}.1", c_in, c, 3, rate, rate))
    pool = f"classifier.0.convs.{len(rates) + 1}"
    pooled = cbr(g, node(g, "GlobalAveragePool", [x], "avgpool"), f"{pool}.1", f"{pool}.2", c_in, c, 1)
    branches.append(resize_bilinear(g, pooled, node(g, "Shape", [x], "feature_hw", start=2, end=4)))
    cat = node(g, "Concat", branches, "aspp_cat", axis=1)
    y = cbr(g, cat, "classifier.0.project.0", "classifier.0.project.1", c * len(branches), c, 1)
    y = cbr(g, y, "classifier.1", "classifier.2", c, c, 3, 1, 1)
    return conv_bias(g, y, "classifier.4", c, classes)


def fcn_head(g, x, c_in, classes):
    inter = c_in // 4
    y = cbr(g, x, "classifier.0", "classifier.1", c_in, inter, 3, 1, 1)
    return conv_bias(g, y, "classifier.4", inter, classes)


def parse_model(model):
    head, _, arch = model.partition("_")
    if head not in HEADS or arch not in ort_resnet.ARCHS:
        raise ValueError(f"unknown model {model!r}; one of {MODELS}")
    return head, arch


def run_job(job):
    unknown = sorted(set(job) - JOB_KEYS)
    if unknown:
        raise ValueError(f"unknown job key(s) {unknown}; known: {sorted(JOB_KEYS)}")
    head, arch = parse_model(job["model"])
    output_stride = int(job["output_stride"])
    upsample = job.get("upsample") or "bilinear"
    if upsample not in UPSAMPLES:
        raise ValueError(f"upsample {upsample!r} is not one of {list(UPSAMPLES)}")
    rates = job.get("rates")
    if head == "fcn" and rates:
        raise ValueError("FCN has no atrous rates")
    if head == "deeplabv3":
        if rates is None:
            if output_stride not in DEFAULT_RATES:
                raise ValueError(f"no default ASPP rates at output stride {output_stride}; give \"rates\"")
            rates = DEFAULT_RATES[output_stride]
        rates = [int(r) for r in rates]
        if not rates or min(rates) < 1:
            raise ValueError(f"ASPP rates must be positive, got {rates}")

    state, _integers = ort_resnet.read_safetensors(job["weights"])
    x = np.load(job["input"]).astype(np.float32)
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"{job['input']}: expected an N x 3 x H x W input, got {list(x.shape)}")
    n, _, height, width = x.shape
    if "classifier.4.weight" not in state:
        raise KeyError(f"{job['weights']} has no tensor 'classifier.4.weight' (the classifier; its shape gives the number of classes)")
    classes = state["classifier.4.weight"].shape[0]

    g = ort_resnet.Graph(state, "backbone.", job["weights"])
    features = ort_resnet.build_backbone(g, "x", arch, output_stride)
    g.prefix = ""
    c_in = BACKBONE_CHANNELS[arch]
    if head == "deeplabv3":
        logits = deeplab_head(g, features, c_in, classes, rates)
    else:
        logits = fcn_head(g, features, c_in, classes)
    if upsample == "bilinear":
        y = resize_bilinear(g, logits, (height, width))
    else:
        y = upsample_transposed(g, logits, classes, output_stride, (height, width))

    unused = sorted(name for name in state if name not in g.used and not name.startswith(IGNORED_PREFIXES))
    if unused:
        raise ValueError(f"{job['weights']}: {len(unused)} tensor(s) a torchvision {job['model']} has no use for, e.g. {unused[:5]}")

    out = ort_resnet.run_graph(g, x, y, f"{job['model']}_os{output_stride}_{upsample}")
    if out.shape != (n, classes, height, width):
        raise ValueError(f"{job['model']}: logits of shape {list(out.shape)}, expected {[n, classes, height, width]}"
                         " (a transposed upsampling smaller than the input?)")
    np.save(job["output"], np.ascontiguousarray(out, dtype=np.float32))
    return out.shape


def resize_with_ort(x, hw, attrs=None):
    """x (NCHW float32) through the same Resize node as the model's; for check_ort_semantics.py."""
    g = ort_resnet.Graph({}, "", "resize")
    y = resize_bilinear(g, "x", hw, attrs)
    return ort_resnet.run_graph(g, np.ascontiguousarray(x, dtype=np.float32), y, "resize")


def upsample_transposed_with_ort(x, f, hw):
    """x (NCHW float32) through the same ConvTranspose + Slice as the model's "transposed"."""
    g = ort_resnet.Graph({}, "", "upsample")
    y = upsample_transposed(g, "x", x.shape[1], f, hw)
    return ort_resnet.run_graph(g, np.ascontiguousarray(x, dtype=np.float32), y, "upsample")


def main(argv):
    if ort_resnet.run_job_files(argv, run_job):
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, choices=MODELS)
    parser.add_argument("--output-stride", type=int, required=True, choices=sorted(ort_resnet.REPLACE_STRIDE_WITH_DILATION))
    parser.add_argument("--rates", type=lambda s: [int(r) for r in s.split(",")], default=None,
                        help="ASPP rates, comma-separated (deeplabv3 only)")
    parser.add_argument("--upsample", choices=UPSAMPLES, default="bilinear")
    parser.add_argument("--weights", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    shape = run_job(vars(args))
    print(f"wrote logits {list(shape)} to {args.output}")


if __name__ == "__main__":
    main(sys.argv[1:])
