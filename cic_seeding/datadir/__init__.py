"""Reading and writing the data directory: sharded keyed stores, manifest, csv files."""

from cic_seeding.datadir.facts import dataset_settings
from cic_seeding.datadir.layout import CheckedRows, DataDir, RowProblem, UserRow, keyfile_path
from cic_seeding.datadir.manifest import SCHEMA_VERSION, Manifest
from cic_seeding.datadir.timeline import StageTiming, append_stage, read_timeline

__all__ = ["CheckedRows", "DataDir", "Manifest", "RowProblem", "SCHEMA_VERSION", "StageTiming",
           "UserRow", "append_stage", "dataset_settings", "keyfile_path", "read_timeline"]
