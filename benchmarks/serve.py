"""Latency and throughput of `fusionapp serve` for single predictions, over loopback only.

    python benchmarks/serve.py RUN [--requests 300] [--concurrency 4] [--image IMG --text TEXT]

Starts the real server on a free 127.0.0.1 port, sends a bounded number of POST /predict requests
(JSON, base64 image), prints p50 / p99 latency and requests/s, writes the figures as JSON, and
stops the server.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--image", help="image file (default: the demo's first image)")
    parser.add_argument("--text", default="selling a new lamp, ships fast")
    parser.add_argument("--out", default="benchmarks/results/serve.json")
    args = parser.parse_args()
    image = args.image or os.path.join("data", "demo", "images", "00000.png")
    payload = json.dumps({"image": base64.b64encode(open(image, "rb").read()).decode(), "text": args.text}).encode()

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "fusionapp", "serve", args.run, "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                urllib.request.urlopen(url + "/health", timeout=1)
                break
            except OSError:
                if server.poll() is not None or time.perf_counter() - started > 120:
                    sys.exit("the server did not start")
                time.sleep(0.1)
        startup = time.perf_counter() - started

        def one(_):
            request = urllib.request.Request(url + "/predict", data=payload,
                                             headers={"Content-Type": "application/json"})
            begin = time.perf_counter()
            with urllib.request.urlopen(request, timeout=60) as response:
                response.read()
                assert response.status == 200
            return time.perf_counter() - begin

        for _ in range(10):  # warm-up: first calls trace the model
            one(None)
        sequential = [one(None) for _ in range(args.requests)]
        begin = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
            concurrent_latencies = list(pool.map(one, range(args.requests)))
        concurrent_seconds = time.perf_counter() - begin
    finally:
        server.terminate()
        server.wait(timeout=30)

    figures = {
        "requests": args.requests,
        "server_startup_s": round(startup, 2),
        "sequential_p50_ms": round(1000 * float(np.percentile(sequential, 50)), 2),
        "sequential_p99_ms": round(1000 * float(np.percentile(sequential, 99)), 2),
        "sequential_requests_per_s": round(len(sequential) / sum(sequential), 1),
        "concurrency": args.concurrency,
        "concurrent_p50_ms": round(1000 * float(np.percentile(concurrent_latencies, 50)), 2),
        "concurrent_p99_ms": round(1000 * float(np.percentile(concurrent_latencies, 99)), 2),
        "concurrent_requests_per_s": round(args.requests / concurrent_seconds, 1),
    }
    for name, value in figures.items():
        print(f"{name:<28} {value}")
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as handle:
        json.dump(figures, handle, indent=2)


if __name__ == "__main__":
    main()
