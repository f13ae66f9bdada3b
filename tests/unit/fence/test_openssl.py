"""``fence.openssl``: OpenSSL's verify result read through pyOpenSSL's binding."""

from __future__ import annotations

from OpenSSL import SSL

from clustergateway.fence.openssl import verify_result


def test_verify_result_of_a_fresh_connection_is_ok() -> None:
    """Before any handshake OpenSSL reports X509_V_OK (0), as an int."""
    connection = SSL.Connection(SSL.Context(SSL.TLS_METHOD), None)
    assert verify_result(connection) == 0
