"""The settings of a simulation itself (which data, how many partners, where the run goes), defined once."""

from __future__ import annotations

from dataclasses import dataclass

from fedinsight.core.errors import ConfigError
from fedinsight.data.partition import PARTITION_SCHEMES
from fedinsight.federation.currency import CurrencyOptions
from fedinsight.federation.options import option

PARTITIONS = (*PARTITION_SCHEMES, "zip")


@dataclass(frozen=True)
class SimulationOptions(CurrencyOptions):
    """The simulation's own flags, and the job's reporting currency (``--currency``, ``--rates``)."""

    dataset: str = option("synthetic", "cdnow, movielens-100k, synthetic, or a folder of partner folders (any names).")
    partners: int | None = option(None, "Partners to split a built-in dataset into (default: the task's); a folder "
                                  "of partner folders has its own count.", minimum=1,
                                  maximum=1000)
    partition: str = option("iid", "How a built-in dataset is split: iid, dirichlet, natural or zip.",
                            choices=PARTITIONS)
    alpha: float = option(0.5, "Dirichlet concentration (smaller = more skew).", above=0)
    seed: int = option(0, "Seed of the partition (and of the task's own seed, if it has one).")
    customers: int = option(5_000, "Customers of the synthetic dataset.", minimum=1)
    out: str = option("", "Run folder: summary.json, report.html, the ledger, the task's artifacts.", flag="out")
    db: str = option("", "Privacy ledger URL (default: sqlite:///OUT/ledger.db).")
    budget: float | None = option(None, "Each partner's epsilon budget in the ledger, if it has none yet "
                                  "(default: what this job needs).", above=0)
    partner_caps: str = option("", "Simulated partners' own lifetime caps: NAME=EPSILON,... (e.g. partner-1=0.5).")
    overwrite: bool = option(False, "Start from an empty run folder (discards its ledger too).")
    cpus: int | None = option(None, "CPUs for the simulation (default: all; 1 per partner).", minimum=1)
    ray_address: str = option("", "Run on an existing Ray cluster (ADDRESS:PORT, as `ray start --head` prints) "
                              "instead of starting Ray here; see docs/scale.md.")

    def validate(self) -> None:
        super().validate()
        if self.ray_address and self.cpus is not None:
            raise ConfigError("--cpus and --ray-address cannot be combined: a Ray cluster's own CPUs decide how many "
                              "partners compute at once (start its nodes with `ray start --num-cpus N`)")
        host, sep, port = self.ray_address.rpartition(":")
        if self.ray_address and self.ray_address != "auto" and not (sep and host and port.isdigit()):
            raise ConfigError(f"--ray-address '{self.ray_address}' must be HOST:PORT of a running Ray cluster's head "
                              "(as `ray start --head` prints, e.g. 127.0.0.1:6379) or 'auto'")
