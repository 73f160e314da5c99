"""Property test: whole random configurations against the float64 reference.

Hypothesis draws a complete problem (batch 1-3; query, new-key and cache lengths
including 0, 1 and page boundaries +-1; page sizes including 1 and odd ones; shuffled
pools with spare pages and junk or NaN-page padding in the page table; GQA ratios 1, 2,
4 and MQA; causal; varlen; NHD/HND; float32/float16/bfloat16), runs ``fmha.attention``
and compares ``out`` and ``lse`` with the reference using ``TOLERANCES``.

Two profiles, chosen by the environment variable ``FMHA_FUZZ_PROFILE``:

* ``fast`` (default): 25 examples, derandomized (the same examples every run, so CI is
  stable), head dims from ``FAST_HEAD_DIMS`` only: the kernel compiles once per
  (dtype, head_dim), so this costs at most 6 compilations.
* ``long``: 3000 fresh random examples (about 3 minutes on 2 cores), longer sequences
  (up to 160 new / 640 cached) and every head dim in
  ``LONG_HEAD_DIMS``. Run it with::

      FMHA_FUZZ_PROFILE=long .venv/bin/python -m pytest tests/test_fuzz.py -q

  A failure prints the smallest failing configuration and a ``@reproduce_failure``
  blob; the example is also saved in ``.hypothesis/`` and replayed first next time.
"""
import math
import os

import numpy as np
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

import fmha
from tests.problems import FAST_HEAD_DIMS, check_against_reference, describe, make_problem

PROFILE = os.environ.get("FMHA_FUZZ_PROFILE", "fast")

LONG_HEAD_DIMS = (16, 64, 96, 128, 1, 40, 256)

_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile("fmha-fast", max_examples=25, deadline=None, derandomize=True,
                          print_blob=True, suppress_health_check=_SLOW_OK)
settings.register_profile("fmha-long", max_examples=3000, deadline=None, print_blob=True,
                          suppress_health_check=_SLOW_OK)

if PROFILE not in ("fast", "long"):
    raise ValueError(f"FMHA_FUZZ_PROFILE: expected 'fast' or 'long', got {PROFILE!r}")
HEAD_DIMS = FAST_HEAD_DIMS if PROFILE == "fast" else LONG_HEAD_DIMS
# Longest new / cached sequence drawn; the kernel's tiles are 16 rows by 16 keys.
MAX_LEN = 40 if PROFILE == "fast" else 160

PAGE_SIZES = (1, 2, 3, 5, 7, 16, 17, 64)
# (Hq, Hkv): GQA ratios 1, 2 and 4, and MQA (Hkv = 1).
HEADS = ((1, 1), (2, 2), (3, 3), (2, 1), (4, 2), (6, 3), (8, 2), (4, 1), (8, 1))


def lengths(page_size):
    """A sequence length, biased towards 0, 1 and page boundaries +-1."""
    near_page = st.integers(1, 4).flatmap(
        lambda pages: st.sampled_from([pages * page_size - 1, pages * page_size,
                                       pages * page_size + 1]))
    return st.one_of(st.sampled_from([0, 1]), st.integers(0, MAX_LEN),
                     near_page.map(lambda n: min(n, 4 * MAX_LEN)))


@st.composite
def configurations(draw):
    """Keyword arguments of :func:`make_problem` for one random problem."""
    batch = draw(st.integers(1, 3))
    varlen = draw(st.booleans())
    paged = draw(st.booleans())
    page_size = draw(st.sampled_from(PAGE_SIZES))
    small = st.one_of(st.sampled_from([0, 1]), st.integers(0, MAX_LEN))

    def per_sequence(strategy):
        if varlen:
            return draw(st.lists(strategy, min_size=batch, max_size=batch))
        return draw(strategy)

    has_new, has_cache = draw(st.sampled_from([(True, False), (False, True), (True, True)]))
    num_heads_q, num_heads_kv = draw(st.sampled_from(HEADS))
    spare_pages = draw(st.integers(0, 3))
    head_dim = draw(st.sampled_from(HEAD_DIMS))
    # Scores stay O(1), where TOLERANCES hold; test_hardening covers huge logits.
    scale_factor = draw(st.one_of(st.none(), st.floats(0.05, 2.0)))
    config = dict(
        batch=batch, varlen=varlen, causal=draw(st.booleans()),
        seqlens_q=per_sequence(small),
        seqlens_kv=per_sequence(small) if has_new else None,
        cache_seqlens=draw(st.lists(lengths(page_size), min_size=batch, max_size=batch))
        if has_cache else None,
        num_heads_q=num_heads_q, num_heads_kv=num_heads_kv,
        head_dim=head_dim,
        dtype=draw(st.sampled_from(["float32", "float16", "bfloat16"])),
        paged=paged, page_size=page_size, kv_layout=draw(st.sampled_from(["NHD", "HND"])),
        spare_pages=spare_pages, shuffle_pages=draw(st.booleans()),
        page_table_padding=draw(st.integers(0, 2)),
        page_table_fill=draw(st.sampled_from(["spare", -1] if spare_pages else [-1])),
        cache_padding=draw(st.integers(0, 3)),
        softmax_scale=None if scale_factor is None else scale_factor / math.sqrt(head_dim),
        seed=draw(st.integers(0, 2**32 - 1)),
    )
    return config


@settings(settings.get_profile(f"fmha-{PROFILE}"))
@given(config=configurations())
def test_matches_reference(config):
    kwargs = make_problem(**config)
    note(f"problem: {describe(kwargs)}")
    out, lse = fmha.attention(**kwargs, return_lse=True)
    assert out.shape == kwargs["q"].shape and out.dtype == kwargs["q"].dtype
    assert lse.dtype == np.float32
    check_against_reference(kwargs, out, lse)

