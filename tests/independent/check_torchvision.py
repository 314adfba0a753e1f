#!/usr/bin/env python3
"""atrous segment against torchvision itself (a manual check: it needs PyTorch, too large for CI).

Usage:
  pip install torch torchvision safetensors numpy
  cargo build --release
  python3 tests/independent/check_torchvision.py [--atrous target/release/atrous] [--device gpu|cpu]

For deeplabv3_resnet50/101 and fcn_resnet50 at output strides 8 and 16, it builds torchvision's
model (torchvision.models.segmentation: DeepLabV3 / FCN on IntermediateLayerGetter(resnet), with
aux_classifier) with random parameters and random batch-norm statistics, saves its state_dict
as .safetensors exactly as the README tells users to, runs `atrous segment --weights` on a random
non-square input, and compares atrous's logits with torchvision's `model(x)["out"]`, and its
`--aux` logits with `model(x)["aux"]` (float32, eval mode): max relative error
|a − b| / max(|b|, 1% of max|b|), as atrous's --compare, and the share of pixels whose arg-max
class differs. Fails (exit 1) beyond 1e-3.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torchvision
from safetensors.torch import save_file
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.segmentation.deeplabv3 import DeepLabHead, DeepLabV3
from torchvision.models.segmentation.fcn import FCN, FCNHead

TOLERANCE = 1e-3
REPLACE = {8: [False, True, True], 16: [False, False, True]}
RATES = {8: [12, 24, 36], 16: [6, 12, 18]}


def build(model, output_stride, classes=21):
    head, arch = model.split("_")
    backbone = getattr(torchvision.models, arch)(weights=None, replace_stride_with_dilation=REPLACE[output_stride])
    backbone = IntermediateLayerGetter(backbone, return_layers={"layer4": "out", "layer3": "aux"})
    aux = FCNHead(1024, classes)
    if head == "deeplabv3":
        net = DeepLabV3(backbone, DeepLabHead(2048, classes, atrous_rates=RATES[output_stride]), aux)
    else:
        net = FCN(backbone, FCNHead(2048, classes), aux)
    generator = torch.Generator().manual_seed(output_stride * 1000 + len(model))
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                c = module.num_features
                module.weight.copy_(0.5 + torch.rand(c, generator=generator))
                module.bias.copy_(0.2 * torch.randn(c, generator=generator))
                module.running_mean.copy_(0.2 * torch.randn(c, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(c, generator=generator))
    return net.eval()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--atrous", default=os.path.join(os.path.dirname(__file__), "../../target/release/atrous"))
    parser.add_argument("--device", default="gpu", choices=["gpu", "cpu"])
    parser.add_argument("--size", default="97x129")
    args = parser.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    torch.manual_seed(0)
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        x = torch.randn(1, 3, h, w)
        np.save(os.path.join(tmp, "x.npy"), x.numpy())
        for model in ["deeplabv3_resnet50", "fcn_resnet50", "deeplabv3_resnet101"]:
            for output_stride in [8, 16]:
                net = build(model, output_stride)
                weights = os.path.join(tmp, "w.safetensors")
                save_file({k: v.contiguous() for k, v in net.state_dict().items()}, weights)
                with torch.no_grad():
                    expected = {key: value.numpy() for key, value in net(x).items()}
                paths = {"out": os.path.join(tmp, "logits.npy"), "aux": os.path.join(tmp, "aux.npy")}
                run = subprocess.run(
                    [args.atrous, "segment", "--model", model, "--output-stride", str(output_stride), "--weights", weights,
                     "--input", os.path.join(tmp, "x.npy"), "--output", paths["out"], "--aux", paths["aux"], "--device", args.device],
                    capture_output=True, text=True)
                if run.returncode != 0 or "not used" in run.stderr:
                    print(f"{model} OS {output_stride}: atrous failed ({run.returncode}):\n{run.stderr}")
                    failures += 1
                    continue
                for key, path in paths.items():
                    got, want = np.load(path), expected[key]
                    scale = np.abs(want).max()
                    rel = (np.abs(got - want) / np.maximum(np.abs(want), 0.01 * scale)).max()
                    classes = (got.argmax(1) != want.argmax(1)).mean()
                    ok = got.shape == want.shape and rel <= TOLERANCE
                    failures += not ok
                    print(f"{model:<20} OS {output_stride:>2} {key:<3} {args.device}: logits {list(got.shape)}, max rel {rel:.2e} "
                          f"(scale {scale:.2f}), arg-max differs at {100 * classes:.3f}% of pixels: {'ok' if ok else 'FAIL'}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
