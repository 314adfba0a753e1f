"""Dilated (atrous) and transposed convolutions as WGSL compute shaders on any GPU that wgpu
reaches (Vulkan, Metal, DX12, GL; Mesa's lavapipe where there is none), with a CPU path to check
them against. NumPy float32 NCHW arrays in and out; PyTorch's conventions.

The GPU is opened once per process, on first use, and shared by every call; the GIL is released
while a computation runs. Bad shapes or parameters raise ``ValueError`` / ``TypeError`` with the
CLI's words, GPU failures ``atrous.GpuError``.
"""

import os
from typing import Any, Dict, List, Literal, Optional, Sequence, Tuple, TypedDict, Union

import numpy as np
import numpy.typing as npt

__version__: str

#: Relative tolerance under which one op's GPU and CPU results agree (``conv2d --compare``).
OP_TOLERANCE: float
#: Relative tolerance per layer for whole networks (``backbone --compare``).
NETWORK_TOLERANCE: float

#: An int for both axes, or a pair ``(h, w)``.
IntOrPair = Union[int, Tuple[int, int], List[int]]
#: float32 or float64, any layout (converted to C-contiguous float32).
ArrayLike = npt.ArrayLike
Device = Literal["gpu", "cpu"]
PathLike = Union[str, "os.PathLike[str]"]

class GpuError(RuntimeError):
    """The GPU could not be opened or failed (no adapter, a device refused, out of memory, a
    limit exceeded)."""

class Limits(TypedDict):
    max_storage_buffer_binding_size: int
    max_buffer_size: int
    max_compute_workgroups_per_dimension: int
    max_compute_invocations_per_workgroup: int
    max_compute_workgroup_storage_size: int
    timestamp_query: bool

class AdapterInfo(TypedDict):
    name: str
    backend: str
    type: str
    driver: str
    driver_info: str
    limits: Limits

def devices() -> List[AdapterInfo]:
    """Every adapter wgpu can see, best first (as ``atrous devices``). The first is the one
    ``device="gpu"`` uses unless ``WGPU_ADAPTER_NAME`` / ``WGPU_BACKEND`` say otherwise. Raises
    ``GpuError`` when there is none."""

def adapter() -> AdapterInfo:
    """The adapter ``device="gpu"`` runs on; opens the GPU if no call has yet."""

def conv2d(
    x: ArrayLike,
    weight: ArrayLike,
    bias: Optional[ArrayLike] = None,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
    device: Device = "gpu",
) -> npt.NDArray[np.float32]:
    """2-D convolution, as ``torch.nn.functional.conv2d``: ``x`` ``[N, C_in, H, W]``, ``weight``
    ``[C_out, C_in/groups, kH, kW]``, ``bias`` ``[C_out]``; zero padding on each side. Returns
    float32 ``[N, C_out, OH, OW]``."""

def conv_transpose2d(
    x: ArrayLike,
    weight: ArrayLike,
    bias: Optional[ArrayLike] = None,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    output_padding: IntOrPair = 0,
    groups: int = 1,
    dilation: IntOrPair = 1,
    device: Device = "gpu",
) -> npt.NDArray[np.float32]:
    """2-D transposed convolution, as ``torch.nn.functional.conv_transpose2d``: ``x``
    ``[N, C_in, H, W]``, ``weight`` ``[C_in, C_out/groups, kH, kW]``, ``bias`` ``[C_out]``;
    ``output_padding < max(stride, dilation)``. Returns float32 ``[N, C_out, OH, OW]``."""

class Difference:
    """How far a result is from a reference, as ``--compare`` reports it."""

    #: Largest ``|a − b|``.
    max_abs: float
    #: Largest ``|a − b| / max(|b|, 0.01·max|b|)``.
    max_rel: float
    #: ``‖result − reference‖₂ / ‖reference‖₂``: the relative error of the tensor as a whole.
    rms_rel: float
    #: Flat index of the largest relative error.
    worst_index: int
    #: ``max|b|``.
    reference_scale: float
    #: Elements NaN or infinite on one side only.
    non_finite: int
    tolerance: float
    #: ``max_rel <= tolerance`` and ``non_finite == 0``.
    agree: bool
    verdict: Literal["agree", "DISAGREE"]
    def as_dict(self) -> Dict[str, Any]: ...

def compare(a: ArrayLike, b: ArrayLike, tolerance: float = 1e-4) -> Difference:
    """Compares a result ``a`` with a reference ``b`` of the same shape: max abs and max
    relative error, and a verdict within ``tolerance`` relative (1e-4 for one op as the CLI,
    ``NETWORK_TOLERANCE`` per layer of a network)."""

class Backbone:
    """A ResNet backbone (stem and layers 1–4), as ``atrous backbone``."""

    arch: str
    output_stride: int
    multi_grid: Optional[List[int]]
    def __init__(
        self,
        arch: Literal["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"] = "resnet50",
        output_stride: Literal[4, 8, 16, 32] = 16,
        multi_grid: Optional[Sequence[int]] = None,
        weights: Optional[PathLike] = None,
        weights_prefix: str = "",
        device: Device = "gpu",
    ) -> None: ...
    def __call__(self, x: ArrayLike) -> npt.NDArray[np.float32]:
        """layer4's features for an ``[N, 3, H, W]`` input."""
    def forward(self, x: ArrayLike, keep_all: bool = False) -> Dict[str, npt.NDArray[np.float32]]:
        """Outputs by layer name: every layer's with ``keep_all``, else the last one's."""
    def output_shapes(self, shape: Sequence[int]) -> List[Tuple[str, List[int]]]:
        """Every layer's output shape for an input of ``shape``; nothing runs."""
    @property
    def layer_names(self) -> List[str]: ...
    @property
    def device(self) -> Device: ...
    @property
    def unused_weights(self) -> List[str]: ...

class Segmentation:
    """torchvision's DeepLabv3 (ASPP) or FCN head on a ResNet, as ``atrous segment``."""

    model: str
    output_stride: int
    #: DeepLabv3's ASPP rates (None for FCN).
    rates: Optional[List[int]]
    classes: int
    upsample: Literal["bilinear", "transposed"]
    aux: bool
    def __init__(
        self,
        model: str = "deeplabv3_resnet50",
        output_stride: Literal[4, 8, 16, 32] = 8,
        rates: Optional[Sequence[int]] = None,
        classes: Optional[int] = None,
        upsample: Literal["bilinear", "transposed"] = "bilinear",
        aux: bool = False,
        weights: Optional[PathLike] = None,
        device: Device = "gpu",
    ) -> None: ...
    def __call__(self, x: ArrayLike) -> npt.NDArray[np.float32]:
        """The logits ``[N, classes, H, W]`` for an ``[N, 3, H, W]`` input."""
    def forward(self, x: ArrayLike, keep_all: bool = False) -> Dict[str, npt.NDArray[np.float32]]:
        """Outputs by layer name: every layer's with ``keep_all``, else the network's outputs
        (the logits, and the auxiliary head's with ``aux=True``)."""
    def aux_logits(self, x: ArrayLike) -> Tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """The main and the auxiliary head's logits in one pass (``aux=True``)."""
    def output_shapes(self, shape: Sequence[int]) -> List[Tuple[str, List[int]]]: ...
    @property
    def layer_names(self) -> List[str]: ...
    @property
    def device(self) -> Device: ...
    @property
    def unused_weights(self) -> List[str]: ...
