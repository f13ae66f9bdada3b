"""Serving: the twisted.web Resource tree of the aggregated API, TLS listening, request limits."""

__all__: list[str] = []
