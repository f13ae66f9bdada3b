"""Log output for the gateway's entry points: JSON lines or text, never a credential.

Library code logs through ``twisted.logger.Logger`` with named fields; this
module decides how events are written, once, at the entry point:

- :class:`JsonLinesObserver` writes one JSON object per line (``time``,
  ``level``, ``namespace``, ``message`` rendered with ``formatEvent``, the
  event's own scalar fields, ``error`` with the traceback of a failure) — for
  log collectors, chosen when the output is not a terminal;
  :class:`TextObserver` writes one readable line per event for people.
- :class:`RedactingObserver` runs before either and masks anything that looks
  like a credential, so one careless ``log.info(..., token=...)`` elsewhere
  cannot leak: fields whose *name* says credential (``token``,
  ``authorization``, ``password``, ``key``, ``cert``, ``data`` ...) are
  replaced, and strings are scrubbed of credential *shapes* (``Bearer``/
  ``Basic`` values, PEM blocks, JWTs, bootstrap tokens, ``token=`` query
  parameters).  Both writers scrub their rendered text once more.
- :class:`AccessLog`: one line per finished request (method, path with
  credential-like query parameters masked, code, bytes, duration, user,
  cluster), off by default (``--access-log`` turns it on).  Its
  :meth:`AccessLog.log_request` replaces ``Site.log``, so twisted.web's own
  per-request log line never runs on the hot path.

:func:`gateway_observer` assembles the chain; :func:`start_logging` installs it
as the global observer (entry points only); :func:`twistd_observer` is the
factory for ``twistd --logger=clustergateway.observe.logs.twistd_observer``.
"""

from __future__ import annotations

import json
import re
import sys
import time
import weakref
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import IO, Any, cast

import attrs
from twisted.logger import (
    FilteringLogObserver,
    ILogFilterPredicate,
    ILogObserver,
    LogEvent,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    globalLogBeginner,
)
from twisted.web.http_headers import Headers
from twisted.web.server import Request
from zope.interface import implementer

__all__ = [
    "REDACTED",
    "AccessLog",
    "JsonLinesObserver",
    "RedactingObserver",
    "TextObserver",
    "gateway_observer",
    "is_sensitive_key",
    "mask_query",
    "redact_event",
    "redact_value",
    "scrub_text",
    "start_logging",
    "twistd_debug_observer",
    "twistd_observer",
]

REDACTED = "<redacted>"

#: Words that make a field, mapping key, header or query parameter name a
#: credential.  Names are split into words at ``_``, ``-``, ``.``, spaces and
#: camelCase humps (``clientKeyData`` -> client, key, data).
_SENSITIVE_WORDS = frozenset(
    {
        "token",
        "tokens",
        "authorization",
        "password",
        "passwd",
        "passphrase",
        "cookie",
        "cookies",
        "key",
        "keys",
        "privatekey",
        "apikey",
        "cert",
        "certs",
        "certificate",
        "certificates",
        "credential",
        "credentials",
        "bearer",
        "kubeconfig",
        "pem",
        "data",
        "stringdata",
        "secret",
    }
)
#: Words that make a name refer to a place or a name, not the material itself
#: (``tls_cert_file``, ``secret_name``): these are kept.
_REFERENCE_WORDS = frozenset({"file", "path", "dir", "name", "namespace", "ref", "type"})
#: Names kept although sensitive-looking: ``secret`` is the Secret's
#: ``namespace/name`` in the registry's log lines (a mapping value under it is
#: still redacted key by key).
_ALLOWED_KEYS = frozenset({"secret"})
#: Whole names (words joined, lower case) that are sensitive as a unit: an exec
#: plugin's config and environment may carry credentials.
_SENSITIVE_COMPOUNDS = frozenset({"execconfig", "env", "environ", "environment"})

_WORD_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")

