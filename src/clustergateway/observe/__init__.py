"""Observability: Prometheus metrics with bounded labels, structured logs, the access log.

``metrics`` owns one ``CollectorRegistry`` per gateway (built in ``tap`` and
passed to whoever records), ``labels`` turns raw request data into a bounded
set of label values, ``logs`` sets up ``twisted.logger`` observers that write
JSON lines or text and never let a credential through.
"""

__all__ = ["labels", "logs", "metrics"]
