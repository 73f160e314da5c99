"""fmha.attention against the float64 reference over the feature grid.

The grid crosses KV source (new keys only, contiguous cache, paged cache with page sizes
1, 3, 16, 128) x cache layout x varlen x causal x GQA ratio on ragged lengths (none a
multiple of the 16-key tile; empty sequences; Sq > L), at one head dim and float32, so it
compiles one kernel. Dtypes and head dims are crossed separately (one kernel each).
"""
import numpy as np
import pytest

import fmha
from tests.problems import check_against_reference, make_problem, to_device, to_numpy

# (seqlens_q, seqlens_kv_new, cache_seqlens) per sequence, varlen: ragged, an empty
# sequence, a sequence with more queries than keys, one with no new keys.
VARLEN_LENGTHS = ([5, 0, 19, 33], [7, 3, 0, 17], [9, 30, 2, 40])
# dense q/k need equal lengths per sequence; caches stay ragged
DENSE_LENGTHS = (18, 5, [9, 30, 2])
HEADS = [(4, 4), (8, 2), (4, 1)]  # MHA, GQA 4, MQA
KV_SOURCES = [
    # (has_new, cache kind, page_size, layout)
    (True, None, None, "NHD"),
    (True, "contiguous", None, "NHD"),
    (True, "contiguous", None, "HND"),
    (True, "paged", 1, "NHD"),
    (True, "paged", 3, "HND"),
    (True, "paged", 16, "NHD"),
    (True, "paged", 128, "HND"),
    (False, "paged", 7, "NHD"),
    (False, "contiguous", None, "HND"),
]


def _source_id(source):
    has_new, cache, page_size, layout = source
    parts = ["new" if has_new else "nonew"]
    if cache:
        parts.append(f"{cache}{page_size or ''}-{layout}")
    return "+".join(parts)


def _problem(source, varlen, causal, heads, head_dim=64, dtype="float32", seed=0):
    has_new, cache, page_size, layout = source
    q_lens, new_lens, cache_lens = VARLEN_LENGTHS if varlen else DENSE_LENGTHS
    batch = len(cache_lens)
    if varlen:
        q_lens, new_lens = q_lens[:batch], new_lens[:batch]
    return make_problem(
        batch=batch, seqlens_q=q_lens, seqlens_kv=new_lens if has_new else None,
        cache_seqlens=cache_lens if cache else None, num_heads_q=heads[0],
        num_heads_kv=heads[1], head_dim=head_dim, dtype=dtype, varlen=varlen,
        paged=cache == "paged", page_size=page_size or 16, kv_layout=layout,
        causal=causal, seed=seed)


@pytest.mark.parametrize("heads", HEADS, ids=lambda h: f"hq{h[0]}-hkv{h[1]}")
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("varlen", [False, True], ids=["dense", "varlen"])
@pytest.mark.parametrize("source", KV_SOURCES, ids=_source_id)
def test_grid_float32(source, varlen, causal, heads):
    kwargs = _problem(source, varlen, causal, heads)
    out, lse = fmha.attention(**kwargs, return_lse=True)
    check_against_reference(kwargs, out, lse)


@pytest.mark.parametrize("head_dim", [64, 96, 128, 192, 256, 40])
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_dtypes_and_head_dims(dtype, head_dim):
    kwargs = _problem((True, "paged", 7, "NHD"), True, True, (8, 2), head_dim, dtype)
    out, lse = fmha.attention(**kwargs, return_lse=True)
    assert out.dtype == kwargs["q"].dtype
    check_against_reference(kwargs, out, lse)


@pytest.mark.parametrize("page_size", [1, 5, 16])
def test_decode_long_paged_cache(page_size):
    """One query per sequence over a long cache: the decode shape."""
    kwargs = make_problem(batch=3, seqlens_q=1, seqlens_kv=1, cache_seqlens=[300, 1, 77],
                          num_heads_q=8, num_heads_kv=2, paged=True, page_size=page_size,
                          kv_layout="HND", causal=True, seed=3)
    out, lse = fmha.attention(**kwargs, return_lse=True)
    check_against_reference(kwargs, out, lse)


