"""agent.peer_http: the agent's HTTP/1.1 client against real sockets and hostile peers.

Each peer here is a raw loopback server that writes exactly the bytes a test scripts: a
well-behaved HTTP/1.1 server, or one that lies, floods, stalls or closes early.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import uvloop
from yarl import URL

from agent.errors import BadAnswer, Unreachable
from agent.http import exchange
from agent.peer_http import MAX_ANSWER_HEAD_BYTES, PeerSession

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"

# What the scripted server does with each request: (the request's bytes) -> bytes to
# write, or None to write nothing; a script may also close the connection.
Script = Callable[[bytes, "Peer"], bytes | None]


@dataclass
class Peer:
    url: URL
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    close_after_answer: bool = False
    script: Script = lambda request, peer: OK


async def _read_request(reader: asyncio.StreamReader) -> bytes | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = await reader.readexactly(length) if length else b""
    return head + body


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    state = Peer(url=URL("http://127.0.0.1"))

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        try:
            while (request := await _read_request(reader)) is not None:
                state.requests.append(request)
                answer = state.script(request, state)
                if answer:
                    writer.write(answer)
                    await writer.drain()
                if state.close_after_answer:
                    break
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    state.url = URL(f"http://127.0.0.1:{port}/config")
    async with server:
        yield state
        server.close()


@pytest.fixture
async def session() -> AsyncIterator[PeerSession]:
    session = PeerSession(timeout_seconds=2)
    yield session
    await session.close()


async def test_a_kept_connection_carries_the_next_requests(
    peer: Peer, session: PeerSession
) -> None:
    for _ in range(3):
        answer = await session.request("GET", peer.url, headers={"X-Agent-ID": "a"})
        assert (answer.status, answer.body) == (200, b"{}")
        assert answer.headers["content-type"] == "application/json"
    assert peer.connections == 1
    first = peer.requests[0].decode()
    assert first.startswith("GET /config HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{peer.url.port}\r\n" in first
    assert "X-Agent-ID: a\r\n" in first


async def test_a_body_is_sent_with_its_length(peer: Peer, session: PeerSession) -> None:
    await exchange(session, "POST", peer.url, headers={}, body={"url": "http://x"})
    request = peer.requests[0]
    assert request.startswith(b"POST /config HTTP/1.1\r\n")
    assert b"Content-Type: application/json\r\n" in request
    assert request.endswith(b'\r\n\r\n{"url": "http://x"}')
    assert b"Content-Length: 19\r\n" in request


async def test_chunked_and_close_delimited_answers_are_read_whole(
    peer: Peer, session: PeerSession
) -> None:
    peer.script = lambda r, p: (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    assert (await session.request("GET", peer.url, headers={})).body == b"abcde"
    peer.script = lambda r, p: b"HTTP/1.1 200 OK\r\n\r\nuntil the end"
    peer.close_after_answer = True
    assert (await session.request("GET", peer.url, headers={})).body == b"until the end"


async def test_an_interim_answer_is_passed_over(peer: Peer, session: PeerSession) -> None:
    peer.script = lambda r, p: b"HTTP/1.1 100 Continue\r\n\r\n" + OK
    assert (await session.request("GET", peer.url, headers={})).status == 200


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 70000\r\n\r\n" + b"x" * 70000,
            "larger than 65536",
            id="length",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"4000\r\n"
            + b"x" * 0x4000
            + b"\r\n"
            + (b"4000\r\n" + b"x" * 0x4000 + b"\r\n") * 4,
            "larger than 65536",
            id="chunked",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\n"
            + b"".join(b"X-%d: %s\r\n" % (i, b"y" * 100) for i in range(200))
            + b"Content-Length: 0\r\n\r\n",
            "headers pass",
            id="head",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nX-Endless: " + b"z" * 200_000, "headers pass", id="endless-header"
        ),
        pytest.param(b"NOT HTTP AT ALL\r\n\r\n", "not valid HTTP", id="malformed"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}x",
            "Duplicate Content-Length",
            id="two-lengths",
        ),
        pytest.param(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
            "not valid HTTP",
            id="upgrade",
        ),
    ],
)
async def test_an_answer_too_large_or_malformed_is_refused_and_the_connection_dropped(
    peer: Peer, session: PeerSession, answer: bytes, reason: str
) -> None:
    peer.script = lambda r, p: answer
    with pytest.raises(BadAnswer, match=reason):
        await session.request("GET", peer.url, headers={})
    peer.script = lambda r, p: OK
    assert (await session.request("GET", peer.url, headers={})).status == 200
    assert peer.connections == 2


def test_the_head_bound_leaves_room_for_real_answers() -> None:
    assert MAX_ANSWER_HEAD_BYTES >= 8 * 1024


async def test_a_second_answer_nobody_asked_for_closes_the_connection(
    peer: Peer, session: PeerSession
) -> None:
    """A peer that answers twice cannot slip its second answer to the next request."""
    smuggled = b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nforged!"
    peer.script = lambda r, p: OK + smuggled
    assert (await session.request("GET", peer.url, headers={})).body == b"{}"
    peer.script = lambda r, p: b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nreal"
    assert (await session.request("GET", peer.url, headers={})).body == b"real"
    assert peer.connections == 2


async def test_a_peer_that_never_answers_times_out(peer: Peer) -> None:
    peer.script = lambda r, p: None
    session = PeerSession(timeout_seconds=0.3)
    with pytest.raises(Unreachable, match=r"no answer within 0\.3 seconds"):
        await exchange(session, "GET", peer.url, headers={})
    # Half an answer, then nothing: the same.
    peer.script = lambda r, p: b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"
    with pytest.raises(Unreachable, match="no answer within"):
        await exchange(session, "GET", peer.url, headers={})
    await session.close()


async def test_a_kept_connection_closed_by_the_peer_is_replaced_for_a_get(
    peer: Peer, session: PeerSession
) -> None:
    """The peer closes each connection after its answer without saying so: the client
    sees it closed and connects anew."""
    peer.close_after_answer = True
    for _ in range(3):
        assert (await session.request("GET", peer.url, headers={})).status == 200
        await asyncio.sleep(0.05)
    assert len(peer.requests) == 3
    assert peer.connections == 3


async def test_a_get_the_peer_closed_on_unanswered_goes_out_once_more(
    peer: Peer, session: PeerSession
) -> None:
    """The peer closes a kept connection as the next GET arrives on it (its keep-alive
    ran out): the GET goes out once more, on a new connection, and is answered."""

    def close_the_second(request: bytes, p: Peer) -> bytes | None:
        if len(p.requests) == 2:
            p.close_after_answer = True
            return None
        p.close_after_answer = False
        return OK

    peer.script = close_the_second
    assert (await session.request("GET", peer.url, headers={})).status == 200
    assert (await session.request("GET", peer.url, headers={})).status == 200
    assert len(peer.requests) == 3
    assert peer.connections == 2


async def test_a_closed_connection_never_answers_with_the_previous_answer(
    peer: Peer, session: PeerSession
) -> None:
    """After a 304 with no length (it has no body), the peer closes the kept connection
    on the next GET: that GET gets its own answer, never the 304 again."""

    def answers(request: bytes, p: Peer) -> bytes | None:
        if len(p.requests) == 1:
            return b'HTTP/1.1 304 Not Modified\r\nETag: "1-a"\r\n\r\n'
        if len(p.requests) == 2:
            p.close_after_answer = True
            return None
        p.close_after_answer = False
        return b'HTTP/1.1 200 OK\r\nETag: "2-b"\r\nContent-Length: 2\r\n\r\n{}'

    peer.script = answers
    assert (await session.request("GET", peer.url, headers={})).status == 304
    second = await session.request("GET", peer.url, headers={})
    assert (second.status, second.headers["ETag"], second.body) == (200, '"2-b"', b"{}")
    assert len(peer.requests) == 3


async def test_a_post_is_never_sent_twice(peer: Peer, session: PeerSession) -> None:
    """A POST on a kept connection that the peer closed unanswered is Unreachable: the
    caller decides whether to send it again, never the client."""
    assert (await session.request("GET", peer.url, headers={})).status == 200

    def swallow(request: bytes, p: Peer) -> bytes | None:
        p.close_after_answer = True
        return None

    peer.script = swallow
    with pytest.raises(Unreachable):
        await session.request("POST", peer.url, headers={}, body=b"{}")
    assert sum(r.startswith(b"POST") for r in peer.requests) == 1


async def test_connection_close_is_honoured(peer: Peer, session: PeerSession) -> None:
    peer.script = lambda r, p: b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    await session.request("GET", peer.url, headers={})
    await session.request("GET", peer.url, headers={})
    assert peer.connections == 2


async def test_no_one_listening_is_unreachable(session: PeerSession, closed_port_url: str) -> None:
    with pytest.raises(Unreachable, match="cannot connect"):
        await session.request("GET", URL(closed_port_url), headers={})


async def test_a_header_that_would_break_the_request_is_never_sent(
    peer: Peer, session: PeerSession
) -> None:
    for bad in ("a\r\nX-Injected: 1", "a\nb", "a\0b"):
        with pytest.raises(ValueError, match="would break the request"):
            await session.request("GET", peer.url, headers={"If-None-Match": bad})
    assert peer.requests == []


async def test_a_closed_session_sends_nothing(peer: Peer) -> None:
    session = PeerSession(timeout_seconds=1)
    await session.request("GET", peer.url, headers={})
    await session.close()
    with pytest.raises(Unreachable, match="closed"):
        await session.request("GET", peer.url, headers={})
    assert len(peer.requests) == 1


async def test_https_checks_the_peer_certificate(tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await _read_request(reader) is not None:
            writer.write(OK)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_context)
    url = URL(f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/config")
    async with server:
        untrusting = PeerSession(timeout_seconds=2)
        with pytest.raises(Unreachable, match="CERTIFICATE_VERIFY_FAILED"):
            await untrusting.request("GET", url, headers={})
        await untrusting.close()
        trusting = PeerSession(
            timeout_seconds=2, ssl_context=ssl.create_default_context(cafile=str(cert))
        )
        assert (await trusting.request("GET", url, headers={})).body == b"{}"
        await trusting.close()


def test_the_agents_own_event_loop_uvloop_carries_the_exchanges() -> None:
    """The agent runs on uvloop as shipped (AGENT_EVENT_LOOP): the same exchanges there,
    kept connection and chunked answer included."""

    async def scenario() -> tuple[list[bytes], int]:
        connections = 0

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal connections
            connections += 1
            while await _read_request(reader) is not None:
                writer.write(
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
                )
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        url = URL(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/config")
        session = PeerSession(timeout_seconds=2)
        bodies = [(await session.request("GET", url, headers={})).body for _ in range(3)]
        await session.close()
        server.close()
        return bodies, connections

    bodies, connections = uvloop.run(scenario())
    assert bodies == [b"ok"] * 3
    assert connections == 1
