"""What the HTTP/2 listener does past the ``h2`` and ``hpack`` libraries' public APIs.

Three things, each because those libraries offer no way to do it:

* :class:`BoundedFrameBuffer` looks at a frame's 9-byte header while the
  frame is still arriving, in ``h2``'s private buffer (``FrameBuffer._data``),
  so that an overlong frame is refused before its body is buffered
  (``server.h2guard`` installs it; ``tests/unit/server/test_h2guard.py`` pins it).
* :func:`goaway_after_pending` writes a GOAWAY frame past ``h2``'s state
  machine (``server.shutdown``): once ``h2`` sends GOAWAY itself it refuses to
  send anything more, yet the streams still open on a draining connection must
  end with END_STREAM.  It uses public names only, but relies on ``h2`` not
  noticing a frame it did not write.
* :func:`memoise_huffman` replaces ``hpack.hpack.decode_huffman``, the
  pure-Python Huffman decoder ``hpack``'s ``Decoder`` calls by module global
  for every Huffman-coded literal, with a bounded memo (``tap.makeService``
  installs it for the process).  Clients send the same literals again and
  again (a path, a token, a user agent): in memory this took a kubectl-like
  HTTP/2 GET from ~214 to ~179 µs of CPU (``bench/HISTORY.md``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import hpack.hpack
from h2.exceptions import FrameTooLargeError
from h2.frame_buffer import FrameBuffer
from hyperframe.frame import Frame, GoAwayFrame

__all__ = ["BoundedFrameBuffer", "goaway_after_pending", "memoise_huffman"]

#: Set on the memoising decoder, so a second install is a no-op.
_MEMO = "clustergateway_memo"


def memoise_huffman(entries: int = 4096, longest: int = 512) -> Callable[[], None]:
    """Decode HPACK Huffman literals of up to ``longest`` bytes through a memo of
    ``entries`` (least recently used dropped); returns what undoes it.

    Decoding is a pure function of the coded bytes, so a repeat costs a
    lookup; longer literals (rare: long label selectors) are decoded each
    time, which bounds the memo to a few MiB.  Decoded values stay in memory
    until pushed out, as they do in the connections' HPACK tables.
    """
    module: Any = hpack.hpack  # where Decoder looks the function up at each call
    decode = module.decode_huffman
    if getattr(decode, _MEMO, False):
        return lambda: None
    memo = functools.lru_cache(maxsize=entries)(decode)

    def decode_huffman(data: bytes | bytearray | memoryview) -> bytes:
        if len(data) > longest:
            return bytes(decode(data))
        return bytes(memo(bytes(data)))

    setattr(decode_huffman, _MEMO, True)
    decode_huffman.cache_info = memo.cache_info  # type: ignore[attr-defined]
    module.decode_huffman = decode_huffman

    def undo() -> None:
        module.decode_huffman = decode

    return undo


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
