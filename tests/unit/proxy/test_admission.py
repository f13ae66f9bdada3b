"""Admission: the in-flight caps, annotation overrides and the circuit refusal, in memory."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.logger import LogLevel, globalLogPublisher

from clustergateway.errors import ServiceUnavailable, TooManyRequests, retry_after
from clustergateway.proxy.admission import (
    CONNECT_TIMEOUT_ANNOTATION,
    LONG_RUNNING_ANNOTATION,
    MAX_INFLIGHT_ANNOTATION,
    RESPONSE_HEADER_TIMEOUT_ANNOTATION,
    AdmissionSettings,
    ClusterAdmission,
    cluster_limits,
)
from clustergateway.proxy.circuit import CircuitBreakers, CircuitSettings
from clustergateway.registry.model import ClusterGateway, EndpointSpec


def _cluster(name: str = "c1", **annotations: str) -> ClusterGateway:
    return ClusterGateway(
        name, EndpointSpec(address="https://127.0.0.1:6443"), None, annotations=annotations
    )


def _admission(clock: Clock, **settings: Any) -> tuple[ClusterAdmission, list[tuple[str, str]]]:
    rejected: list[tuple[str, str]] = []
    admission = ClusterAdmission(
        AdmissionSettings(**settings),
        CircuitBreakers(CircuitSettings(failure_threshold=2, cooldown=3.0)),
        clock.seconds,
        lambda cluster, reason: rejected.append((cluster, reason)),
    )
    return admission, rejected


def test_cluster_cap_refuses_with_429_naming_cluster_and_cap() -> None:
    """Over the per-cluster cap: 429 TooManyRequests naming the cluster, the cap and the flag,
    with Retry-After; other clusters are not affected; a release makes room again."""
    admission, rejected = _admission(Clock(), cluster_max_requests_inflight=2)
    c1 = _cluster()
    tickets = [admission.admit(c1, False, False) for _ in range(2)]
    with pytest.raises(TooManyRequests) as caught:
        admission.admit(c1, False, False)
    error = caught.value
    assert error.code == 429
    assert "cluster c1" in error.message
    assert "2 requests in flight to this cluster" in error.message
    assert "flag --max-requests-inflight-per-cluster" in error.message
    assert retry_after(error) == b"1"
    assert error.to_dict()["details"]["causes"][0]["reason"] == "cluster-max-requests-inflight"
    assert rejected == [("c1", "cluster-max-requests-inflight")]
    admission.admit(_cluster("c2"), False, False)
    tickets[0].release()
    tickets[0].release()  # idempotent
    admission.admit(c1, False, False)
    assert admission.in_flight("c1") == (2, 0)


def test_long_running_have_their_own_cap_and_skip_the_global_ones() -> None:
    """Watches count only against the cluster's long-running cap (kube-apiserver exempts
    them from the global caps); ordinary requests still pass while watches are at their cap."""
    admission, rejected = _admission(
        Clock(), max_requests_inflight=1, cluster_max_long_running_requests=2
    )
    c1 = _cluster()
    admission.admit(c1, True, False)
    admission.admit(c1, True, False)
    with pytest.raises(TooManyRequests) as caught:
        admission.admit(c1, True, False)
    assert "2 long-running requests" in caught.value.message
    assert rejected == [("c1", "cluster-max-long-running-requests-inflight")]
    admission.admit(c1, False, False)
    assert admission.in_flight("c1") == (1, 2)


def test_global_caps_count_reads_and_writes_apart() -> None:
    """--max-requests-inflight caps reads, --max-mutating-requests-inflight writes, across
    clusters."""
    admission, rejected = _admission(
        Clock(), max_requests_inflight=1, max_mutating_requests_inflight=1
    )
    read = admission.admit(_cluster("a"), False, False)
    admission.admit(_cluster("b"), False, True)
    with pytest.raises(TooManyRequests) as caught:
        admission.admit(_cluster("c"), False, False)
    assert "flag --max-requests-inflight" in caught.value.message
    with pytest.raises(TooManyRequests) as caught:
        admission.admit(_cluster("c"), False, True)
    assert "flag --max-mutating-requests-inflight" in caught.value.message
    assert rejected == [("c", "max-requests-inflight"), ("c", "max-mutating-requests-inflight")]
    read.release()
    admission.admit(_cluster("c"), False, False)


def test_annotations_override_and_the_status_says_so() -> None:
    """A cluster's annotations set its caps and timeouts; the Status names the annotation."""
    admission, _ = _admission(Clock())
    c1 = _cluster(
        **{
            MAX_INFLIGHT_ANNOTATION: "1",
            LONG_RUNNING_ANNOTATION: "0",
            CONNECT_TIMEOUT_ANNOTATION: "250ms",
            RESPONSE_HEADER_TIMEOUT_ANNOTATION: "3s",
        }
    )
    limits = admission.limits(c1)
    assert (limits.connect_timeout, limits.response_header_timeout) == (0.25, 3.0)
    assert limits.max_long_running == 0
    for _ in range(50):  # 0: no cap
        admission.admit(c1, True, False)
    admission.admit(c1, False, False)
    with pytest.raises(TooManyRequests) as caught:
        admission.admit(c1, False, False)
    assert f"annotation {MAX_INFLIGHT_ANNOTATION}" in caught.value.message


