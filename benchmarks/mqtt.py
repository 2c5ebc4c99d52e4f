"""What publishing to MQTT adds to a collect: paired runs with and without `[mqtt]`, and the publish alone.

    python benchmarks/mqtt.py [--profile metered] [--rounds 30] [--broker 127.0.0.1:1883]

Against the simulated gateway and a real broker (Mosquitto on loopback), into a SQLite file: each round runs
one collect without `[mqtt]` and one with it (discovery already published, as in the steady state), and
then times `publish_states` alone with and without discovery. It prints medians, the messages and bytes a
run publishes, and what importing paho costs a new process. The retained messages it leaves are cleared.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from paho.mqtt.client import Client  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from envoylog.collect.run import collect_all  # noqa: E402
from envoylog.config import GatewaySettings, MqttSettings, Settings  # noqa: E402
from envoylog.db.migrate import open_database  # noqa: E402
from envoylog.handoff.mqtt import gateway_messages, publish_states  # noqa: E402
from envoylog.handoff.state import RunFacts, load_states  # noqa: E402
from envoylog.simulator import Simulator  # noqa: E402


def cpu_ms(code: str) -> float:
    """CPU milliseconds of one `python -c code` process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-c", code], check=True)  # noqa: S603 - our own code
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) * 1000


def clear(host: str, port: int, topics: list[str]) -> None:
    """Publish an empty retained message to each topic: the broker forgets them."""
    client = Client(CallbackAPIVersion.VERSION2)
    client.connect(host, port)
    client.loop_start()
    for info in [client.publish(topic, b"", qos=1, retain=True) for topic in topics]:
        info.wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="metered")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--broker", default="127.0.0.1:1883")
    args = parser.parse_args()
    host, port = args.broker.rsplit(":", 1)
    tag = uuid.uuid4().hex[:8]
    mqtt = MqttSettings(
        url=f"mqtt://{args.broker}",
        host=host,
        port=int(port),
        topic_prefix=f"bench-{tag}",
        discovery_prefix=f"bench-ha-{tag}",
    )
    with tempfile.TemporaryDirectory() as scratch, Simulator(args.profile, state_dir=Path(scratch)) as sim:
        cache = Path(scratch) / "cache"
        plain = Settings(
            db_url=f"sqlite:///{scratch}/bench.db",
            timezone="UTC",
            enlighten_url=sim.enlighten_url,
            entrez_url=sim.entrez_url,
            gateways=(GatewaySettings("home", sim.gateway_url, sim.username, sim.password),),
        )
        publishing = replace(plain, mqtt=mqtt)
        os.environ["XDG_CACHE_HOME"] = str(cache)  # the discovery cache: this run's own

        def collect(settings: Settings) -> float:
            sim.clock.advance(timedelta(minutes=1))
            started = time.perf_counter()
            collect_all(settings, cloud_verify=str(sim.ca_file), clock=sim.clock.now)
            return time.perf_counter() - started

        collect(publishing)  # login, discovery of the gateway, and MQTT discovery published
        without, with_mqtt = [], []
        for _ in range(args.rounds):
            without.append(collect(plain))
            with_mqtt.append(collect(publishing))

        engine = open_database(plain.db_url, create=False)
        with engine.connect() as conn:
            (state,) = load_states(conn, [RunFacts("home", sim.serial, "ok", 0.1, 3, 0, 0)])
        engine.dispose()
        now = sim.clock.now()
        discovery, values = gateway_messages(mqtt, state, now, timedelta(minutes=15))
        alone: dict[str, list[float]] = {"states only": [], "with discovery": []}
        for _ in range(args.rounds):
            for name in alone:
                if name == "with discovery":
                    for entry in cache.glob("*.json"):
                        entry.unlink()
                started = time.perf_counter()
                outcome = publish_states(mqtt, [state], now, stale_after=timedelta(minutes=15), timeout_s=10)
                alone[name].append(time.perf_counter() - started)
                assert outcome.error is None, outcome.error
        clear(host, int(port), [m.topic for m in discovery + values])

    def ms(values: list[float]) -> str:
        return f"{statistics.median(values) * 1000:.1f} ms"

    print(f"profile {args.profile}, {args.rounds} paired rounds, broker {args.broker}")
    print(f"  collect without [mqtt]        median {ms(without)}")
    print(f"  collect with [mqtt]           median {ms(with_mqtt)}")
    added = [b - a for a, b in zip(without, with_mqtt, strict=True)]
    print(f"  added by the hand-off         median {ms(added)}")
    for name, times in alone.items():
        print(f"  publish_states, {name:<14} median {ms(times)}")
    discovery_bytes = sum(len(m.payload) for m in discovery)
    value_bytes = sum(len(m.payload) for m in values)
    print(f"  messages a run: {len(values)} states ({value_bytes:,} B)")
    print(f"  discovery: {len(discovery)} configs ({discovery_bytes:,} B)")
    base = statistics.median(cpu_ms("pass") for _ in range(5))
    paho = statistics.median(cpu_ms("import paho.mqtt.client") for _ in range(5))
    print(f"  importing paho in a new process: {paho - base:.1f} ms CPU")


if __name__ == "__main__":
    main()
