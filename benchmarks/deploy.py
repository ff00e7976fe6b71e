"""Deployment benchmarks, printed as JSON with side-by-side figures and ratios.

1. ``secagg`` — SecAgg+ round time against the plain (FedAvg, no secure aggregation) round time, same
   partners, same training, same Flower runtime (simulation), one after the other: both runs go through the
   ``secure_training`` task's coordinator loop, the plain one with its rounds unmasked:
   * 10 partners running the real DP-SGD logistic-regression training on synthetic data (goal ≤ 1.5x);
   * 100 dummy clients that return a fixed-size random update, i.e. pure protocol cost (goal ≤ 2.5x).
   Round 1 (actor start-up, imports) is excluded; the median of the remaining rounds is reported.
2. ``api`` — the insights API (the real uvicorn process, HTTPS, token auth, audit append per request)
   under 200 reads/s for 60 s from a *second* process: an open-loop generator that sends on a fixed
   schedule and measures latency from the scheduled send time (no coordinated omission); goal p99 ≤ 50 ms
   and zero errors. If ``wrk`` is installed (Debian: ``apt-get install wrk``), a closed-loop wrk run of the
   same reads is added as a throughput cross-check.

Run: ``.venv/bin/python benchmarks/deploy.py`` (all; ~6 min on 2 cores) or ``benchmarks/deploy.py secagg`` /
``benchmarks/deploy.py api``. Loopback only; every process started is stopped before it exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

# --- 1. SecAgg+ vs plain round time -------------------------------------------------------------------


TASK = "secure_training"


def _dummy_client_app(size: int, secure: bool):  # type: ignore[no-untyped-def]
    """Clients that answer the task's hello and return a fixed-size random update (pure protocol cost)."""
    from flwr.client import NumPyClient
    from flwr.client.message_handler.message_handler import handle_legacy_message_from_msgtype
    from flwr.clientapp import ClientApp

    from fedinsight.federation.secagg import SECAGG_MODS
    from fedinsight.federation.task import partner_reply

    class Dummy(NumPyClient):
        def fit(self, parameters, config):  # type: ignore[no-untyped-def]
            rng = np.random.default_rng()
            return [p + rng.normal(0, 0.01, size=p.shape) for p in parameters], 1, {}

    def handler(msg, context):  # type: ignore[no-untyped-def]
        return handle_legacy_message_from_msgtype(client_fn=lambda ctx: Dummy().to_client(), message=msg,
                                                  context=context)

    def hello(msg, context):  # type: ignore[no-untyped-def]
        return partner_reply(msg, f"dummy-{context.node_config['partition-id']}", {})

    app = ClientApp()
    app.train(mods=SECAGG_MODS if secure else [])(handler)
    app.query(TASK)(hello)
    return app


def _real_client_app(secure: bool):  # type: ignore[no-untyped-def]
    """The partners' own ClientApp for the task; without SecAgg+'s mods on the train path for the plain run."""
    from flwr.clientapp import ClientApp

    from fedinsight.federation import registry
    from fedinsight.federation.secagg import legacy_train_handler
    from fedinsight.partner.clientapp import build_client_app, partner_for

    task = registry.get(TASK)
    full = build_client_app([task])
    if secure:
        return full
    app = ClientApp()
    app.query(TASK)(full)  # hello, exactly as the partners' app answers it
    app.train()(legacy_train_handler({TASK: task.secure_fit()}, default=TASK,
                                     partner_for=lambda name, ctx, cfg: partner_for(task, ctx, cfg)))
    return app


