"""Benchmarks: model size, latency and end-to-end throughput."""
