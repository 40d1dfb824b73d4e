"""Importers: one plugin per backend, all built on :class:`Importer` (orchestration).

``get_importer("eth")`` returns the class registered under the entry-point group
``cic_seeding.importers``; an unknown name raises UsageError listing the valid ones.
"""

from cic_seeding.importers.base import Importer, ImportResult, Outcome, Submission
from cic_seeding.importers.registry import GROUP, get_importer, importer_names

__all__ = ["GROUP", "ImportResult", "Importer", "Outcome", "Submission", "get_importer",
           "importer_names"]
