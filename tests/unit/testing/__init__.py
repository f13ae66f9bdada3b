"""Tests of the simulated cluster (clustergateway.testing)."""
