"""Storage dtypes: float32, float16 and bfloat16, all computed in float32.

numba-dpex 0.23 cannot take float16 arrays as kernel arguments and dpnp has no bfloat16,
so 16-bit data travels as ``uint16`` arrays of raw bits and is converted in the kernel,
once per element staged into a tile (never once per use: the converting GEMM ran at half
the speed of the float32 one when it converted on every use).

* bfloat16 -> float32: the 16 bits are the top half of a float32.
* float32 -> bfloat16: round to nearest, ties to even (as ``ml_dtypes`` does); NaN stays NaN.
* float16 <-> float32: LLVM ``half`` conversions.
"""
from __future__ import annotations

from dataclasses import dataclass

import llvmlite.ir as llvmir
import numpy as np
from numba import types
from numba.extending import intrinsic
from numba_dpex.kernel_api_impl.spirv.target import SPIRV_TARGET_NAME

_I16, _I32, _F32, _F16 = (llvmir.IntType(16), llvmir.IntType(32), llvmir.FloatType(),
                          llvmir.HalfType())


# The conversions as IR (builder, value) -> value, for intrinsics that write IR
# (xetile._codegen.Emitter), then as numba intrinsics.

def bf16_bits_to_f32_ir(builder, bits):
    """float32 from bfloat16 bits (an integer holding them in its low 16 bits)."""
    word = builder.zext(builder.trunc(bits, _I16), _I32)
    return builder.bitcast(builder.shl(word, llvmir.Constant(_I32, 16)), _F32)


def f16_bits_to_f32_ir(builder, bits):
    """float32 from IEEE half bits."""
    return builder.fpext(builder.bitcast(builder.trunc(bits, _I16), _F16), _F32)


@intrinsic(target=SPIRV_TARGET_NAME)
def bf16_to_f32(typingctx, bits):
    """float32 from bfloat16 bits (any integer type holding them in its low 16 bits)."""
    def codegen(context, builder, sig, args):
        return bf16_bits_to_f32_ir(builder, args[0])
    return types.float32(bits), codegen


@intrinsic(target=SPIRV_TARGET_NAME)
def f32_to_bf16(typingctx, x):
    """bfloat16 bits (uint16) of float32 ``x``, rounded to nearest even."""
    def codegen(context, builder, sig, args):
        val = context.cast(builder, args[0], sig.args[0], types.float32)
        word = builder.bitcast(val, _I32)
        lsb = builder.and_(builder.lshr(word, llvmir.Constant(_I32, 16)),
                           llvmir.Constant(_I32, 1))
        rounded = builder.add(word, builder.add(lsb, llvmir.Constant(_I32, 0x7FFF)))
        top = builder.lshr(rounded, llvmir.Constant(_I32, 16))
        is_nan = builder.fcmp_unordered("uno", val, val)
        # a quiet NaN with the sign kept: rounding could carry a NaN into infinity
        nan = builder.or_(builder.lshr(word, llvmir.Constant(_I32, 16)),
                          llvmir.Constant(_I32, 0x0040))
        return builder.trunc(builder.select(is_nan, nan, top), _I16)
    return types.uint16(x), codegen


@intrinsic(target=SPIRV_TARGET_NAME)
def f16_to_f32(typingctx, bits):
    """float32 from IEEE half bits."""
    def codegen(context, builder, sig, args):
        return f16_bits_to_f32_ir(builder, args[0])
    return types.float32(bits), codegen


@intrinsic(target=SPIRV_TARGET_NAME)
def f32_to_f16(typingctx, x):
    """IEEE half bits (uint16) of float32 ``x`` (round to nearest even)."""
    def codegen(context, builder, sig, args):
        val = context.cast(builder, args[0], sig.args[0], types.float32)
        return builder.bitcast(builder.fptrunc(val, _F16), _I16)
    return types.uint16(x), codegen


@intrinsic(target=SPIRV_TARGET_NAME)
def f32_identity(typingctx, x):
    def codegen(context, builder, sig, args):
        return context.cast(builder, args[0], sig.args[0], types.float32)
    return types.float32(x), codegen


@dataclass(frozen=True)
class Storage:
    """How one dtype is stored in device arrays and converted to and from float32.

    ``device_dtype`` is the element type of the arrays a kernel receives; ``load`` turns
    one element into float32, ``store`` turns float32 into one element; ``load_ir`` is
    ``load`` as IR, ``(builder, element) -> float32`` (``None``: the element is float32).
    """
    name: str
    device_dtype: np.dtype
    load: object
    store: object
    load_ir: object = None


STORAGE = {
    "float32": Storage("float32", np.dtype(np.float32), f32_identity, f32_identity),
    "float16": Storage("float16", np.dtype(np.uint16), f16_to_f32, f32_to_f16,
                       f16_bits_to_f32_ir),
    "bfloat16": Storage("bfloat16", np.dtype(np.uint16), bf16_to_f32, f32_to_bf16,
                        bf16_bits_to_f32_ir),
}


def storage(name: str) -> Storage:
    """The :class:`Storage` of ``"float32"``, ``"float16"`` or ``"bfloat16"``."""
    try:
        return STORAGE[name]
    except KeyError:
        raise ValueError(f"dtype: expected one of {sorted(STORAGE)}, got {name!r}") from None


def host_bfloat16():
    """numpy's bfloat16 dtype (from ml_dtypes)."""
    import ml_dtypes

    return np.dtype(ml_dtypes.bfloat16)


def dtype_name(dtype) -> str:
    """``"float32"``, ``"float16"`` or ``"bfloat16"`` for a numpy dtype, else ValueError."""
    dt = np.dtype(dtype)
    if dt == np.float32:
        return "float32"
    if dt == np.float16:
        return "float16"
    if dt == host_bfloat16():
        return "bfloat16"
    raise ValueError(f"expected float32, float16 or bfloat16, got {dt}")


def reinterpret(a, dtype):
    """A dpnp array over the same device memory as contiguous dpnp/usm ``a``, read as
    ``dtype`` of the same item size (dpnp 0.15 has no ``ndarray.view``)."""
    import dpctl.tensor as dpt
    import dpnp

    usm = a.get_array() if isinstance(a, dpnp.ndarray) else a
    dt = np.dtype(dtype)
    if dt.itemsize != usm.dtype.itemsize or not usm.flags.c_contiguous:
        raise ValueError(f"reinterpret: need a contiguous array of {dt.itemsize}-byte "
                         f"items, got {usm.dtype} (contiguous={usm.flags.c_contiguous})")
    view = dpt.usm_ndarray(usm.shape, dtype=dt, buffer=usm.usm_data,
                           offset=usm._element_offset)
    return dpnp.ndarray._create_from_usm_ndarray(view)
