"""`fusionapp serve` under load, over loopback only, against the same model's in-process speed.

    python benchmarks/serve.py RUN [--image IMG --text TEXT] [--requests 2000] [--clients 1,4,16,64]
                               [--max-batch 64] [--batch-wait-ms 2] [--workers 1] [--soak 30000]
    python benchmarks/serve.py RUN --startup 3 [--max-batch 64]
    python benchmarks/serve.py RUN --access-log-rounds 4 [--clients 16,64]
    python benchmarks/serve.py RUN --sigterm 5

1. In this process: `predict` over a table of the pair (the ratio's denominator, measured again
   just before and just after each served level, so that a level is compared with what this machine
   gave in the same minute), and the rows/s of the server's own row check and raw-input function on
   in-memory batches.
2. For each server set-up (batched: --max-batch and --batch-wait-ms; unbatched: --max-batch 1; each
   with every --workers count), the real server on a free 127.0.0.1 port, then requests/s and p50 /
   p99 latency of POST /predict (JSON, base64 image, one pair per request) at each number of
   concurrent keep-alive clients (benchmarks/load_client.py).
3. With --soak N: N requests from 16 clients, 30% of them hostile (malformed JSON, bad images,
   unknown columns, oversized bodies, ...): the server's RSS at start and end, and its statuses.

With --startup K, only this instead: K server starts, each's time to answer /ready 200 as a client
polling every 0.1 s sees it, and the server's own `Ready in ...` line (the model's load time, and
the warm-up's batch sizes and seconds). With --access-log-rounds R, only this: requests/s of the
batched server with --access-log and with --no-access-log (its stderr going to a file), the two
alternating R times at each number of clients, so that both see the same minutes of this machine.
With --sigterm K, only this: K times, a server, two busy-loop processes on the cores, 32 clients (16
`?explain=1`, 16 batched) started at once, and SIGTERM 0.02 to 0.2 s later: how many clients got
anything but a 200 (a client whose connection was refused was never accepted, and is counted apart).

Prints the figures and writes them as JSON (--out).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from load_client import hostile_requests, request_bytes, run_load  # noqa: E402


class InProcess:
    """The same model loaded in this process: `predict` over a table of the benchmark's pair
    (batches of 256, images read from their file), the ratio's denominator, measured again around
    each served level (`table_rows_per_s`) so that a level is compared with this machine's speed in
    the same minute; and the same row check and raw-input function as the server on in-memory
    batches (`figures`)."""

    def __init__(self, run_dir: str, image_path: str, text: str, folder: str):
        import csv

        from fusionapp.inference.run_rows import run_columns
        from fusionapp.runs.load import load_run
        from fusionapp.serve.predictor import RequestPredictor
        from fusionapp.settings import prediction_settings

        self.run = load_run(run_dir)
        self.predictor = RequestPredictor(self.run)
        self.predictor.warm_up()
        self.item = {"image": open(image_path, "rb").read(), "text": text, "tabular": {}}
        self.table = os.path.join(folder, "pairs.csv")
        # The run's own column names; its tabular cells empty, as the served item's are.
        columns = run_columns(self.run)
        header = (columns.image, columns.text, *columns.tabular_names)
        row = (os.path.abspath(image_path), text, *[""] * len(columns.tabular_names))
        with open(self.table, "w", newline="") as handle:
            csv.writer(handle).writerows([header] + [row] * TABLE_ROWS)
        self.arguments = dict(split=None, out=os.path.join(folder, "p.csv"), options=prediction_settings(),
                              image_root=None, explain_dir=None, verbose=0, renames={})
        self.table_rows_per_s()  # the first pass checks the image file; later ones remember it

    def table_rows_per_s(self) -> float:
        from fusionapp.inference.predict import predict_table

        began = time.perf_counter()
        predict_table(self.run, self.table, **self.arguments)
        return TABLE_ROWS / (time.perf_counter() - began)

    def figures(self, max_batch: int) -> dict:
        """In-memory rows/s in batches of 256, the median time of a batch of `max_batch`, and, for
        reading the served figures only, rows/s at the batch sizes 16 and 64 closed-loop clients make."""
        rows, began = 0, time.perf_counter()
        while time.perf_counter() - began < 5:
            self.predictor.predict([self.item] * 256)
            rows += 256
        rows_per_s = rows / (time.perf_counter() - began)
        times = []
        for _ in range(20):
            began = time.perf_counter()
            self.predictor.predict([self.item] * max_batch)
            times.append(time.perf_counter() - began)
        by_batch = {}
        for size in (8, 16, 32, 64):
            rows, began = 0, time.perf_counter()
            while time.perf_counter() - began < 1.5:
                self.predictor.predict([self.item] * size)
                rows += size
            by_batch[str(size)] = round(rows / (time.perf_counter() - began), 1)
        return {"in_process_rows_per_s": round(self.table_rows_per_s(), 1), "in_memory_rows_per_s": round(rows_per_s, 1),
                "batch_ms": round(1000 * float(np.median(times)), 2), "in_memory_rows_per_s_by_batch": by_batch}


TABLE_ROWS = 4096


@contextlib.contextmanager
def server(run_dir: str, *flags: str):
    """The server on a free port: (port, process, seconds to /ready, its `Ready in ...` line)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen([sys.executable, "-m", "fusionapp", "serve", run_dir, "--port", str(port),
                                    *flags], stdout=subprocess.DEVNULL, stderr=log)
        began = time.perf_counter()
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1)
                break
            except OSError:
                if process.poll() is not None or time.perf_counter() - began > 600:
                    sys.exit("the server did not start")
                time.sleep(0.1)
        ready_s = time.perf_counter() - began
        log.seek(0)
        line = next((line.strip() for line in log if line.startswith("Ready in ")), "")
        try:
            yield port, process, ready_s, line
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)


