"""The OCM addon-manager: the second program of this package (``cluster-gateway-addon-manager``).

It re-implements the Go ``cmd/addon-manager`` of ``oam-dev/cluster-gateway``: an
installer that turns a ``ClusterGatewayConfiguration`` into a running gateway on
an OCM hub, a health prober that reports every cluster's health on its
ClusterGateway and ManagedClusterAddOn, and leader election so that replicas
never both act.  ``names`` and ``configuration`` hold Go's names and the parsed
configuration; ``desired`` computes every object as a pure function;
``installer`` applies them; ``pki`` keeps the signer and serving certificate;
``controller``, ``prober``, ``leader`` and ``endpoints`` are the running parts;
``tap`` wires them.
"""

__all__: list[str] = []
