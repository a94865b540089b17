"""The network-namespace lab shared by tests, the demo and the benchmarks."""
