"""Shared helpers: random convolution cases and ONNX Runtime as the independent reference.

GPU tests run on whatever adapter wgpu finds (Mesa's lavapipe in CI). A machine without one
makes them fail (atrous.GpuError), never skip.
"""
import os
import sys
from pathlib import Path

import numpy as np
import pytest

# As the CLI tests (tests/cli.rs): the kernels the rule picks, no timing of candidates (which
# would make the run slower and its kernels depend on the machine's cache); opt in with
# ATROUS_AUTOTUNE=1. Read when the GPU is first opened, after this.
os.environ.setdefault("ATROUS_AUTOTUNE", "0")

import atrous  # noqa: E402

DEVICES = ["gpu", "cpu"]

# The ONNX Runtime reference the Rust tests use (ort_reference below).
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "independent"))


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
    """The same convolution by ONNX Runtime's CPU Conv / ConvTranspose (a single-node graph),
    built as tests/independent/ort_conv.py builds it for the Rust tests."""
    from ort_conv import ort_conv  # imported here: it needs onnx and onnxruntime

    op = "conv_transpose" if transposed else "conv"
    output_padding = params["output_padding"] if transposed else (0, 0)
    return ort_conv(x, w, b, op, params["stride"], params["padding"], params["dilation"], params["groups"], output_padding)


@pytest.fixture(scope="session")
def gpu_adapter():
    """The adapter the GPU tests run on; raises (the test fails) when there is none."""
    return atrous.adapter()
