"""ATROUS_PRECISION, read when the process first opens the GPU: f16 on lavapipe, which has SHADER_F16."""
import os
import subprocess
import sys

SCRIPT = """
import atrous, numpy as np
rng = np.random.default_rng(0)
x = rng.uniform(-1, 1, (1, 16, 21, 19)).astype("f4")
w = rng.uniform(-1, 1, (24, 16, 3, 3)).astype("f4")
gpu = atrous.conv2d(x, w, padding=2, dilation=2)
cpu = atrous.conv2d(x, w, padding=2, dilation=2, device="cpu")
d = atrous.compare(gpu, cpu)
print(d.rms_rel, d.max_rel)
"""


def run(precision):
    env = dict(os.environ, ATROUS_PRECISION=precision)
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True)
    return out


def test_f16_is_close_and_not_exact():
    rms_f32, _ = map(float, run("f32").stdout.split())
    out = run("f16")
    assert out.returncode == 0, out.stderr
    rms_f16, _ = map(float, out.stdout.split())
    # f32 sums in another order: tiny; f16 rounds every value: visible, within its tolerance.
    assert rms_f32 < 1e-6
    assert 1e-5 < rms_f16 < 5e-3


def test_a_bad_precision_is_a_gpu_error_naming_the_choices():
    out = run("half")
    assert out.returncode != 0
    assert "ATROUS_PRECISION" in out.stderr and "f16-accumulate" in out.stderr
