"""Split CDNOW into ten partners with Dirichlet label skew and print who holds what.

Run: .venv/bin/python examples/partition_cdnow.py   (after `fedinsight data fetch cdnow`)
"""

from fedinsight.data import PartitionSpec, load_federation, partner_table

partners = load_federation("cdnow", PartitionSpec(partners=10, scheme="dirichlet", alpha=0.5, seed=0))
print(partner_table(partners).to_string(index=False))
