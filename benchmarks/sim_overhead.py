"""Benchmark: the simulation's overhead at 10 partners x 20 rounds, and federations of 1,000 simulated partners.

Issue 17 item 3. Figures, side by side in one JSON document:

- ``overhead``: a propensity job (epsilon 1) on ``--partners`` synthetic partners for ``--rounds`` rounds;
  overhead = the simulation's wall time / the partners' summed handler time (goal <= 1.3), with a profile of
  where the rest goes: Ray start-up, building the actor pool, the driver's round trip per message beyond the
  handler (Ray task submission, serialising message and context, the first message of each worker importing
  the ClientApp), and the time no partner computes (coordinator work and Flower's polling between rounds);
- ``thousand``: a propensity job (``--big-rounds`` rounds) and the insights preset batch on ``--big-partners``
  small partners (``--big-customers`` customers in all, written by ``data synth``): wall time, peak RSS of
  the Ray processes, and that peak per partner.

Every job runs in a fresh process of this script (``--one``), exactly as ``fedinsight simulate`` runs it (Flower's
simulation engine on Ray), with the driver's Flower backend calls timed from outside (never changed).

    python benchmarks/sim_overhead.py                       # 10 x 20 and 1,000 partners (~10 min on 2 cores)
    python benchmarks/sim_overhead.py --skip-thousand       # only the overhead at 10 x 20
    python benchmarks/sim_overhead.py --big-partners 200    # a smaller "thousand"
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ENV = {"FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1",
       "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1", "RAY_USAGE_STATS_ENABLED": "0"}


# --- memory of this process's descendants (Ray's raylet, GCS and workers), from /proc -------------------------

def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(ppid, []).append(int(entry))
    return tree


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class RssSampler(threading.Thread):
    """Peak summed RSS of every descendant of this process (the Ray processes), sampled twice a second."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_mb, self.peak_workers_mb, self.peak_processes = 0.0, 0.0, 0
        self.stop = threading.Event()

    def run(self) -> None:
        me = os.getpid()
        while not self.stop.wait(0.5):
            tree, todo, pids = _children(), [me], []
            while todo:
                for child in tree.get(todo.pop(), []):
                    pids.append(child)
                    todo.append(child)
            workers = [p for p in pids if "ray::" in _cmd(p) or "default_worker" in _cmd(p)]
            self.peak_mb = max(self.peak_mb, sum(_rss_mb(p) for p in pids))
            self.peak_workers_mb = max(self.peak_workers_mb, sum(_rss_mb(p) for p in workers))
            self.peak_processes = max(self.peak_processes, len(pids))


