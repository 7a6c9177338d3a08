"""The read-bandwidth probe behind bench_generate's and bench_kernels' roofline
(csrc/cpu/bandwidth_cpu.cc): it reads its buffer as 1, 2, 4 and 8 streams per thread
and returns the best, a finite figure in GB/s, at any size and thread count."""
import math

import pytest

from fastergpt.ops import engine_module


@pytest.mark.parametrize("megabytes,threads", [(64, 1), (64, 2), (0, 2), (3, 3)])
def test_probe_reads_at_a_plausible_rate(megabytes, threads):
    # 0 MB: the probe's floor of 64K floats; 3 threads over 3 MB: shares that are not a
    # multiple of the streams' pieces.
    gb_s = engine_module().measure_read_bandwidth(megabytes, threads, 1)
    assert math.isfinite(gb_s)
    # Any machine that runs the suite reads memory faster than 0.1 GB/s; no memory reads
    # 10 TB/s (a figure that high would mean the reads were skipped).
    assert 0.1 < gb_s < 10_000
