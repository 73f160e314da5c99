"""fmha.attention: prefill, KV cache (contiguous and paged), varlen, GQA, decode.

Shapes are sized for 2 CPU cores: at ~0.1-0.2 TFLOP/s a prefill call takes 10-200 ms and
a decode call reads 67 MB of K/V. asv runs each parameter combination of each method in
a process of its own, which pays the import (0.7-1 s) and the kernel build (0.3-1.2 s
from the SPIR-V cache of an earlier process, 3-4 s when compiled) again,
so the grid is kept to about two dozen combinations to keep the whole suite near
10 minutes. Prefill families track TFLOP/s (causal: only visible pairs counted),
decode tracks GB/s of K/V read.
"""
from __future__ import annotations

from fmha.runner import RunConfig

from .common import _AttentionBench, _TracksGbps, _TracksTflops

# The example the sycl-tla FMHA runner is usually shown with (also `python -m fmha ...`
# in docs/benchmarks.md); bf16 because that is the runner's default dtype.
SEED_EXAMPLE = RunConfig(batch=2, num_heads_q=32, num_heads_kv=8, seq_len_qo=1024,
                         seq_len_kv=1024, seq_len_kv_cache=512, use_paged_kv=True,
                         page_size=128, varlen=True, is_causal=True, head_dim=128,
                         dtype="bfloat16")


class Prefill(_TracksTflops, _AttentionBench):
    """Self-attention over new keys only (no cache): B1 H16 S512."""

    params = [[False, True], [64, 128], ["float32", "float16"]]
    param_names = ["causal", "head_dim", "dtype"]

    def config(self, causal, head_dim, dtype):
        return RunConfig(batch=1, num_heads_q=16, num_heads_kv=16, seq_len_qo=512,
                         seq_len_kv=512, is_causal=causal, head_dim=head_dim, dtype=dtype)


class GroupedQuery(_TracksTflops, _AttentionBench):
    """GQA ratio Hq/Hkv at Hq 32 (1 = MHA), causal prefill B1 S512 D128 fp16."""

    params = [[1, 4, 8]]
    param_names = ["gqa_ratio"]

    def config(self, ratio):
        return RunConfig(batch=1, num_heads_q=32, num_heads_kv=32 // ratio, seq_len_qo=512,
                         seq_len_kv=512, is_causal=True, head_dim=128, dtype="float16")


class CachedPrefill(_TracksTflops, _AttentionBench):
    """Chunked prefill: 256 new tokens after a 1024-token cache, causal, B2 Hq16/Hkv4."""

    params = [["contiguous", "paged16", "paged128"], ["NHD", "HND"]]
    param_names = ["cache", "kv_layout"]

    def config(self, cache, layout):
        paged = cache.startswith("paged")
        return RunConfig(batch=2, num_heads_q=16, num_heads_kv=4, seq_len_qo=256,
                         seq_len_kv=256, seq_len_kv_cache=1024, use_paged_kv=paged,
                         page_size=int(cache[len("paged"):]) if paged else 128,
                         kv_layout=layout, is_causal=True, head_dim=128, dtype="float16")


class Varlen(_TracksTflops, _AttentionBench):
    """Ragged batch of 4 (lengths in [n/2, n]): q, new kv 512, paged cache 512 (page 128)."""

    params = [[False, True]]
    param_names = ["causal"]

    def config(self, causal):
        return RunConfig(batch=4, num_heads_q=16, num_heads_kv=4, seq_len_qo=512,
                         seq_len_kv=512, seq_len_kv_cache=512, use_paged_kv=True,
                         page_size=128, varlen=True, is_causal=causal, head_dim=128,
                         dtype="float16")


class Decode(_TracksGbps, _AttentionBench):
    """One new query and key per sequence over a 4096-token paged cache: B4 Hq32/Hkv8 D128
    fp16 (67 MB of K/V; the fp32 baselines read twice that)."""

    params = [[16, 128], ["NHD", "HND"]]
    param_names = ["page_size", "kv_layout"]

    def config(self, page_size, layout):
        return RunConfig(batch=4, num_heads_q=32, num_heads_kv=8, seq_len_qo=1,
                         seq_len_kv=1, seq_len_kv_cache=4096, use_paged_kv=True,
                         page_size=page_size, kv_layout=layout, is_causal=True,
                         head_dim=128, dtype="float16")


class LongDecode(_TracksGbps, _AttentionBench):
    """One query over a 32768-token paged cache with a single KV head (MQA), B1 Hq8 D128
    fp16: longer than ``fmha.decode.SPLIT_KEYS``, so the decode kernel splits the keys
    across work-groups and combines them (one (sequence, KV head) would else be one
    work-group on one core)."""

    def config(self):
        return RunConfig(batch=1, num_heads_q=8, num_heads_kv=1, seq_len_qo=1,
                         seq_len_kv=1, seq_len_kv_cache=32768, use_paged_kv=True,
                         page_size=64, kv_layout="HND", is_causal=True, head_dim=128,
                         dtype="float16")


class SeedExample(_TracksTflops, _AttentionBench):
    """``python -m fmha --batch=2 --num_heads_q=32 --num_heads_kv=8 --seq_len_qo=1024
    --seq_len_kv=1024 --seq_len_kv_cache=512 --varlen --is_causal --use_paged_kv``."""

    timeout = 600
    repeat = (2, 5, 6.0)

    def config(self):
        return SEED_EXAMPLE
