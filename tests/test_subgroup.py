"""xetile.subgroup against numpy, at two sub-group sizes, on ragged work sizes."""
import numpy as np
import pytest

import xetile  # noqa: F401  (configures the runtime before dpnp)
import dpnp
from numba_dpex import kernel_api as kapi

from xetile import kernel, factory, launch
from xetile import subgroup as sg

SIZES = (8, 16)
N_GROUPS = 5  # not a power of two, so group indices are ragged too


@factory
def _collectives_kernel(size):
    @kernel(sub_group_size=size)
    def collectives(item: kapi.NdItem, x, xi, out, iout):
        i = item.get_global_id(0)
        lane = sg.lane_id()
        v = x[i]
        out[i, 0] = sg.shuffle(v, (lane + 3) % sg.sub_group_size())
        out[i, 1] = sg.shuffle_xor(v, 1)
        out[i, 2] = sg.broadcast(v, 2)
        out[i, 3] = sg.reduce_max(v)
        out[i, 4] = sg.reduce_add(v)
        iout[i, 0] = lane
        iout[i, 1] = sg.sub_group_size()
        iout[i, 2] = sg.sub_group_id()
        iout[i, 3] = sg.reduce_max(xi[i])
        iout[i, 4] = sg.shuffle(xi[i], 0)
    return collectives


@pytest.mark.parametrize("size", SIZES)
def test_collectives_match_numpy(size):
    rng = np.random.default_rng(size)
    n = size * 2 * N_GROUPS            # work-groups of two sub-groups
    x = rng.standard_normal(n).astype(np.float32)
    xi = rng.integers(-1000, 1000, n).astype(np.int32)
    out = dpnp.zeros((n, 5), dtype=np.float32)
    iout = dpnp.zeros((n, 5), dtype=np.int64)
    launch(_collectives_kernel(size), (n,), (2 * size,), dpnp.asarray(x),
           dpnp.asarray(xi), out, iout)
    out, iout = dpnp.asnumpy(out), dpnp.asnumpy(iout)

    g = x.reshape(-1, size)
    lanes = np.arange(size)
    np.testing.assert_array_equal(out[:, 0].reshape(-1, size), g[:, (lanes + 3) % size])
    np.testing.assert_array_equal(out[:, 1].reshape(-1, size), g[:, lanes ^ 1])
    np.testing.assert_array_equal(out[:, 2].reshape(-1, size), np.repeat(g[:, 2:3], size, 1))
    np.testing.assert_array_equal(out[:, 3].reshape(-1, size),
                                  np.repeat(g.max(1, keepdims=True), size, 1))
    np.testing.assert_allclose(out[:, 4].reshape(-1, size),
                               np.repeat(g.sum(1, keepdims=True), size, 1), rtol=1e-5)
    np.testing.assert_array_equal(iout[:, 0], np.tile(lanes, n // size))
    np.testing.assert_array_equal(iout[:, 1], size)
    np.testing.assert_array_equal(iout[:, 2], np.tile(np.repeat([0, 1], size), N_GROUPS))
    gi = xi.reshape(-1, size)
    np.testing.assert_array_equal(iout[:, 3].reshape(-1, size),
                                  np.repeat(gi.max(1, keepdims=True), size, 1))
    np.testing.assert_array_equal(iout[:, 4].reshape(-1, size), np.repeat(gi[:, :1], size, 1))