def _server_app(secure: bool, init: list[np.ndarray] | None):  # type: ignore[no-untyped-def]
    """The coordinator's loop for the task (``start``: hello, plan, charge, run), its rounds with or without
    SecAgg+ and from ``init``. Plain FedAvg sends every update in clear, so its manifest declares them."""
    from dataclasses import replace

    from flwr.serverapp import ServerApp

    from fedinsight.federation.manifest import PUBLIC, Manifest, Release
    from fedinsight.federation.secagg import SECAGG_REPLY
    from fedinsight.federation.task import TaskResult, start
    from fedinsight.models.dp_logreg import get_weights, make_model
    from fedinsight.tasks.secure_training import SecureTrainingTask, server
    from fedinsight.tasks.secure_training.client import NUM_FEATURES

    weights = init if init is not None else get_weights(make_model(NUM_FEATURES))

    class Timed(SecureTrainingTask):
        def plan(self, session):  # type: ignore[no-untyped-def]
            plan = super().plan(session)
            if secure:
                return plan
            clear = Release(SECAGG_REPLY, "fitres.parameters", {str(i): w.shape for i, w in enumerate(weights)},
                            PUBLIC, kind="arrays", what="the plain (unmasked) update",
                            reason="benchmark only: plain FedAvg, the round time SecAgg+ is compared with")
            releases = [clear if r.record == "fitres.parameters" else r for r in plan.manifest.releases]
            return replace(plan, manifest=Manifest(plan.manifest.task, tuple(releases)))

        def run(self, session):  # type: ignore[no-untyped-def]
            return TaskResult(server.train(session, secure=secure, init_weights=init))

    app = ServerApp()

    @app.main()
    def main(grid, context) -> None:  # type: ignore[no-untyped-def]
        start(Timed(), grid, context)

    return app


def time_rounds(partners: int, *, secure: bool, rounds: int, run_config: dict[str, Any], client_app: Any,
                init: list[np.ndarray] | None) -> dict[str, Any]:
    from fedinsight.federation.job import JobSettings
    from fedinsight.federation.options import merge_run_config
    from fedinsight.federation.simulation import run_simulation
    from fedinsight.federation.task import result_of
    from fedinsight.tasks.secure_training.options import SecureTrainingOptions

    config = merge_run_config(JobSettings.from_run_config({"task": TASK, "partners": partners, **run_config}),
                              SecureTrainingOptions.from_run_config({**run_config, "rounds": rounds}))
    context = run_simulation(config, partners, server_app=_server_app(secure, init), client_app=client_app,
                             cpus=max(1, os.cpu_count() or 1), cpus_per_partner=1.0)
    seconds = result_of(context)["timing"]["round_s"]
    steady = seconds[1:] or seconds
    return {"round_seconds": seconds, "median_round_s": round(statistics.median(steady), 3)}


def bench_secagg(args: argparse.Namespace) -> dict[str, Any]:
    from fedinsight.data.synth import SynthConfig, write_synthetic
    from fedinsight.partner.policy_init import init_partner

    tmp = Path(tempfile.mkdtemp(prefix="fedinsight-bench-deploy-"))
    results: dict[str, Any] = {}
    try:
        data = tmp / "data"
        write_synthetic(SynthConfig(customers=args.customers, partners=10, seed=7), data)
        for k in range(10):  # each partner's protection policy: planted direct identifiers are dropped
            init_partner(data / f"partner-{k}")
        real_cfg = {"data-root": str(data), "local-steps": args.local_steps, "sample-rate": 0.05, "budget": 1e6,
                    "max-shares": 9}
        real = {}
        for secure in (False, True):
            ledgers = {"ledger-url": f"sqlite:///{tmp / f'l-real-{secure}.db'}",
                       "partner-ledger-url": f"sqlite:///{tmp / f'pl-real-{secure}.db'}"}
            real["secagg" if secure else "plain"] = time_rounds(
                10, secure=secure, rounds=args.rounds, run_config={**real_cfg, **ledgers},
                client_app=_real_client_app(secure), init=None)
        real["ratio"] = round(real["secagg"]["median_round_s"] / real["plain"]["median_round_s"], 2)
        real["goal_ratio_max"] = 1.5
        results["10_partners_dp_training"] = real

        init = [np.zeros(args.dummy_size)]
        dummy = {}
        for secure in (False, True):
            cfg = {"ledger-url": f"sqlite:///{tmp / f'l-dummy-{secure}.db'}", "budget": 1e6, "max-shares": 9,
                   "timeout": 600.0}
            dummy["secagg" if secure else "plain"] = time_rounds(
                args.dummy_clients, secure=secure, rounds=args.rounds, run_config=cfg,
                client_app=_dummy_client_app(args.dummy_size, secure), init=init)
        dummy["ratio"] = round(dummy["secagg"]["median_round_s"] / dummy["plain"]["median_round_s"], 2)
        dummy["goal_ratio_max"] = 2.5
        dummy["update_size"] = args.dummy_size
        results[f"{args.dummy_clients}_dummy_clients"] = dummy
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return results


