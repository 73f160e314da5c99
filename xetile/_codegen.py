"""Unrolled device functions: from small source templates, or written as LLVM IR.

numba-dpex keeps a ``PrivateArray`` indexed by a loop variable in memory (the CPU runtime
compiles it to gathers and scatters), so a register tile has to be a set of *named*
scalars: ``s0 .. s15``. numba has no unroll pragma, so the functions that work on a
register tile are unrolled here for the tile size in use, in one of two ways:

* :func:`device_function`: a template expanded to Python source, which numba compiles
  like any device function (the source is kept on it, ``__xetile_source__``);
* :class:`Emitter`: an ``@intrinsic`` whose ``codegen`` writes the unrolled IR itself.
  numba then neither types nor lowers it statement by statement, which for the register
  loops of :mod:`xetile.mma` and :mod:`xetile.rowstats` had cost 0.85 s of each first
  call of the prefill kernel and 0.4 s of decode's (``docs/design.md`` section 8). Each
  such function's docstring shows its loop in Python.
"""
from __future__ import annotations

import contextlib
import dataclasses

import llvmlite.ir as llvmir
import numba_dpex as dpex
from numba import types
from numba.core import cgutils

from xetile import fastmath, subgroup


def names(prefix: str, n: int) -> str:
    """``"s0, s1, s2"`` for ``names("s", 3)``."""
    return ", ".join(f"{prefix}{i}" for i in range(n))


def device_function(source: str, name: str, namespace: dict):
    """Compile ``source`` (which defines ``name``) and return it as a device function."""
    scope = dict(namespace)
    exec(compile(source, f"<xetile generated {name}>", "exec"), scope)  # noqa: S102
    fn = scope[name]
    fn.__xetile_source__ = source
    return dpex.device_func(fn)


