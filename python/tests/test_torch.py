"""Against PyTorch itself, where it is installed (only these tests skip without it)."""
import numpy as np
import pytest

import atrous
from conftest import DEVICES, random_case

torch = pytest.importorskip("torch")
F = torch.nn.functional


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed", range(12))
def test_conv2d_matches_torch(seed, device):
    x, w, b, params = random_case(np.random.default_rng(3000 + seed), transposed=False)
    expected = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), None if b is None else torch.from_numpy(b), **params).numpy()
    got = atrous.conv2d(x, w, b, device=device, **params)
    assert got.shape == expected.shape
    assert atrous.compare(got, expected).agree


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed", range(12))
def test_conv_transpose2d_matches_torch(seed, device):
    x, w, b, params = random_case(np.random.default_rng(4000 + seed), transposed=True)
    expected = F.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(w), None if b is None else torch.from_numpy(b), **params).numpy()
    got = atrous.conv_transpose2d(x, w, b, device=device, **params)
    assert got.shape == expected.shape
    assert atrous.compare(got, expected).agree


def test_torch_tensors_are_taken_as_arrays():
    x = torch.randn(1, 3, 10, 10)
    w = torch.randn(4, 3, 3, 3)
    got = atrous.conv2d(x, w, padding=1, device="cpu")
    assert atrous.compare(got, F.conv2d(x, w, padding=1).numpy()).agree
