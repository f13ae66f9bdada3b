"""Tests of clustergateway.health."""
