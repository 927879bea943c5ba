"""Reading a response body within bounds: the deadline between reads, gzip and deflate
undone in bounded steps, and at most ``max_bytes`` of decompressed data (a gzip bomb
costs at most the cap)."""

from __future__ import annotations

import zlib
from collections.abc import Iterator

import requests

from monitor.errors import FeedError
from monitor.fetch.deadline import Attempt
from monitor.fetch.describe import cause
from monitor.types import PollOutcome

# The codings Body undoes in bounded steps: all the fetcher may ask for.
ACCEPT_ENCODING = "gzip, deflate"
_CHUNK = 64 * 1024  # compressed bytes read per step
_INFLATE_STEP = 256 * 1024  # decompressed bytes produced per step


class _Inflater:
    """gzip / deflate decoding in bounded steps (never more than one step of output at
    once, whatever the compression ratio)."""

    def __init__(self, encoding: str) -> None:
        self._gzip = encoding in ("gzip", "x-gzip")
        self._d = zlib.decompressobj(16 + zlib.MAX_WBITS if self._gzip else zlib.MAX_WBITS)
        self._started = False
        self._done = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        while data and not self._done:
            try:
                out = self._d.decompress(data, _INFLATE_STEP)
            except zlib.error:
                if self._gzip or self._started:
                    raise
                # "deflate" is often sent raw, without the zlib header (browsers accept
                # both); the header is in the first bytes, so this is the first call.
                self._started = True
                self._d = zlib.decompressobj(-zlib.MAX_WBITS)
                continue
            self._started = True
            if out:
                yield out
            data = self._d.unconsumed_tail
            if self._d.eof:
                rest = self._d.unused_data.lstrip(b"\0")
                if self._gzip and rest:
                    # Another gzip member follows (concatenated gzip files are one stream).
                    self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    data = rest
                else:
                    self._done = True  # trailing bytes after the stream are ignored


class _Body:
    """Decodes a Content-Encoding chain into a size-capped list of chunks."""

    def __init__(self, content_encoding: str) -> None:
        codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
        self.inflaters: list[_Inflater] = []
        for coding in reversed(codings):  # applied in order, so undone in reverse
            if coding == "identity":
                continue
            if coding not in ("gzip", "x-gzip", "deflate"):
                raise ValueError(f"unsupported Content-Encoding {coding!r}")
            self.inflaters.append(_Inflater(coding))

    def decode(self, data: bytes) -> Iterator[bytes]:
        chunks: Iterator[bytes] = iter((data,))
        for inflater in self.inflaters:
            chunks = _chain(inflater, chunks)
        yield from chunks


def _chain(inflater: _Inflater, chunks: Iterator[bytes]) -> Iterator[bytes]:
    for chunk in chunks:
        yield from inflater.feed(chunk)


def read_body(
    feed_id: str,
    url: str,
    resp: requests.Response,
    attempt: Attempt,
    max_bytes: int,
    read_timeout: float,
    deadline: float,
) -> bytes:
    """The whole decoded body of ``resp``, or FeedError (timeout, too-large, a broken
    encoding or connection). ``deadline`` is the fetch's total, for messages."""
    try:
        body = _Body(resp.headers.get("Content-Encoding", ""))
    except ValueError as e:
        raise FeedError(
            feed_id, url, PollOutcome.HTTP_ERROR, str(e), status=resp.status_code
        ) from None
    parts: list[bytes] = []
    size = 0
    raw = resp.raw
    read = read_timeout
    try:
        while True:
            left = attempt.left()
            if left <= 0 or attempt.expired:
                raise FeedError(
                    feed_id, url, PollOutcome.TIMEOUT, f"body not complete within {deadline:g} s"
                )
            read = min(read_timeout, left)
            _set_read_timeout(raw, read)
            # read1 returns what has arrived instead of waiting for a full chunk,
            # so a server dripping bytes cannot hold us past the deadline.
            chunk = raw.read1(_CHUNK, decode_content=False)
            if not chunk:
                break
            for piece in body.decode(chunk):
                size += len(piece)
                if size > max_bytes:
                    raise FeedError(
                        feed_id,
                        url,
                        PollOutcome.TOO_LARGE,
                        f"body larger than {max_bytes} bytes"
                        + (" after decompression" if body.inflaters else ""),
                    )
                parts.append(piece)
    except FeedError:
        raise
    except zlib.error as e:
        raise FeedError(
            feed_id,
            url,
            PollOutcome.HTTP_ERROR,
            f"body is not valid {resp.headers.get('Content-Encoding')}: {e}",
            status=resp.status_code,
        ) from None
    except Exception as e:  # urllib3 ReadTimeoutError, ProtocolError, OSError
        timed_out = "timed out" in str(e).lower()
        if attempt.expired or (timed_out and attempt.left() <= 0.05):
            raise FeedError(
                feed_id, url, PollOutcome.TIMEOUT, f"body not complete within {deadline:g} s"
            ) from e
        if timed_out:
            raise FeedError(
                feed_id, url, PollOutcome.TIMEOUT, f"body stalled: no data for {read:g} s"
            ) from e
        raise FeedError(feed_id, url, PollOutcome.CONNECTION_ERROR, cause(e)) from e
    if attempt.expired:  # the watchdog's shutdown can look like a normal end of body
        raise FeedError(
            feed_id, url, PollOutcome.TIMEOUT, f"body not complete within {deadline:g} s"
        )
    return b"".join(parts)


def _set_read_timeout(raw: object, seconds: float) -> None:
    fp = getattr(raw, "_fp", None)
    sock = getattr(getattr(fp, "fp", None), "raw", None)
    sock = getattr(sock, "_sock", None)
    if sock is not None:
        try:
            sock.settimeout(max(seconds, 0.01))
        except OSError:
            pass
