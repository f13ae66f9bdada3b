"""Side-by-side load runs: direct vs ``kubectl proxy`` vs the gateway (``python -m bench``).

See ``bench/README.md`` for what each scenario measures, how processes are
pinned to CPUs and how to read the results.
"""

__all__: list[str] = []
