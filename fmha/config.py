"""Every block size of the attention kernel, in one frozen configuration.

One kernel is compiled per :class:`FmhaConfig` (memoised, once per process).
"""
from __future__ import annotations

from dataclasses import dataclass

from xetile.dtypes import STORAGE

# The CPU runtime maps one sub-group to one AVX-512 register of 16 float lanes; 8 lanes
# (one AVX2 register) are what prefill falls back to only if 16 cannot fit.
SUB_GROUP_SIZES = (16, 8)
BLOCK_N_CHOICES = (16, 8)
# A work-group owns up to four tiles of block_m rows, which share every staged K/V tile
# and every value loaded from it (fmha.kernel.tile_step). The staging copy then costs a
# quarter as much per row, and each K/V value loaded feeds four FMAs. Measured on the
# seed shape, non-causal (Intel Xeon, 2 cores, alternated fresh processes, best of 10):
# two row tiles taking turns (a load per FMA) 307 ms; two sharing the loads 237-251;
# four 190-207.
# Eight row tiles (128 rows) halve again how often each K/V tile is staged, which costs
# most with float32 storage (twice the bytes of 16-bit tiles; NHD rows 4 KiB apart come
# from L3), against more traffic in the Q and output tiles. Measured (Intel Xeon with
# AMX, session 8, best of 8, eight against four, alternated fresh processes, two
# rounds): fp32 seed shape 126.5-128.8 ms against 133.3-135.0, non-causal 123.5-123.7
# against 130.1-132.9, varlen seed 72.6-73.7 against 75.3-75.5, HND pool 123.2-125.9
# against 124.7; 16-bit storage lost 1-4% (bf16 116.1-116.8 against 114.3-116.5, fp16
# HND 115.4-115.6 against 112.9-113.8, bf16 varlen 66.7-66.8 against 63.7-64.6).
ROW_TILES_CHOICES = (8, 4, 2, 1)
MAX_ROW_TILES_16_BIT = 4
MAX_HEAD_DIM = 256
# Local memory per work-group, as the device reports it. Launched through numba-dpex, a
# kernel over it silently computed garbage (seen with D=192 at 36 KiB); xetile's
# launcher gets the submission refused. Either way it is checked before compiling.
LOCAL_MEMORY_BUDGET = 32 * 1024


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
        Rows (query, head) pairs per row tile = lanes of the work-group's one sub-group.
    block_n : int
        Keys per KV tile = scores per lane held in registers.
    row_tiles : int
        Row tiles per work-group; they take turns on each staged K/V tile.
    """
    head_dim: int
    dtype: str = "float32"
    block_m: int = SUB_GROUP_SIZES[0]
    block_n: int = BLOCK_N_CHOICES[0]
    row_tiles: int = 1

    @classmethod
    def default(cls, head_dim: int, dtype: str = "float32",
                rows_per_kv_head: int = 1 << 30) -> "FmhaConfig":
        """The largest tiles whose local memory fits the budget.

        ``block_n`` (keys per tile) is chosen first and from ``head_dim`` alone: it sets
        the order of every sum, so a row's result must not depend on anything else
        (batch invariance). Then 16 lanes before 8, and as many row tiles as the rows
        (``Sq * Hq / Hkv`` per KV head) fill, up to eight for float32 storage and four
        for 16-bit: neither changes any row's arithmetic.
        """
        most_tiles = ROW_TILES_CHOICES[0] if dtype == "float32" else MAX_ROW_TILES_16_BIT
        for block_n in BLOCK_N_CHOICES:
            if cls(head_dim, dtype, SUB_GROUP_SIZES[0], block_n).local_memory_bytes \
                    > LOCAL_MEMORY_BUDGET:
                continue
            for block_m in SUB_GROUP_SIZES:
                for row_tiles in ROW_TILES_CHOICES:
                    if row_tiles > most_tiles:
                        continue
                    if row_tiles > 1 and rows_per_kv_head <= (row_tiles // 2) * block_m:
                        continue
                    config = cls(head_dim, dtype, block_m, block_n, row_tiles)
                    if config.local_memory_bytes <= LOCAL_MEMORY_BUDGET:
                        return config
        return cls(head_dim, dtype)  # too large: can_implement() says why

    @property
    def tile_width(self) -> int:
        """D rounded up to a multiple of the lane count (tiles are zero-padded)."""
        return -(-self.head_dim // self.block_m) * self.block_m

    @property
    def rows_per_group(self) -> int:
        return self.block_m * self.row_tiles

    @property
    def local_memory_bytes(self) -> int:
        """A K and a V row tile, float32. (The Q and output lane tiles live in a global
        workspace: four row tiles of them would not fit beside the K/V tiles.)"""
        return 4 * self.tile_width * 2 * self.block_n

    def can_implement(self) -> None:
        """Raise ``ValueError`` if this configuration cannot be compiled."""
        if not 1 <= self.head_dim <= MAX_HEAD_DIM:
            raise ValueError(f"head_dim: expected 1..{MAX_HEAD_DIM}, got {self.head_dim}")
        if self.dtype not in STORAGE:
            raise ValueError(f"dtype: expected one of {sorted(STORAGE)}, got {self.dtype!r}")
        if self.block_m not in SUB_GROUP_SIZES:
            raise ValueError(f"block_m: expected one of {SUB_GROUP_SIZES} (one row per "
                             f"lane of a sub-group), got {self.block_m}")
        if self.row_tiles not in ROW_TILES_CHOICES:
            raise ValueError(f"row_tiles: expected one of {ROW_TILES_CHOICES}, "
                             f"got {self.row_tiles}")
        if self.block_n not in BLOCK_N_CHOICES:
            raise ValueError(f"block_n: expected one of {BLOCK_N_CHOICES}, got {self.block_n}")
        if self.local_memory_bytes > LOCAL_MEMORY_BUDGET:
            raise ValueError(f"local memory: {self.local_memory_bytes} bytes needed, "
                             f"budget {LOCAL_MEMORY_BUDGET}")
