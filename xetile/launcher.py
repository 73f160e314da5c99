"""Launch a compiled kernel through dpctl's C interface, and keep its SPIR-V on disk.

``numba_dpex.call_kernel`` is a numba-compiled host function: every new argument
signature compiles it again (numba typing plus host LLVM, with the kernel's SPIR-V pasted
in as a constant), and every call types each argument again. Nothing of it survives the
process (numba-dpex 0.23 rejects ``cache=True``). This module takes the kernel's SPIR-V
from numba-dpex once and does the rest itself:

1. **Signature.** :func:`signature` is a cheap key of the arguments' kinds: an array's
   (dtype, ndim, layout), a ``LocalAccessor``'s (dtype, ndim), a scalar's numba type. A
   :class:`Flat` (a contiguous array passed as 1-D, with no dpnp view made) keys and
   flattens exactly as a 1-D C-contiguous array of its dtype.
2. **SPIR-V.** On the first launch of a (kernel, signature) in a process, the SPIR-V
   module comes from the disk cache (:func:`cache_dir`) if it holds it, else from
   numba-dpex's compiler, and is then stored there. The cache key covers the kernel's
   identity (the factory and its arguments, see :func:`xetile.kernel.factory`), the
   source of every module of the packages involved, and the versions of the compiler
   stack, so an edit or an upgrade never meets a stale binary. Only the newest
   ``CACHE_FILES`` files are kept.
3. **Build.** ``dpctl.program.create_program_from_spirv`` builds it for the queue's
   context (the CPU runtime's JIT, 0.3-0.5 s for the attention kernels), once per process.
4. **Submit.** The arguments are flattened exactly as numba-dpex's launcher flattens them
   (``numba_dpex/core/utils/kernel_flattened_args_builder.py``; the test
   ``tests/test_launcher.py`` runs one kernel both ways): an array becomes
   ``nitems, itemsize, data, shape..., strides...`` (byte strides; ``data`` is passed as
   the USM pointer itself, the others by address), a local accessor the same with a
   ``MDLocalAccessor`` descriptor in place of ``data``; the nd-range is
   reversed (numba-dpex's dimension 0 is OpenCL's x, SYCL's last). One call of
   ``DPCTLQueue_SubmitNDRange``, then a wait: launching a 10-argument kernel and
   waiting for it took 52 us, against 104 us through numba-dpex (median of 2000).

Set ``XETILE_CACHE_DIR`` to choose the cache directory; set it to an empty string to keep
no cache on disk.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import struct
import sys
import threading
import time
import types
from pathlib import Path

import numpy as np
from numba_dpex.kernel_api import LocalAccessor

CACHE_FORMAT = 1  # bump when the file layout or the flattening convention changes
CACHE_FILES = 1000  # the newest this many SPIR-V files are kept (~90 KB each)
IDENTITY_ATTR = "__xetile_identity__"  # set on a kernel by xetile.kernel.factory

# DPCTLKernelArgType (dpctl/include/syclinterface/dpctl_sycl_enum_types.h, dpctl 0.17)
_INT8, _UINT8, _INT16, _UINT16, _INT32, _UINT32, _INT64, _UINT64 = range(8)
_FLOAT32, _FLOAT64, _VOID_PTR, _LOCAL_ACCESSOR = 8, 9, 10, 11

# numba's type of a scalar argument -> (DPCTLKernelArgType, struct format of its slot)
_SCALARS = {
    bool: (_UINT8, "B"), np.bool_: (_UINT8, "B"),
    int: (_INT64, "q"), np.int64: (_INT64, "q"), np.int32: (_INT32, "i"),
    np.uint64: (_UINT64, "Q"), np.uint32: (_UINT32, "I"),
    float: (_FLOAT64, "d"), np.float64: (_FLOAT64, "d"), np.float32: (_FLOAT32, "f"),
}


class MDLocalAccessor(ctypes.Structure):
    """dpctl's ``MDLocalAccessor``: what ``DPCTLQueue_SubmitNDRange`` needs to make a
    ``sycl::local_accessor`` (dpctl_sycl_queue_interface.h)."""
    _fields_ = [("ndim", ctypes.c_size_t), ("dpctl_type_id", ctypes.c_int),
                ("dim0", ctypes.c_size_t), ("dim1", ctypes.c_size_t),
                ("dim2", ctypes.c_size_t)]


_ELEMENT_TYPE_IDS = {np.dtype(np.float32): _FLOAT32, np.dtype(np.float64): _FLOAT64,
                     np.dtype(np.int32): _INT32, np.dtype(np.int64): _INT64,
                     np.dtype(np.uint32): _UINT32, np.dtype(np.uint64): _UINT64,
                     np.dtype(np.int16): _INT16, np.dtype(np.uint16): _UINT16,
                     np.dtype(np.int8): _INT8, np.dtype(np.uint8): _UINT8}


class Flat:
    """A C-contiguous device array handed to a kernel as 1-D: ``size`` elements of
    ``dtype`` from element ``offset`` on, with no dpnp view made.

    dpnp's ``reshape`` and slicing cost 10-50 us each (``reshape(-1)`` of a 4-D array:
    47 us, median of 2000), and a small decode call made about a dozen of them for its
    inputs, tables and scratch. ``dtype`` may differ from the array's if the item size is
    the same (float16 bits read as uint16). The kernel sees exactly what a 1-D
    C-contiguous dpnp array of ``dtype`` would give it (same signature, same slots).
    """
    __slots__ = ("array", "dtype", "size", "offset", "pointer", "sycl_queue")

    def __init__(self, array, dtype=None, offset: int = 0, size: int | None = None):
        usm = array.get_array() if hasattr(array, "get_array") else array
        if not usm.flags.c_contiguous:
            raise ValueError("xetile.launcher.Flat: expected a C-contiguous array, got "
                             f"strides {usm.strides}")
        self.dtype = np.dtype(dtype if dtype is not None else usm.dtype)
        if self.dtype.itemsize != usm.itemsize:
            raise ValueError(f"xetile.launcher.Flat: dtype {self.dtype} has another item "
                             f"size than the array's {usm.dtype}")
        self.size = usm.size - offset if size is None else size
        if offset < 0 or self.size < 0 or offset + self.size > usm.size:
            raise ValueError(f"xetile.launcher.Flat: elements [{offset}, "
                             f"{offset + self.size}) are not inside an array of {usm.size}")
        self.array, self.offset = array, offset
        self.pointer = usm._pointer + offset * usm.itemsize  # noqa: SLF001
        self.sycl_queue = usm.sycl_queue

    def typing_stand_in(self):
        """A 1-D dpnp array of the same dtype and queue, for numba to type."""
        import dpnp

        return dpnp.empty(1, dtype=self.dtype, sycl_queue=self.sycl_queue)


def _layout(array) -> str:
    flags = array.flags
    return "C" if flags.c_contiguous else "F" if flags.f_contiguous else "A"


def signature(args) -> tuple:
    """A key of what a kernel is compiled for: one entry per argument.

    >>> signature((3, 2.0, np.float32(1)))
    (('s', <class 'int'>), ('s', <class 'float'>), ('s', <class 'numpy.float32'>))
    """
    key = []
    for arg in args:
        kind = type(arg)
        if kind in _SCALARS:
            key.append(("s", kind))
        elif kind is LocalAccessor:
            key.append(("l", np.dtype(arg._dtype), len(arg._shape)))  # noqa: SLF001
        elif kind is Flat:
            key.append(("a", arg.dtype, 1, "C"))
        elif hasattr(arg, "sycl_queue") and hasattr(arg, "strides"):
            key.append(("a", arg.dtype, arg.ndim, _layout(arg)))
        else:
            raise TypeError(f"xetile.launch: cannot pass a {kind.__name__} to a kernel "
                            "(expected a dpnp array, a LocalAccessor or a scalar)")
    return tuple(key)


# -- the compiled form of one (kernel, signature) ---------------------------------------

class _Launchable:
    """A built kernel and how to flatten arguments of one signature for it."""

    def __init__(self, sycl_kernel, sig):
        self.sycl_kernel = sycl_kernel  # dpctl.program.SyclKernel (keeps the program alive)
        self.kernel_ref = sycl_kernel.addressof_ref()
        type_ids, formats = [], []
        for entry in sig:
            if entry[0] == "s":
                type_id, fmt = _SCALARS[entry[1]]
                type_ids.append(type_id)
                formats.append(fmt + "x" * (8 - struct.calcsize(fmt)))
            else:  # an array or a local accessor: nitems, itemsize, data, shape, strides
                nd = entry[2]
                data = _VOID_PTR if entry[0] == "a" else _LOCAL_ACCESSOR
                type_ids += [_INT64, _INT64, data] + [_INT64] * (2 * nd)
                formats += ["q", "q", "Q"] + ["q"] * (2 * nd)
        self.count = len(type_ids)
        self.arg_types = (ctypes.c_int * self.count)(*type_ids)
        self.slots_format = "<" + "".join(formats)
        # a USM pointer or a local-accessor descriptor is passed as the pointer itself;
        # every other argument as a pointer to its value
        self.pointer_slots = [i for i, t in enumerate(type_ids) if t == _VOID_PTR]
        self.local_slots = [i for i, t in enumerate(type_ids) if t == _LOCAL_ACCESSOR]


def _flatten(args):
    """The slot values of ``args`` and the local-accessor descriptors they need."""
    values, descriptors = [], []
    for arg in args:
        if type(arg) in _SCALARS:
            values.append(int(arg) if type(arg) is np.bool_ else arg)
        elif type(arg) is LocalAccessor:
            shape, dtype = arg._shape, np.dtype(arg._dtype)  # noqa: SLF001
            dims = list(shape) + [1] * (3 - len(shape))
            descriptors.append(MDLocalAccessor(len(shape), _ELEMENT_TYPE_IDS[dtype], *dims))
            values += [int(np.prod(shape)), dtype.itemsize, 0, *shape]
            values += [dtype.itemsize] * len(shape)  # what numba-dpex passes as strides
        elif type(arg) is Flat:
            itemsize = arg.dtype.itemsize
            values += [arg.size, itemsize, arg.pointer, arg.size, itemsize]
        else:
            usm = arg.get_array() if hasattr(arg, "get_array") else arg
            itemsize = arg.itemsize
            values += [arg.size, itemsize, usm._pointer, *arg.shape]  # noqa: SLF001
            values += [s * itemsize for s in usm.strides]  # dpctl counts in elements
    return values, descriptors


# -- dpctl's C interface ----------------------------------------------------------------

_lib = None


def _dpctl_lib():
    global _lib
    if _lib is None:
        import dpctl  # noqa: F401  (loads libDPCTLSyclInterface; ctypes then finds it by name)

        lib = ctypes.CDLL("libDPCTLSyclInterface.so.0")
        lib.DPCTLQueue_SubmitNDRange.restype = ctypes.c_void_p
        lib.DPCTLQueue_SubmitNDRange.argtypes = [
            ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p),
            ctypes.POINTER(ctypes.c_int), ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t),
            ctypes.POINTER(ctypes.c_size_t), ctypes.c_size_t, ctypes.c_void_p,
            ctypes.c_size_t]
        lib.DPCTLEvent_Wait.argtypes = [ctypes.c_void_p]
        lib.DPCTLEvent_Delete.argtypes = [ctypes.c_void_p]
        _lib = lib
    return _lib


def submit(launchable: _Launchable, queue, global_size, local_size, args) -> None:
    """Submit one launch and wait for it."""
    values, descriptors = _flatten(args)
    slots = (ctypes.c_uint64 * max(launchable.count, 1))()
    struct.pack_into(launchable.slots_format, slots, 0, *values)
    base = ctypes.addressof(slots)
    pointers = (ctypes.c_void_p * max(launchable.count, 1))(
        *[base + 8 * i for i in range(launchable.count)])
    for slot in launchable.pointer_slots:
        pointers[slot] = values[slot]
    for slot, descriptor in zip(launchable.local_slots, descriptors):
        pointers[slot] = ctypes.addressof(descriptor)
    ndim = len(global_size)
    reversed_global = list(reversed(global_size)) + [1] * (3 - ndim)
    reversed_local = list(reversed(local_size)) + [1] * (3 - ndim)
    lib = _dpctl_lib()
    event = lib.DPCTLQueue_SubmitNDRange(
        launchable.kernel_ref, queue.addressof_ref(), pointers, launchable.arg_types,
        launchable.count, (ctypes.c_size_t * 3)(*reversed_global),
        (ctypes.c_size_t * 3)(*reversed_local), ndim, None, 0)
    if not event:
        raise RuntimeError("xetile.launch: the SYCL runtime refused the kernel submission "
                           f"(global {tuple(global_size)}, local {tuple(local_size)})")
    lib.DPCTLEvent_Wait(event)
    lib.DPCTLEvent_Delete(event)


# -- SPIR-V: from the disk cache or from numba-dpex -------------------------------------

def cache_dir() -> Path | None:
    """Where SPIR-V modules are kept: ``$XETILE_CACHE_DIR`` (empty: nowhere), else
    ``$XDG_CACHE_HOME/xetile``, else ``~/.cache/xetile``."""
    chosen = os.environ.get("XETILE_CACHE_DIR")
    if chosen is not None:
        return Path(chosen) if chosen else None
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "xetile"


_source_hashes: dict = {}
# Source files changed after this (xetile is imported before any kernel module) may not
# be the code this process runs: their kernels are not kept on disk (see _source_hash).
_IMPORTED_AT = time.time()


def _source_of(module_name: str) -> tuple | None:
    """The source files a module's kernels may depend on: every ``.py`` file of its
    top-level package, or the module's own file if it is not in a package."""
    path = getattr(sys.modules.get(module_name), "__file__", None)
    if path is None:
        return None
    path = Path(path).resolve()
    if not (path.parent / "__init__.py").exists():
        return (path,)
    root = path.parent
    while (root.parent / "__init__.py").exists():
        root = root.parent
    return tuple(sorted(root.rglob("*.py")))


