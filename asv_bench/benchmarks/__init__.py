"""asv benchmarks of fmha.attention, its baselines and the xetile GEMM (see docs/benchmarks.md)."""
