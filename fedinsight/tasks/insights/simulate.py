"""``fedinsight simulate insights``: the whole insight catalogue on N simulated partners, end to end.

What it does, in order: build the batch, open the ledger (``sqlite:///OUT/ledger.db`` unless a URL is
given) and refuse right away if any partner cannot afford it -- before data is written or Ray starts;
write each partner's tables to its own folder (so rows are read only on the partner side); run
Flower's simulation runtime with the insights task (which charges the ledger atomically, again, before
partners compute); remove the partner folders. The ledger and the insight store stay in OUT, so a
second run into the same OUT spends from the same budget -- until the answer is "no".
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from fedinsight.core.errors import ConfigError
from fedinsight.privacy.ledger import PrivacyLedger
from fedinsight.privacy.suppression import DEFAULT_MIN_GROUP_SIZE
from fedinsight.tasks.insights.catalogue import PRESETS, InsightBatch, default_batch
from fedinsight.tasks.insights.server import MIN_PARTNERS, check_affordable, price_batch

DEFAULT_BUDGET = 10.0


def _partner_dirs(path: Path, partners: int) -> bool:
    """True if the sub-folders of ``path`` holding tables are exactly ``partner-0`` .. ``partner-{K-1}``.

    Such a folder is used in place: nothing is copied, and partner rows are read only by the partners.
    """
    from fedinsight.data.validate import table_for_path

    names = {d.name for d in path.iterdir() if d.is_dir() and not d.name.startswith(".")
             and any(table_for_path(f) for f in d.iterdir() if f.is_file())}
    return names == {f"partner-{k}" for k in range(partners)}


def resolve_as_of(dataset: str, as_of: str | None) -> str:
    """The reference date: given, the dataset's preset, or the end of a synthetic folder's window."""
    if as_of:
        return as_of
    if dataset in PRESETS:
        return str(PRESETS[dataset]["as_of"])
    truth = Path(dataset) / "ground_truth.json"
    if truth.exists():  # written by `fedinsight data synth`: public facts about the generator
        end = pd.Timestamp(json.loads(truth.read_text())["window"]["end"])
        return (end + pd.Timedelta(days=1)).date().isoformat()
    raise ConfigError(f"--as-of is required for the folder dataset {dataset} (the reference date, e.g. 2026-01-01)")


def prepare_federation(dataset: str, partners: int, seed: int, customers: int, workdir: Path) -> Path:
    """A folder with ``partner-<k>`` sub-folders for the simulated partners (the run's ``data-root``)."""
    from fedinsight.core.files import atomic_output_dir
    from fedinsight.data.federation import PartitionSpec, load_federation, write_partner_folder

    path = Path(dataset)
    if dataset not in PRESETS and path.is_dir() and _partner_dirs(path, partners):
        return path
    parts = load_federation(dataset, PartitionSpec(partners=partners, scheme="iid", seed=seed),
                            synthetic_customers=customers)
    if len(parts) != partners:
        raise ConfigError(f"{dataset} holds {len(parts)} partners but --partners is {partners}")
    renamed = {f"partner-{k}": data for k, data in enumerate(parts.values())}
    target = workdir / "partners"
    from fedinsight.partner.protection import init_federation

    with atomic_output_dir(target) as tmp:
        write_partner_folder(renamed, tmp, "parquet")
        init_federation(tmp)  # built-in data: fedinsight knows (and declares) the identifiers it planted
    return target


def simulate_insights(
    dataset: str, *, partners: int, epsilon: float, seed: int, out: Path, customers: int = 20_000,
    db: str | None = None, budget: float = DEFAULT_BUDGET, delta: float = 1e-6,
    min_group_size: int = DEFAULT_MIN_GROUP_SIZE, suppression_margin_sd: float = 0.0,
    mechanism: str = "gaussian", requester: str = "analyst",
    as_of: str | None = None, only: list[str] | None = None, batch: InsightBatch | None = None,
    on_phase: Callable[[str], None] | None = None, verbose: bool = False,
) -> dict[str, Any]:
    """Run the catalogue (or ``batch``) on ``partners`` simulated partners; returns ``summary.json``'s content."""
    from fedinsight.federation.simulation import run_simulation

    phase = on_phase or (lambda _: None)
    if partners < MIN_PARTNERS:
        raise ConfigError(f"--partners must be at least {MIN_PARTNERS}: with one partner every answer would be "
                          "that partner's own figure")
    if customers < 1:
        raise ConfigError(f"--customers must be at least 1 (got {customers})")
    preset = dataset if dataset in PRESETS else "synthetic"
    if batch is None:
        batch = default_batch(preset, epsilon=epsilon, delta=delta, as_of=resolve_as_of(dataset, as_of),
                              mechanism=mechanism, min_group_size=min_group_size,
                              suppression_margin_sd=suppression_margin_sd, requester=requester, only=only)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    url = db or f"sqlite:///{(out / 'ledger.db').resolve()}"

    phase("pricing the batch")
    ledger = PrivacyLedger(url)
    pids = [f"partner-{k}" for k in range(partners)]
    for pid in pids:
        ledger.ensure_budget(pid, budget, delta)
    check_affordable(ledger, pids, price_batch(batch))  # fail fast; the ServerApp charges atomically
    ledger.engine.dispose()

    phase("writing partner data")
    workdir = Path(tempfile.mkdtemp(prefix=".federation-", dir=out))
    try:
        data_root = prepare_federation(dataset, partners, seed, customers, workdir)
        phase("partners computing (Flower simulation)")
        run_config = {"task": "insights", "batch": batch.model_dump_json(), "partners": partners, "db-url": url,
                      "out-dir": str(out.resolve()), "data-root": str(Path(data_root).resolve()),
                      "budget-epsilon": float(budget), "budget-delta": float(delta)}
        context = run_simulation(run_config, partners, cpus_per_partner=1.0, verbose=verbose)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    phase("done")
    if "insights" not in context.state:
        raise ConfigError("the insights run ended without a result (see the log above)")
    return json.loads(str(context.state["insights"]["summary"]))  # type: ignore[index]


# --- in-process runs (tests, benchmarks): the same partner and coordinator code, without Flower -----

def local_aggregates(partners: dict[str, Any], batch: InsightBatch) -> list[dict[str, Any]]:
    """Each partner's exact, contribution-bounded aggregates (query name -> LocalAggregate), before noise.

    Only for one-machine runs on synthetic or public data: the "truth" that intervals are checked
    against, and the input that benchmarks re-noise many times.
    """
    from fedinsight.tasks.insights.aggregates import compute
    from fedinsight.tasks.insights.customer_features import FeatureRules, customer_features

    out = []
    for data in partners.values():
        features = customer_features(data, FeatureRules.from_dict(batch.features.model_dump(mode="json")))
        out.append({q.name: compute(q.kind, features, q.params()) for q in batch.queries})  # type: ignore[attr-defined]
    return out


def noisy_replies(aggregates: list[dict[str, Any]], batch: InsightBatch) -> list[dict[str, Any]]:
    """Partner replies with fresh noise (the partner's own noising code) on given exact aggregates."""
    from fedinsight.tasks.insights.client import noisy_reply

    noises = price_batch(batch)
    return [{name: noisy_reply(agg, noises[name]) for name, agg in partner.items()} for partner in aggregates]


def exact_replies(aggregates: list[dict[str, Any]], batch: InsightBatch) -> list[dict[str, Any]]:
    """Replies without noise (``noise_variance`` 0): released as-is they are the exact bounded truth."""
    noises = price_batch(batch)
    return [{name: {"layout": agg.layout(), "values": agg.vector().tolist(), "mechanism": noises[name].mechanism,
                    "multiplier": noises[name].multiplier, "sensitivity": agg.l2, "noise_variance": 0.0}
             for name, agg in partner.items()} for partner in aggregates]


def partner_replies(partners: dict[str, Any], batch: InsightBatch, *, exact: bool = False) -> list[dict[str, Any]]:
    """Each partner's reply to ``batch``: through :func:`fedinsight.tasks.insights.client.compute_batch`, or exact."""
    from fedinsight.tasks.insights.client import compute_batch

    if exact:
        return exact_replies(local_aggregates(partners, batch), batch)
    noises = price_batch(batch)
    wire = batch.wire({n: {"mechanism": q.mechanism, "multiplier": q.multiplier} for n, q in noises.items()})
    return [compute_batch(data, wire) for data in partners.values()]


def release_in_process(partners: dict[str, Any], batch: InsightBatch, *, exact: bool = False) -> list[dict]:
    """Released insights of ``batch`` over in-memory partners (no ledger charge: callers price themselves)."""
    from fedinsight.tasks.insights.server import release_batch

    return release_batch(batch, price_batch(batch), partner_replies(partners, batch, exact=exact))
