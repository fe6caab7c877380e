"""A SIGTERM that answers every request whose connection was accepted, under load too.

On SIGTERM uvicorn closes the listening socket, which resets the connections the kernel had
accepted but the event loop had not yet taken (the accept queue), and closes every connection with
no request in progress, which resets those whose request had arrived but was not yet read: on a busy
machine, with 32 requests in flight, several clients got a connection reset. Here the accept queue is
taken before the listening socket closes (`DrainingServer`), and a connection whose request may be on
its way is kept until it is answered, with `Connection: close` (`DrainingHttp`): one that has sent
nothing yet (it gets uvicorn's keep-alive timeout to send its request), one whose request has begun,
and one with bytes waiting in its socket. An idle keep-alive connection is closed at once, as before.

This subclasses uvicorn's HTTP protocol and server and reads their state (the request cycle, the
keep-alive timer, the listening servers, the server state, the lifespan state), which uvicorn does
not document: checked against uvicorn 0.55.0 with httptools 0.9.0 (tests/test_serve.py sends SIGTERM
with 32 requests in flight on a busy machine).
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import struct

try:
    import fcntl
    import termios
except ImportError:  # not on Unix: waiting bytes cannot be counted, and such connections close as before
    fcntl = termios = None

from uvicorn import Server
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class DrainingHttp(HttpToolsProtocol):
    """uvicorn's httptools protocol, except that shutdown keeps a connection whose request may be
    on its way."""

    draining = False
    reading = False  # a request has begun and its head is not complete

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.reading = True

    def on_headers_complete(self) -> None:
        self.reading = False
        super().on_headers_complete()
        if self.draining and self.cycle is not None:
            self.cycle.keep_alive = False  # answered with Connection: close, then closed

    def shutdown(self) -> None:
        idle = self.cycle is None or self.cycle.response_complete
        if idle and (self.cycle is None or self.reading or _unread(self.transport)):
            self.draining = True
            if self.timeout_keep_alive_task is None:  # a fresh connection gets the keep-alive timeout too
                self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive,
                                                                    self.timeout_keep_alive_handler)
            return
        super().shutdown()


class DrainingServer(Server):
    """uvicorn's server, except that shutdown first takes every connection waiting in the listening
    sockets' accept queues."""

    async def shutdown(self, sockets=None) -> None:
        accepted = []
        for server in self.servers:
            for listening in server.sockets:
                accepted += _accept_waiting(listening)
            server.close()  # at once, in the same step: nothing can join the queue in between
        protocol = functools.partial(self.config.http_protocol_class, config=self.config,
                                     server_state=self.server_state, app_state=self.lifespan.state)
        loop = asyncio.get_running_loop()
        for connection in accepted:
            await loop.connect_accepted_socket(protocol, connection)
        await super().shutdown(sockets)


def _accept_waiting(listening) -> list[socket.socket]:
    """The connections waiting in a listening socket's accept queue."""
    own = socket.socket(fileno=os.dup(listening.fileno()))
    accepted = []
    try:
        own.setblocking(False)
        while True:
            connection, _ = own.accept()
            connection.setblocking(False)
            accepted.append(connection)
    except OSError:  # BlockingIOError: the queue is empty
        return accepted
    finally:
        own.close()  # the duplicate only


def _unread(transport) -> bool:
    """Whether bytes wait in the connection's socket, not yet read by the event loop."""
    sock = transport.get_extra_info("socket")
    if sock is None or fcntl is None:
        return False
    try:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0" * 4))[0] > 0
    except (OSError, ValueError):
        return False
