"""A simulated Kubernetes cluster (hub and managed roles) for tests, benchmarks and the demo.

Entry points: :class:`SimulatedCluster` (in-process) and ``python -m
clustergateway.testing`` (standalone).  See ``server.py`` for the API tests use.
"""

from clustergateway.testing.apiserver import RecordedRequest
from clustergateway.testing.faults import Faults
from clustergateway.testing.server import DEMO_POD, SimulatedCluster

__all__ = ["DEMO_POD", "Faults", "RecordedRequest", "SimulatedCluster"]
