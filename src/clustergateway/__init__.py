"""Cluster gateway: a Kubernetes aggregated apiserver that proxies requests to many clusters."""

__all__: list[str] = []
