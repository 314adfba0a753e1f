#!/usr/bin/env python3
"""What skipping padding taps saves on the CPU: `atrous bench --device cpu` with skipping off
(ATROUS_TAP_SKIPPING=0) and on, alternating in one run, same build.

Each round runs every case off then on (the order flips every other round); each run reports
the median of its repeats. Printed: per case and dilation, the useful share of the nominal
FLOPs, the median over rounds of each setting's median ms, and their ratio (off / on: the
speed-up). The last line sums each shape's dilations (the ASPP's three branches together).

    cargo build --release
    python3 benches/tap_skipping.py                     # ASPP at 65×65 and 21×21, dilation 1 shapes
    python3 benches/tap_skipping.py --case 256:256:65:1,12,24,36 --rounds 5
"""
import argparse
import os
import statistics
import sys

from atrous_bench import bench_by_dilation

# in:out:size:dilations[:kernel] — DeepLabv3-ResNet50's ASPP branches at output stride 8
# (65×65 for a 513×513 picture) and 21×21 (161×161), then layers that must not change: dilation
# 1 at 256 channels on 65×65, a ResNet layer1 3×3 and a 1×1 at 129×129.
DEFAULT_CASES = ["2048:256:65:12,24,36", "2048:256:21:24,36", "256:256:65:1", "64:64:129:1", "256:64:129:1:1"]


def parse(case):
    """in:out:size:dilations[:kernel]"""
    parts = case.split(":")
    return parts[:4] + [parts[4] if len(parts) > 4 else "3"]


def bench(atrous, case, skipping, args):
    c_in, c_out, size, dilations, kernel = parse(case)
    env = dict(os.environ, ATROUS_TAP_SKIPPING="1" if skipping else "0", ATROUS_AUTOTUNE="0")
    return bench_by_dilation(atrous, ["--device", "cpu", "--channels", c_in, "--out-channels", c_out, "--size", size,
                                      "--dilations", dilations, "--kernel", kernel, "--repeats", str(args.repeats),
                                      "--warmup", str(args.warmup)], env)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--atrous", default="target/release/atrous")
    parser.add_argument("--case", action="append", help="in:out:size:dilations[:kernel] (repeatable; kernel 3 if not given)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cases = args.case or DEFAULT_CASES

    runs = {(case, s): [] for case in cases for s in (False, True)}
    for round_ in range(args.rounds):
        for case in cases:
            order = (False, True) if round_ % 2 == 0 else (True, False)
            for skipping in order:
                runs[(case, skipping)].append(bench(args.atrous, case, skipping, args))

    print(f"atrous bench --device cpu, {args.rounds} rounds alternating ATROUS_TAP_SKIPPING=0/1, "
          f"{args.repeats} repeats after {args.warmup} warm-up; medians over rounds of each run's median ms")
    print(f"{'in→out':>10} {'k':>2} {'size':>5} {'dilation':>8} {'useful':>7} {'off ms':>9} {'on ms':>9} {'off/on':>7}   off per round / on per round")
    for case in cases:
        c_in, c_out, size, _, kernel = parse(case)
        total_off = total_on = 0.0
        first = runs[(case, False)][0]
        for dilation in sorted(first):
            per_off = [r[dilation]["median_ms"] for r in runs[(case, False)]]
            per_on = [r[dilation]["median_ms"] for r in runs[(case, True)]]
            off, on = statistics.median(per_off), statistics.median(per_on)
            total_off += off
            total_on += on
            useful = first[dilation]["useful_gflop"] / first[dilation]["gflop"]
            rounds = " ".join(f"{v:.1f}" for v in per_off) + " / " + " ".join(f"{v:.1f}" for v in per_on)
            print(f"{c_in + '→' + c_out:>10} {kernel:>2} {size:>5} {dilation:>8} {useful:>7.2f} {off:>9.2f} {on:>9.2f} {off / on:>6.2f}×   {rounds}")
        if len(first) > 1:
            print(f"{'':>10} {'':>2} {size:>5} {'together':>8} {'':>7} {total_off:>9.2f} {total_on:>9.2f} {total_off / total_on:>6.2f}×")


if __name__ == "__main__":
    sys.exit(main())
