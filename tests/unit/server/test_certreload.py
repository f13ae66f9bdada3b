"""Rotated serving certificate files are picked up on the clock, bad ones are not."""

from __future__ import annotations

from pathlib import Path

from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent

from clustergateway.certs import KeyPair, issue_cert, make_ca
from clustergateway.server.certreload import ServingCertReloader
from clustergateway.server.listen import ServingCert, load_serving_cert


def _write(path: Path, data: bytes) -> None:
    """Replace ``path`` by a rename, as the kubelet and cert-manager do."""
    tmp = path.with_name(path.name + ".new")
    tmp.write_bytes(data)
    tmp.rename(path)


def _setup(tmp_path: Path) -> tuple[Clock, ServingCertReloader, list[ServingCert], KeyPair]:
    ca = make_ca("ca")
    first = issue_cert(ca, "first", server=True)
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    _write(cert, first.cert_pem)
    _write(key, first.key_pem)
    clock, served = Clock(), []
    reloader = ServingCertReloader(
        clock, cert, key, load_serving_cert(cert, key), served.append, interval=1.0
    )
    reloader.startService()
    return clock, reloader, served, ca


def test_rotated_pair_is_served_at_the_next_look(tmp_path: Path) -> None:
    """A new pair written over the files is handed on once, at the next tick; an unchanged
    look or a rewrite with the same bytes hands nothing."""
    clock, reloader, served, ca = _setup(tmp_path)
    clock.advance(1.0)
    assert served == []
    second = issue_cert(ca, "second", server=True)
    _write(reloader.key_path, second.key_pem)
    _write(reloader.cert_path, second.cert_pem)
    assert served == []  # nothing happens between looks
    clock.advance(1.0)
    assert [p.chain_pem for p in served] == [second.cert_pem]
    assert reloader.current.key_pem == second.key_pem
    _write(reloader.cert_path, second.cert_pem)  # touched, same content
    clock.advance(1.0)
    assert len(served) == 1
    reloader.stopService()
    assert not clock.getDelayedCalls()


def test_mismatched_change_keeps_the_old_pair_until_the_key_lands(tmp_path: Path) -> None:
    """A certificate written before its key is refused with one error naming the file and
    the reason (the old pair stays); when the key follows, the pair is served."""
    clock, reloader, served, ca = _setup(tmp_path)
    third = issue_cert(ca, "third", server=True)
    _write(reloader.cert_path, third.cert_pem)
    with capturedLogs() as events:
        clock.advance(1.0)
    assert served == []
    messages = [formatEvent(e) for e in events]
    assert len(messages) == 1, messages
    assert (
        f"{reloader.key_path} does not match the certificate in {reloader.cert_path}"
        in (messages[0])
    )
    assert "still serving the previous pair" in messages[0]
    _write(reloader.key_path, third.key_pem)
    clock.advance(1.0)
    assert [p.chain_pem for p in served] == [third.cert_pem]


def test_removed_files_keep_the_old_pair(tmp_path: Path) -> None:
    """Files that vanish (a Secret being replaced) are reported and the pair kept."""
    clock, reloader, served, _ = _setup(tmp_path)
    reloader.cert_path.unlink()
    with capturedLogs() as events:
        clock.advance(1.0)
    assert served == []
    assert any("cannot read" in formatEvent(e) for e in events)
