"""How far the recommender's DP evaluation is from the exact one (issue 14): HR@10 / NDCG@10 noised vs exact.

Run: PYTHONPATH=. .venv/bin/python benchmarks/recommend_eval_noise.py  (MovieLens-100K, 10 partners, the private
defaults -- epsilon 1, delta min(1e-6, 1/(10 x largest partner)), --eval-share 0.1, final evaluation only -- and
few rounds; about a minute of CPU per run)

Why in process, not on Flower's simulation runtime: the exact sums are what each partner feeds the Gaussian
mechanism, and only a wrapper around that call in the partner's own process can see them. So the job runs through
the task contract's real loop (:func:`fedinsight.federation.task.start`) with every partner's real ClientApp
called in this process, and the wrapper records (exact sums, noisy release) on each partner. The exact HR@10 is
then the exact sums over the same public customer count the coordinator divides by. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any


class InProcessGrid:
    """The partners' real ClientApp, called in this process (one Flower Context per partner)."""

    def __init__(self, partners: int) -> None:
        from flwr.app import Context, RecordDict

        from fedinsight.partner.clientapp import app

        self.app = app
        self.contexts = {k + 1: Context(run_id=1, node_id=k + 1, node_config={"partition-id": k}, state=RecordDict(),
                                        run_config={}) for k in range(partners)}

    def get_node_ids(self) -> list[int]:
        return list(self.contexts)

    def send_and_receive(self, messages: Any, *, timeout: float | None = None) -> list[Any]:
        return [self.app(m, self.contexts[m.metadata.dst_node_id]) for m in messages]


def run_once(root: Path, partners: int, rounds: int, job_id: str, extra: dict[str, Any]) -> dict[str, Any]:
    from flwr.app import Context, RecordDict
    from flwr.supercore.task_identity import TaskIdentity

    import fedinsight.tasks.recommend.client as client
    from fedinsight.federation.task import result_of, start
    from fedinsight.tasks.recommend import TASK

    recorded: list[tuple[list[float], list[float]]] = []
    original = client.gaussian

    def spy(values, sensitivity, noise_multiplier):  # type: ignore[no-untyped-def]
        out = original(values, sensitivity=sensitivity, noise_multiplier=noise_multiplier)
        recorded.append((list(map(float, values)), list(map(float, out.values))))
        return out

    client.gaussian = spy  # type: ignore[assignment]
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1
    out = root / job_id
    run_config = {"task": "recommend", "partners": partners, "rounds": rounds, "job-id": job_id,
                  "catalogue-path": str(root / "catalogue.parquet"), "out-dir": str(out),
                  "data-root": str(root / "partners"), "db-url": f"sqlite:///{root / 'ledger.db'}",
                  "partner-ledger-url": f"sqlite:///{root / 'partners.db'}", "dataset": "movielens-100k",
                  "budget": 100.0, **extra}
    context = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=run_config)
    try:
        start(TASK, InProcessGrid(partners), context)  # type: ignore[arg-type]
    finally:
        client.gaussian = original  # type: ignore[assignment]
    summary = result_of(context)
    fed = summary["metrics"]["federated"]
    n = fed["customers"]
    exact = [sum(v[i] for v, _ in recorded) for i in range(2)]
    noised = [sum(v[i] for _, v in recorded) for i in range(2)]
    return {"hr@10": {"noised": fed["hr@10"], "exact": round(exact[0] / n, 4),
                      "error": round(fed["hr@10"] - exact[0] / n, 4)},
            "ndcg@10": {"noised": fed["ndcg@10"], "exact": round(exact[1] / n, 4),
                        "error": round(fed["ndcg@10"] - exact[1] / n, 4)},
            "sums": {"exact": [round(x, 2) for x in exact], "noised": [round(x, 2) for x in noised]},
            "ci95_halfwidth": fed["ci95_halfwidth"], "customers": n, "partners_released": len(recorded),
            "evaluation_epsilon_alone": fed["epsilon"], "epsilon_charged": summary["privacy"]["epsilon_charged"],
            "delta": summary["privacy"]["delta"], "training_noise_multiplier": summary["privacy"]["noise_multiplier"],
            "evaluation_noise_multiplier": summary["privacy"]["evaluation"]["noise_multiplier"]}


def main() -> None:
    from fedinsight.data.federation import PartitionSpec, load_federation, write_partner_folder

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--partners", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2, help="independent jobs (each its own noise)")
    parser.add_argument("--eval-share", type=float, default=None, help="default: the option's (0.1)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="fedinsight-rec-evalnoise-"))
    parts = load_federation("movielens-100k", PartitionSpec(partners=args.partners, seed=0))
    write_partner_folder(parts, root / "partners")
    next(iter(parts.values())).items.to_parquet(root / "catalogue.parquet", index=False)  # type: ignore[union-attr]
    extra = {} if args.eval_share is None else {"eval-share": args.eval_share}
    runs = [run_once(root, args.partners, args.rounds, f"evalnoise-{i}", extra) for i in range(args.repeats)]
    print(json.dumps({"dataset": "movielens-100k", "partners": args.partners, "rounds": args.rounds,
                      "settings": "private defaults (epsilon 1, eval-share 0.1, final evaluation only)",
                      "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
