"""``fence.h2``: the GOAWAY written past h2's state machine is a frame h2's peer reads;
memoised Huffman decoding gives what hpack gives."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import hpack
import hpack.hpack
import pytest

from clustergateway.fence.h2 import goaway_after_pending, memoise_huffman


def test_goaway_follows_what_h2_had_pending_and_names_the_last_stream() -> None:
    """A client reads the server's pending frames, then GOAWAY NO_ERROR naming stream 1,
    and the server can still send on that stream afterwards."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    client.initiate_connection()
    client.send_headers(1, [(":method", "GET"), (":path", "/"), (":scheme", "https"),
                            (":authority", "x")])  # fmt: skip
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    events = client.receive_data(goaway_after_pending(server))
    goaway = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
    assert [(g.error_code, g.last_stream_id) for g in goaway] == [(0, 1)]
    server.send_headers(1, [(":status", "200")], end_stream=True)  # h2 did not see it


@pytest.fixture
def memo() -> object:
    undo = memoise_huffman(entries=8, longest=64)
    yield hpack.hpack.decode_huffman
    undo()


def _headers(path: str) -> list[tuple[str, str]]:
    return [(":method", "GET"), (":path", path), ("authorization", "Bearer " + "t" * 40)]


def test_memoised_huffman_decodes_what_hpack_decodes(memo: object) -> None:
    """Huffman-coded literals (short ones memoised, long ones not), repeated and
    varied, decode to the headers encoded; repeats are answered by the memo.  A new
    connection each time: within one, HPACK's own table would index the repeats."""
    sent = [_headers(p) for p in ("/api", "/api", "/apis/" + "x" * 200, "/api", "/ä/b")]
    for headers in sent:
        encoder, decoder = hpack.Encoder(), hpack.Decoder()
        block = encoder.encode(headers, huffman=True)
        decoded = decoder.decode(block)
        assert [(n, v) for n, v in decoded] == headers
    info = memo.cache_info()  # type: ignore[attr-defined]
    assert info.hits > 0 and info.currsize <= 8


def test_memo_installs_once_and_is_undone() -> None:
    original = hpack.hpack.decode_huffman
    undo = memoise_huffman()
    try:
        assert hpack.hpack.decode_huffman is not original
        memoised = hpack.hpack.decode_huffman
        assert memoise_huffman()() is None  # a second install changes nothing
        assert hpack.hpack.decode_huffman is memoised
    finally:
        undo()
    assert hpack.hpack.decode_huffman is original
