"""Against PyTorch itself, where it is installed (only these tests skip without it)."""
import numpy as np
import pytest

import atrous
from conftest import DEVICES, random_case

torch = pytest.importorskip("torch")
F = torch.nn.functional


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op, transposed, first_seed", [("conv2d", False, 3000), ("conv_transpose2d", True, 4000)])
@pytest.mark.parametrize("seed", range(12))
def test_matches_torch(op, transposed, first_seed, seed, device):
    x, w, b, params = random_case(np.random.default_rng(first_seed + seed), transposed=transposed)
    expected = getattr(F, op)(torch.from_numpy(x), torch.from_numpy(w), None if b is None else torch.from_numpy(b), **params).numpy()
    got = getattr(atrous, op)(x, w, b, device=device, **params)
    assert got.shape == expected.shape
    assert atrous.compare(got, expected).agree


def test_torch_tensors_are_taken_as_arrays():
    x = torch.randn(1, 3, 10, 10)
    w = torch.randn(4, 3, 3, 3)
    got = atrous.conv2d(x, w, padding=1, device="cpu")
    assert atrous.compare(got, F.conv2d(x, w, padding=1).numpy()).agree
