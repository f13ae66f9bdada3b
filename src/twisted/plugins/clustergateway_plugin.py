"""twistd plugin: ``twistd -n clustergateway``. Kept tiny; twistd imports it on every scan."""

from twisted.application.service import ServiceMaker

clustergateway = ServiceMaker(
    "Cluster gateway",
    "clustergateway.tap",
    "Multi-cluster Kubernetes API gateway (aggregated apiserver)",
    "clustergateway",
)
