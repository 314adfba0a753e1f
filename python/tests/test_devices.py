import atrous


def test_devices_lists_adapters():
    adapters = atrous.devices()
    assert adapters, "no GPU adapter: install mesa-vulkan-drivers (lavapipe)"
    for a in adapters:
        assert set(a) == {"name", "backend", "type", "driver", "driver_info", "limits"}
        assert a["limits"]["max_buffer_size"] > 0
        assert isinstance(a["limits"]["timestamp_query"], bool)


def test_adapter_is_opened_once_and_listed(gpu_adapter):
    assert gpu_adapter["name"] in [a["name"] for a in atrous.devices()]
    assert atrous.adapter() == gpu_adapter


def test_module_metadata():
    assert atrous.__version__
    assert atrous.OP_TOLERANCE == 1e-4
    assert atrous.NETWORK_TOLERANCE == 1e-3
    assert issubclass(atrous.GpuError, RuntimeError)
    assert "dilation" in atrous.conv2d.__doc__
    assert atrous.conv2d.__text_signature__.startswith("(x, weight, bias=None, stride=1")
    assert atrous.compare.__text_signature__ == "(a, b, tolerance=1e-4)"
    assert "layer4" in atrous.Backbone.__doc__