def startups(run_dir: str, count: int, max_batch: int) -> list[dict]:
    """Time to /ready of `count` server starts, against the model's load time the server reports."""
    rows = []
    for _ in range(count):
        with server(run_dir, "--max-batch", str(max_batch)) as (_, _, ready_s, line):
            found = re.match(r"Ready in ([\d.]+) s: the model loaded in ([\d.]+) s, warmed up at batch sizes "
                             r"1-(\d+) of (\d+) in ([\d.]+) s", line)
            row = {"to_ready_s": round(ready_s, 1), "max_batch": max_batch}
            if found:  # (an older fusionapp says nothing)
                row.update(load_s=float(found[2]), warmed_sizes=int(found[3]), warm_up_s=float(found[5]))
            rows.append(row)
            print(f"/ready after {ready_s:.1f} s: {line}", flush=True)
    return rows


def sigterm_rounds(run_dir: str, rounds: int, body: bytes) -> list[dict]:
    """Clients answered and not answered when SIGTERM comes among 32 requests on a busy machine."""
    from concurrent.futures import ThreadPoolExecutor

    def post(port, path):
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=300) as response:
                response.read()
                return str(response.status)
        except urllib.error.HTTPError as error:
            return str(error.code)
        except OSError as error:
            reason = getattr(error, "reason", error)
            return "refused" if isinstance(reason, ConnectionRefusedError) else type(reason).__name__

    rows = []
    for round_ in range(rounds):
        delay = (0.02, 0.1, 0.2, 0.05)[round_ % 4]
        with server(run_dir, "--grace-s", "300") as (port, process, *_):
            burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
            try:
                with ThreadPoolExecutor(32) as pool:
                    outcomes = [pool.submit(post, port, "/predict?explain=1" if i % 2 else "/predict")
                                for i in range(32)]
                    time.sleep(delay)
                    process.send_signal(signal.SIGTERM)
                    outcomes = [outcome.result() for outcome in outcomes]
                exit_code = process.wait(timeout=300)
            finally:
                for burner in burners:
                    burner.kill()
        counts = {outcome: outcomes.count(outcome) for outcome in sorted(set(outcomes))}
        rows.append({"delay_s": delay, "outcomes": counts, "exit_code": exit_code})
        print(f"SIGTERM {delay} s after 32 requests: {counts}, exit code {exit_code}", flush=True)
    return rows


def access_log_line_us(lines: int = 200_000) -> float:
    """Microseconds of the event loop's time one access-log line costs, written to a file as the
    server writes them (the lines of each turn of the loop at once, 16 a turn here)."""
    import asyncio

    from fusionapp.serve.access_log import NOTE, AccessLog

    scope = {"method": "POST", "path": "/predict", "raw_path": b"/predict", "query_string": b"", NOTE: "batch=16"}

    async def write(log):
        for start in range(0, lines, 16):
            for _ in range(16):
                log.request(scope, 200, 0.0123)
            await asyncio.sleep(0)  # the turn ends: its lines are written

    with tempfile.TemporaryFile("w") as stream:
        began = time.perf_counter()
        asyncio.run(write(AccessLog(stream)))
        with_log = time.perf_counter() - began
    began = time.perf_counter()
    asyncio.run(write(SimpleNamespace(request=lambda *_: None)))
    return 1e6 * (with_log - (time.perf_counter() - began)) / lines


