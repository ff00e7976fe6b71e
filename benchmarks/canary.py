"""Canary leak audit: plant unique identifiers in partner data, run every job, find none of them anywhere.

    python benchmarks/canary.py --out runs/canary

prints ``{"canaries_planted": N, "canaries_found": 0, "places_scanned": M, ...}`` and exits 0 only when
no canary was found *and* the positive control (scanning the planted input files with the same scanner)
finds every canary -- so a broken scanner cannot pass.

What runs, each as a separate ``fedinsight`` process in a sandbox (HOME, FEDINSIGHT_HOME, TMPDIR and
Ray's temp dir all inside the audit's folders, so every file a run writes is scanned):

- ``data scan`` before any policy exists (must refuse, naming columns but no values), ``partner init``
  per partner, ``data scan`` again, ``partner check`` for every purpose, ``partner forget`` of a few
  canary customers, ``partner artifacts``;
- a Flower simulation of every task installed: ``fedinsight simulate <command> --dataset DIR
  --partners N --out DIR`` for each task in the task registry (``fedinsight.federation.registry``:
  preflight, propensity, insights, recommend, secure_training -- whose command is ``secure-training``),
  with ``FEDINSIGHT_CAPTURE_DIR`` set so the ServerApp records every message in wire format.

What is scanned: every captured Flower message, every file under the audit folder except the planted
input tables themselves (runs, databases, logs, keys, policies, reports, encrypted artifacts after
decryption with the partners' keys), Ray's session folder, and the stdout/stderr of every command.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import fedinsight.tasks  # noqa: F401 - importing it registers every task
from fedinsight.cli.simulate import command_name
from fedinsight.data.synth import SynthConfig, write_synthetic
from fedinsight.federation import registry
from fedinsight.federation.capture import CAPTURE_ENV
from fedinsight.partner.policy import find_policy
from fedinsight.privacy.canary import CanaryCustomer, CanaryScanner, plant_canaries
from fedinsight.privacy.consent import PURPOSES

TABLE_SUFFIXES = (".csv", ".parquet")


TASK_ARGS: dict[str, tuple[str, ...]] = {"uplift": ("--offer-costs", "discount=4,gift=3"),
                                         "segments": ("--epsilon", "8")}
"""What a task needs beyond the defaults on these partners: the uplift task the planted offers campaign's costs; the
segments task more epsilon, since on a few hundred customers its noisy histogram at epsilon 1 shows no clearly
populated cell and the job refuses (docs/segments.md), which would leave its messages unscanned."""


def installed_tasks() -> list[str]:
    """The tasks this installation can run: every task in the task registry."""
    return registry.names()


class Sandbox:
    """Runs ``fedinsight`` commands with every writable location inside the audit, capturing output."""

    def __init__(self, out: Path, ray_tmp: Path) -> None:
        self.out = out
        self.home = out / "home"
        self.streams = out / "streams"
        self.capture = out / "capture"
        for d in (self.home, self.streams, self.capture):
            d.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ)
        self.env.update({
            "HOME": str(self.home), "FEDINSIGHT_HOME": str(self.home / ".fedinsight"), "FLWR_HOME": str(self.home),
            "TMPDIR": str(ray_tmp), "RAY_TMPDIR": str(ray_tmp), "PYTHONUNBUFFERED": "1", "COLUMNS": "200",
        })
        self.count = 0

    def run(self, name: str, *args: str, capture_as: str | None = None) -> int:
        env = dict(self.env)
        if capture_as is not None:
            env[CAPTURE_ENV] = str(self.capture / capture_as)
        self.count += 1
        proc = subprocess.run([sys.executable, "-m", "fedinsight.cli", *args], env=env, cwd=self.out,
                              capture_output=True, check=False)
        stem = f"{self.count:02d}-{name}"
        (self.streams / f"{stem}.stdout").write_bytes(proc.stdout)
        (self.streams / f"{stem}.stderr").write_bytes(proc.stderr)
        return proc.returncode


def run_canary_audit(out: Path, *, customers: int = 3_000, partners: int = 3, per_partner: int = 25,
                     seed: int = 0, tasks: list[str] | None = None, console: Console | None = None) -> dict:
    """Plant, run, scan; return the report (see the module docstring)."""
    console = console or Console(stderr=True)
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    if any(out.iterdir()):
        raise SystemExit(f"{out} is not empty; give a fresh --out folder")
    ray_tmp = Path(tempfile.mkdtemp(prefix="fdc", dir="/tmp"))  # short: Ray's socket paths must fit 107 chars
    sandbox = Sandbox(out, ray_tmp)
    data = out / "inputs" / "partners"
    tasks = installed_tasks() if tasks is None else tasks
    steps = 4 + len(tasks)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=console)
    planted: list[CanaryCustomer] = []
    jobs: dict[str, str] = {}
    try:
        with progress:
            bar = progress.add_task("synthetic partners + canaries", total=steps)
            config = SynthConfig(customers=customers, partners=partners, seed=seed, fmt="csv", offers=True)
            write_synthetic(config, data)
            rng = random.Random(f"canary-{seed}-{time.time_ns()}")
            per_folder = {k: plant_canaries(data / f"partner-{k}", per_partner, rng) for k in range(partners)}
            planted = [c for cs in per_folder.values() for c in cs]
            progress.advance(bar)

            progress.update(bar, description="partner commands")
            folders = [data / f"partner-{k}" for k in range(partners)]
            jobs["scan-without-policy"] = _expect(sandbox.run("scan0", "data", "scan", str(data)), 2)
            for k, folder in enumerate(folders):
                jobs[f"init-{k}"] = _expect(sandbox.run(f"init{k}", "partner", "init", "--data", str(folder)), 0)
            jobs["scan-with-policy"] = _expect(sandbox.run("scan1", "data", "scan", str(data)), 0)
            for purpose in PURPOSES:
                jobs[f"check-{purpose}"] = _expect(sandbox.run(
                    f"check-{purpose}", "partner", "check", "--data", str(folders[0]), "--purpose", purpose), 0)
            forget_file = out / "inputs" / "forget.txt"
            forget_file.write_text("\n".join(c.customer_id for c in per_folder[0][:2]) + "\n")
            jobs["forget"] = _expect(sandbox.run("forget", "partner", "forget", "--customers", str(forget_file),
                                                 "--data", str(folders[0])), 0)
            jobs["artifacts"] = _expect(sandbox.run("artifacts", "partner", "artifacts", "--data", str(folders[0])),
                                        0)
            progress.advance(bar)

            for task in tasks:
                progress.update(bar, description=f"simulate {task}")
                code = sandbox.run(f"simulate-{task}", "simulate", command_name(registry.get(task)), "--dataset",
                                   str(data), "--partners", str(partners), "--out", str(out / "runs" / task),
                                   *TASK_ARGS.get(task, ()), capture_as=task)
                jobs[f"simulate-{task}"] = "ok" if code == 0 else f"failed (exit {code})"
                progress.advance(bar)

            progress.update(bar, description="scanning")
            canaries = [c for customer in planted for c in customer.canaries()]
            rings = [find_policy(f).encryption_ring() for f in folders if (f / "protection.toml").exists()]
            scanner = CanaryScanner(canaries, rings)
            payloads = sum(1 for _ in sandbox.capture.rglob("*.bin"))
            streams = sum(1 for _ in sandbox.streams.iterdir())
            inputs = [p for p in data.rglob("*") if p.parent.parent == data and p.suffix in TABLE_SUFFIXES]
            files = scanner.scan_tree(out, exclude=[*inputs, forget_file])
            files += scanner.scan_tree(ray_tmp)
            progress.advance(bar)

            progress.update(bar, description="positive control")
            control = CanaryScanner(canaries)
            for path in inputs:
                control.scan_file(path)
            progress.advance(bar)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    report = scanner.report()
    report.update({
        "payloads_scanned": payloads, "streams_scanned": streams, "files_scanned": files - payloads - streams,
        "control_canaries_found_in_inputs": len(control.found), "canary_customers": len(planted),
        "tasks": tasks, "jobs": jobs, "seconds": round(time.perf_counter() - start, 1),
    })
    return report


def _expect(code: int, wanted: int) -> str:
    return "ok" if code == wanted else f"unexpected exit {code} (wanted {wanted})"


def audit_passed(report: dict) -> bool:
    """No canary anywhere, the control saw all of them, and every command did what it should."""
    return (report["canaries_found"] == 0
            and report["control_canaries_found_in_inputs"] == report["canaries_planted"]
            and all(v == "ok" for v in report["jobs"].values()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="fresh folder for the audit")
    parser.add_argument("--customers", type=int, default=3_000)
    parser.add_argument("--partners", type=int, default=3)
    parser.add_argument("--canaries-per-partner", type=int, default=25, help="canary customers per partner")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    report = run_canary_audit(args.out, customers=args.customers, partners=args.partners,
                              per_partner=args.canaries_per_partner, seed=args.seed)
    print(json.dumps(report, indent=2))
    return 0 if audit_passed(report) else 1


if __name__ == "__main__":
    sys.exit(main())
