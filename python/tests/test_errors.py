"""Bad arguments raise Python exceptions with the CLI's words, never crash. None of these needs
a GPU: everything is refused before a device is opened."""
import numpy as np
import pytest

import atrous

X = np.ones((1, 4, 8, 8), "f4")
W = np.ones((6, 4, 3, 3), "f4")


@pytest.mark.parametrize("bad, words", [
    (np.ones((1, 4, 8, 8), "i8"), "x holds int64 ('<i8') values; atrous reads float32 ('<f4') or float64 ('<f8') arrays"),
    (np.ones((1, 4, 8, 8), "f2"), "x holds float16"),
    (np.ones((1, 4, 8, 8), bool), "x holds bool"),
    (np.ones((1, 4, 8, 8), "c8"), "x holds complex64"),
    ("not an array", "x holds str"),
    (None, "x holds object"),
])
def test_wrong_dtype_is_a_type_error(bad, words):
    with pytest.raises(TypeError, match=words.replace("(", r"\(").replace(")", r"\)")):
        atrous.conv2d(bad, W, device="cpu")


def test_wrong_weight_and_bias_dtypes_name_the_argument():
    with pytest.raises(TypeError, match="weight holds int32"):
        atrous.conv2d(X, W.astype("i4"), device="cpu")
    with pytest.raises(TypeError, match="bias holds uint8"):
        atrous.conv2d(X, W, np.ones(6, "u1"), device="cpu")


@pytest.mark.parametrize("kwargs, words", [
    (dict(x=np.ones((4, 8, 8), "f4")), r"input must have rank 4 \(N, C, H, W\), but its shape is \[4, 8, 8\]"),
    (dict(x=np.ones((1, 1, 4, 8, 8), "f4")), "input must have rank 4"),
    (dict(weight=np.ones((6, 4, 3), "f4")), r"weight must have rank 4 \(C_out, C_in/groups, kH, kW\)"),
    (dict(x=np.ones((1, 4, 0, 8), "f4")), "input has a zero-sized dimension"),
    (dict(x=np.ones((1, 5, 8, 8), "f4")), "weight expects 4 input channels"),
    (dict(bias=np.ones(5, "f4")), r"bias must be a 1-D tensor of length 6 \(one per output channel\), but its shape is \[5\]"),
    (dict(stride=0), "stride must be at least 1 on each axis, got "),
    (dict(dilation=(1, 0)), "dilation must be at least 1 on each axis, got "),
    (dict(groups=0), "groups must be at least 1, got 0"),
    (dict(groups=-2), "groups must be at least 1, got -2"),
    (dict(groups=3), r"groups=3 does not divide the input channels \(4\)"),
    (dict(x=np.ones((1, 4, 4, 4), "f4"), dilation=3), "input H=4 is too small"),
    (dict(stride=-1), "stride=-1 is not a size"),
    (dict(padding=(1, 2, 3)), r"padding must be an int or a pair \(h, w\), got a tuple of 3"),
    (dict(padding=[]), r"padding must be an int or a pair \(h, w\), got a list of 0"),
    (dict(stride=2**40), "stride = 1099511627776 is too large for this tool"),
    (dict(stride=2**70), "stride=1180591620717411303424 .* is too large for this tool"),
    (dict(device="tpu"), "unknown device 'tpu': expected gpu or cpu"),
])
def test_bad_conv2d_arguments_are_value_errors(kwargs, words):
    args = dict(x=X, weight=W, device="cpu")
    args.update(kwargs)
    with pytest.raises(ValueError, match=words):
        atrous.conv2d(**args)


@pytest.mark.parametrize("kwargs", [dict(stride="2"), dict(padding=1.5), dict(dilation=(1, "a")), dict(stride=object())])
def test_parameters_of_the_wrong_type_are_type_errors(kwargs):
    with pytest.raises(TypeError, match=r"must be an int or a pair \(h, w\) of ints"):
        atrous.conv2d(X, W, device="cpu", **kwargs)


def test_numpy_integers_are_accepted_as_parameters():
    y = atrous.conv2d(X, W, stride=np.int64(2), padding=(np.int32(1), 1), device="cpu")
    assert y.shape == (1, 6, 4, 4)


