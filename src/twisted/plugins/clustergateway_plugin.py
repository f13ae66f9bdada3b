"""twistd plugins: ``twistd -n clustergateway`` and ``--reactor=clustergateway``.

Kept tiny; twistd imports it on every scan.  The gateway installs its reactor
by itself under ``twistd`` (``clustergateway.tap.global_reactor``); naming it
is for ``twist``, which installs a reactor before any plugin runs.
"""

from twisted.application.reactors import Reactor
from twisted.application.service import ServiceMaker

clustergateway = ServiceMaker(
    "Cluster gateway",
    "clustergateway.tap",
    "Multi-cluster Kubernetes API gateway (aggregated apiserver)",
    "clustergateway",
)

clustergateway_reactor = Reactor(
    "clustergateway",
    "clustergateway.fence.reactor",
    "The cluster gateway's epoll reactor (no logging context per event, pass-end writes, "
    "busy polling).",
)
