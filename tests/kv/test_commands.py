"""kvbox.kv.commands: the one GW-KV command table, and the door it drives."""

from __future__ import annotations

import typing
from collections.abc import AsyncIterator

import pytest

from kvbox.core.blob.memory import MemoryBlobStore
from kvbox.core.meta.memory import MemoryMetaStore
from kvbox.core.store import Store
from kvbox.kv import commands
from kvbox.kv.commands import BY_EVENT, COMMANDS, PAYLOAD_EVENTS, Command, Kind, KvCommands
from kvbox.proto import gwkv as p

#: One well-formed request per command word (the grammar of docs/protocol.md §4).
EXAMPLES = {
    b"SET": b"SET k v\n",
    b"GET": b"GET k\n",
    b"STATS": b"STATS\n",
    b"DELETE": b"DELETE k\n",
    b"CAS": b"CAS k - v\n",
    b"MULTISET": b"MULTISET 1\nk v\n",
    b"MULTIGET": b"MULTIGET a b\n",
    b"BSET": b"BSET k 2\nab\n",
    b"BCAS": b"BCAS k - 2\nab\n",
    b"BGET": b"BGET k\n",
    b"VERSION": b"VERSION k\n",
    b"VERSIONS": b"VERSIONS k\n",
    b"GETV": b"GETV k 01HZX3V8N8Q4S1Q3W2K5J7T9AB\n",
    b"BGETV": b"BGETV k 01HZX3V8N8Q4S1Q3W2K5J7T9AB\n",
    b"GETAT": b"GETAT k 1700000000000\n",
    b"BGETAT": b"BGETAT k 1700000000000\n",
    b"PING": b"PING\n",
    b"INFO": b"INFO\n",
    b"QUIT": b"QUIT\n",
    b"AUTH": b"AUTH AKEXAMPLE\n",
}


def _parse(line: bytes) -> p.RequestEvent:
    parser = p.RequestParser()
    parser.feed(line)
    ev = parser.next_event()
    assert ev is not None
    return ev


def test_every_parser_word_has_an_example() -> None:
    assert set(EXAMPLES) == p.COMMAND_WORDS, "add the new command's example above"


@pytest.mark.parametrize("row", COMMANDS, ids=lambda r: r.event.__name__)
def test_each_word_parses_into_its_rows_event(row: Command) -> None:
    for word in row.words:
        ev = _parse(EXAMPLES[word])
        assert type(ev) is row.event, word
        assert BY_EVENT[type(ev)] is row


def test_every_request_event_has_a_row() -> None:
    events = set(typing.get_args(p.RequestEvent))
    assert set(BY_EVENT) == events - PAYLOAD_EVENTS
    assert BY_EVENT[p.BadRequest].kind is Kind.READ
    assert BY_EVENT[p.Set].kind is Kind.SETS
    assert BY_EVENT[p.MultiGet].per_key


def test_a_forgotten_row_fails_at_import() -> None:
    """The checks ``BY_EVENT`` is built with: a request event without a row, a parser
    word no row claims, two rows for one event, a row that cannot answer."""
    without_delete = tuple(r for r in COMMANDS if r.event is not p.Delete)
    with pytest.raises(ValueError, match="without a row: \\['Delete'\\]"):
        commands._by_event(without_delete)
    wordless = tuple(
        Command((), r.event, r.kind, r.cost, r.run, r.quick) if r.event is p.Info else r
        for r in COMMANDS
    )
    with pytest.raises(ValueError, match="parser's"):
        commands._by_event(wordless)
    with pytest.raises(ValueError, match="two rows for Get"):
        commands._by_event((*COMMANDS, BY_EVENT[p.Get]))
    mute = Command((b"PING",), p.Ping, Kind.READ, 1, None, None)
    with pytest.raises(ValueError, match="no handler"):
        commands._by_event((*(r for r in COMMANDS if r.event is not p.Ping), mute))


@pytest.fixture
async def kv() -> AsyncIterator[KvCommands]:
    store = Store(MemoryMetaStore(), MemoryBlobStore())
    await store.open()
    await store.ensure_bucket("kv")
    yield KvCommands(store, "kv")
    await store.close()


async def test_every_command_answers_through_the_table(kv: KvCommands) -> None:
    """Each example, executed: a GW-KV reply of the form docs/protocol.md §3 gives it."""
    for word, line in EXAMPLES.items():
        reply = await kv.execute(_parse(line))
        assert isinstance(reply, bytes), word
        if word == b"AUTH":  # a connection's (server/gwkv.py); no connection here
            assert reply == b"ERR ARGS AUTH holds for a connection: use TCP\n"
            continue
        status = reply.split(b" ", 1)[0].split(b"\n", 1)[0]
        assert status in {b"OK", b"VALUE", b"NOTFOUND", b"CONFLICT"}, (word, reply)


async def test_quick_answers_need_no_waiting(kv: KvCommands) -> None:
    assert kv.immediate(p.Ping()) == b"OK PONG\n"
    assert kv.immediate(p.Quit()) == b"OK BYE\n"
    assert kv.immediate(p.BadRequest("ARGS", "usage")) == b"ERR ARGS usage\n"
    assert kv.counters.errors["ARGS"] == 1
    assert kv.immediate(p.Stats()) is None  # needs the store
    await kv.execute(p.Set("k", b"v"))
    assert kv.immediate(p.Get("k")) == b"VALUE v\n"  # the memtable or cache knows it