def _source_hash(module_name: str) -> str | None:
    """A hash of :func:`_source_of` ``module_name`` (once per process and module), or
    ``None`` if a file changed after this process imported xetile: the process may then
    run the code from before the change, and keeping its SPIR-V under the new files'
    hash would hand that stale code to the next process."""
    if module_name not in _source_hashes:
        files = _source_of(module_name)
        digest = None
        if files is not None and all(p.stat().st_mtime <= _IMPORTED_AT for p in files):
            hasher = hashlib.sha256()
            for path in files:
                hasher.update(path.name.encode() + b"\0" + path.read_bytes())
            digest = hasher.hexdigest()
        _source_hashes[module_name] = digest
    return _source_hashes[module_name]


def _stack_versions() -> tuple:
    import dpctl
    import llvmlite
    import numba
    import numba_dpex
    return (numba.__version__, numba_dpex.__version__, llvmlite.__version__,
            dpctl.__version__)


def identity(kern):
    """What names ``kern`` across processes, or ``None`` if nothing does: a kernel made
    by a factory carries the factory's name and arguments; a kernel with no closure is
    named by its function. (A kernel built in a closure by hand is compiled each process.)
    """
    tag = getattr(kern, IDENTITY_ATTR, None)
    if tag is not None:
        return tag
    fn = kern.py_func
    return None if fn.__closure__ else (fn.__module__, fn.__qualname__)


