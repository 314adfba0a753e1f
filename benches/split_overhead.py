#!/usr/bin/env python3
"""What splitting costs: `atrous bench` on the GPU unsplit and with a forced binding limit that
cuts the convolution into parts (ATROUS_MAX_BINDING_BYTES), alternating in one run.

Each round runs the unsplit bench, then the split one, on the same shape; the medians over the
rounds of each configuration's GFLOP/s are printed with their ratio (split / unsplit) and the
parts the split run took.

    cargo build --release
    python3 benches/split_overhead.py     # 256→256 3×3 65×65, dilations 1,2,4,8, limit 1.3 MB

With the default limit the 4.3 MB input runs in 4 row bands and 2 blocks of output channels
(the lanes kernel's padded weights, 2.4 MB, are over the limit too).
"""
import argparse
import os
import statistics
import sys

from atrous_bench import bench_by_dilation


def bench(atrous, args, limit):
    env = dict(os.environ)
    env.pop("ATROUS_MAX_BINDING_BYTES", None)
    if limit is not None:
        env["ATROUS_MAX_BINDING_BYTES"] = str(limit)
    return bench_by_dilation(atrous, ["--device", "gpu", "--channels", str(args.channels), "--size", str(args.size),
                                      "--dilations", args.dilations, "--repeats", str(args.repeats)], env)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--atrous", default="target/release/atrous")
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--size", type=int, default=65)
    parser.add_argument("--dilations", default="1,2,4,8")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limit", type=int, default=1_300_000, help="forced binding limit in bytes")
    args = parser.parse_args()

    runs = {"unsplit": [], "split": []}
    for _ in range(args.rounds):
        for name, limit in [("unsplit", None), ("split", args.limit)]:
            runs[name].append(bench(args.atrous, args, limit))

    print(f"conv2d {args.channels}→{args.channels} 3×3 {args.size}×{args.size}, {args.rounds} rounds alternating, "
          f"split at {args.limit} bytes per binding; medians of GFLOP/s")
    print(f"{'dilation':>8} {'kernel':>12} {'unsplit':>9} {'split':>9} {'parts':>5} {'split/unsplit':>13}")
    for dilation in sorted(runs["unsplit"][0]):
        whole = statistics.median(r[dilation]["gflops"] for r in runs["unsplit"])
        split = statistics.median(r[dilation]["gflops"] for r in runs["split"])
        parts = runs["split"][0][dilation]["parts"]
        kernel = runs["split"][0][dilation]["kernel"]
        print(f"{dilation:>8} {kernel:>12} {whole:>9.2f} {split:>9.2f} {parts:>5} {split / whole:>13.3f}")


if __name__ == "__main__":
    sys.exit(main())
