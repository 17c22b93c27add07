"""GW-KV codec: bytes in, events out; replies in, bytes out. No I/O.

Layer: proto. Rules: no asyncio, no sockets, no storage imports; the grammar is
docs/protocol.md and every limit below points there. The server feeds received bytes to
``RequestParser`` and gets request events; the client feeds received bytes to
``ReplyParser`` and gets reply events. Both can be fed any split of the stream.

The module has four parts:

* request events and ``RequestParser`` (server side): ``feed(bytes)`` then call
  ``next_event()`` until it returns None. A refused request is a ``BadRequest`` event, never
  an exception: untrusted bytes cannot make the parser raise.
* reply encoders (server side): small functions returning the bytes of one reply.
* request encoders (client side): ``encode_*`` functions that validate with the same rules
  as the server and raise ``kvbox.errors`` exceptions, so a bad argument fails before it
  is sent.
* reply events and ``ReplyParser`` (client side): the client announces what each request
  expects (``Expect``), in order, and gets one reply event per request from
  ``next_reply()``. A malformed reply raises ``ProtocolError``: the server is trusted
  code, so a broken reply is a bug to report, not an input to survive.

Performance: the server parses >100k pipelined requests per second in one process, so
the parser never loops over bytes in Python. Lines are found with ``bytes.find`` on an
immutable buffer plus an offset; received pieces that arrive while a line is incomplete
are queued and joined once, when a newline (or enough payload) is there, which keeps a
byte-at-a-time sender from costing quadratic copying.

The package is cut the same way: ``events`` (limits and request events), ``parser``
(``RequestParser``; its refusals and byte queue in ``_stream``), ``replies`` (reply
encoders), ``encoders`` (request encoders) and ``client`` (reply events, ``ReplyParser``).
Everything public is re-exported here: ``from kvbox.proto import gwkv as p`` is the way
in.
"""

from __future__ import annotations

from kvbox.proto.gwkv._stream import (
    VERSION_LEN,
    is_version,
)
from kvbox.proto.gwkv.client import (
    NOT_FOUND_REPLY,
    BinaryReply,
    ConflictReply,
    ErrorReply,
    Expect,
    InfoReply,
    ItemReply,
    LineReply,
    MultiReply,
    NotFoundReply,
    OkReply,
    Reply,
    ReplyChunk,
    ReplyEnd,
    ReplyParser,
    ValueReply,
    expect_for,
)
from kvbox.proto.gwkv.encoders import (
    check_expected,
    check_instant,
    check_key,
    check_length,
    check_text,
    encode_auth,
    encode_bcas,
    encode_bcas_header,
    encode_bget,
    encode_bset,
    encode_bset_header,
    encode_cas,
    encode_delete,
    encode_get,
    encode_getat,
    encode_getv,
    encode_info,
    encode_multiget,
    encode_multiset,
    encode_ping,
    encode_quit,
    encode_request,
    encode_set,
    encode_stats,
    encode_version,
    encode_versions,
)
from kvbox.proto.gwkv.events import (
    DEFAULT_MAX_VALUE,
    MAX_CHUNK,
    MAX_INFO_LINES,
    MAX_KEY,
    MAX_LINE,
    MAX_MULTI,
    MAX_TEXT_VALUE,
    STREAM_THRESHOLD,
    UDP_MAX,
    Auth,
    BadRequest,
    BGet,
    BodyChunk,
    BodyEnd,
    BSet,
    Cas,
    Delete,
    Get,
    GetAt,
    GetVersion,
    Info,
    MultiGet,
    MultiSet,
    Ping,
    Quit,
    Request,
    RequestEvent,
    Set,
    Stats,
    Version,
    Versions,
)
from kvbox.proto.gwkv.parser import (
    COMMAND_WORDS,
    RequestParser,
)
from kvbox.proto.gwkv.replies import (
    BINARY_WRITE_CLOSING_CODES,
    BODY_END,
    BYE,
    CLOSING_CODES,
    NOTFOUND,
    OK,
    PONG,
    conflict,
    err,
    info,
    multi_get,
    notfound,
    ok,
    ok_version,
    value_binary,
    value_binary_header,
    value_text,
    versions_reply,
)

__all__ = [
    "BINARY_WRITE_CLOSING_CODES",
    "BODY_END",
    "BYE",
    "CLOSING_CODES",
    "COMMAND_WORDS",
    "DEFAULT_MAX_VALUE",
    "MAX_CHUNK",
    "MAX_INFO_LINES",
    "MAX_KEY",
    "MAX_LINE",
    "MAX_MULTI",
    "MAX_TEXT_VALUE",
    "NOTFOUND",
    "NOT_FOUND_REPLY",
    "OK",
    "PONG",
    "STREAM_THRESHOLD",
    "UDP_MAX",
    "VERSION_LEN",
    "Auth",
    "BGet",
    "BSet",
    "BadRequest",
    "BinaryReply",
    "BodyChunk",
    "BodyEnd",
    "Cas",
    "ConflictReply",
    "Delete",
    "ErrorReply",
    "Expect",
    "Get",
    "GetAt",
    "GetVersion",
    "Info",
    "InfoReply",
    "ItemReply",
    "LineReply",
    "MultiGet",
    "MultiReply",
    "MultiSet",
    "NotFoundReply",
    "OkReply",
    "Ping",
    "Quit",
    "Reply",
    "ReplyChunk",
    "ReplyEnd",
    "ReplyParser",
    "Request",
    "RequestEvent",
    "RequestParser",
    "Set",
    "Stats",
    "ValueReply",
    "Version",
    "Versions",
    "check_expected",
    "check_instant",
    "check_key",
    "check_length",
    "check_text",
    "conflict",
    "encode_auth",
    "encode_bcas",
    "encode_bcas_header",
    "encode_bget",
    "encode_bset",
    "encode_bset_header",
    "encode_cas",
    "encode_delete",
    "encode_get",
    "encode_getat",
    "encode_getv",
    "encode_info",
    "encode_multiget",
    "encode_multiset",
    "encode_ping",
    "encode_quit",
    "encode_request",
    "encode_set",
    "encode_stats",
    "encode_version",
    "encode_versions",
    "err",
    "expect_for",
    "info",
    "is_version",
    "multi_get",
    "notfound",
    "ok",
    "ok_version",
    "value_binary",
    "value_binary_header",
    "value_text",
    "versions_reply",
]
