"""Unit tests of the proxy subresource."""
