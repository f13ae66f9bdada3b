"""The cluster registry: Secrets converted to ClusterGateways, fed by a hub or a directory."""

__all__: list[str] = []