_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]*-----.*?(?:-----END [A-Z0-9 ]*-----|\Z)", re.DOTALL)
_AUTH_SCHEME = re.compile(r"(?i)\b(bearer|basic)(\s+|%20)[A-Za-z0-9._~+/=%-]{8,}")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_BOOTSTRAP_TOKEN = re.compile(r"\b[a-z0-9]{6}\.[a-z0-9]{16}\b")
_B64_PEM = re.compile(r"LS0tLS1CRUdJTi[A-Za-z0-9+/=]*")  # base64 of "-----BEGIN"
_ASSIGNMENT = re.compile(
    r"(?i)\b([\w-]{0,40}?(?:token|passw(?:or)?d|secret|private[_-]?key|key[_-]data"
    r"|cert(?:ificate)?[_-]data|api[_-]?key)|(?:proxy-)?authorization)"
    r"(\s*[=:]\s*|['\"]\s*:\s*\[?\s*b?['\"])"
    r"(?!<redacted|(?:bearer|basic) <redacted)([^&\s'\",;}\]]+)"
)

_SCALARS = (str, int, float, bool, type(None))
#: Event keys Twisted's legacy bridge sets; not copied as fields.
_LEGACY_KEYS = frozenset(
    {"message", "isError", "system", "time", "format", "why", "failure", "printed"}
)
_OUTPUT_KEYS = frozenset({"time", "level", "namespace", "message", "error"})
_FIELD_LIMIT = 1000
_MAX_DEPTH = 6


@lru_cache(maxsize=4096)
def is_sensitive_key(name: str) -> bool:
    """Whether a field/key/header/parameter called ``name`` may hold a credential.

    >>> is_sensitive_key("clientKeyData"), is_sensitive_key("tls_cert_file")
    (True, False)
    """
    if name in _ALLOWED_KEYS:
        return False
    words = [w.lower() for w in _WORD_SPLIT.split(name) if w]
    if not _SENSITIVE_WORDS.intersection(words) and "".join(words) not in _SENSITIVE_COMPOUNDS:
        return False
    return not _REFERENCE_WORDS.intersection(words)


def scrub_text(text: str) -> str:
    """``text`` with credential-shaped substrings masked.

    Catches what has a recognisable shape wherever it appears (PEM blocks,
    plain or base64 as in kubeconfigs, ``Bearer``/``Basic`` values, JWTs such
    as service-account tokens, bootstrap tokens, ``token=``/``password:``/
    ``client-key-data:`` assignments); a bare random
    token has no shape, which is why fields are also masked by name.
    """
    if "-----BEGIN" in text:
        text = _PEM.sub("<redacted PEM>", text)
    if "LS0tLS1CRUdJTi" in text:
        text = _B64_PEM.sub("<redacted PEM>", text)
    text = _AUTH_SCHEME.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    if "eyJ" in text:
        text = _JWT.sub("<redacted JWT>", text)
    if "." in text:
        text = _BOOTSTRAP_TOKEN.sub(REDACTED, text)
    return _ASSIGNMENT.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)


def redact_value(value: Any, depth: int = 0) -> Any:
    """``value`` with credentials masked: strings scrubbed, mappings (and
    twisted ``Headers``) masked key by key, sequences item by item.

    Other objects are returned as they are, so a log format can still read
    their attributes; their rendered text is scrubbed by the writers.
    """
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, bytes):
        return scrub_text(value.decode("utf-8", "replace"))
    if depth >= _MAX_DEPTH:
        return value
    if isinstance(value, Mapping):
        return {k: _redact_item(k, v, depth) for k, v in value.items()}
    if isinstance(value, Headers):
        return {
            name.decode("latin-1"): (
                REDACTED
                if is_sensitive_key(name.decode("latin-1"))
                else [redact_value(v, depth + 1) for v in values]
            )
            for name, values in value.getAllRawHeaders()
        }
    if isinstance(value, (list, tuple)):
        return type(value)(redact_value(v, depth + 1) for v in value)
    return value


def _redact_item(key: object, value: Any, depth: int) -> Any:
    name = key.decode("latin-1") if isinstance(key, bytes) else key
    if isinstance(name, str) and is_sensitive_key(name):
        return REDACTED
    return redact_value(value, depth + 1)


