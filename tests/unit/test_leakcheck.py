"""The socket leak check (tests/leakcheck.py) fails the test that leaks, and only that one.

Each case runs a small test file in a pytest of its own (pytester, in a subprocess: what the
inner tests leak stays out of this process).
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
pytest_plugins = ["pytester"]

TESTS = Path(__file__).resolve().parents[1]

INNER = '''
import asyncio
import gc
import socket

import pytest

KEPT = []


@pytest.fixture(scope="session")
def server():
    """Opened on first use, closed at the end of the session: not a leak."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield listener


def test_leaks_a_connected_socket(server):
    client = socket.create_connection(server.getsockname())
    KEPT.append(client)  # never closed


def test_uses_the_session_fixture_and_closes_what_it_opens(server):
    with socket.create_connection(server.getsockname()):
        pass


def test_leaves_a_socket_to_the_garbage_collector():
    class Cycle:
        pass

    cycle = Cycle()
    cycle.self = cycle
    cycle.sock = socket.socket()
    del cycle


def test_a_closed_transport_closes_on_the_loops_next_iterations():
    async def main():
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    asyncio.run(main())


@pytest.mark.asyncio(loop_scope="session")
async def test_on_the_session_loop_closes_without_waiting_for_the_close():
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.close()  # closes on the loop's next iteration, after the test has returned
    server.close()
'''


def test_a_leak_fails_the_test_that_leaked_and_only_that_one(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(TESTS))
    pytester.makepyfile(test_inner=INNER)
    inner = pytester.runpytest_subprocess(
        "-p",
        "leakcheck",
        "-p",
        "no:cacheprovider",
        "-W",
        "error::ResourceWarning",
        "-W",
        "error::pytest.PytestUnraisableExceptionWarning",
        "-v",
    )
    inner.assert_outcomes(passed=5, errors=2)
    inner.stdout.fnmatch_lines(
        [
            "*test_leaks_a_connected_socket PASSED*",
            "*test_leaks_a_connected_socket ERROR*",
            "*test_uses_the_session_fixture_and_closes_what_it_opens PASSED*",
            "*test_leaves_a_socket_to_the_garbage_collector PASSED*",
            "*test_leaves_a_socket_to_the_garbage_collector ERROR*",
            "*test_a_closed_transport_closes_on_the_loops_next_iterations PASSED*",
            "*test_on_the_session_loop_closes_without_waiting_for_the_close PASSED*",
        ]
    )
    # the leaked socket, named: its addresses and the object that holds it
    inner.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaks_a_connected_socket*",
            "test_inner.py::test_leaks_a_connected_socket left 1 socket(s) open*",
            "  fd *: tcp 127.0.0.1:* -> 127.0.0.1:* ESTABLISHED",
            "    held by socket.socket",
        ]
    )
    # a socket freed by the garbage collector fails its own test with the ResourceWarning
    inner.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaves_a_socket_to_the_garbage_collector*",
            "*ResourceWarning: unclosed <socket.socket*",
            "*Captured stderr teardown*",
            "*test_leaves_a_socket_to_the_garbage_collector: the garbage collector closed 1 "
            "socket(s) that nothing else closed:",
            "  fd *: socket inode *",
            "    held by socket.socket",
            "    held by test_inner.*Cycle",
        ]
    )
