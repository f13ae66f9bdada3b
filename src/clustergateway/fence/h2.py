"""What the HTTP/2 listener does past the ``h2`` library's public API.

Two things, each because ``h2`` offers no way to do it:

* :class:`BoundedFrameBuffer` looks at a frame's 9-byte header while the
  frame is still arriving, in ``h2``'s private buffer (``FrameBuffer._data``),
  so that an overlong frame is refused before its body is buffered
  (``server.h2guard`` installs it; ``tests/unit/server/test_h2guard.py`` pins it).
* :func:`goaway_after_pending` writes a GOAWAY frame past ``h2``'s state
  machine (``server.shutdown``): once ``h2`` sends GOAWAY itself it refuses to
  send anything more, yet the streams still open on a draining connection must
  end with END_STREAM.  It uses public names only, but relies on ``h2`` not
  noticing a frame it did not write.
"""

from __future__ import annotations

from typing import Any

from h2.exceptions import FrameTooLargeError
from h2.frame_buffer import FrameBuffer
from hyperframe.frame import Frame, GoAwayFrame

__all__ = ["BoundedFrameBuffer", "goaway_after_pending"]


class BoundedFrameBuffer(FrameBuffer):
    """``h2``'s frame buffer, checking a frame's declared length from its header."""

    def __next__(self) -> Frame:
        data: bytearray = self._data
        if len(data) >= 9:
            length = int.from_bytes(data[:3], "big")
            if length > self.max_frame_size:
                raise FrameTooLargeError(
                    f"Received overlong frame: length {length}, max {self.max_frame_size}"
                )
        return super().__next__()


def goaway_after_pending(h2: Any) -> bytes:
    """A GOAWAY (NO_ERROR, the last stream that will be answered), after what ``h2`` (an
    ``h2.connection.H2Connection``) had pending, written without ``h2`` knowing."""
    frame = GoAwayFrame(0)
    frame.last_stream_id = h2.highest_inbound_stream_id
    frame.error_code = 0
    return bytes(h2.data_to_send()) + frame.serialize()