def redact_event(event: LogEvent) -> LogEvent:
    """A copy of ``event`` whose fields cannot carry a credential (see module doc)."""
    redacted = dict(event)
    for key, value in event.items():
        if key.startswith("log_"):
            continue
        if is_sensitive_key(key):
            redacted[key] = REDACTED
        elif not isinstance(value, (int, float, bool, type(None))):
            redacted[key] = redact_value(value)
    return redacted


def mask_query(query: str) -> str:
    """A URL query with the values of credential-like parameters masked.

    Paths carry no credentials, but a query may (``?access_token=`` for
    websocket clients that cannot set headers).
    """
    if not query:
        return query
    parts = []
    for pair in query.split("&"):
        name, sep, _value = pair.partition("=")
        parts.append(f"{name}={REDACTED}" if sep and is_sensitive_key(name) else pair)
    return scrub_text("&".join(parts))


def _iso_time(timestamp: float) -> str:
    stamp = datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def _level_name(event: LogEvent) -> str:
    level = event.get("log_level")
    return level.name if isinstance(level, type(LogLevel.info)) else "info"


def _failure_text(event: LogEvent) -> str | None:
    failure = event.get("log_failure")
    if failure is None:
        return None
    try:
        text = failure.getTraceback()
    except Exception:  # a broken failure must not break logging
        text = repr(failure)
    return scrub_text(str(text))


@implementer(ILogObserver)
@attrs.define(eq=False)
class RedactingObserver:
    """Hands ``wrapped`` a redacted copy of every event (:func:`redact_event`)."""

    wrapped: Callable[[LogEvent], None]

    def __call__(self, event: LogEvent) -> None:
        self.wrapped(redact_event(event))


@implementer(ILogObserver)
@attrs.define(eq=False)
class JsonLinesObserver:
    """One JSON object per event and line, for log collectors.

    Keys: ``time`` (ISO 8601, UTC), ``level``, ``namespace``, ``message``
    (the event's format rendered), then the event's named fields (scalars as
    they are, anything else as scrubbed text capped at 1000 characters) and
    ``error`` (the traceback) when the event carries a failure.
    """

    stream: IO[str]

    def __call__(self, event: LogEvent) -> None:
        record: dict[str, Any] = {
            "time": _iso_time(event.get("log_time") or time.time()),
            "level": _level_name(event),
            "namespace": event.get("log_namespace", ""),
            "message": scrub_text(formatEvent(event)),
        }
        for key, value in event.items():
            if key.startswith("log_") or key in _LEGACY_KEYS or key in _OUTPUT_KEYS:
                continue
            if isinstance(value, str):
                record[key] = scrub_text(value[:_FIELD_LIMIT])
            elif isinstance(value, _SCALARS):
                record[key] = value
            else:
                record[key] = scrub_text(_safe_str(value)[:_FIELD_LIMIT])
        error = _failure_text(event)
        if error is not None:
            record["error"] = error
        self.stream.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        self.stream.flush()


@implementer(ILogObserver)
@attrs.define(eq=False)
class TextObserver:
    """``<time> [<namespace>#<level>] <message>`` lines (and a traceback), for people."""

    stream: IO[str]

    def __call__(self, event: LogEvent) -> None:
        line = "{} [{}#{}] {}\n".format(
            _iso_time(event.get("log_time") or time.time()),
            event.get("log_namespace", "-"),
            _level_name(event),
            formatEvent(event),
        )
        error = _failure_text(event)
        if error is not None:
            line += error if error.endswith("\n") else error + "\n"
        self.stream.write(scrub_text(line))
        self.stream.flush()


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


def gateway_observer(
    stream: IO[str] | None = None,
    *,
    json_lines: bool | None = None,
    level: LogLevel = LogLevel.info,
) -> FilteringLogObserver:
    """The gateway's observer chain: level filter -> redaction -> writer.

    ``json_lines`` None means JSON unless ``stream`` is a terminal.
    """
    out = sys.stdout if stream is None else stream
    if json_lines is None:
        json_lines = not _isatty(out)
    writer: Callable[[LogEvent], None] = JsonLinesObserver(out) if json_lines else TextObserver(out)
    # zope interfaces are invisible to mypy: the casts state what @implementer says.
    return FilteringLogObserver(
        cast(ILogObserver, RedactingObserver(writer)),
        [cast(ILogFilterPredicate, LogLevelFilterPredicate(defaultLogLevel=level))],
    )


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def start_logging(
    stream: IO[str] | None = None,
    *,
    json_lines: bool | None = None,
    level: LogLevel = LogLevel.info,
) -> None:
    """Install :func:`gateway_observer` as the global log observer.

    For entry points only (``tap.main``); library code never touches global
    logging.  Standard output is not redirected into the log.
    """
    globalLogBeginner.beginLoggingTo(
        [cast(ILogObserver, gateway_observer(stream, json_lines=json_lines, level=level))],
        redirectStandardIO=False,
    )


