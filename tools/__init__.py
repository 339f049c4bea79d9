"""Developer tooling outside the runtime package: the benchmark, the simulator, the local stack and the demo."""
