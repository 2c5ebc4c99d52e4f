"""What a fleet of simulated gateways costs: startup, memory, and CPU per request it serves.

    python benchmarks/simulator_fleet.py [--gateways 1000] [--latency none] [--rounds 3] [--clients 2]

Starts a Fleet in this process, then has `--clients` processes (of `--threads` threads each) poll every
gateway `--rounds` times as a steady-state collector run does: a new TLS connection, GET /info,
/production.json?details=1 and /ivp/meters/readings with a session opened beforehand. It prints the fleet's
startup time, its resident memory idle and after the load, how many requests per second it served, and the
CPU time the fleet process spent per request (the clients run in processes of their own).
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
from urllib3.exceptions import InsecureRequestWarning  # noqa: E402

from envoylog.simulator import Fleet  # noqa: E402

STEADY = ("/info", "/production.json?details=1", "/ivp/meters/readings")


def rss_mb() -> tuple[float, float]:
    """This process's resident memory now and at its peak, in MB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def poll(url: str, cookie: str) -> tuple[int, int]:
    """One steady-state run against one gateway: a connection of its own, three requests; (made, failed)."""
    made = 0
    with requests.Session() as session:
        for path in STEADY:
            made += 1
            try:
                answer = session.get(f"{url}{path}", cookies={"sessionId": cookie}, verify=False, timeout=60)
                answer.raise_for_status()
            except requests.RequestException:
                return made, 1  # a reset (realistic latency has a few): the run ends, as a collector's does
    return made, 0


def client(targets: list[tuple[str, str]], rounds: int, threads: int) -> tuple[int, int]:
    """Poll every target `rounds` times with `threads` threads: (requests made, runs failed)."""
    warnings.simplefilter("ignore", InsecureRequestWarning)
    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(lambda target: poll(*target), targets * rounds))
    return sum(made for made, _ in results), sum(failed for _, failed in results)


def open_sessions(fleet: Fleet, threads: int) -> list[tuple[str, str]]:
    warnings.simplefilter("ignore", InsecureRequestWarning)

    def session_of(index: int) -> tuple[str, str]:
        unit = fleet.gateway(index)
        for attempt in range(3):
            try:
                answer = requests.get(
                    f"{unit.url}/auth/check_jwt",
                    headers={"Authorization": f"Bearer {fleet.issue_token(index)}"},
                    verify=False,  # noqa: S501 - the simulated gateway's certificate is self-signed
                    timeout=60,
                )
                answer.raise_for_status()
                return unit.url, answer.cookies["sessionId"]
            except requests.ConnectionError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(session_of, range(len(fleet.gateways))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateways", type=int, default=1000)
    parser.add_argument("--latency", choices=["none", "realistic"], default="none")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args()

    before = rss_mb()[0]
    started, cpu_started = time.perf_counter(), cpu_s()
    fleet = Fleet(args.gateways, latency=args.latency).start()
    startup, startup_cpu = time.perf_counter() - started, cpu_s() - cpu_started
    idle = rss_mb()[0]
    print(f"fleet of {args.gateways} gateways, latency {args.latency}")
    print(f"startup: {startup:.2f} s wall, {startup_cpu:.2f} s CPU")
    per_gateway = (idle - before) * 1024 / args.gateways
    print(f"memory: {before:.0f} MB before, {idle:.0f} MB idle ({per_gateway:.0f} kB a gateway)")
    try:
        targets = open_sessions(fleet, args.threads)
        fleet.clear_request_log()
        shares = [targets[k :: args.clients] for k in range(args.clients)]
        cpu_before, wall_before = cpu_s(), time.perf_counter()
        context = multiprocessing.get_context("spawn")
        with context.Pool(args.clients) as pool:
            results = pool.starmap(client, [(share, args.rounds, args.threads) for share in shares])
        made, failed = sum(made for made, _ in results), sum(failed for _, failed in results)
        wall, cpu = time.perf_counter() - wall_before, cpu_s() - cpu_before
        served = sum(fleet.requests_by_gateway().values())
        now, peak = rss_mb()
        print(
            f"load: {made} requests ({served} served, {failed} runs cut short by a reset) in {wall:.1f} s: "
            f"{served / wall:.0f} requests/s"
        )
        per_request = cpu / served * 1000
        print(f"fleet CPU: {cpu:.1f} s, {per_request:.2f} ms a request (a TLS handshake per run included)")
        print(f"memory after the load: {now:.0f} MB, peak {peak:.0f} MB")
    finally:
        stopped = time.perf_counter()
        fleet.stop()
        print(f"stop: {time.perf_counter() - stopped:.2f} s")


if __name__ == "__main__":
    main()
