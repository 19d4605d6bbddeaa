"""A stream from the API server that the facade leaves mid-way is closed at once, whatever the
server does: its socket is gone before the event loop stops.

The server here is a loopback TLS server that answers a watch with one event and then neither
sends, reads nor closes anything, so it never answers the TLS close_notify a graceful close
sends. Released that way (the facade before issue 12), the client's socket stayed open after its
loop had stopped, reported as "unclosed transport" when collected.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from kubernetes_asyncio import client

from gitfixtures import tls_material
from leakcheck import endpoints, open_sockets
from streamspace_facade.kube import Kube, close_stream

pytestmark = pytest.mark.integration

EVENT = {"type": "ADDED", "object": {"metadata": {"name": "s1", "resourceVersion": "2"}}}


@contextmanager
def silent_api_server(directory: Path) -> Iterator[tuple[str, Path]]:
    """(URL, CA file) of a server that sends one watch event, then nothing, and never closes."""
    ca, cert, key = tls_material(directory)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    done = threading.Event()

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:  # closed by the test
            return
        tls = context.wrap_socket(conn, server_side=True)
        accepted.append(tls)
        request = b""
        while b"\r\n\r\n" not in request:
            request += tls.recv(4096)
        line = json.dumps(EVENT).encode() + b"\n"
        tls.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n%s\r\n" % (len(line), line)
        )
        done.wait()  # silent until the test ends: no more data, no close_notify, no FIN

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{listener.getsockname()[1]}", ca
    finally:
        done.set()
        listener.close()
        thread.join(10)
        for conn in accepted:
            conn.close()


def connected_to(port: int) -> list[str]:
    """This process's sockets connected to ``port`` on loopback."""
    known = endpoints()
    return [
        known[inode]
        for inode in open_sockets()
        if f"-> 127.0.0.1:{port} " in known.get(inode, "") + " "
    ]


def kube_for(url: str, ca: Path) -> Kube:
    configuration = client.Configuration(host=url)
    configuration.ssl_ca_cert = str(ca)
    return Kube(client.ApiClient(configuration))


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def test_a_watch_cancelled_mid_stream_is_closed_before_the_loop_stops(tmp_path: Path) -> None:
    """The facade stopping: its informer is cancelled mid-watch, then its API client closed."""
    with silent_api_server(tmp_path) as (url, ca):

        async def watch_then_stop() -> None:
            kube = kube_for(url, ca)
            seen = asyncio.Event()

            async def informer() -> None:
                async for _ in kube.watch("Session", "ns", "1", 60):
                    seen.set()

            task = asyncio.create_task(informer())
            try:
                await asyncio.wait_for(seen.wait(), 10)
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            finally:
                await kube.api.close()

        asyncio.run(watch_then_stop())  # as the facade's thread ends: the loop stops at once
        assert connected_to(port_of(url)) == []


def test_a_followed_log_left_mid_stream_is_closed_before_the_loop_stops(tmp_path: Path) -> None:
    """A log follower leaving (``ws._follow``), then the facade stopping."""
    with silent_api_server(tmp_path) as (url, ca):

        async def follow_then_leave() -> None:
            kube = kube_for(url, ca)
            try:
                stream = await kube.pod_log("ns", "pod", "app", 10)
                assert await stream.content.readline()
                close_stream(stream)
            finally:
                await kube.api.close()

        asyncio.run(follow_then_leave())
        assert connected_to(port_of(url)) == []
