#!/usr/bin/env python3
"""atrous's CPU path against ONNX Runtime's CPU Conv, side by side in one run.

For each dilation in turn, runs `atrous bench --device cpu` and then ORT's Conv (or ConvTranspose)
on the same shape, taking turns --rounds times, and prints both with their ratio and each one's
dilation penalty (GFLOP/s at dilation d over GFLOP/s at dilation 1). Each time is the median of
its rounds' medians of --repeats runs. The penalty of the dilation-1 row
is 1 by definition (the first dilation listed is the base).

    pip install onnxruntime onnx numpy
    cargo build --release
    python3 benches/cpu_vs_onnxruntime.py            # 256→256, 3×3, 65×65, dilations 1..16

    python3 benches/cpu_vs_onnxruntime.py --op resnet50 --output-stride 8 --size 513 [--stages]
    python3 benches/cpu_vs_onnxruntime.py --op transposed-vs-forward --size 33

Both use every core: ORT's intra-op threads default to the core count, atrous's rayon pool too.

`--op resnet50` times a whole ResNet-50 backbone (to layer4) at the given output stride: the ONNX
network built by tests/independent/ort_resnet.py from torchvision's definition, on random
He-initialised weights (written to a .safetensors file that `atrous backbone --weights` reads
too) and a random input. ORT runs with its default graph optimisations (batch norm folded,
fusions, its NCHWc layout), warm (the median of --repeats runs after --warmup); atrous's time is
`atrous backbone --device cpu`'s total_ms, one forward pass per process, the median of --repeats
processes (its first touch of every activation's memory included). Its warm time, timed as ORT
is, comes from `atrous profile --device cpu --repeats 1` run after each: the pass after a
warm-up pass in one process, the same network on atrous's seeded weights (the time does not
depend on the values). Ratios are speeds: above 1, atrous is faster. With `--stages`, each stage's
time follows: ORT's profiler's per-node times against `atrous profile`'s per-layer ones.

`--op transposed-vs-forward` needs no ORT: atrous's own GFLOP/s on the transposed k4 s2 layer
(--channels, --size×--size in) against the forward 3×3 one of about the same output (2·size − 1),
the two taking turns --rounds times, each round's ratio and their median.
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
import onnx.numpy_helper
import onnxruntime as ort
from onnx import TensorProto, helper


def cpu_session(model, profiling=False):
    """An ORT session of `model` on the CPU with every core, its profiler on where asked."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count()
    options.enable_profiling = profiling
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


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
    session = cpu_session(model)
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


