"""Every block size of the attention kernel, in one frozen configuration.

One kernel is compiled per :class:`FmhaConfig` (memoised, once per process).
"""
from __future__ import annotations

from dataclasses import dataclass

from xetile.dtypes import STORAGE

# The CPU runtime maps one sub-group to one AVX-512 register of 16 float lanes.
SUB_GROUP_SIZE = 16
MAX_HEAD_DIM = 256
# Local memory the kernel may use per work-group. The device reports 32 KiB but does not
# enforce it; D=256 needs 48 KiB (three 16 KiB tiles), which ran correctly here.
LOCAL_MEMORY_BUDGET = 48 * 1024


@dataclass(frozen=True)
class FmhaConfig:
    """Compile-time choices of one attention kernel.

    Attributes
    ----------
    head_dim : int
        D, 1..256.
    dtype : {"float32", "float16", "bfloat16"}
        Storage of q, k, v, caches and out (compute is float32).
    block_m : int
        Rows (query, head) pairs per work-group = lanes of its one sub-group.
    block_n : int
        Keys per KV tile = scores per lane held in registers.
    """
    head_dim: int
    dtype: str = "float32"
    block_m: int = SUB_GROUP_SIZE
    block_n: int = 16

    @classmethod
    def default(cls, head_dim: int, dtype: str = "float32") -> "FmhaConfig":
        return cls(head_dim=head_dim, dtype=dtype)

    @property
    def tile_width(self) -> int:
        """D rounded up to a multiple of the lane count (tiles are zero-padded)."""
        return -(-self.head_dim // self.block_m) * self.block_m

    @property
    def local_memory_bytes(self) -> int:
        """Q tile + output accumulator (lane tiles) + one K/V row tile, float32."""
        return 4 * self.tile_width * (2 * self.block_m + self.block_n)

    def can_implement(self) -> None:
        """Raise ``ValueError`` if this configuration cannot be compiled."""
        if not 1 <= self.head_dim <= MAX_HEAD_DIM:
            raise ValueError(f"head_dim: expected 1..{MAX_HEAD_DIM}, got {self.head_dim}")
        if self.dtype not in STORAGE:
            raise ValueError(f"dtype: expected one of {sorted(STORAGE)}, got {self.dtype!r}")
        if self.block_m != SUB_GROUP_SIZE:
            raise ValueError(f"block_m: expected {SUB_GROUP_SIZE} (one row per lane), "
                             f"got {self.block_m}")
        if self.local_memory_bytes > LOCAL_MEMORY_BUDGET:
            raise ValueError(f"local memory: {self.local_memory_bytes} bytes needed, "
                             f"budget {LOCAL_MEMORY_BUDGET}")
