"""Cluster health: the active prober and where its verdicts are recorded.

The health every reader agrees on is the registry's (``registry.store``): the
Secret's status annotations (or their in-memory stand-in without a hub)
combined with OCM's ``Available`` condition (``registry.ocm``).  This package
only *produces* verdicts: :mod:`~clustergateway.health.prober` probes clusters
and :mod:`~clustergateway.health.recorder` writes a verdict where the
registry reads it back, so the prober never keeps a second truth.
:mod:`~clustergateway.health.rounds` paces probes (jittered rounds, bounded
concurrency, retry, stop) for this prober and the addon-manager's alike.
"""

__all__: list[str] = []
