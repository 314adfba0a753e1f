"""conv2d and conv_transpose2d against ONNX Runtime's Conv / ConvTranspose, over random shapes,
strides, paddings, dilations, groups (depthwise too), output paddings and batches, on both
devices."""
import numpy as np
import pytest

import atrous
from conftest import DEVICES, ort_reference, random_case

CASES = 24


# Each op, whether it is transposed, and the seed its cases start from.
OPS = [("conv2d", False, 1000), ("conv_transpose2d", True, 2000)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op, transposed, first_seed", OPS)
@pytest.mark.parametrize("seed", range(CASES))
def test_matches_onnxruntime(op, transposed, first_seed, seed, device):
    x, w, b, params = random_case(np.random.default_rng(first_seed + seed), transposed=transposed)
    expected = ort_reference(x, w, b, params, transposed=transposed)
    got = getattr(atrous, op)(x, w, b, device=device, **params)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    assert got.shape == expected.shape, params
    d = atrous.compare(got, expected)
    assert d.agree, f"{params}: {d}"


@pytest.mark.parametrize("device", DEVICES)
def test_done_when_example(device):
    """The issue's example: a 3x3 kernel at dilation 2 with padding 2 keeps the size."""
    y = atrous.conv2d(np.ones((1, 8, 9, 9), "f4"), np.ones((8, 8, 3, 3), "f4"), padding=2, dilation=2, device=device)
    assert y.shape == (1, 8, 9, 9)
    assert y[0, 0, 4, 4] == 72.0  # every tap inside: 8 channels x 9 taps
    assert y[0, 0, 0, 0] == 32.0  # a corner: 2x2 taps inside


def test_scalar_and_pair_parameters_agree():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 4, 17, 15), dtype=np.float32)
    w = rng.standard_normal((6, 4, 3, 3), dtype=np.float32)
    a = atrous.conv2d(x, w, stride=2, padding=3, dilation=3, device="cpu")
    b = atrous.conv2d(x, w, stride=(2, 2), padding=[3, 3], dilation=(3, 3), device="cpu")
    np.testing.assert_array_equal(a, b)
    c = atrous.conv2d(x, w, stride=(2, 1), padding=(3, 1), dilation=(3, 1), device="cpu")
    assert c.shape == (1, 6, 9, 15)


@pytest.mark.parametrize("device", DEVICES)
def test_float64_and_non_contiguous_inputs_are_converted(device):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 6, 19, 21))
    w = rng.standard_normal((3, 6, 3, 2))
    b = rng.standard_normal(3)
    reference = atrous.conv2d(x.astype("f4"), w.astype("f4"), b.astype("f4"), dilation=2, device=device)
    from_f64 = atrous.conv2d(x, w, b, dilation=2, device=device)
    np.testing.assert_array_equal(from_f64, reference)
    # A transposed view and a strided slice: not C-contiguous.
    xt = np.ascontiguousarray(x.astype("f4").transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
    assert not xt.flags.c_contiguous
    np.testing.assert_array_equal(atrous.conv2d(xt, w.astype("f4")[:, :, :, :], b, dilation=2, device=device), reference)
    wide = np.zeros((3, 12, 3, 2), "f4")
    wide[:, ::2] = w
    np.testing.assert_array_equal(atrous.conv2d(x, wide[:, ::2], b, dilation=2, device=device), reference)
    # Big-endian float32.
    np.testing.assert_array_equal(atrous.conv2d(x.astype(">f4"), w, b, dilation=2, device=device), reference)


def test_gpu_agrees_with_cpu_on_a_deeplab_layer(gpu_adapter):
    """An ASPP-like 3x3 conv at rate 12 with 64 channels: the tiled GPU kernels, not only the
    direct one."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((1, 64, 33, 33), dtype=np.float32)
    w = rng.standard_normal((64, 64, 3, 3), dtype=np.float32) * 0.05
    on_gpu = atrous.conv2d(x, w, padding=12, dilation=12)
    on_cpu = atrous.conv2d(x, w, padding=12, dilation=12, device="cpu")
    assert atrous.compare(on_gpu, on_cpu).agree
