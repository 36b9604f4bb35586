"""A bounded load test of ``care-edge serve``: concurrent clients send real queries for a fixed time, then the answers
are compared with ``care-edge search --json`` for the same queries.

    python -m edge.serve.loadtest --clients 4 --seconds 30            # starts `python -m edge serve` itself
    python -m edge.serve.loadtest --command dist/care-edge            # the same against the binary

Queries: every shipped collection's ``bench_queries.txt``, each searched in the collection's modes (dense, and hybrid
where it has a lexical table), cycled. Each client holds one keep-alive connection and sends one request at a time.
Reported (JSON with ``--json``): requests, throughput, client-side latency p50/p99 (HTTP included), the server's own
``timings_ms.total`` p50/p99, errors (non-200 answers or failed requests; must be 0), the server's resident memory
(VmRSS) when ready and at the end and its peak (VmHWM), and whether every answer equals the CLI's (ids, scores,
texts, meta; timings excluded) for a sample of them, one CLI call per query.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import urlencode, urlsplit

import numpy as np

K = 10
QUERIES_PER_COLLECTION = 50


def _rss_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of ``pid`` in MiB (Linux /proc); empty where unavailable."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    except OSError:
        return {}
    values = {}
    for key in ("VmRSS", "VmHWM"):
        match = re.search(rf"^{key}:\s+(\d+) kB", status, re.MULTILINE)
        if match:
            values[key] = round(int(match.group(1)) / 1024, 1)
    return values


def _get(connection: http.client.HTTPConnection, path: str) -> tuple[int, Any]:
    connection.request("GET", path)
    reply = connection.getresponse()
    body = reply.read()
    return reply.status, json.loads(body)


def _workload(base: str) -> list[tuple[str, str, str]]:
    """``(index, mode, query)`` for every collection the server lists, from its bench_queries.txt."""
    parts = urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    _, listing = _get(connection, "/api/collections")
    connection.close()
    from edge.paths import prebuilt_index_dir

    work = []
    for collection in listing["collections"]:
        if not collection.get("available"):
            continue
        path = prebuilt_index_dir() / collection["name"] / "bench_queries.txt"
        if not path.is_file():
            continue
        queries = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        for mode in collection["modes"]:
            work += [(collection["name"], mode, query) for query in queries[:QUERIES_PER_COLLECTION]]
    if not work:
        raise SystemExit("loadtest: no collection with a bench_queries.txt to take queries from")
    return work


def run_clients(base: str, work: Sequence[tuple[str, str, str]], clients: int, seconds: float) -> dict[str, Any]:
    parts = urlsplit(base)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    server_totals: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    answers: dict[tuple[str, str, str], Any] = {}
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def client(number: int) -> None:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        position = number * len(work) // clients  # clients start at different queries
        while time.perf_counter() < deadline:
            index, mode, query = work[position % len(work)]
            position += 1
            path = "/api/search?" + urlencode({"q": query, "index": index, "mode": mode, "k": K})
            started = time.perf_counter()
            try:
                status, body = _get(connection, path)
            except (OSError, http.client.HTTPException, ValueError) as exc:
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
                connection.close()
                connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
                continue
            latencies[number].append((time.perf_counter() - started) * 1e3)
            if status != 200:
                with lock:
                    errors.append(f"HTTP {status}: {body.get('error', '')}")
                continue
            server_totals[number].append(body["timings_ms"]["total"])
            with lock:
                answers.setdefault((index, mode, query), body)
        connection.close()

    threads = [threading.Thread(target=client, args=(number,)) for number in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    flat = [value for values in latencies for value in values]
    totals = [value for values in server_totals for value in values]
    p50, p99 = np.percentile(flat, [50, 99]) if flat else (0.0, 0.0)
    s50, s99 = np.percentile(totals, [50, 99]) if totals else (0.0, 0.0)
    return {
        "requests": len(flat) + sum(1 for error in errors if not error.startswith("HTTP")),
        "seconds": round(elapsed, 1),
        "requests_per_s": round(len(flat) / elapsed, 1),
        "latency_ms": {"p50": round(float(p50), 2), "p99": round(float(p99), 2)},
        "server_total_ms": {"p50": round(float(s50), 2), "p99": round(float(s99), 2)},
        "errors": len(errors),
        "first_errors": errors[:5],
        "answers": answers,
    }


def compare_with_cli(command: Sequence[str], answers: dict[tuple[str, str, str], Any], sample: int) -> dict[str, Any]:
    """Run ``search QUERY --json`` for ``sample`` of the answered (collection, mode, query) triples, spread evenly,
    and compare with what the server answered. One query per CLI call, as the server searches one at a time: a
    batched call pads queries together, which moves INT8 scores in their last digits."""
    keys = sorted(answers)
    chosen = [keys[i * len(keys) // sample] for i in range(min(sample, len(keys)))] if keys else []
    mismatches = 0
    examples = []
    for index, mode, query in chosen:
        completed = subprocess.run([*command, "search", query, "--json", "--index", index, "--mode", mode,
                                    "-k", str(K)], capture_output=True, text=True, check=False)
        if completed.returncode != 0:
            raise SystemExit(f"loadtest: the CLI failed: {completed.stderr.strip()}")
        cli = json.loads(completed.stdout)
        served = dict(answers[(index, mode, query)])
        cli.pop("timings_ms")
        served.pop("timings_ms")
        if cli != served:
            mismatches += 1
            examples.append(f"{index}/{mode}: {query[:40]}")
    return {"compared": len(chosen), "mismatches": mismatches, "mismatch_examples": examples[:5]}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge.serve.loadtest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--command", default=f"{shlex.quote(sys.executable)} -m edge",
                        help="how to run care-edge (default: this Python's `-m edge`; e.g. dist/care-edge)")
    parser.add_argument("--max-concurrent", default="4", help="the server's --max-concurrent")
    parser.add_argument("--cli-sample", type=int, default=40, help="answers compared with the CLI (default 40)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    command = shlex.split(args.command)

    server = subprocess.Popen([*command, "serve", "--port", "0", "--max-concurrent", args.max_concurrent],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline() if server.stdout else ""
        match = re.search(r"http://127\.0\.0\.1:\d+/", line)
        if not match:
            server.terminate()
            raise SystemExit(f"loadtest: the server did not start: {line!r} {server.communicate(timeout=30)[1]!r}")
        base = match.group(0)
        # The binary re-executes itself from a bootloader: the serving process is the child.
        pid = _serving_pid(server.pid)
        work = _workload(base)
        at_start = _rss_mb(pid)
        report = run_clients(base, work, args.clients, args.seconds)
        at_end = _rss_mb(pid)
    finally:
        server.terminate()
        server.communicate(timeout=30)
    answers = report.pop("answers")
    report.update(
        clients=args.clients,
        distinct_queries=len(work),
        rss_mb={"start": at_start.get("VmRSS"), "end": at_end.get("VmRSS"), "peak": at_end.get("VmHWM")},
        identical_to_cli=compare_with_cli(command, answers, args.cli_sample),
        cpu=_cpu_name(),
        command=" ".join(command),
    )
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        rss = report["rss_mb"]
        same = report["identical_to_cli"]
        print(f"{report['clients']} clients x {report['seconds']} s on {report['cpu']}: {report['requests']} requests "
              f"({report['requests_per_s']}/s) over {report['distinct_queries']} distinct (collection, mode, query)\n"
              f"latency p50 {report['latency_ms']['p50']} ms, p99 {report['latency_ms']['p99']} ms (client side); "
              f"server total p50 {report['server_total_ms']['p50']} ms, p99 {report['server_total_ms']['p99']} ms\n"
              f"errors {report['errors']}\n"
              f"server RSS {rss['start']} MiB at start, {rss['end']} MiB at end (peak {rss['peak']} MiB)\n"
              f"identical to `care-edge search --json`: {same['compared'] - same['mismatches']}/{same['compared']}")
    return 0 if report["errors"] == 0 and report["identical_to_cli"]["mismatches"] == 0 else 1


def _serving_pid(pid: int) -> int:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text(encoding="utf-8").split()
    except OSError:
        return pid
    return int(children[0]) if children else pid


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} CPUs)"
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs"


if __name__ == "__main__":
    raise SystemExit(main())