class Emitter:
    """Write LLVM IR for an ``@intrinsic`` almost as its Python template would read.

    numba types and lowers a generated device function statement by statement: for the
    register loops of :mod:`xetile.mma` (a few hundred statements) that cost more than
    half a second per configuration, on every first call. An intrinsic skips numba's
    front end: its ``codegen`` writes the IR directly, and the kernel's LLVM pipeline
    then optimises it with the rest (``var`` cells become registers). This class keeps
    such a ``codegen`` short: values are uint64 offsets and float32 numbers, arrays are
    argument positions (``Arg(i)``).

    ``context``, ``builder``, ``sig`` and ``args`` are the ``codegen``'s own.
    """

    def __init__(self, context, builder, sig, args):
        self.context, self.builder, self.sig, self.args = context, builder, sig, args
        # every array argument's data pointer, taken here, where the call starts: one
        # taken inside a loop would not dominate a use after it
        self._data = {i: context.make_array(ty)(context, builder, args[i]).data
                      for i, ty in enumerate(sig.args) if isinstance(ty, types.Array)}

    # -- arguments and constants

    def u64(self, value, *path):
        """A uint64 constant (``int``), or an argument (``Arg(i)``) as uint64; with
        ``path`` an element of a (nested) tuple argument, e.g. ``u64(Arg(3), j)``."""
        return self._scalar(value, path, types.uint64)

    def i64(self, value, *path):
        """As :meth:`u64`, int64 (for signed comparisons)."""
        return self._scalar(value, path, types.int64)

    def f32(self, value, *path):
        """A float32 constant (``float``), or an argument (``Arg(i)``) as float32; with
        ``path`` an element of a (nested) tuple argument, e.g. ``f32(Arg(0), t, j)``."""
        return self._scalar(value, path, types.float32)

    def _scalar(self, value, path, to):
        if not isinstance(value, Arg):
            return llvmir.Constant(self.context.get_value_type(to), value)
        arg, ty = self.args[value.position], self.sig.args[value.position]
        for index in path:
            arg, ty = self.builder.extract_value(arg, index), ty[index]
        return self.context.cast(self.builder, arg, ty, to)

    # -- memory

    def load(self, array: "Arg", at, convert=None):
        """``float32(array[at])`` (``at`` a uint64 value); ``convert`` turns the element
        into float32 instead of a numeric cast (``xetile.dtypes.Storage.load_ir``)."""
        pointer, dtype = self._pointer(array, at)
        element = self.builder.load(pointer)
        if convert is not None:
            return convert(self.builder, element)
        return self.context.cast(self.builder, element, dtype, types.float32)

    def load_if(self, condition, array: "Arg", at, convert=None):
        """``load(array, at, convert) if condition else 0.0``; nothing is read when the
        condition is false."""
        before = self.builder.basic_block
        with self.builder.if_then(condition):
            value = self.load(array, at, convert)
            loaded = self.builder.basic_block
        result = self.builder.phi(llvmir.FloatType())
        result.add_incoming(value, loaded)
        result.add_incoming(self.f32(0.0), before)
        return result

    def store(self, array: "Arg", at, value):
        """``array[at] = value`` (a float32 value)."""
        pointer, dtype = self._pointer(array, at)
        self.builder.store(self.context.cast(self.builder, value, types.float32, dtype),
                           pointer)

    def _pointer(self, array: "Arg", at):
        return (self.builder.gep(self._data[array.position], [at]),
                self.sig.args[array.position].dtype)

    # -- arithmetic: add, sub, mul, and_ (integers), fadd, fsub, fmul (float32) and
    # select are the builder's own instructions; comparisons give an i1 for select and
    # load_if

    _INSTRUCTIONS = frozenset(("add", "sub", "mul", "and_", "fadd", "fsub", "fmul", "select"))

    def __getattr__(self, name):
        if name in Emitter._INSTRUCTIONS:
            return getattr(self.builder, name)
        raise AttributeError(f"Emitter has no {name!r}")

    def ne(self, x, y):
        return self.builder.icmp_unsigned("!=", x, y)

    def ult(self, x, y):
        return self.builder.icmp_unsigned("<", x, y)

    def sle(self, x, y):
        return self.builder.icmp_signed("<=", x, y)

    def smin(self, x, y):
        return self.builder.select(self.builder.icmp_signed("<", x, y), x, y)

    # -- float32 functions

    def fma(self, a, b, c):
        """``a * b + c`` with one rounding (as :func:`xetile.fastmath.fma`)."""
        return fastmath.fma_ir(self.builder, a, b, c)

    def exp2(self, x):
        """``2 ** x`` (the OpenCL built-in, as :func:`xetile.fastmath.exp2`)."""
        return fastmath.call_unary(self.builder, fastmath.EXP2, x)

    def max(self, m, x):
        """``max(m, x)`` as Python (and numba) computes it: ``x if x > m else m``."""
        return self.builder.select(self.builder.fcmp_ordered(">", x, m), x, m)

    def shuffle_xor(self, x, mask: int):
        """float32 ``x`` of lane ``lane ^ mask`` (:func:`xetile.subgroup.shuffle_xor`)."""
        return subgroup.shuffle_xor_ir(self.builder, x, mask)

    # -- mutable cells, loops, results

    def var(self, value):
        """A mutable cell holding ``value`` (read with ``get``, written with ``set``)."""
        return cgutils.alloca_once_value(self.builder, value)

    def get(self, cell):
        return self.builder.load(cell)

    def set(self, cell, value):
        self.builder.store(value, cell)

    @contextlib.contextmanager
    def loop(self, count):
        """``for i in range(count)``: the body runs with the index ``i`` (uint64)."""
        with cgutils.for_range(self.builder, count) as loop:
            yield loop.index

    def float_tuple(self, values):
        """The value of a tuple of float32 values."""
        return self.context.make_tuple(
            self.builder, types.UniTuple(types.float32, len(values)), values)

    def float_tuples(self, rows):
        """The value of a tuple of float32 tuples (the intrinsic's result)."""
        return self.context.make_tuple(self.builder, self.sig.return_type,
                                       [self.float_tuple(row) for row in rows])


@dataclasses.dataclass(frozen=True)
class Arg:
    """The intrinsic's argument at ``position`` (for :class:`Emitter`)."""
    position: int