@pytest.mark.parametrize("layout, head_dim", [("HND", 64), ("NHD", 40)])
def test_decode_splits_long_sequences_and_combines_them(layout, head_dim):
    """Sequences longer than SPLIT_KEYS are walked by several work-groups and merged:
    the split boundaries fall inside the cache, inside the new keys and (sequence 1) past
    what its causal rows can see; a short sequence in the same batch is not split; D 40
    leaves the last lane chunk partly empty."""
    from fmha.decode import SPLIT_KEYS

    kwargs = make_problem(batch=3, seqlens_q=[1, 3, 2], seqlens_kv=[1, 40, 0],
                          cache_seqlens=[2 * SPLIT_KEYS + 5, SPLIT_KEYS - 20, 100],
                          num_heads_q=4, num_heads_kv=2, head_dim=head_dim, varlen=True,
                          paged=True, page_size=7, kv_layout=layout, causal=True, seed=11)
    out, lse = fmha.attention(**kwargs, return_lse=True)
    check_against_reference(kwargs, out, lse)


def test_more_queries_than_keys_causal_rows_see_nothing():
    kwargs = make_problem(batch=2, seqlens_q=[20, 3], seqlens_kv=[4, 0],
                          cache_seqlens=[2, 0], varlen=True, paged=True, page_size=3,
                          causal=True, seed=4)
    out, lse = fmha.attention(**kwargs, return_lse=True)
    # sequence 0: L = 6, Sq = 20 -> the first 14 queries see no key; sequence 1: L = 0
    assert np.all(lse[:, :14] == -np.inf) and np.all(lse[:, 20:] == -np.inf)
    assert np.all(out[:14] == 0) and np.all(out[20:] == 0)
    check_against_reference(kwargs, out, lse)


def test_all_sequences_empty():
    kwargs = make_problem(batch=2, seqlens_q=[0, 0], seqlens_kv=[0, 3], varlen=True)
    out, lse = fmha.attention(**kwargs, return_lse=True)
    assert out.shape == (0, 4, 64) and lse.shape == (4, 0)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_dpnp_in_dpnp_out(dtype):
    import dpnp

    kwargs = _problem((True, "paged", 16, "HND"), True, True, (8, 2), dtype=dtype)
    device_kwargs = to_device(kwargs)
    out, lse = fmha.attention(**device_kwargs, return_lse=True)
    assert isinstance(out, dpnp.ndarray) and isinstance(lse, dpnp.ndarray)
    expected_dtype = np.uint16 if dtype == "bfloat16" else np.dtype(dtype)
    assert out.dtype == expected_dtype and out.shape == kwargs["q"].shape
    check_against_reference(kwargs, to_numpy(out, dtype), to_numpy(lse))


def test_float16_as_uint16_bits_with_dtype():
    kwargs = _problem((True, "contiguous", None, "NHD"), False, True, (4, 4),
                      dtype="float16")
    device_kwargs = to_device(kwargs, float16_as_uint16=True)
    out = fmha.attention(**device_kwargs)
    assert out.dtype == np.uint16
    check_against_reference(kwargs, to_numpy(out, "float16"))


@pytest.mark.parametrize("kind", ["numpy", "dpnp"])
def test_out_argument_is_written_and_returned(kind):
    kwargs = _problem((True, "paged", 3, "NHD"), False, True, (8, 2))
    if kind == "dpnp":
        import dpnp

        kwargs = to_device(kwargs)
        out = dpnp.zeros(kwargs["q"].shape, dtype=np.float32,
                         sycl_queue=kwargs["q"].sycl_queue)
    else:
        out = np.zeros_like(kwargs["q"])
    result = fmha.attention(**kwargs, out=out)
    assert result is out
    check_against_reference(kwargs, to_numpy(out))


def test_strided_host_inputs_are_read_as_their_elements():
    """q, k, v and the cache as strided numpy views (every other head of a wider array,
    the cache's pages through a negative stride) give the result of their elements.
    (A strided device array is refused by validation: tests/test_validation.py.)"""
    kwargs = _problem((True, "contiguous", None, "NHD"), False, True, (4, 2))
    views = {}
    for name in ("q", "k", "v"):
        a = kwargs[name]
        wide = np.zeros(a.shape[:2] + (2 * a.shape[2], a.shape[3]), a.dtype)
        wide[:, :, ::2] = a
        views[name] = wide[:, :, ::2]
    for name in ("k_cache", "v_cache"):
        views[name] = np.ascontiguousarray(kwargs[name][::-1])[::-1]
    assert not any(v.flags.c_contiguous for v in views.values())
    out = fmha.attention(**{**kwargs, **views})
    check_against_reference(kwargs, out)