def cache_key(kern, sig, ndim) -> str | None:
    """The file name of ``kern``'s SPIR-V for ``sig``, or ``None`` if not cacheable."""
    name = identity(kern)
    if name is None:
        return None
    sources = (_source_hash(__name__), _source_hash(kern.py_func.__module__))
    if None in sources:
        return None
    text = repr((CACHE_FORMAT, name, sig, ndim, sources, _stack_versions()))
    if " at 0x" in text:  # an argument without a stable text: no identity across runs
        return None
    return hashlib.sha256(text.encode()).hexdigest()


def compile_spirv(kern, args, ndim) -> tuple[bytes, str]:
    """Compile ``kern`` for ``args`` with numba-dpex: (SPIR-V module, kernel name)."""
    from numba import typeof
    from numba.core import types as numba_types
    from numba.core.registry import cpu_target
    from numba_dpex.core.types.kernel_api.index_space_ids import NdItemType

    # Refreshing numba's CPU context registers numba's own lowering (tuple casts and
    # more), which the kernel target's lowering also looks up. numba_dpex.call_kernel does
    # it on its way to the kernel (it is itself a CPU function); without it a kernel
    # compiled first fails to lower ``out[i, 0]`` ("Cannot cast Tuple(int64,
    # Literal[int](0)) to UniTuple(int64 x 2)"), seen with numba 0.59.
    cpu_target.target_context.refresh()
    args = [arg.typing_stand_in() if type(arg) is Flat else arg for arg in args]
    signature = numba_types.void(NdItemType(ndim), *map(typeof, args))
    result = _in_a_roomy_frame(kern.get_compile_result, signature)
    module = result.kernel_device_ir_module
    return module.kernel_bitcode, module.kernel_name


