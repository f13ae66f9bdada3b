"""``fence.h2``: the GOAWAY written past h2's state machine is a frame h2's peer reads."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events

from clustergateway.fence.h2 import goaway_after_pending


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