@pytest.mark.parametrize("kwargs, words", [
    (dict(output_padding=3, stride=2, dilation=3), r"output_padding H=3 must be smaller than max\(stride, dilation\) = max\(2, 3\) = 3"),
    (dict(padding=5), "transposed convolution output H would be"),
    (dict(weight=np.ones((5, 2, 3, 3), "f4")), "weight expects 5 input channels"),
    (dict(groups=4, weight=np.ones((4, 1, 3, 3), "f4"), bias=np.ones(3, "f4")), "bias must be a 1-D tensor of length 4"),
    (dict(device="GPU"), "unknown device 'GPU'"),
])
def test_bad_conv_transpose2d_arguments_are_value_errors(kwargs, words):
    args = dict(x=np.ones((1, 4, 3, 3), "f4"), weight=np.ones((4, 2, 3, 3), "f4"), device="cpu")
    args.update(kwargs)
    with pytest.raises(ValueError, match=words):
        atrous.conv_transpose2d(**args)


def test_missing_and_unknown_arguments():
    with pytest.raises(TypeError):
        atrous.conv2d(X)
    with pytest.raises(TypeError):
        atrous.conv2d(X, W, strides=2)


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(arch="resnet51"), ValueError, "unknown architecture 'resnet51': expected one of resnet18, resnet34, resnet50, resnet101, resnet152"),
    (dict(output_stride=12), ValueError, "output stride 12 cannot be reached by a ResNet: the possible output strides are 4, 8, 16 and 32"),
    (dict(output_stride=-8), ValueError, "output stride -8 cannot be reached"),
    (dict(multi_grid=[1, -2, 4]), ValueError, "multi_grid must be non-negative integers"),
    (dict(device="npu"), ValueError, "unknown device 'npu'"),
    (dict(weights="/nonexistent/resnet18.safetensors"), FileNotFoundError, "cannot read /nonexistent/resnet18.safetensors"),
    (dict(weights=42), TypeError, "weights must be a path to a .safetensors file or None"),
])
def test_bad_backbone_arguments(kwargs, error, words):
    args = dict(arch="resnet18", device="cpu")
    args.update(kwargs)
    with pytest.raises(error, match=words):
        atrous.Backbone(**args)


def test_a_corrupt_weights_file_is_refused(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="is not a valid .safetensors file"):
        atrous.Backbone("resnet18", weights=path, device="cpu")


def test_bad_backbone_inputs_name_the_layer():
    backbone = atrous.Backbone("resnet18", device="cpu")
    with pytest.raises(ValueError, match="layer conv1: weight expects 3 input channels"):
        backbone(np.ones((1, 4, 32, 32), "f4"))
    with pytest.raises(ValueError, match="input must have rank 4"):
        backbone(np.ones((3, 32, 32), "f4"))
    with pytest.raises(TypeError, match="x holds int64"):
        backbone(np.ones((1, 3, 32, 32), "i8"))
    with pytest.raises(ValueError, match="layer conv1: .*zero-sized dimension"):
        backbone(np.ones((1, 3, 0, 64), "f4"))


@pytest.mark.parametrize("kwargs, words", [
    (dict(model="unet_resnet50"), "unknown model 'unet_resnet50': expected deeplabv3_resnetNN or fcn_resnetNN"),
    (dict(model="fcn_resnet18", rates=[1, 2]), "rates sets DeepLabv3's ASPP rates; fcn_resnet18 has no ASPP"),
    (dict(upsample="nearest"), "unknown upsample 'nearest': expected bilinear or transposed"),
    (dict(classes=0), "a segmentation model needs at least 1 class"),
    (dict(classes=-1), "classes must be at least 1, got -1"),
    (dict(output_stride=3), "output stride 3 cannot be reached by a ResNet"),
])
def test_bad_segmentation_arguments(kwargs, words):
    args = dict(model="deeplabv3_resnet18", device="cpu")
    args.update(kwargs)
    with pytest.raises(ValueError, match=words):
        atrous.Segmentation(**args)


def test_aux_logits_needs_the_aux_head():
    model = atrous.Segmentation("fcn_resnet18", device="cpu")
    with pytest.raises(ValueError, match="no auxiliary head: build it with aux=True"):
        model.aux_logits(np.zeros((1, 3, 33, 33), "f4"))


def test_compare_refuses_different_shapes_and_bad_tolerance():
    with pytest.raises(ValueError, match=r"compared tensors must have the same shape, but a is \[2, 3\] and b is \[3, 2\]"):
        atrous.compare(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="tolerance must be a non-negative number"):
        atrous.compare(np.zeros(3), np.zeros(3), tolerance=-1)
    with pytest.raises(TypeError, match="a holds int64"):
        atrous.compare(np.zeros(3, "i8"), np.zeros(3))
