#!/usr/bin/env python3
"""Checks that ORT's Conv / ConvTranspose (via ort_conv.py) and Resize (via ort_segmentation.py)
follow PyTorch's definitions.

PyTorch is not needed: its definitions are written out below as plain loops over NumPy arrays.
  conv:            y[n,o,i,j] = b[o] + sum x[n, g*Cg+c, i*s - p + kh*d, j*s - p + kw*d] * w[o,c,kh,kw]
  conv_transpose:  y[n, g*Og+o, i*s - p + kh*d, j*s - p + kw*d] += x[n,c,i,j] * w[c,o,kh,kw]
                   output size (n-1)*s - 2p + d*(k-1) + 1 + output_padding (extra rows at the end)
  bilinear:        F.interpolate(x, size=(OH, OW), mode="bilinear", align_corners=False), per axis
                   (aten's upsample_bilinear2d with area_pixel_compute_scale / _source_index):
                   scale = in/out, src = max(scale*(dst+0.5) - 0.5, 0), i0 = floor(src),
                   i1 = min(i0+1, in-1), l = src - i0; y = (1-l)*x[i0] + l*x[i1], both axes.
                   Checked on ort_segmentation.py's own Resize node (RESIZE_ATTRS).
Run: python3 tests/independent/check_ort_semantics.py   (prints "ok" and the cases checked)
"""
import itertools
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def conv_ref(x, w, b, s, p, d, g):
    n, ci, H, W = x.shape
    co, cg, kh, kw = w.shape
    oh = (H + 2 * p[0] - d[0] * (kh - 1) - 1) // s[0] + 1
    ow = (W + 2 * p[1] - d[1] * (kw - 1) - 1) // s[1] + 1
    y = np.zeros((n, co, oh, ow), np.float64)
    og = co // g
    for nn, o, i, j, c, a, bb in itertools.product(range(n), range(co), range(oh), range(ow), range(cg), range(kh), range(kw)):
        r, q = i * s[0] - p[0] + a * d[0], j * s[1] - p[1] + bb * d[1]
        if 0 <= r < H and 0 <= q < W:
            y[nn, o, i, j] += x[nn, (o // og) * cg + c, r, q] * w[o, c, a, bb]
    return y + (0 if b is None else b[None, :, None, None])


def conv_transpose_ref(x, w, b, s, p, d, g, op):
    n, ci, H, W = x.shape
    _, og, kh, kw = w.shape
    oh = (H - 1) * s[0] - 2 * p[0] + d[0] * (kh - 1) + 1 + op[0]
    ow = (W - 1) * s[1] - 2 * p[1] + d[1] * (kw - 1) + 1 + op[1]
    y = np.zeros((n, og * g, oh, ow), np.float64)
    cg = ci // g
    for nn, c, i, j, o, a, bb in itertools.product(range(n), range(ci), range(H), range(W), range(og), range(kh), range(kw)):
        r, q = i * s[0] - p[0] + a * d[0], j * s[1] - p[1] + bb * d[1]
        if 0 <= r < oh and 0 <= q < ow:
            y[nn, (c // cg) * og + o, r, q] += x[nn, c, i, j] * w[c, o, a, bb]
    return y + (0 if b is None else b[None, :, None, None])


def bilinear_ref(x, oh, ow):
    def axis(n_in, n_out):
        i0, i1, lam = [], [], []
        for dst in range(n_out):
            src = max(n_in / n_out * (dst + 0.5) - 0.5, 0.0)
            k = int(np.floor(src))
            i0.append(k)
            i1.append(min(k + 1, n_in - 1))
            lam.append(src - k)
        return i0, i1, lam
    n, c, H, W = x.shape
    h0, h1, lh = axis(H, oh)
    w0, w1, lw = axis(W, ow)
    y = np.zeros((n, c, oh, ow), np.float64)
    for i, j in itertools.product(range(oh), range(ow)):
        y[:, :, i, j] = ((1 - lh[i]) * ((1 - lw[j]) * x[:, :, h0[i], w0[j]] + lw[j] * x[:, :, h0[i], w1[j]])
                         + lh[i] * ((1 - lw[j]) * x[:, :, h1[i], w0[j]] + lw[j] * x[:, :, h1[i], w1[j]]))
    return y


RESIZE_CASES = [  # x shape, output (H, W)
    ((2, 3, 5, 5), (13, 13)),     # upsampling by 2.6
    ((1, 2, 5, 7), (13, 11)),     # non-square, different factors
    ((1, 2, 65, 33), (513, 61)),  # 65 -> 513 (the DeepLab sizes), 33 -> 61
    ((2, 2, 7, 9), (3, 4)),       # downsampling (no antialiasing in PyTorch either)
    ((1, 2, 6, 13), (17, 5)),     # up one axis, down the other
    ((1, 2, 7, 6), (1, 1)),       # to 1x1: src = (in-1)/2, the centre (pytorch_half_pixel would give 0)
    ((1, 3, 1, 1), (6, 9)),       # 1x1 -> 6x9: a constant map (ASPP's pooling branch)
]


def resize_tolerance(x):
    # ORT (like PyTorch) computes source coordinates in float32, (dst+0.5)/scale - 0.5 rather
    # than in/out*(dst+0.5) - 0.5: a few ulps of the input size off the float64 reference,
    # times the largest step between neighbours. A wrong coordinate rule is off by ~0.1 or more.
    coordinate = 4 * np.finfo(np.float32).eps * max(x.shape[2:])
    step = max([np.abs(np.diff(x, axis=a)).max() for a in (2, 3) if x.shape[a] > 1] + [0.0])
    return 1e-6 + coordinate * step


def check_resize(rng):
    sys.path.insert(0, HERE)
    import ort_segmentation  # imports onnxruntime; only this check needs it in-process
    others = ("pytorch_half_pixel", "asymmetric", "align_corners", "tf_crop_and_resize")
    worst = {mode: 0.0 for mode in others}  # how far the other coordinate rules are off
    for k, (xs, (oh, ow)) in enumerate(RESIZE_CASES):
        x = rng.standard_normal(xs).astype(np.float32)
        got = ort_segmentation.resize_with_ort(x, (oh, ow))
        want = bilinear_ref(x.astype(np.float64), oh, ow)
        assert got.shape == want.shape, ("resize", k, got.shape, want.shape)
        err, tol = np.abs(got - want).max(), resize_tolerance(x)
        assert err < tol, ("resize", k, xs, (oh, ow), err, tol)
        if xs[2:] == (1, 1):
            assert np.all(got == x[:, :, :1, :1]), ("resize", k, "1x1 input must give a constant map")
        for mode in others:
            attrs = dict(ort_segmentation.RESIZE_ATTRS, coordinate_transformation_mode=mode)
            other = ort_segmentation.resize_with_ort(x, (oh, ow), attrs)
            worst[mode] = max(worst[mode], np.abs(other - want).max() / tol)
        print(f"resize {k}: bilinear {xs} -> {got.shape} {ort_segmentation.RESIZE_ATTRS} "
              f"max abs err {err:.2e} (tolerance {tol:.1e})")
    # The check tells the rules apart: each other coordinate_transformation_mode fails it.
    for mode, ratio in worst.items():
        assert ratio > 100, ("resize", mode, "passes the PyTorch check too", ratio)
        print(f"resize: coordinate_transformation_mode={mode} would be off by {ratio:.0f}x the tolerance")


CASES = [  # op, x shape, w shape, stride, pad, dilation, group, output_padding
    ("conv", (2, 4, 5, 7), (6, 2, 3, 2), (2, 1), (1, 2), (2, 3), 2, None),
    ("conv", (1, 3, 3, 4), (3, 1, 2, 3), (1, 2), (3, 1), (5, 2), 3, None),  # dilation > input
    ("conv_transpose", (2, 4, 3, 4), (4, 3, 3, 2), (2, 3), (1, 0), (2, 1), 2, (1, 2)),
    ("conv_transpose", (1, 2, 2, 3), (2, 1, 2, 3), (1, 1), (2, 1), (3, 2), 2, (2, 1)),  # op < dilation
    ("conv_transpose", (1, 3, 4, 2), (3, 2, 1, 3), (3, 2), (0, 1), (1, 4), 1, (2, 3)),  # op >= s (W)
    ("conv_transpose", (2, 2, 3, 2), (2, 2, 2, 2), (1, 2), (1, 0), (4, 3), 1, (3, 2)),  # op > p, op >= s
]


def main():
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        for k, (op, xs, ws, s, p, d, g, opad) in enumerate(CASES):
            x, w = rng.standard_normal(xs), rng.standard_normal(ws)
            co = ws[0] if op == "conv" else ws[1] * g
            b = rng.standard_normal(co)
            paths = {name: os.path.join(tmp, f"{k}_{name}.npy") for name in ("x", "w", "b", "y")}
            for name, v in (("x", x), ("w", w), ("b", b)):
                np.save(paths[name], v.astype(np.float32))
            case = dict(op=op, strides=s, pads=p, dilations=d, group=g, output_padding=opad or (0, 0),
                        input=paths["x"], weight=paths["w"], bias=paths["b"], output=paths["y"])
            with open(os.path.join(tmp, f"{k}.json"), "w") as f:
                json.dump(case, f)
            subprocess.run([sys.executable, os.path.join(HERE, "ort_conv.py"), os.path.join(tmp, f"{k}.json")], check=True)
            got = np.load(paths["y"])
            x32, w32, b32 = (v.astype(np.float32).astype(np.float64) for v in (x, w, b))
            want = conv_ref(x32, w32, b32, s, p, d, g) if op == "conv" else conv_transpose_ref(x32, w32, b32, s, p, d, g, opad)
            assert got.shape == want.shape, (k, op, got.shape, want.shape)
            err = np.abs(got - want).max() / np.abs(want).max()
            assert err < 1e-5, (k, op, err)
            print(f"case {k}: {op} {xs} -> {got.shape} max rel err {err:.2e}")
    check_resize(rng)
    print("ok")


if __name__ == "__main__":
    main()