def write_safetensors(path, tensors):
    """{name: float32 array} as a .safetensors file (8-byte header length, JSON header, data)."""
    header, offset, blobs = {}, 0, []
    for name, value in tensors.items():
        blob = np.ascontiguousarray(value, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(value.shape), "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)) + encoded + b"".join(blobs))


class RandomState(dict):
    """A state dict that makes up each tensor ort_resnet's Graph asks for, in the shape asked."""

    def __init__(self, rng):
        super().__init__()
        self.rng = rng

    def __contains__(self, name):
        return True

    def request(self, name, shape):
        if name not in self.keys():
            if name.endswith("running_var"):
                value = self.rng.uniform(0.5, 1.5, shape)
            elif len(shape) == 4:
                value = self.rng.normal(0, np.sqrt(2 / np.prod(shape[1:])), shape)
            elif name.endswith(".weight"):
                value = self.rng.uniform(0.5, 1.5, shape)
            else:
                value = self.rng.uniform(-0.1, 0.1, shape)
            dict.__setitem__(self, name, value.astype(np.float32))
        return dict.__getitem__(self, name)


def bench_resnet(args):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "independent"))
    import ort_resnet

    state = RandomState(np.random.default_rng(0))
    graph = ort_resnet.Graph(state, "", "random weights")
    original_param = graph.param

    def param(name, shape):
        state.request(name, shape)
        return original_param(name, shape)

    graph.param = param
    x = np.random.default_rng(1).uniform(-1, 1, (1, 3, args.size, args.size)).astype(np.float32)
    y = ort_resnet.build_backbone(graph, "x", "resnet50", args.output_stride)
    model_graph = helper.make_graph(
        graph.nodes, "resnet50",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))] + graph.inputs,
        [helper.make_tensor_value_info(y, TensorProto.FLOAT, [None] * 4)], initializer=graph.initializers)
    # The weights as initializers (not graph inputs) so that ORT may fold batch norm and pre-pack.
    model = helper.make_model(model_graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    feeds = {"x": x}
    for name, value in graph.feeds.items():
        model.graph.initializer.append(onnx.numpy_helper.from_array(value, name))
    del model.graph.input[1:]
    session = cpu_session(model)

    with tempfile.TemporaryDirectory() as tmp:
        weights = os.path.join(tmp, "resnet50.safetensors")
        write_safetensors(weights, dict(state.items()))
        inputs = os.path.join(tmp, "x.npy")
        np.save(inputs, x)
        command = [args.atrous, "backbone", "--device", "cpu", "--arch", "resnet50", "--output-stride", str(args.output_stride),
                   "--weights", weights, "--input", inputs, "--json"]
        warm_command = [args.atrous, "profile", "--device", "cpu", "--arch", "resnet50", "--output-strides", str(args.output_stride),
                        "--size", str(args.size), "--repeats", "1", "--no-peak"]
        atrous_times, ort_times, warm_times = [], [], []
        for _ in range(args.warmup):
            session.run(None, feeds)
        for _ in range(args.repeats):
            # Alternating, so that a change in the machine's speed reaches both alike.
            start = time.perf_counter()
            session.run(None, feeds)
            ort_times.append((time.perf_counter() - start) * 1e3)
            run = subprocess.run(command, check=True, capture_output=True, text=True)
            atrous_times.append(json.loads(run.stdout)["total_ms"])
            # Warm, as ORT is timed: the pass after a first one in the same process.
            profile = os.path.join(tmp, "profile.json")
            subprocess.run(warm_command + ["--json", profile], check=True, capture_output=True, text=True)
            with open(profile) as f:
                warm_times.append(json.load(f)["devices"][0]["runs"][0]["wall_ms"])
    ort_ms, atrous_ms, warm_ms = (float(np.median(t)) for t in (ort_times, atrous_times, warm_times))
    print(f"resnet50 output stride {args.output_stride}, {args.size}x{args.size}, batch 1, {os.cpu_count()} threads, "
          f"medians of {args.repeats} (ORT after {args.warmup} warm-up), alternating")
    print("atrous: one pass per process (`atrous backbone`, these weights); warm: the pass after a warm-up pass in one "
          "process (`atrous profile --repeats 1`, the same network on its seeded weights)")
    print(f"{'ORT ms':>8} {'atrous ms':>10} {'atrous/ORT':>10} {'warm ms':>8} {'warm/ORT':>8}")
    print(f"{ort_ms:>8.1f} {atrous_ms:>10.1f} {ort_ms / atrous_ms:>10.2f} {warm_ms:>8.1f} {ort_ms / warm_ms:>8.2f}")
    if args.stages:
        print_stages(args, model, feeds, warm_command)


def print_stages(args, model, feeds, warm_command):
    """Per stage, ORT's per-node times (its profiler: medians over --repeats passes after one) against
    `atrous profile`'s (medians of --repeats passes after one), taken one after the other. ORT fuses each
    convolution's batch norm, ReLU and residual into one node, so its Conv and MaxPool nodes, in the order
    they run, are atrous's layers one for one."""
    session = cpu_session(model, profiling=True)
    for _ in range(args.repeats + 1):
        session.run(None, feeds)
    trace = session.end_profiling()
    with open(trace) as f:
        events = json.load(f)
    os.remove(trace)
    times, order = {}, []
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time") and event["args"].get("op_name") in ("Conv", "MaxPool"):
            name = event["name"][: -len("_kernel_time")]
            if name not in times:
                order.append(name)
            times.setdefault(name, []).append(event["dur"] / 1e3)
    ort_layers = [float(np.median(times[name][1:])) for name in order]
    with tempfile.TemporaryDirectory() as tmp:
        profile = os.path.join(tmp, "profile.json")
        command = warm_command[:]
        command[command.index("--repeats") + 1] = str(args.repeats)
        subprocess.run(command + ["--json", profile], check=True, capture_output=True, text=True)
        with open(profile) as f:
            stages = json.load(f)["devices"][0]["runs"][0]["stages"]
    if sum(stage["layers"] for stage in stages) != len(ort_layers):
        print(f"(ORT ran {len(ort_layers)} Conv/MaxPool nodes against atrous's {sum(s['layers'] for s in stages)} layers: no per-stage table)")
        return
    print("per stage, one after the other: ORT's profiler (per-node medians) and `atrous profile` (warm, medians)")
    print(f"{'stage':>8} {'layers':>6} {'ORT ms':>8} {'atrous ms':>10} {'atrous/ORT':>10}")
    first = 0
    for stage in stages:
        ort_stage = sum(ort_layers[first:first + stage["layers"]])
        first += stage["layers"]
        print(f"{stage['name']:>8} {stage['layers']:>6} {ort_stage:>8.1f} {stage['median_ms']:>10.1f} {ort_stage / stage['median_ms']:>10.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--atrous", default="target/release/atrous")
    parser.add_argument("--op", choices=["conv2d", "conv-transpose2d", "resnet50", "transposed-vs-forward"], default="conv2d")
    parser.add_argument("--output-stride", type=int, default=8, help="with --op resnet50")
    parser.add_argument("--stages", action="store_true",
                        help="with --op resnet50: then each stage's time in ORT's profiler and in `atrous profile`")
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--size", type=int, default=65)
    parser.add_argument("--kernel", type=int, default=3)
    parser.add_argument("--stride", type=int, default=1)
    parser.add_argument("--dilations", default="1,2,4,8,16")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3,
                        help="single ops: atrous and ORT take turns this many times per dilation, each timing --repeats "
                             "runs; each one's time is the median of its rounds' medians (this machine's speed drifts "
                             "within seconds)")
    args = parser.parse_args()
    if args.op == "resnet50":
        return bench_resnet(args)

    def atrous_record(dilation, tmp, op=args.op, size=args.size, kernel=args.kernel, stride=args.stride):
        path = os.path.join(tmp, f"atrous_{dilation}.json")
        command = [args.atrous, "bench", "--op", op, "--device", "cpu", "--channels", str(args.channels),
                   "--size", str(size), "--kernel", str(kernel), "--stride", str(stride),
                   "--dilations", str(dilation), "--warmup", str(args.warmup), "--repeats", str(args.repeats),
                   "--json", path]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        with open(path) as f:
            return json.load(f)[0]

    if args.op == "transposed-vs-forward":
        forward_size = 2 * args.size - 1
        print(f"atrous GFLOP/s, {args.channels}->{args.channels}: conv-transpose2d 4x4 stride 2 on {args.size}x{args.size} "
              f"against conv2d 3x3 on {forward_size}x{forward_size}, taking turns {args.rounds} times, medians of {args.repeats}")
        print(f"{'round':>5} {'transposed':>11} {'forward':>8} {'ratio':>6}")
        ratios = []
        with tempfile.TemporaryDirectory() as tmp:
            for turn in range(args.rounds):
                transposed = atrous_record(1, tmp, "conv-transpose2d", args.size, 4, 2)
                forward = atrous_record(1, tmp, "conv2d", forward_size, 3, 1)
                t, f = (r["gflop"] / (r["median_ms"] / 1e3) for r in (transposed, forward))
                ratios.append(t / f)
                print(f"{turn + 1:>5} {t:>11.1f} {f:>8.1f} {t / f:>6.2f}")
        print(f"median transposed / forward: {float(np.median(ratios)):.2f}")
        return

    print(f"{args.op} {args.channels}->{args.channels}, {args.kernel}x{args.kernel}, stride {args.stride}, "
          f"{args.size}x{args.size}, batch 1, {os.cpu_count()} threads, medians of {args.rounds} rounds' medians of "
          f"{args.repeats} after {args.warmup} warm-up")
    print(f"onnxruntime {ort.__version__} and `{args.atrous} bench --device cpu`, taking turns {args.rounds} times per dilation")
    print(f"{'dilation':>8} {'GFLOP':>7} {'ORT ms':>8} {'ORT GFLOP/s':>12} {'atrous ms':>10} {'atrous GFLOP/s':>15} "
          f"{'atrous/ORT':>10} {'ORT penalty':>12} {'atrous penalty':>15}")
    base = {}
    with tempfile.TemporaryDirectory() as tmp:
        for dilation in [int(d) for d in args.dilations.split(",")]:
            atrous_times, ort_times, session = [], [], None
            for _ in range(args.rounds):
                record = atrous_record(dilation, tmp)
                atrous_times.append(record["median_ms"])
                if session is None:
                    padding = record["padding"][0] if isinstance(record["padding"], list) else record["padding"]
                    session, feeds = ort_session(args.op, args.channels, args.channels, args.kernel, args.stride, padding, dilation, args.size)
                ort_times.append(median_ms(session, feeds, args.warmup, args.repeats))
            ort_ms, atrous_ms = float(np.median(ort_times)), float(np.median(atrous_times))
            ort_gflops, atrous_gflops = record["gflop"] / (ort_ms / 1e3), record["gflop"] / (atrous_ms / 1e3)
            base.setdefault("ort", ort_gflops)
            base.setdefault("atrous", atrous_gflops)
            print(f"{dilation:>8} {record['gflop']:>7.3f} {ort_ms:>8.2f} {ort_gflops:>12.1f} {atrous_ms:>10.2f} "
                  f"{atrous_gflops:>15.1f} {atrous_gflops / ort_gflops:>10.2f} {ort_gflops / base['ort']:>12.2f} "
                  f"{atrous_gflops / base['atrous']:>15.2f}")


if __name__ == "__main__":
    sys.exit(main())
