"""A bounded HTTP/1.1 load client for benchmarks/serve.py: asyncio streams over loopback, keep-alive
connections, each client sending its next request when the last is answered (a closed loop).

Written here rather than taken from locust or wrk so that it needs nothing beyond the standard
library and costs the 2-core benchmark machine little CPU beside the server it measures.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time


def request_bytes(method: str, path: str, body: bytes = b"", content_type: str = "application/json",
                  length: int | None = None) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if method == "POST":
        head += f"Content-Type: {content_type}\r\nContent-Length: {len(body) if length is None else length}\r\n"
    return (head + "\r\n").encode() + body


def hostile_requests(image: bytes, text: str) -> list[bytes]:
    """Requests a careless or hostile client sends: each should get a 4xx (or a 200 whose items
    carry their errors), never a 5xx."""
    good = base64.b64encode(image).decode()

    def post(payload, path="/predict"):
        return request_bytes("POST", path, json.dumps(payload).encode())

    boundary = "xyzzy"
    torn_form = f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'.encode()
    return [
        request_bytes("POST", "/predict", b"{oops"),
        request_bytes("POST", "/predict", b"[" * 5000 + b"]" * 5000),
        request_bytes("POST", "/predict", b'{"text": "bad \\ud800 text"}'),
        post({"image": "%%%", "text": text}),
        post({"image": base64.b64encode(b"hello, not an image").decode(), "text": text}),
        post({"image": base64.b64encode(image[: len(image) // 3]).decode(), "text": text}),
        post({"image": good, "text": text, "tabular": {"colour": "red"}}),
        post({"text": {"nested": [1, 2]}}),
        post({"text": "", "tabular": {}}),
        post({"items": []}, "/predict/batch"),
        post({"items": [{"image": good, "text": text}, {"image": "%%%"}, {"text": 5}, "nope"]}, "/predict/batch"),
        post({"items": [{"text": text}] * 300}, "/predict/batch"),
        request_bytes("POST", "/predict", torn_form, f"multipart/form-data; boundary={boundary}"),
        request_bytes("GET", "/predict"),
        request_bytes("GET", "/../../etc/passwd"),
        request_bytes("POST", "/predict", b"x" * (1024 * 1024 + 10)),
    ]


async def _exchange(reader, writer, payload: bytes) -> tuple[int, bool]:
    """Send one request; (status, whether the server keeps the connection open)."""
    writer.write(payload)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:] if line)}
    await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers.get("connection", "").lower() != "close"


async def _client(port: int, next_payload, latencies: list, statuses: dict, start: asyncio.Event,
                  connected: list) -> None:
    # Every client connects before any sends, so latencies are of requests, not of a burst of handshakes.
    connection = await asyncio.open_connection("127.0.0.1", port)
    connected.append(True)
    await start.wait()
    while (payload := next_payload()) is not None:
        began = time.perf_counter()
        for attempt in range(2):  # a connection the server closed (after a 413, say) is opened again
            if connection is None:
                connection = await asyncio.open_connection("127.0.0.1", port)
            try:
                status, keep = await _exchange(*connection, payload)
                break
            except (asyncio.IncompleteReadError, ConnectionError):
                connection[1].close()
                connection = None
                if attempt:
                    status, keep = "dropped", False
        latencies.append(time.perf_counter() - began)
        statuses[status] = statuses.get(status, 0) + 1
        if not keep and connection is not None:
            connection[1].close()
            connection = None
    if connection is not None:
        connection[1].close()


def run_load(port: int, payloads, requests: int, clients: int) -> dict:
    """`requests` requests over `clients` keep-alive connections; payloads[i % len] is the i-th.
    Returns the latencies (seconds), the count of each status and the wall time."""
    sent = 0

    def next_payload():
        nonlocal sent
        if sent >= requests:
            return None
        sent += 1
        return payloads[(sent - 1) % len(payloads)]

    latencies, statuses, connected = [], {}, []
    began = 0.0

    async def main():
        nonlocal began
        start = asyncio.Event()
        tasks = [asyncio.ensure_future(_client(port, next_payload, latencies, statuses, start, connected))
                 for _ in range(clients)]
        while len(connected) < clients:
            await asyncio.sleep(0.005)
        began = time.perf_counter()
        start.set()
        await asyncio.gather(*tasks)

    asyncio.run(main())
    return {"latencies": latencies, "statuses": statuses, "seconds": time.perf_counter() - began}
