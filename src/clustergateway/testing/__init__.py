"""A simulated Kubernetes cluster (hub and managed roles) for tests, benchmarks and the demo."""

__all__: list[str] = []
