"""API types of ``cluster.core.oam.dev``: JSON shapes, Tables, discovery and OpenAPI documents."""

__all__: list[str] = []
