"""Custom Triton/CUDA kernels for mixed operations, each beside the PyTorch reference it must match."""
