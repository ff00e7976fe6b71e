"""Partner data: the canonical schema, validation, built-in datasets, synthetic data, partitioning.

Public entry points other parts rely on::

    load_cdnow()            -> transactions DataFrame (customer_id, timestamp, quantity, amount)
    load_movielens_100k()   -> (interactions, users, items) DataFrames
    load_federation(NAME|PATH, PartitionSpec(...)) -> {partner_id: PartnerData}
    read_table(PATH)        -> validated, typed table (raises DataValidationError)
"""

from fedinsight.core.paths import fedinsight_home
from fedinsight.data.federation import (
    BUILTIN_DATASETS,
    PartitionSpec,
    load_federation,
    load_partner_folder,
    partner_table,
)
from fedinsight.data.fetch import DATASETS, fetch_dataset
from fedinsight.data.loaders import cdnow_customers, load_cdnow, load_movielens_100k
from fedinsight.data.schema import TABLES, PartnerData
from fedinsight.data.validate import read_table, validate_frame, validate_paths

__all__ = [
    "BUILTIN_DATASETS",
    "DATASETS",
    "TABLES",
    "PartitionSpec",
    "PartnerData",
    "cdnow_customers",
    "fedinsight_home",
    "fetch_dataset",
    "load_cdnow",
    "load_federation",
    "load_movielens_100k",
    "load_partner_folder",
    "partner_table",
    "read_table",
    "validate_frame",
    "validate_paths",
]
