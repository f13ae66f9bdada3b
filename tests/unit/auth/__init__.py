"""Unit tests of clustergateway.auth."""
