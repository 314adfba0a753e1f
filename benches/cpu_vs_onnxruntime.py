#!/usr/bin/env python3
"""atrous's CPU path against ONNX Runtime's CPU Conv, side by side in one run.

For each dilation in turn, runs `atrous bench --device cpu` and then ORT's Conv (or ConvTranspose)
on the same shape, and prints both with their ratio and each one's dilation penalty (GFLOP/s at
dilation d over GFLOP/s at dilation 1). Medians of the repeats. The penalty of the dilation-1 row
is 1 by definition (the first dilation listed is the base).

    pip install onnxruntime onnx numpy
    cargo build --release
    python3 benches/cpu_vs_onnxruntime.py            # 256→256, 3×3, 65×65, dilations 1..16

Both use every core: ORT's intra-op threads default to the core count, atrous's rayon pool too.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper


def ort_session(op, c_in, c_out, kernel, stride, padding, dilation, size):
    attrs = dict(kernel_shape=[kernel, kernel], strides=[stride, stride], pads=[padding] * 4, dilations=[dilation, dilation])
    w_shape = [c_out, c_in, kernel, kernel] if op == "conv2d" else [c_in, c_out, kernel, kernel]
    node = helper.make_node("Conv" if op == "conv2d" else "ConvTranspose", ["x", "w"], ["y"], **attrs)
    graph = helper.make_graph(
        [node], op,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c_in, size, size]),
         helper.make_tensor_value_info("w", TensorProto.FLOAT, w_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count()
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {"x": rng.uniform(-1, 1, (1, c_in, size, size)).astype(np.float32),
             "w": rng.uniform(-1, 1, w_shape).astype(np.float32)}
    return session, feeds


def median_ms(session, feeds, warmup, repeats):
    for _ in range(warmup):
        session.run(None, feeds)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--atrous", default="target/release/atrous")
    parser.add_argument("--op", choices=["conv2d", "conv-transpose2d"], default="conv2d")
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--size", type=int, default=65)
    parser.add_argument("--kernel", type=int, default=3)
    parser.add_argument("--stride", type=int, default=1)
    parser.add_argument("--dilations", default="1,2,4,8,16")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    def atrous_record(dilation, tmp):
        path = os.path.join(tmp, f"atrous_{dilation}.json")
        command = [args.atrous, "bench", "--op", args.op, "--device", "cpu", "--channels", str(args.channels),
                   "--size", str(args.size), "--kernel", str(args.kernel), "--stride", str(args.stride),
                   "--dilations", str(dilation), "--warmup", str(args.warmup), "--repeats", str(args.repeats),
                   "--json", path]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        with open(path) as f:
            return json.load(f)[0]

    print(f"{args.op} {args.channels}->{args.channels}, {args.kernel}x{args.kernel}, stride {args.stride}, "
          f"{args.size}x{args.size}, batch 1, {os.cpu_count()} threads, medians of {args.repeats} after {args.warmup} warm-up")
    print(f"onnxruntime {ort.__version__} and `{args.atrous} bench --device cpu`, alternating per dilation")
    print(f"{'dilation':>8} {'GFLOP':>7} {'ORT ms':>8} {'ORT GFLOP/s':>12} {'atrous ms':>10} {'atrous GFLOP/s':>15} "
          f"{'atrous/ORT':>10} {'ORT penalty':>12} {'atrous penalty':>15}")
    base = {}
    with tempfile.TemporaryDirectory() as tmp:
        for dilation in [int(d) for d in args.dilations.split(",")]:
            record = atrous_record(dilation, tmp)
            padding = record["padding"][0] if isinstance(record["padding"], list) else record["padding"]
            session, feeds = ort_session(args.op, args.channels, args.channels, args.kernel, args.stride, padding, dilation, args.size)
            ort_ms = median_ms(session, feeds, args.warmup, args.repeats)
            ort_gflops = record["gflop"] / (ort_ms / 1e3)
            base.setdefault("ort", ort_gflops)
            base.setdefault("atrous", record["gflops"])
            print(f"{dilation:>8} {record['gflop']:>7.3f} {ort_ms:>8.2f} {ort_gflops:>12.1f} {record['median_ms']:>10.2f} "
                  f"{record['gflops']:>15.1f} {record['gflops'] / ort_gflops:>10.2f} {ort_gflops / base['ort']:>12.2f} "
                  f"{record['gflops'] / base['atrous']:>15.2f}")


if __name__ == "__main__":
    sys.exit(main())