def test_bad_annotation_values_are_logged_once_and_the_flags_used() -> None:
    """Unparseable values fall back to the flags' values, logged once per value."""
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        admission, _ = _admission(Clock(), cluster_max_requests_inflight=7)
        bad = {MAX_INFLIGHT_ANNOTATION: "lots", CONNECT_TIMEOUT_ANNOTATION: "-1s"}
        for _ in range(3):
            limits = admission.limits(_cluster(**bad))  # a new object each time
        assert (limits.max_requests_inflight, limits.connect_timeout) == (7, 10.0)
        assert limits.from_annotation == frozenset()
    finally:
        globalLogPublisher.removeObserver(events.append)
    warnings = [e for e in events if e.get("log_level") == LogLevel.warn and "key" in e]
    assert sorted(e["key"] for e in warnings) == [
        CONNECT_TIMEOUT_ANNOTATION,
        MAX_INFLIGHT_ANNOTATION,
    ]


def test_cluster_limits_is_pure() -> None:
    """The parse itself: flags' values without annotations, reporting each bad one."""
    bad: list[str] = []
    limits = cluster_limits(
        {LONG_RUNNING_ANNOTATION: "x"},
        AdmissionSettings(),
        lambda key, value, why: bad.append(key),
    )
    assert limits.max_long_running == 5000
    assert bad == [LONG_RUNNING_ANNOTATION]


def test_open_circuit_refuses_with_503_then_one_trial_closes_it() -> None:
    """Failures reported on tickets open the circuit: 503 'unreachable: cause; retrying in
    Ns' with Retry-After, counted; after the cooldown one trial passes and its answer
    closes the circuit."""
    clock = Clock()
    admission, rejected = _admission(clock)
    c1 = _cluster()
    for _ in range(2):
        ticket = admission.admit(c1, False, False)
        ticket.unreachable("dial tcp 10.0.0.1:443: connect timed out")
        ticket.release()
    with pytest.raises(ServiceUnavailable) as caught:
        admission.admit(c1, False, False)
    assert caught.value.message == (
        "cluster c1 is unreachable: dial tcp 10.0.0.1:443: connect timed out; retrying in 3s"
    )
    assert retry_after(caught.value) == b"3"
    assert rejected == [("c1", "circuit-open")]
    assert admission.in_flight("c1") == (0, 0)
    clock.advance(3)
    trial = admission.admit(c1, False, False)
    assert trial.trial
    with pytest.raises(ServiceUnavailable):
        admission.admit(c1, False, False)
    trial.answered()
    trial.release()
    admission.admit(c1, False, False).release()


def test_a_cap_refusal_gives_the_trial_back() -> None:
    """A half-open trial refused by a cap does not leave the circuit stuck half-open."""
    clock = Clock()
    admission, _ = _admission(clock, cluster_max_requests_inflight=1)
    c1 = _cluster()
    held = admission.admit(c1, False, False)
    for _ in range(2):
        admission.breakers.failed("c1", "refused", clock.seconds(), False)
    clock.advance(3)
    with pytest.raises(TooManyRequests):
        admission.admit(c1, False, False)
    held.release()
    assert admission.admit(c1, False, False).trial


def test_released_without_verdict_abandons_the_trial() -> None:
    """A trial whose caller left (released with no verdict) lets the next one try."""
    clock = Clock()
    admission, _ = _admission(clock)
    c1 = _cluster()
    for _ in range(2):
        admission.breakers.failed("c1", "refused", clock.seconds(), False)
    clock.advance(3)
    admission.admit(c1, False, False).release()
    assert admission.admit(c1, False, False).trial
