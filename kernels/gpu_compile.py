"""Compile every Triton kernel for an NVIDIA target without a GPU (Triton ships ptxas), as the GPU would.

The interpreter runs the kernels' Python on numpy, which accepts things the compiler rejects (and the reverse);
compiling for sm_90 here catches those where no GPU is lent. Each spec names the argument types of one launch.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

DTYPES = ("fp32", "fp16", "bf16")


@dataclass(frozen=True)
class KernelSpec:
    """One kernel at one data type: pointer element types by argument name, constexpr values; the rest i32."""

    name: str
    function: Callable
    pointers: dict[str, Any]
    constexprs: dict[str, Any]

    def signature(self) -> dict[str, Any]:
        import inspect

        names = inspect.signature(self.function).parameters
        return {name: "constexpr" if name in self.constexprs else self.pointers.get(name, "i32") for name in names}


def nvidia_backend_available() -> bool:
    """Triton with its NVIDIA backend (ptxas) is installed; no GPU needed."""
    return importlib.util.find_spec("triton") is not None and importlib.util.find_spec(
        "triton.backends.nvidia") is not None


def kernel_specs(dtype: str, candidates: int = 3) -> list[KernelSpec]:
    """Every Triton kernel of this package at one activation dtype, with representative constexprs."""
    from hwnas.kernels import masked_pointwise_triton as pw
    from hwnas.kernels import mixed_depthwise_triton as dw
    from hwnas.kernels import mixed_sum_triton as ms

    act, f32 = f"*{dtype}", "*fp32"
    outs = tuple([act] * candidates)
    upcast = False
    return [
        KernelSpec("mixed_sum.forward", ms._mixed_sum_fwd, {"outs": outs, "w_ptr": f32, "y_ptr": act},
                   {"K": candidates, "BLOCK": ms.BLOCK}),
        KernelSpec("mixed_sum.backward", ms._mixed_sum_bwd,
                   {"outs": outs, "grads": outs, "w_ptr": f32, "g_ptr": act, "partial_ptr": f32},
                   {"K": candidates, "GRAD_OUTS": (1 << candidates) - 2, "GRAD_W": True, "BLOCK": ms.BLOCK}),
        KernelSpec("mixed_depthwise.forward", dw._dw_fwd,
                   {"x_ptr": act, "w_ptr": f32, "dy_ptr": "*i32", "dx_ptr": "*i32", "y_ptr": act},
                   {"STRIDE": 2, "BLOCK_P": 256, "BLOCK_C": 4}),
        KernelSpec("mixed_depthwise.input_grad", dw._dw_bwd_input,
                   {"g_ptr": act, "w_ptr": f32, "dy_ptr": "*i32", "dx_ptr": "*i32", "gx_ptr": act},
                   {"STRIDE": 2, "BLOCK_P": 16, "BLOCK_C": 64}),
        KernelSpec("mixed_depthwise.tap_grad", dw._dw_bwd_taps,
                   {"x_ptr": act, "g_ptr": act, "dy_ptr": "*i32", "dx_ptr": "*i32", "partial_ptr": f32},
                   {"STRIDE": 1, "SPLIT": 4, "BLOCK_P": 256, "BLOCK_C": 4}),
        KernelSpec("masked_pointwise.forward", pw._pw_fwd,
                   {"x_ptr": act, "w_ptr": act, "m_ptr": act, "b_ptr": act, "y_ptr": act},
                   {"HAS_BIAS": True, "UPCAST": upcast, "BLOCK_O": pw.BLOCK_O, "BLOCK_I": pw.BLOCK_I,
                    "BLOCK_P": pw.BLOCK_P}),
        KernelSpec("masked_pointwise.input_grad", pw._pw_bwd_input,
                   {"g_ptr": act, "w_ptr": act, "m_ptr": act, "x_ptr": act, "gx_ptr": act, "partial_ptr": f32},
                   {"GRAD_X": True, "GRAD_M": True, "UPCAST": upcast, "BLOCK_O": pw.BLOCK_O, "BLOCK_I": pw.BLOCK_I,
                    "BLOCK_P": pw.BLOCK_P}),
        KernelSpec("masked_pointwise.weight_grad", pw._pw_bwd_weight,
                   {"g_ptr": act, "x_ptr": act, "m_ptr": act, "partial_ptr": f32},
                   {"SPLIT": 8, "UPCAST": upcast, "BLOCK_O": pw.BLOCK_O, "BLOCK_I": pw.BLOCK_I,
                    "BLOCK_P": pw.BLOCK_P}),
    ]


def compile_for_gpu(spec: KernelSpec, capability: int = 90, warp_size: int = 32) -> dict[str, Any]:
    """Compile one spec to PTX and cubin for `sm_<capability>`; returns sizes and launch metadata."""
    import triton
    from triton.backends.compiler import GPUTarget

    source = triton.compiler.ASTSource(fn=triton.jit(spec.function), signature=spec.signature(),
                                       constexprs=spec.constexprs)
    compiled = triton.compile(source, target=GPUTarget("cuda", capability, warp_size))
    return {"kernel": spec.name, "ptx_chars": len(compiled.asm["ptx"]), "cubin_bytes": len(compiled.asm["cubin"]),
            "shared_bytes": compiled.metadata.shared, "num_warps": compiled.metadata.num_warps}


def compile_all(dtypes: tuple[str, ...] = DTYPES, capability: int = 90) -> list[dict[str, Any]]:
    """Compile every kernel spec at every dtype; a failure is a row with its error, not an exception."""
    rows = []
    for dtype in dtypes:
        for spec in kernel_specs(dtype):
            try:
                rows.append({"dtype": dtype, **compile_for_gpu(spec, capability)})
            except Exception as error:  # report every kernel, not just the first that fails
                rows.append({"dtype": dtype, "kernel": spec.name, "error": f"{type(error).__name__}: {error}"})
    return rows


def main() -> None:
    """`python -m hwnas.kernels.gpu_compile [--capability 90] [DTYPE ...]`: JSON rows on stdout, exit 1 on errors.

    Run it in its own process: the Triton library must have been imported in compiled mode (no TRITON_INTERPRET).
    """
    import argparse
    import json
    import os

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("dtypes", nargs="*", default=list(DTYPES), choices=list(DTYPES))
    parser.add_argument("--capability", type=int, default=90)
    args = parser.parse_args()
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # silences Triton 3.9's default-change warning
    rows = compile_all(tuple(args.dtypes), args.capability)
    print(json.dumps(rows, indent=1))
    raise SystemExit(1 if any("error" in row for row in rows) else 0)


if __name__ == "__main__":
    main()
