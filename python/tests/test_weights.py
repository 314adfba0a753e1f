"""Weights from a torchvision-style state dict saved as .safetensors."""
import json
import struct

import numpy as np
import pytest

import atrous


def save_safetensors(path, tensors):
    """The safetensors format by hand: a little-endian u64 header length, a JSON header, data."""
    header, blobs, offset = {}, [], 0
    for name, array in tensors.items():
        data = np.ascontiguousarray(array, "<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    encoded = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + b"".join(blobs))


def resnet18_state_dict(rng, prefix=""):
    """torchvision's resnet18 names and shapes, random values (batch norm near identity)."""
    tensors = {}

    def conv(name, c_out, c_in, k):
        tensors[f"{prefix}{name}.weight"] = rng.standard_normal((c_out, c_in, k, k)) * np.sqrt(2 / (c_in * k * k))

    def bn(name, c):
        tensors[f"{prefix}{name}.weight"] = 1 + 0.1 * rng.standard_normal(c)
        tensors[f"{prefix}{name}.bias"] = 0.1 * rng.standard_normal(c)
        tensors[f"{prefix}{name}.running_mean"] = 0.1 * rng.standard_normal(c)
        tensors[f"{prefix}{name}.running_var"] = 1 + 0.1 * rng.random(c)

    conv("conv1", 64, 3, 7)
    bn("bn1", 64)
    c_in = 64
    for layer, planes in enumerate([64, 128, 256, 512], start=1):
        for block in range(2):
            name = f"layer{layer}.{block}"
            conv(f"{name}.conv1", planes, c_in, 3)
            bn(f"{name}.bn1", planes)
            conv(f"{name}.conv2", planes, planes, 3)
            bn(f"{name}.bn2", planes)
            if block == 0 and layer > 1:
                conv(f"{name}.downsample.0", planes, c_in, 1)
                bn(f"{name}.downsample.1", planes)
            c_in = planes
    tensors[f"{prefix}fc.weight"] = rng.standard_normal((10, 512))
    return tensors


def test_a_state_dict_loads_and_runs(tmp_path, gpu_adapter):
    rng = np.random.default_rng(21)
    tensors = resnet18_state_dict(rng)
    tensors["something.else"] = np.zeros(3)
    path = tmp_path / "resnet18.safetensors"
    save_safetensors(path, tensors)
    x = rng.standard_normal((1, 3, 33, 33)).astype("f4")
    on_cpu = atrous.Backbone("resnet18", output_stride=8, weights=path, device="cpu")
    assert on_cpu.unused_weights == ["something.else"]  # fc.* is ignored, as by the CLI
    on_gpu = atrous.Backbone("resnet18", output_stride=8, weights=str(path), device="gpu")
    features = on_gpu(x)
    assert features.shape == (1, 512, 5, 5)
    assert atrous.compare(features, on_cpu(x), tolerance=atrous.NETWORK_TOLERANCE).agree
    # Not the seeded network.
    assert not np.allclose(features, atrous.Backbone("resnet18", output_stride=8, device="cpu")(x))


def test_a_prefixed_state_dict(tmp_path):
    rng = np.random.default_rng(22)
    path = tmp_path / "deeplab.safetensors"
    save_safetensors(path, resnet18_state_dict(rng, prefix="backbone."))
    x = rng.standard_normal((1, 3, 33, 33)).astype("f4")
    backbone = atrous.Backbone("resnet18", weights=path, weights_prefix="backbone.", device="cpu")
    assert backbone(x).shape == (1, 512, 3, 3)
    with pytest.raises(ValueError, match="has no tensor 'conv1.weight'"):
        atrous.Backbone("resnet18", weights=path, device="cpu")


def test_a_missing_or_misshaped_tensor_is_refused_by_name(tmp_path):
    rng = np.random.default_rng(23)
    tensors = resnet18_state_dict(rng)
    del tensors["layer3.1.bn2.running_var"]
    path = tmp_path / "missing.safetensors"
    save_safetensors(path, tensors)
    with pytest.raises(ValueError, match=r"has no tensor 'layer3.1.bn2.running_var' \(expected shape \[256\]\)"):
        atrous.Backbone("resnet18", weights=path, device="cpu")
    tensors = resnet18_state_dict(rng)
    tensors["conv1.weight"] = np.zeros((64, 3, 5, 5))
    save_safetensors(path, tensors)
    with pytest.raises(ValueError, match=r"tensor 'conv1.weight' in .* has shape \[64, 3, 5, 5\], but the network needs \[64, 3, 7, 7\]"):
        atrous.Backbone("resnet18", weights=path, device="cpu")


def test_segmentation_classes_come_from_the_file(tmp_path):
    path = tmp_path / "fcn.safetensors"
    tensors = resnet18_state_dict(np.random.default_rng(24), prefix="backbone.")
    tensors["classifier.4.weight"] = np.zeros((7, 128, 1, 1))
    save_safetensors(path, tensors)
    with pytest.raises(ValueError, match="classes=5 disagrees with .*: its classifier.4.weight has 7 classes"):
        atrous.Segmentation("fcn_resnet18", classes=5, weights=path, device="cpu")
    # The file has no classifier.0 (the FCN head's 3x3 conv): refused by name.
    with pytest.raises(ValueError, match="has no tensor 'classifier.0.weight'"):
        atrous.Segmentation("fcn_resnet18", weights=path, device="cpu")