def _cmd(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


# --- one job, in this process, with Flower's backend calls timed ---------------------------------------------

def _instrument() -> dict[str, Any]:
    """Wrap (not change) Flower's RayBackend: Ray start-up, pool build, and every message's driver round trip."""
    from flwr.server.superlink.fleet.vce.backend.raybackend import RayBackend

    prof: dict[str, Any] = {"ray_init_s": 0.0, "pool_build_s": 0.0, "trips": [], "epochs": {}}
    init, build, process = RayBackend.init_ray, RayBackend.build, RayBackend.process_message
    terminate = RayBackend.terminate

    def timed_init(self: Any, config: Any) -> None:
        t = prof["init_at"] = time.perf_counter()
        init(self, config)
        prof["ray_init_s"] += time.perf_counter() - t

    def timed_build(self: Any, app_fn: Any) -> None:
        t = time.perf_counter()
        build(self, app_fn)
        prof["pool_build_s"] += time.perf_counter() - t
        prof["actors"] = self.num_workers

    def timed_process(self: Any, message: Any, context: Any) -> Any:
        t, at = time.perf_counter(), time.time()
        try:
            return process(self, message, context)
        finally:
            prof["trips"].append((t, time.perf_counter()))
            prof["epochs"][message.metadata.message_id] = (at, time.time())

    def timed_terminate(self: Any) -> None:
        terminate(self)
        prof["stopped_at"] = time.perf_counter()

    RayBackend.init_ray, RayBackend.build, RayBackend.process_message = timed_init, timed_build, timed_process
    RayBackend.terminate = timed_terminate
    return prof


def _legs(folder: Path, epochs: dict[str, tuple[float, float]]) -> tuple[Any, Any, list[float]]:
    """Median ms from the driver's submit to the handler's start, and from the handler's end back to the driver;
    and for each worker process its first message's submit-to-handler seconds (start-up and imports)."""
    ins, outs, firsts = [], [], []
    for path in sorted(folder.glob("handlers-*.txt")):
        lines = [line.split("\t") for line in path.read_text().splitlines()]
        for i, (_, seconds, at, mid) in enumerate(lines):
            if mid in epochs:
                sent, back = epochs[mid]
                (firsts if i == 0 else ins).append(float(at) - sent)
                if i:
                    outs.append(back - float(at) - float(seconds))
    return _median_ms(ins), _median_ms(outs), [round(f, 2) for f in firsts]


def _median_ms(values: list[float]) -> float | None:
    return round(1000 * sorted(values)[len(values) // 2], 1) if values else None


def _union(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def one(task: str, dataset: str, options: dict[str, Any], ray_address: str) -> dict[str, Any]:
    from fedinsight.federation.timing import ENV as TIMES
    from fedinsight.simulation.options import SimulationOptions
    from fedinsight.simulation.run import simulate

    prof = _instrument()
    sampler = RssSampler()
    sampler.start()
    with tempfile.TemporaryDirectory(prefix="sim-overhead-") as out:
        os.environ[TIMES] = str(Path(out) / "handler-times")  # the ClientApp's own handler times, kept to match
        started = time.perf_counter()
        run = simulate(task, SimulationOptions(dataset=dataset, out=out, ray_address=ray_address), options)
        total = time.perf_counter() - started
        inbound, outbound, firsts = _legs(Path(os.environ.pop(TIMES)), prof["epochs"])
    sampler.stop.set()
    sampler.join()
    timing = run.summary["timing"]
    trips = prof["trips"]
    trip_s = sum(b - a for a, b in trips)
    busy = timing.get("partner_handler_s") or 0.0
    wall = timing["simulation_s"]
    partners = int(run.summary.get("partners") or 0)
    first, last = (min(a for a, _ in trips), max(b for _, b in trips)) if trips else (0.0, 0.0)
    messages = int(timing.get("partner_messages") or len(trips))
    return {
        "task": task, "partners": partners, "options": options,
        "wall_s": round(wall, 2), "command_s": round(total, 2),
        "partner_handler_s": busy, "overhead": round(wall / busy, 3) if busy else None,
        "profile": {
            "ray_start_s": round(prof["ray_init_s"], 2),
            "actor_pool_build_s": round(prof["pool_build_s"], 2),
            "actors": prof.get("actors"),
            "messages": messages,
            "driver_round_trips_s": round(trip_s, 2),
            "per_message_beyond_handler_ms": round(1000 * (trip_s - busy) / messages, 1) if messages else None,
            "median_driver_to_handler_ms": inbound, "median_handler_to_driver_ms": outbound,
            "first_message_per_worker_driver_to_handler_s": firsts,
            "slowest_round_trips_s": [round(b - a, 2) for a, b in sorted(trips, key=lambda t: t[0] - t[1])[:3]],
            "from_first_to_last_message_s": round(last - first, 2),
            "no_partner_computing_s": round((last - first) - _union(trips), 2),
            "start_to_first_message_s": round(first - prof["init_at"], 2) if trips else None,
            "last_message_to_ray_stopped_s": round(prof.get("stopped_at", last) - last, 2),
        },
        "memory": {"peak_rss_all_ray_processes_mb": round(sampler.peak_mb), "peak_rss_ray_workers_mb":
                   round(sampler.peak_workers_mb), "processes": sampler.peak_processes,
                   "per_partner_mb": round(sampler.peak_mb / partners, 2) if partners else None},
        "result": _result(run),
    }


def _result(run: Any) -> dict[str, Any]:
    """What the job produced, in brief: released insight rows, or the propensity model's evaluation."""
    if run.task == "insights":
        from fedinsight.core.errors import FedinsightError

        try:
            return {"released_numbers": len(run.insights)}
        except FedinsightError:  # a batch whose every group was suppressed writes no insights.json
            return {"released_numbers": 0}
    metrics = run.summary.get("metrics") or {}
    return {name: {k: m.get(k) for k in ("auc", "partners_suppressed") if k in m}
            for name, m in metrics.items() if isinstance(m, dict) and name != "per_round"}


# --- the driver: synthesize, run each job in a fresh process, one JSON -----------------------------------

def synth(out: Path, partners: int, customers: int) -> None:
    cmd = [sys.executable, "-m", "fedinsight.cli", "data", "synth", "--partners", str(partners), "--customers",
           str(customers), "--out", str(out), "--seed", "1"]
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, **ENV})


def run_job(task: str, dataset: Path, options: dict[str, Any], ray_address: str) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--one", json.dumps({"task": task, "dataset": str(dataset), "options": options,
                                                           "ray_address": ray_address})]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **ENV})
    if proc.returncode != 0:
        return {"task": task, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--partners", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--customers", type=int, default=5_000, help="customers in all, at --partners")
    parser.add_argument("--big-partners", type=int, default=1_000)
    parser.add_argument("--big-customers", type=int, default=100_000, help="customers in all, at --big-partners")
    parser.add_argument("--big-rounds", type=int, default=2)
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--skip-thousand", action="store_true")
    parser.add_argument("--ray-address", default="", help="run every job on this Ray cluster")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        spec = json.loads(args.one)
        print(json.dumps(one(spec["task"], spec["dataset"], spec["options"], spec["ray_address"])))
        return
    report: dict[str, Any] = {"machine": {"cpus": os.cpu_count()}, "goal_overhead": 1.3}
    with tempfile.TemporaryDirectory(prefix="sim-overhead-data-") as tmp:
        if not args.skip_overhead:
            small = Path(tmp) / "small"
            synth(small, args.partners, args.customers)
            report["overhead"] = run_job("propensity", small, {"rounds": args.rounds, "epsilon": 1.0},
                                         args.ray_address)
        if not args.skip_thousand:
            big = Path(tmp) / "big"
            t = time.perf_counter()
            synth(big, args.big_partners, args.big_customers)
            synth_s = round(time.perf_counter() - t, 1)
            report["thousand"] = {
                "partners": args.big_partners, "customers": args.big_customers, "synth_s": synth_s,
                "propensity": run_job("propensity", big, {"rounds": args.big_rounds, "epsilon": 1.0},
                                      args.ray_address),
                "insights": run_job("insights", big, {"epsilon": 1.0}, args.ray_address),
            }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