def test_softmax_scale_and_lse_layout_dense():
    kwargs = _problem((True, "contiguous", None, "NHD"), False, False, (4, 2))
    kwargs["softmax_scale"] = 0.3
    out, lse = fmha.attention(**kwargs, return_lse=True)
    assert lse.shape == (3, 4, 18) and lse.dtype == np.float32
    check_against_reference(kwargs, out, lse)


# -- the decode kernel (at most DECODE_MAX_ROWS rows per KV head: lanes split D) -------

DECODE_SOURCES = [s for s in KV_SOURCES if s[1] != "contiguous" or s[3] == "HND"]


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("q_len,heads", [(1, (4, 4)), (1, (8, 1)), (2, (8, 2)),
                                         (3, (2, 1))], ids=lambda x: str(x))
@pytest.mark.parametrize("source", DECODE_SOURCES, ids=_source_id)
def test_decode_grid_float32(source, q_len, heads, causal):
    has_new, cache, page_size, layout = source
    kwargs = make_problem(
        batch=3, seqlens_q=[q_len, 0, q_len], seqlens_kv=[3, 1, 20] if has_new else None,
        cache_seqlens=[37, 5, 0] if cache else None, num_heads_q=heads[0],
        num_heads_kv=heads[1], varlen=True, paged=cache == "paged",
        page_size=page_size or 16, kv_layout=layout, causal=causal, seed=q_len)
    assert q_len * heads[0] // heads[1] <= 8   # the decode kernel's shapes
    out, lse = fmha.attention(**kwargs, return_lse=True)
    check_against_reference(kwargs, out, lse)


@pytest.mark.parametrize("head_dim", [40, 128, 256])
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_decode_dtypes_and_head_dims(dtype, head_dim):
    kwargs = make_problem(batch=2, seqlens_q=1, seqlens_kv=1, cache_seqlens=[50, 17],
                          num_heads_q=8, num_heads_kv=2, head_dim=head_dim, dtype=dtype,
                          paged=True, page_size=7, causal=True, seed=head_dim)
    out, lse = fmha.attention(**kwargs, return_lse=True)
    check_against_reference(kwargs, out, lse)


@pytest.mark.parametrize("dtype, paged, page_size, layout", [
    ("float16", True, 3, "NHD"), ("float16", True, 1, "HND"),
    ("bfloat16", True, 16, "HND"), ("bfloat16", False, 16, "NHD")])
def test_decode_staged_16_bit_tiles_agree_bitwise_with_tiles_read_in_place(
        monkeypatch, dtype, paged, page_size, layout):
    """16-bit K/V tiles are converted once into local memory (DecodeConfig.stage); read
    in place, each row converts them itself: the same float32 values, the same sums.
    Several tiles, a ragged last one, new keys after the cache, causal, D 40 (padded)."""
    import dataclasses

    from fmha import decode

    kw = make_problem(batch=3, seqlens_q=[1, 2, 1], seqlens_kv=[3, 0, 2],
                      cache_seqlens=[70, 33, 0], num_heads_q=8, num_heads_kv=4, head_dim=40,
                      varlen=True, paged=paged, page_size=page_size, kv_layout=layout,
                      dtype=dtype, causal=True, seed=5)
    assert decode.DecodeConfig.default(40, dtype).stage
    out, lse = fmha.attention(**kw, return_lse=True)
    check_against_reference(kw, out, lse)
    default = decode.DecodeConfig.default.__func__
    monkeypatch.setattr(decode.DecodeConfig, "default", classmethod(
        lambda cls, *args: dataclasses.replace(default(cls, *args), stage=False)))
    assert not decode.DecodeConfig.default(40, dtype).stage
    out_in_place, lse_in_place = fmha.attention(**kw, return_lse=True)
    np.testing.assert_array_equal(to_numpy(out, dtype).view(np.uint8),
                                  to_numpy(out_in_place, dtype).view(np.uint8))
    np.testing.assert_array_equal(lse.view(np.uint8), lse_in_place.view(np.uint8))


def test_decode_stages_16_bit_tiles_only_where_they_fit():
    from fmha import decode

    assert not decode.DecodeConfig.default(128, "float32").stage  # nothing to convert
    for dtype in ("float16", "bfloat16"):
        staged = decode.DecodeConfig.default(128, dtype)
        assert staged.stage and staged.max_rows == decode.DECODE_MAX_ROWS
        wide = decode.DecodeConfig.default(256, dtype)  # two 16 KiB tiles would not fit
        assert not wide.stage and wide.max_rows == decode.DECODE_MAX_ROWS
        assert wide.local_memory_bytes <= decode.LOCAL_MEMORY_BUDGET
