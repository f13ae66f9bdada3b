"""One module per scenario; each has ``NAME``, ``UPSTREAMS`` and ``run(ctx) -> dict``."""

__all__: list[str] = []