# --- 2. API load ----------------------------------------------------------------------------------------


async def _connection(host: str, port: int, ctx: Any, items: list[tuple[float, bytes]],
                      latencies: list[float], errors: dict[str, int]) -> None:
    """One keep-alive HTTPS connection sending its share of the schedule (raw HTTP/1.1: a light client)."""
    reader, writer = await asyncio.open_connection(host, port, ssl=ctx)
    try:
        for scheduled, request in items:
            await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
            try:
                writer.write(request)
                await writer.drain()
                status = int((await reader.readline()).split()[1])
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                if status != 200:
                    errors[str(status)] = errors.get(str(status), 0) + 1
            except (OSError, ValueError, IndexError, asyncio.IncompleteReadError) as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                reader, writer = await asyncio.open_connection(host, port, ssl=ctx)
            latencies.append(time.perf_counter() - scheduled)  # from the scheduled time: no coordinated omission
    finally:
        writer.close()


async def _open_loop(url: str, token: str, ca: str, paths: list[str], rate: float, duration: float,
                     connections: int = 32) -> dict[str, Any]:
    """Send ``rate`` requests/s on a fixed schedule for ``duration`` s; latency percentiles and errors."""
    import ssl
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", int(parts.port or 443)
    ctx = ssl.create_default_context(cafile=ca) if parts.scheme == "https" else None
    requests = [(f"GET {p} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
                 f"Connection: keep-alive\r\n\r\n").encode() for p in paths]
    total = int(rate * duration)
    start = time.perf_counter() + 1.0  # time to open the connections
    shares: list[list[tuple[float, bytes]]] = [[] for _ in range(connections)]
    for i in range(total):
        shares[i % connections].append((start + i / rate, requests[i % len(requests)]))
    latencies: list[float] = []
    errors: dict[str, int] = {}
    await asyncio.gather(*(_connection(host, port, ctx, items, latencies, errors) for items in shares))
    elapsed = time.perf_counter() - start
    lat = np.asarray(latencies) * 1000
    return {"requests": total, "connections": connections, "achieved_rps": round(total / elapsed, 1),
            "errors": errors, "p50_ms": round(float(np.percentile(lat, 50)), 2),
            "p95_ms": round(float(np.percentile(lat, 95)), 2), "p99_ms": round(float(np.percentile(lat, 99)), 2),
            "max_ms": round(float(lat.max()), 2)}


def load_main(argv: list[str]) -> None:
    """The second process: ``deploy.py _load URL TOKEN CA RATE DURATION PATH...`` prints JSON."""
    url, token, ca, rate, duration, *paths = argv
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(_open_loop(url, token, ca, paths, float(rate), float(duration)))))


