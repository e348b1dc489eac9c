"""Mixed-operation kernels. Each public function dispatches to a custom kernel on CUDA where one exists and is
faster, and to the PyTorch reference (`hwnas.kernels.reference`) otherwise; `HWNAS_KERNELS=reference|triton`
forces one (also `folded`, `cuda`; see `hwnas.kernels.dispatch`).
"""

from hwnas.kernels.dispatch import masked_pointwise, mixed_depthwise, mixed_sum

__all__ = ["masked_pointwise", "mixed_depthwise", "mixed_sum"]
