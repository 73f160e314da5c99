"""The read floor: how fast a SYCL kernel streams memory on this machine.

Decode reads every K and V element once, so its best possible time is the time to read
those bytes. This kernel reads a contiguous array and does nothing else (four running
sums per lane, one store per lane at the end): each work-group of 16 lanes takes
``CHUNK`` consecutive floats, and the work-groups cover the array in order. Its GB/s is
the machine's, measured in the same run as the kernels it bounds; a fixed number from a
data sheet would not be (the machines are shared, and they change between sessions).

Measured (2 cores of an Intel Xeon, Emerald Rapids, session 5): 23.8-26.5 GB/s over
268 MB in three ``speed_report.py`` runs, 15.6 GB/s while the host was loaded by its
other tenants; an AVX-512 read loop in C with two OpenMP threads gave 25.8-29.9 GB/s
(one thread 12.4-15.0). On an AMD EPYC (Zen 5, session 6): 39.9-48.6 GB/s in eight of
nine measurements (six ``speed_report.py`` runs, three by hand), 72.1 in one.
"""
from __future__ import annotations

import numpy as np
from numba import uint64 as u64
from numba_dpex import kernel_api as kapi

import xetile

from .common import best_seconds

LANES = 16
CHUNK = 64 * 1024  # floats per work-group (256 KiB): long runs the prefetchers follow
UNROLL = 4         # independent sums per lane (one add chain would bound the loop)


@xetile.factory
def read_kernel():
    """``read_all(data, sums, chunk)``: ``sums[g * 16 + lane]`` = the sum of this lane's
    elements of chunk ``g`` (elements ``g * chunk + lane + 16 * i``)."""
    step = LANES * UNROLL

    @xetile.kernel(sub_group_size=LANES)
    def read_all(item: kapi.NdItem, data, sums, chunk):
        lane = item.get_local_id(0)
        group = item.get_group().get_group_id(0)
        at = u64(group) * u64(chunk) + u64(lane)
        s0 = s1 = s2 = s3 = np.float32(0.0)
        for i in range(0, chunk, step):
            s0 += data[at + u64(i)]
            s1 += data[at + u64(i + LANES)]
            s2 += data[at + u64(i + 2 * LANES)]
            s3 += data[at + u64(i + 3 * LANES)]
        sums[u64(group) * u64(LANES) + u64(lane)] = (s0 + s1) + (s2 + s3)
    return read_all


class ReadCase:
    """A device array of at least ``nbytes`` (whole chunks) and the sums it reads into."""

    def __init__(self, nbytes: int, queue=None):
        import dpnp

        self.groups = max(1, -(-nbytes // (4 * CHUNK)))
        self.data = dpnp.ones(self.groups * CHUNK, dtype=np.float32, sycl_queue=queue)
        self.sums = dpnp.zeros(self.groups * LANES, dtype=np.float32,
                               sycl_queue=self.data.sycl_queue)
        self.nbytes = self.data.nbytes
        self.call()  # compiles (once per process) and touches every page

    def call(self):
        xetile.launch(read_kernel(), (self.groups * LANES,), (LANES,), self.data,
                      self.sums, CHUNK)


def read_seconds(case: ReadCase, repeats: int = 5) -> float:
    """Best seconds of one full read of ``case.data``."""
    return best_seconds(case.call, repeats)


class ReadFloor:
    """The bytes of the Decode family's fp32 baselines (B4 Hkv8, 4096 keys, D128, K and
    V): 134 MB."""

    def setup(self):
        self.case = ReadCase(2 * 4 * 8 * 4096 * 128 * 4)

    def time_read(self):
        self.case.call()

    def track_gbps(self):
        return self.case.nbytes / read_seconds(self.case) / 1e9

    track_gbps.unit = "GB/s"