def bench_api(args: argparse.Namespace) -> dict[str, Any]:
    from fedinsight.coordinator.config import load_coordinator_config
    from fedinsight.coordinator.process import api_command, child_env
    from fedinsight.coordinator.state import CoordinatorState
    from fedinsight.core.procs import free_port, stop_tree
    from fedinsight.federation.certs import init_certs

    tmp = Path(tempfile.mkdtemp(prefix="fedinsight-bench-api-"))
    api = None
    try:
        init_certs(tmp / "certs", hosts=["localhost", "127.0.0.1"], partners=["p0", "p1", "p2"])
        port = free_port()
        partners = "".join(f'[[partners]]\nid = "p{i}"\npublic-key = "certs/partners/p{i}.pub"\nepsilon = 10.0\n\n'
                           for i in range(3))
        (tmp / "coordinator.toml").write_text(
            f'[coordinator]\nstate-dir = "state"\n\n[tls]\nca-cert = "certs/ca.crt"\ncert = "certs/coordinator.crt"\n'
            f'key = "certs/coordinator.key"\n\n[api]\nhost = "127.0.0.1"\nport = {port}\n\n'
            f'[abuse]\nrequests-per-second = 1000.0\nburst = 2000\ninsight-reads-per-minute = 1000000\n\n{partners}')
        config = load_coordinator_config(tmp / "coordinator.toml")
        state = CoordinatorState.from_config(config)
        for i in range(3):
            state.ledger.set_budget(f"p{i}", 10.0, 1e-6)
        ids = [str(i) for i in state.insights.save("job-bench", [
            {"name": f"insight-{i}", "kind": "group_by", "query": {}, "epsilon": 0.1, "delta": 1e-6, "partners": 3,
             "suppressed_groups": 0, "values": list(np.round(np.random.default_rng(i).random(24), 3)), "ci95": 0.05}
            for i in range(200)], requester="bench")]
        token, _ = state.tokens.create("bench", "analyst")
        log = open(tmp / "api.log", "wb")  # noqa: SIM115 - closed below
        api = subprocess.Popen(api_command(config), env=child_env(config, state), stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
        import httpx

        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{config.api_url}/health", verify=str(config.tls.ca_cert)).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or api.poll() is not None:
                raise RuntimeError(f"API did not start: {(tmp / 'api.log').read_text()[-2000:]}")
            time.sleep(0.3)
        paths = ["/insights?limit=20", *[f"/insights/{i}" for i in ids[:50]]]
        audit_before = state.audit.verify().entries
        proc = subprocess.run([sys.executable, __file__, "_load", config.api_url, token, str(config.tls.ca_cert),
                               str(args.rate), str(args.duration), *paths], capture_output=True, text=True,
                              timeout=args.duration + 120, check=False)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-2000:])
        result: dict[str, Any] = {"open_loop": json.loads(proc.stdout), "target_rps": args.rate,
                                  "duration_s": args.duration, "goal_p99_ms_max": 50.0}
        verify = state.audit.verify()
        result["load_average_after"] = os.getloadavg()
        result["audit_entries_added"] = verify.entries - audit_before
        result["audit_chain_ok"] = verify.ok
        if shutil.which("wrk"):
            auth = f"Authorization: Bearer {token}"
            wrk = subprocess.run(["wrk", "-t2", "-c16", "-d15s", "--latency", "-H", auth,
                                  f"{config.api_url}/insights/{ids[0]}"],
                                 capture_output=True, text=True, timeout=120, check=False)
            result["wrk_closed_loop_15s_c16"] = _parse_wrk(wrk.stdout)
        return result
    finally:
        if api is not None:
            stop_tree(api, timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


def _parse_wrk(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for line in text.splitlines():
        parts = line.split()
        if line.strip().startswith("99%") and len(parts) == 2:
            out["p99"] = parts[1]
        elif line.strip().startswith("50%") and len(parts) == 2:
            out["p50"] = parts[1]
        elif line.startswith("Requests/sec:"):
            out["requests_per_s"] = float(parts[1])
        elif "Non-2xx" in line:
            out["non_2xx"] = int(parts[-1])
        elif line.strip().startswith("Socket errors"):
            out["socket_errors"] = line.split(":", 1)[1].strip()
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_load":
        load_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", nargs="?", default="all", choices=["all", "secagg", "api"])
    parser.add_argument("--rounds", type=int, default=4, help="Rounds per run (round 1 is excluded as warm-up).")
    parser.add_argument("--customers", type=int, default=20_000, help="Synthetic customers over the 10 partners.")
    parser.add_argument("--local-steps", type=int, default=20)
    parser.add_argument("--dummy-clients", type=int, default=100)
    parser.add_argument("--dummy-size", type=int, default=10_000, help="Update size of each dummy client.")
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--duration", type=float, default=60.0)
    args = parser.parse_args()
    report: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()}}
    if args.which in ("all", "secagg"):
        report["secagg_vs_plain_round_time"] = bench_secagg(args)
    if args.which in ("all", "api"):
        report["insights_api_load"] = bench_api(args)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