def twistd_observer() -> FilteringLogObserver:
    """Factory for ``twistd --logger=clustergateway.observe.logs.twistd_observer``."""
    return gateway_observer()


def twistd_debug_observer() -> FilteringLogObserver:
    """The same with debug lines (``cluster-gateway -v 4`` and above)."""
    return gateway_observer(level=LogLevel.debug)


def _gate_user(request: Request) -> str | None:
    # The serving layer's Gate stores the authenticated UserInfo on the request.
    user = getattr(request, "gateway_user", None)
    name = getattr(user, "name", None)
    return name if isinstance(name, str) else None


_ACCESS_FORMAT = "{method} {path} {code} {bytes} {duration}s user={user} cluster={cluster}"
_ACCESS_FORMAT_NO_DURATION = "{method} {path} {code} {bytes} - user={user} cluster={cluster}"


@attrs.frozen
class _AccessNote:
    started: float | None
    user: str | None
    cluster: str | None


@attrs.define(eq=False)
class AccessLog:
    """The access log: one line per finished request, when ``enabled``.

    Install :meth:`log_request` as the Site's ``log`` (``site.log =
    access_log.log_request``): disabled, it returns at once, so twisted.web's
    default access line (a formatted string per request to the global log)
    never runs.  Layers that know more call :meth:`note` on the request (the
    serving layer: start time and user; the proxy: cluster); without a noted
    user, the ``gateway_user`` the serving layer's Gate sets is used.  An upgraded
    request never finishes, so the proxy calls :meth:`log_request` itself
    when the session ends, with the code it relayed.
    """

    enabled: bool = False
    clock: Callable[[], float] = time.time
    _notes: weakref.WeakKeyDictionary[Request, _AccessNote] = attrs.field(
        factory=weakref.WeakKeyDictionary, repr=False
    )

    log: Logger = attrs.field(factory=lambda: Logger(namespace="clustergateway.access"))

    def note(
        self,
        request: Request,
        *,
        started: float | None = None,
        user: str | None = None,
        cluster: str | None = None,
    ) -> None:
        """Remember facts for ``request``'s access line; later values win, ``None`` keeps."""
        if not self.enabled:
            return
        old = self._notes.get(request)
        if old is not None:
            started = old.started if started is None else started
            user = old.user if user is None else user
            cluster = old.cluster if cluster is None else cluster
        self._notes[request] = _AccessNote(started, user, cluster)

    def log_request(
        self, request: Request, *, code: int | None = None, sent_bytes: int | None = None
    ) -> None:
        """Write ``request``'s access line (a ``Site.log`` replacement)."""
        if not self.enabled:
            return
        note = self._notes.pop(request, None)
        uri = (getattr(request, "uri", b"") or b"").decode("latin-1")
        path, _, query = uri.partition("?")
        if query:
            path = f"{path}?{mask_query(query)}"
        duration = None
        if note is not None and note.started is not None:
            duration = round(self.clock() - note.started, 6)
        client = request.getClientAddress()
        self.log.info(
            _ACCESS_FORMAT if duration is not None else _ACCESS_FORMAT_NO_DURATION,
            method=(request.method or b"").decode("latin-1"),
            path=path,
            code=request.code if code is None else code,
            bytes=getattr(request, "sentLength", 0) if sent_bytes is None else sent_bytes,
            duration=duration,
            user=note.user if note is not None and note.user else _gate_user(request),
            cluster=note.cluster if note is not None else None,
            remote=getattr(client, "host", None),
        )
