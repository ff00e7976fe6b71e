"""Short simulations through the CLI, each run once per test session and read by every test that checks it.

Why shared: a simulation starts Ray and imports the ClientApp in every worker (20-40 s on two cores) whatever the
job's size, and several tests check different sides of the same run (the report's charts, the ledgers, the
centres). A run is made the first time a test asks for it, so ``-k`` runs only what it needs.
"""

from __future__ import annotations

from pathlib import Path

COMMANDS: dict[str, list[str]] = {
    "propensity": ["simulate", "propensity", "--dataset", "cdnow", "--partners", "3", "--rounds", "2",
                   "--eval-every-round"],  # the learning curve needs per-round (charged) evaluation
    "insights": ["simulate", "insights", "--dataset", "synthetic", "--partners", "3", "--customers", "30000"],
    "recommend": ["simulate", "recommend", "--dataset", "movielens-100k", "--partners", "3", "--rounds", "2",
                  "--epsilon", "8", "--eval-every", "1", "--eval-metrics", "all", "--baseline-epochs", "5"],
    "segments": ["simulate", "segments", "--dataset", "cdnow", "--partners", "3", "--epsilon", "1"],
    "baskets": ["simulate", "baskets", "--dataset", "synthetic", "--partners", "3", "--customers", "30000"],
    "uplift": ["simulate", "uplift", "--dataset", "synthetic", "--partners", "2", "--customers", "4000",
               "--rounds", "2"],
}
"""Every task with a report section. ``segments`` states its epsilon (the default, 1) because
tests/flows/segments checks the ledgers against it."""


class SimulatedRuns:
    """Each task's run folder under ``root``, simulated (``fedinsight simulate ... --json``) the first time asked."""

    def __init__(self, root: Path, commands: dict[str, list[str]] | None = None) -> None:
        self.root, self.commands, self.done = root, commands or COMMANDS, set()

    def __getitem__(self, task: str) -> Path:
        from fedinsight.cli import main

        out = self.root / task
        if task not in self.done:
            assert main([*self.commands[task], "--out", str(out), "--json"]) == 0, task
            self.done.add(task)
        return out
