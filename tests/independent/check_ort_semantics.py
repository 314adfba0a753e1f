#!/usr/bin/env python3
"""Checks that ORT's Conv / ConvTranspose (via ort_conv.py) follow PyTorch's definitions.

PyTorch is not needed: its definitions are written out below as plain loops over NumPy arrays.
  conv:            y[n,o,i,j] = b[o] + sum x[n, g*Cg+c, i*s - p + kh*d, j*s - p + kw*d] * w[o,c,kh,kw]
  conv_transpose:  y[n, g*Og+o, i*s - p + kh*d, j*s - p + kw*d] += x[n,c,i,j] * w[c,o,kh,kw]
                   output size (n-1)*s - 2p + d*(k-1) + 1 + output_padding (extra rows at the end)
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
    print("ok")


if __name__ == "__main__":
    main()