# CPython 3.11 keeps Python frames in 16 KiB "data stack" chunks and frees a chunk as soon
# as the frame at its base returns. numba's type inference recurses deeply and calls small
# Python functions (``Type.__eq__`` ...) in hot loops; when such a call sits exactly on a
# chunk boundary every call maps and unmaps a chunk. Seen compiling the prefill kernel:
# 472 000 mmap/munmap pairs of 16 KiB, 3.7 s of system time, a first call of 6.5 s instead
# of 3.1 s. A frame that needs more than a chunk gets one of its own, rounded up to a
# power of two, and the calls made from it run in the rest of that chunk: a frame of
# 1 MiB (declared, never used, evaluation stack) leaves ~1 MiB for the whole compilation,
# with no boundary to thrash on.
def _call(fn, *args):
    return fn(*args)


_in_a_roomy_frame = types.FunctionType(
    _call.__code__.replace(co_stacksize=1 << 17), globals(), "_in_a_roomy_frame")


def _read(path: Path):
    try:
        blob = path.read_bytes()
    except OSError:
        return None
    name, sep, spirv = blob.partition(b"\n")
    return (spirv, name.decode()) if sep and spirv else None


def _write(path: Path, spirv: bytes, name: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_bytes(name.encode() + b"\n" + spirv)
        os.replace(partial, path)  # readers see the whole file or none
        _prune(path.parent)
    except OSError:
        pass  # a read-only or full disk only costs the next process a compile


def _prune(directory: Path, keep: int = CACHE_FILES) -> None:
    """Delete all but the ``keep`` newest ``.spv`` files (every edit of the sources
    makes new ones; nothing else ever deletes the old)."""
    files = list(directory.glob("*.spv"))
    if len(files) > keep:
        files.sort(key=lambda f: f.stat().st_mtime, reverse=True)
        for stale in files[keep:]:
            stale.unlink(missing_ok=True)


def cache_path(kern, sig, ndim) -> Path | None:
    """The file that holds ``kern``'s SPIR-V for ``sig``, or ``None`` (no cache)."""
    directory, key = cache_dir(), cache_key(kern, sig, ndim)
    return directory / f"{key}.spv" if directory is not None and key else None


def build(kern, args, ndim, sig, queue):
    """``kern`` built for ``sig`` in ``queue``'s context, its SPIR-V from the disk cache
    if there (a file that does not build is replaced), else compiled and kept."""
    import dpctl.program

    path = cache_path(kern, sig, ndim)
    cached = _read(path) if path is not None else None
    if cached is not None:
        try:
            program = dpctl.program.create_program_from_spirv(queue, cached[0])
            return program.get_sycl_kernel(cached[1])
        except Exception:  # noqa: BLE001  (a damaged file: compile again, below)
            pass
    spirv, name = compile_spirv(kern, args, ndim)
    program = dpctl.program.create_program_from_spirv(queue, spirv)
    if path is not None:
        _write(path, spirv, name)
    return program.get_sycl_kernel(name)


# -- the launch -------------------------------------------------------------------------

_built: dict = {}
_lock = threading.Lock()


def _queue_of(args):
    """The queue of the array arguments (all must share it, as numba-dpex demands)."""
    queues = [arg.sycl_queue for arg in args if hasattr(arg, "sycl_queue")]
    if not queues:
        raise TypeError("xetile.launch: a kernel needs at least one dpnp array argument")
    for i, queue in enumerate(queues[1:], 1):
        if queue != queues[0]:
            raise ValueError(f"xetile.launch: array argument {i} lives on another SYCL "
                             f"queue than the first ({queue} vs {queues[0]}); copy it "
                             "with dpnp.asarray(x, sycl_queue=...)")
    return queues[0]


def _check_range(global_size, local_size) -> None:
    if not 1 <= len(global_size) <= 3 or len(local_size) != len(global_size):
        raise ValueError(f"xetile.launch: expected global and local sizes of one length "
                         f"(1 to 3), got {global_size} and {local_size}")
    if any(l < 1 or g % l for g, l in zip(global_size, local_size)):
        raise ValueError(f"xetile.launch: each global size must be a multiple of its "
                         f"local size, got {global_size} and {local_size}")


def launch(kern, global_size, local_size, args) -> None:
    """Run ``kern(item, *args)`` over ``NdRange(global_size, local_size)``; wait."""
    _check_range(global_size, local_size)
    sig = signature(args)
    queue = _queue_of(args)
    ndim = len(global_size)
    key = (kern, sig, ndim, queue.sycl_context)
    launchable = _built.get(key)
    if launchable is None:
        with _lock:
            launchable = _built.get(key)
            if launchable is None:
                launchable = _built[key] = _Launchable(
                    build(kern, args, ndim, sig, queue), sig)
    submit(launchable, queue, global_size, local_size, args)