def access_log_cost(args, payload: bytes) -> list[dict]:
    """Requests/s of the batched server with and without its access log, alternating."""
    rows = []
    if args.access_log_rounds:
        print(f"one access-log line costs the event loop {access_log_line_us():.2f} us", flush=True)
    for round_ in range(args.access_log_rounds):
        for flag in ("--access-log", "--no-access-log"):
            with server(args.run, "--max-batch", str(args.max_batch), "--batch-wait-ms", str(args.batch_wait_ms),
                        flag) as (port, *_):
                run_load(port, [payload], 200, 4)  # warm-up
                for clients in [int(c) for c in args.clients.split(",")]:
                    result = run_load(port, [payload], max(args.requests, 20 * clients), clients)
                    rate = round(len(result["latencies"]) / result["seconds"], 1)
                    rows.append({"round": round_, "access_log": flag == "--access-log", "clients": clients,
                                 "requests_per_s": rate})
                    print(f"round {round_} {flag:<16} clients {clients:>3}: {rate:>7} req/s", flush=True)
    for clients in sorted({row["clients"] for row in rows}):
        rates = {on: [row["requests_per_s"] for row in rows if row["clients"] == clients and row["access_log"] == on]
                 for on in (True, False)}
        print(f"clients {clients:>3}: median {np.median(rates[True]):.1f} req/s with the access log, "
              f"{np.median(rates[False]):.1f} without (each round: " + ", ".join(
                  f"{a:.0f}/{b:.0f}" for a, b in zip(rates[True], rates[False])) + ")")
    return rows


