#!/usr/bin/env python3
"""atrous on the GPU beside PyTorch (cuDNN) on the same GPU, in one run (issues 11 and 14).

Runs `atrous bench --gpu-kernel all --peak --json` for the forward convolution at every dilation
and for the transposed one, then times PyTorch's F.conv2d / F.conv_transpose2d on exactly the
geometry of each atrous record (read back from the JSON) with CUDA events, TF32 off, cuDNN's
autotuner on. Prints, per case: every atrous kernel's median ms, auto's pick, PyTorch's median
ms, atrous-auto / PyTorch speed, and auto's share of the measured FP32 peak. `--precision f16` or
`f16-accumulate` runs atrous in that precision and PyTorch in float16 (cuDNN's half-precision
convolutions, which sum in f32 on tensor cores).

    cargo build --release
    python3 benches/gpu_vs_pytorch.py                      # 256→256 3×3, 129×129, batch 8, dilations 1..16
    python3 benches/gpu_vs_pytorch.py --size 65 --batch 1 --repeats 5
    python3 benches/gpu_vs_pytorch.py --precision f16-accumulate

Without torch and CUDA it measures atrous alone and says so (exit status 3).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile


def atrous_records(binary, extra, env):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "bench.json")
        command = [binary, "bench", "--gpu-kernel", "all", "--peak", "--json", out, *extra]
        print("$", " ".join(command), flush=True)
        subprocess.run(command, check=True, env=env)
        with open(out) as f:
            return json.load(f)


def torch_runner(half):
    """A function timing one record's geometry in PyTorch (in float16 if `half`), or None (with
    the reason printed)."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        print("PyTorch is not installed: atrous alone is measured", file=sys.stderr)
        return None
    if not torch.cuda.is_available():
        print("PyTorch sees no CUDA device: atrous alone is measured", file=sys.stderr)
        return None
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.benchmark = True

    def run(record, warmup, repeats):
        n, cin, cout, groups = record["batch"], record["cin"], record["cout"], record["groups"]
        k, s, p, d = record["kernel_size"], record["stride"], record["padding"], record["dilation"]
        dtype = torch.float16 if half else torch.float32
        x = torch.randn(n, cin, record["h"], record["w"], device="cuda", dtype=dtype)
        if record["op"] == "conv2d":
            weight = torch.randn(cout, cin // groups, k, k, device="cuda", dtype=dtype)
            call = lambda: F.conv2d(x, weight, stride=s, padding=p, dilation=d, groups=groups)
        else:
            weight = torch.randn(cin, cout // groups, k, k, device="cuda", dtype=dtype)
            natural = (record["h"] - 1) * s - 2 * p + d * (k - 1) + 1
            op = record["out_h"] - natural
            call = lambda: F.conv_transpose2d(x, weight, stride=s, padding=p, output_padding=op, dilation=d, groups=groups)
        y = call()
        assert list(y.shape) == [n, cout, record["out_h"], record["out_w"]], (y.shape, record)
        for _ in range(warmup):
            call()
        torch.cuda.synchronize()
        times = []
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            call()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        return statistics.median(times)

    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--atrous", default="target/release/atrous")
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--size", type=int, default=129)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--dilations", default="1,2,4,8,16")
    parser.add_argument("--transposed-size", type=int, default=33, help="input side of the k4 s2 transposed case")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--precision", choices=["f32", "f16", "f16-accumulate"], default="f32",
                        help="atrous's precision (README, 'Precision'); PyTorch runs float16 for either f16 one")
    args = parser.parse_args()

    env = dict(os.environ)
    common = ["--channels", str(args.channels), "--batch", str(args.batch), "--warmup", str(args.warmup), "--repeats", str(args.repeats), "--precision", args.precision]
    records = atrous_records(args.atrous, ["--size", str(args.size), "--dilations", args.dilations, *common], env)
    records += atrous_records(args.atrous, ["--op", "conv-transpose2d", "--kernel", "4", "--stride", "2", "--size", str(args.transposed_size), "--dilations", "1", *common], env)
    gpu = [r for r in records if r["device"] == "gpu"]
    torch_time = torch_runner(args.precision != "f32")

    cases = {}
    for r in gpu:
        cases.setdefault((r["op"], r["dilation"]), []).append(r)
    print(f"\nGPU: {gpu[0]['adapter']} ({gpu[0]['backend']}), atrous in {args.precision}; peak FP32 {gpu[0].get('peak_gflops', float('nan')):.0f} GFLOP/s (atrous bench --peak)")
    print(f"{'op':<17}{'dil':>4}  {'atrous kernels (median ms)':<70}{'auto ms':>9}{'torch ms':>10}{'vs torch':>11}{'auto % peak':>12}")
    for (op, dilation), rows in cases.items():
        auto = next(r for r in rows if r["kernel"].startswith("auto:"))
        kernels = " ".join(f"{r['kernel']}={r['median_ms']:.3g}" for r in rows if not r["kernel"].startswith("auto:"))
        torch_ms = torch_time(auto, args.warmup, args.repeats) if torch_time else float("nan")
        share = 100 * auto.get("fraction_of_peak", float("nan"))
        print(f"{op:<17}{dilation:>4}  {kernels:<70}{auto['median_ms']:>9.3f}{torch_ms:>10.3f}{torch_ms / auto['median_ms']:>10.2f}×{share:>11.1f}%")
    if not torch_time:
        sys.exit(3)


if __name__ == "__main__":
    main()
