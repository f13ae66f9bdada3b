"""twistd plugin: ``twistd -n cluster-gateway-addon-manager``. Kept tiny."""

from twisted.application.service import ServiceMaker

cluster_gateway_addon_manager = ServiceMaker(
    "Cluster gateway OCM addon-manager",
    "clustergateway.addon.tap",
    "Installs, rotates and probes cluster-gateway as an OCM addon",
    "cluster-gateway-addon-manager",
)