def batch_totals(port: int) -> dict:
    """The server's own sums of batch durations and sizes, and its batch count, from /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        text = response.read().decode()
    wanted = {"fusionapp_batch_duration_seconds_sum", "fusionapp_batch_size_sum", "fusionapp_batch_size_count"}
    return {sample.name: sample.value for family in text_string_to_metric_families(text) for sample in family.samples
            if sample.name in wanted}


def load_figures(port: int, payload: bytes, requests: int, clients: int, wait_ms: float) -> dict:
    before = batch_totals(port)
    result = run_load(port, [payload], max(requests, 20 * clients), clients)
    after = batch_totals(port)
    batches = max(after["fusionapp_batch_size_count"] - before["fusionapp_batch_size_count"], 1)
    batch_ms = 1000 * (after["fusionapp_batch_duration_seconds_sum"] - before["fusionapp_batch_duration_seconds_sum"]) \
        / batches
    latencies = result["latencies"]
    p99 = 1000 * float(np.percentile(latencies, 99))
    return {"requests_per_s": round(len(latencies) / result["seconds"], 1),
            "p50_ms": round(1000 * float(np.percentile(latencies, 50)), 2), "p99_ms": round(p99, 2),
            # "batch time": the server's own mean time of one model call (row check, raw-input
            # function, answers) over the batches of this level: fusionapp_batch_duration_seconds'
            # sum over its count, read from /metrics before and after
            "served_batch_ms": round(batch_ms, 2),
            "mean_batch": round((after["fusionapp_batch_size_sum"] - before["fusionapp_batch_size_sum"]) / batches, 1),
            # the latency a request should stay under (the issue's): --batch-wait-ms, the batch
            # ahead of it and its own
            "p99_bound_ms": round(wait_ms + 2 * batch_ms, 2), "p99_within_bound": p99 < wait_ms + 2 * batch_ms,
            "statuses": {str(k): v for k, v in result["statuses"].items()}}


def rss_mb(pid: int) -> float:
    import psutil

    process = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)]) / 1e6


def soak(run_dir: str, payload: bytes, image: bytes, text: str, requests: int) -> dict:
    hostile = hostile_requests(image, text)
    payloads = [hostile[(i // 10 * 3 + i % 10 // 3) % len(hostile)] if i % 10 in (2, 5, 8) else payload
                for i in range(10 * len(hostile))]
    with server(run_dir, "--max-body-mb", "1") as (port, process, *_):
        run_load(port, [payload], 500, 16)  # warm: the allocator's pools reach their working size
        start = rss_mb(process.pid)
        result = run_load(port, payloads, requests, 16)
        end = rss_mb(process.pid)
    statuses = {str(k): v for k, v in sorted(result["statuses"].items(), key=str)}
    return {"soak_requests": requests, "soak_hostile_share": 0.3, "soak_rss_start_mb": round(start, 1),
            "soak_rss_end_mb": round(end, 1), "soak_rss_growth": round(end / start - 1, 4),
            "soak_statuses": statuses, "soak_5xx": sum(v for k, v in statuses.items() if k.startswith("5")),
            "soak_seconds": round(result["seconds"], 1)}


def served_levels(args, payload: bytes, local: InProcess, figures: dict) -> None:
    """Each server set-up at each number of clients, with the denominator measured around each level."""
    setups = [("batched", ["--max-batch", str(args.max_batch), "--batch-wait-ms", str(args.batch_wait_ms)]),
              ("unbatched", ["--max-batch", "1"])]
    for workers in [int(w) for w in args.workers.split(",")]:
        for (name, flags), wait_ms in zip(setups, (args.batch_wait_ms, 0.0)):
            with server(args.run, *flags, "--workers", str(workers)) as (port, _, startup, _):
                run_load(port, [payload], 200, 4)  # warm-up
                before = local.table_rows_per_s()
                for clients in [int(c) for c in args.clients.split(",")]:
                    row = {"setup": name, "workers": workers, "clients": clients, "startup_s": round(startup, 2),
                           **load_figures(port, payload, args.requests, clients, wait_ms)}
                    after = local.table_rows_per_s()
                    row["in_process_rows_per_s"] = round((before + after) / 2, 1)
                    before = after
                    row["ratio"] = round(row["requests_per_s"] / row["in_process_rows_per_s"], 3)
                    row["ratio_in_memory"] = round(row["requests_per_s"] / figures["in_memory_rows_per_s"], 3)
                    figures["setups"].append(row)
                    # the bound is the batching server's (the issue's); an unbatched one has no window
                    verdict = ("met" if row["p99_within_bound"] else "NOT met") if name == "batched" else "n/a"
                    print(f"{name:<10} workers {workers}  clients {clients:>3}: {row['requests_per_s']:>7} req/s  "
                          f"p50 {row['p50_ms']:>7} ms  p99 {row['p99_ms']:>7} ms; bound {wait_ms:g} + 2 x "
                          f"{row['served_batch_ms']} = {row['p99_bound_ms']} ms: {verdict}  (mean batch "
                          f"{row['mean_batch']})  ratio {row['ratio']:.2f} of {row['in_process_rows_per_s']}  "
                          f"{row['statuses']}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run")
    parser.add_argument("--requests", type=int, default=2000, help="requests per number of clients")
    parser.add_argument("--clients", default="1,4,16,64")
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--batch-wait-ms", type=float, default=5.0)
    parser.add_argument("--workers", default="1", help="worker counts to measure, e.g. 1,2")
    parser.add_argument("--soak", type=int, default=0, help="requests of the soak (0: none)")
    parser.add_argument("--image", help="image file (default: the demo's first image)")
    parser.add_argument("--text", default="selling a new lamp, ships fast")
    parser.add_argument("--startup", type=int, default=0, help="only time this many server starts")
    parser.add_argument("--sigterm", type=int, default=0, help="only send SIGTERM under load this many times")
    parser.add_argument("--access-log-rounds", type=int, default=0,
                        help="only compare requests/s with and without the access log, this many rounds")
    parser.add_argument("--out", help="[default: benchmarks/results/serve.json; serve_startup.json with --startup, "
                                      "--access-log-rounds or --sigterm]")
    args = parser.parse_args()
    image_path = args.image or os.path.join("data", "demo", "images", "00000.png")
    image = open(image_path, "rb").read()
    payload = request_bytes("POST", "/predict", json.dumps({"image": base64.b64encode(image).decode(),
                                                            "text": args.text}).encode())
    if args.startup or args.access_log_rounds or args.sigterm:
        body = json.dumps({"image": base64.b64encode(image).decode(), "text": args.text}).encode()
        figures = {"run": args.run, "startup": startups(args.run, args.startup, args.max_batch),
                   "access_log": access_log_cost(args, payload), "sigterm": sigterm_rounds(args.run, args.sigterm, body)}
        write(figures, args.out or "benchmarks/results/serve_startup.json")
        return
    with tempfile.TemporaryDirectory() as folder:
        local = InProcess(args.run, image_path, args.text, folder)
        figures = {"run": args.run, **local.figures(args.max_batch), "setups": []}
        print(f"in process: predict on a table {figures['in_process_rows_per_s']} rows/s; in memory (batches of 256) "
              f"{figures['in_memory_rows_per_s']} rows/s; a batch of {args.max_batch}: {figures['batch_ms']} ms; in "
              "memory by batch size: " + ", ".join(f"{size}: {rate}" for size, rate in
                                                  figures["in_memory_rows_per_s_by_batch"].items()) + " rows/s")
        print("ratio = served requests/s over `predict` on the table measured just before and just after the level "
              "(their mean, shown as 'of'); p99 bound = --batch-wait-ms + 2 x batch time, where batch time is the "
              "server's mean time of one model call at that level (fusionapp_batch_duration_seconds sum / count "
              "from /metrics, before and after)")
        served_levels(args, payload, local, figures)
    if args.soak:
        figures.update(soak(args.run, payload, image, args.text, args.soak))
        print({key: value for key, value in figures.items() if key.startswith("soak")})
    write(figures, args.out or "benchmarks/results/serve.json")


def write(figures: dict, path: str) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as handle:
        json.dump(figures, handle, indent=2)


if __name__ == "__main__":
    main()
