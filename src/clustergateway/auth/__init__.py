"""Caller authentication and authorization, and the identity used towards a cluster."""

__all__: list[str] = []
