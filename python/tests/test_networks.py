"""Backbones and segmentation models: shapes, per-layer outputs, GPU against CPU."""
import numpy as np
import pytest

import atrous


def rand(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype("f4")


@pytest.mark.parametrize("output_stride", [32, 16, 8, 4])
def test_backbone_shapes_at_every_output_stride(output_stride):
    backbone = atrous.Backbone("resnet50", output_stride=output_stride, device="cpu")
    shapes = dict(backbone.output_shapes([1, 3, 65, 65]))
    assert shapes["layer4.2.conv3"] == [1, 2048, 64 // output_stride + 1, 64 // output_stride + 1]
    assert list(shapes) == backbone.layer_names
    assert backbone.layer_names[0] == "conv1"


def test_backbone_attributes_and_repr():
    backbone = atrous.Backbone("resnet18", output_stride=8, multi_grid=[1, 2], device="cpu")
    assert (backbone.arch, backbone.output_stride, backbone.multi_grid, backbone.device) == ("resnet18", 8, [1, 2], "cpu")
    assert repr(backbone) == "Backbone(arch='resnet18', output_stride=8, multi_grid=[1, 2], device='cpu')"
    assert backbone.unused_weights == []


def test_backbone_call_and_forward_on_cpu():
    backbone = atrous.Backbone("resnet18", output_stride=16, device="cpu")
    x = rand((2, 3, 33, 33))
    features = backbone(x)
    assert features.shape == (2, 512, 3, 3) and features.dtype == np.float32
    outputs = backbone.forward(x)
    assert list(outputs) == [backbone.layer_names[-1]]
    np.testing.assert_array_equal(outputs[backbone.layer_names[-1]], features)
    every = backbone.forward(x, keep_all=True)
    assert list(every) == backbone.layer_names
    np.testing.assert_array_equal(every[backbone.layer_names[-1]], features)
    assert every["conv1"].shape == (2, 64, 17, 17)


def test_seeded_weights_match_the_cli_s():
    """Same seed as `atrous backbone`: two builds give the same network."""
    x = rand((1, 3, 33, 33), seed=3)
    a = atrous.Backbone("resnet18", device="cpu")(x)
    b = atrous.Backbone("resnet18", device="cpu")(x)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("arch, output_stride", [("resnet18", 8), ("resnet50", 16)])
def test_backbone_gpu_agrees_with_cpu_layer_by_layer(gpu_adapter, arch, output_stride):
    x = rand((1, 3, 65, 65), seed=1)
    on_gpu = atrous.Backbone(arch, output_stride=output_stride, device="gpu").forward(x, keep_all=True)
    on_cpu = atrous.Backbone(arch, output_stride=output_stride, device="cpu").forward(x, keep_all=True)
    assert list(on_gpu) == list(on_cpu)
    for name in on_gpu:
        d = atrous.compare(on_gpu[name], on_cpu[name], tolerance=atrous.NETWORK_TOLERANCE)
        assert d.agree, f"{name}: {d}"


def test_multi_grid_changes_layer4_only():
    x = rand((1, 3, 33, 33), seed=2)
    plain = atrous.Backbone("resnet18", device="cpu").forward(x, keep_all=True)
    grid = atrous.Backbone("resnet18", multi_grid=[1, 2], device="cpu").forward(x, keep_all=True)
    np.testing.assert_array_equal(plain["layer3.1.conv2"], grid["layer3.1.conv2"])
    assert not np.array_equal(plain["layer4.1.conv2"], grid["layer4.1.conv2"])


@pytest.mark.parametrize("model, upsample", [("deeplabv3_resnet18", "bilinear"), ("fcn_resnet18", "transposed")])
def test_segmentation_gpu_agrees_with_cpu(gpu_adapter, model, upsample):
    x = rand((1, 3, 49, 49), seed=4)
    on_gpu = atrous.Segmentation(model, output_stride=16, classes=5, upsample=upsample, device="gpu")
    on_cpu = atrous.Segmentation(model, output_stride=16, classes=5, upsample=upsample, device="cpu")
    logits = on_gpu(x)
    reference = on_cpu(x)
    assert logits.shape == (1, 5, 49, 49)
    assert atrous.compare(logits, reference, tolerance=atrous.NETWORK_TOLERANCE).agree
    # The share of pixels whose class differs, as `atrous segment --compare` reports it.
    assert (logits.argmax(1) != reference.argmax(1)).mean() < 0.01


def test_segmentation_attributes_layers_and_aux():
    model = atrous.Segmentation("deeplabv3_resnet18", output_stride=8, aux=True, device="cpu")
    assert (model.model, model.output_stride, model.rates, model.classes, model.upsample, model.aux) == (
        "deeplabv3_resnet18", 8, [12, 24, 36], 21, "bilinear", True)
    assert repr(model).startswith("Segmentation(model='deeplabv3_resnet18', output_stride=8, classes=21")
    assert model.layer_names[0] == "conv1" and model.layer_names[-1] == "upsample"
    assert any(name.startswith("classifier.") for name in model.layer_names)
    x = rand((1, 3, 33, 33), seed=5)
    logits, aux = model.aux_logits(x)
    assert logits.shape == aux.shape == (1, 21, 33, 33)
    np.testing.assert_array_equal(model(x), logits)
    outputs = model.forward(x)
    assert list(outputs) == ["aux_upsample", "upsample"]
    assert atrous.Segmentation("fcn_resnet18", device="cpu").rates is None
