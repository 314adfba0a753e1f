import numpy as np
import pytest

import atrous


def test_identical_tensors_agree():
    a = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype("f4")
    d = atrous.compare(a, a)
    assert (d.max_abs, d.max_rel, d.non_finite) == (0.0, 0.0, 0)
    assert d.agree and d.verdict == "agree" and d.tolerance == 1e-4


def test_relative_error_uses_the_tensor_scale_near_zero():
    reference = np.array([100.0, 0.0, 1.0], "f4")
    result = np.array([100.0, 0.5, 1.0], "f4")
    d = atrous.compare(result, reference)
    # |0.5 - 0| / max(0, 0.01 * 100) = 0.5
    assert d.max_abs == pytest.approx(0.5)
    assert d.max_rel == pytest.approx(0.5)
    assert d.worst_index == 1
    assert d.reference_scale == pytest.approx(100.0)
    assert not d.agree and d.verdict == "DISAGREE"
    assert "max abs error 5.000e-1, max relative error 5.000e-1" in str(d)
    assert "verdict: DISAGREE (beyond 1e-4 relative)" in str(d)


def test_tolerance_decides_the_verdict():
    reference = np.ones(10, "f4")
    result = reference + np.float32(5e-4)
    assert not atrous.compare(result, reference).agree
    assert atrous.compare(result, reference, tolerance=atrous.NETWORK_TOLERANCE).agree


def test_non_finite_mismatches_disagree():
    d = atrous.compare(np.array([np.nan, 1.0, np.inf]), np.array([np.nan, np.inf, np.inf]))
    assert d.non_finite == 1 and not d.agree
    assert d.as_dict()["non_finite"] == 1
    assert set(d.as_dict()) == {"max_abs", "max_rel", "worst_index", "reference_scale", "non_finite", "tolerance", "agree", "verdict"}


def test_any_rank_and_float64():
    assert atrous.compare(np.ones((3,)), np.ones((3,))).agree
    assert atrous.compare([[1.0, 2.0]], np.array([[1.0, 2.0]], "f4")).agree
