"""Partner data: the canonical schema, validation, built-in datasets, synthetic data, partitioning.

Public entry points other parts rely on::

    load_cdnow()            -> transactions DataFrame (customer_id, timestamp, quantity, amount)
    load_movielens_100k()   -> (interactions, users, items) DataFrames
    load_federation(NAME|PATH, PartitionSpec(...)) -> {partner_id: PartnerData}
    load_partner_folder(PATH, mapping=None) -> {partner_id: PartnerData} (own exports read through mapping.toml)
    load_mapping(PATH)      -> PartnerMapping (raises MappingError naming the file and key)
    suggest_mapping(FOLDER) -> Suggestion (a draft mapping.toml for a folder of exports)
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
from fedinsight.data.mapping import MAPPING_FILE, PartnerMapping, load_mapping
from fedinsight.data.schema import TABLES, PartnerData
from fedinsight.data.suggest import suggest_mapping
from fedinsight.data.validate import read_table, validate_frame, validate_paths

__all__ = [
    "BUILTIN_DATASETS",
    "DATASETS",
    "MAPPING_FILE",
    "TABLES",
    "PartitionSpec",
    "PartnerData",
    "PartnerMapping",
    "cdnow_customers",
    "fedinsight_home",
    "fetch_dataset",
    "load_cdnow",
    "load_federation",
    "load_mapping",
    "load_movielens_100k",
    "load_partner_folder",
    "partner_table",
    "read_table",
    "suggest_mapping",
    "validate_frame",
    "validate_paths",
]
