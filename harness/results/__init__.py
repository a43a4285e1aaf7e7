"""Results store: validated run/profile records on disk and one loader into a pandas DataFrame."""
from .schema import (
    METRIC_NAMES,
    SCHEMA_VERSION,
    ProfileRecord,
    RecordError,
    RunRecord,
    display_name,
)
from .store import COLUMNS, ResultsError, atomic_write_text, load_results, write_record

__all__ = [
    "COLUMNS",
    "METRIC_NAMES",
    "SCHEMA_VERSION",
    "ProfileRecord",
    "RecordError",
    "ResultsError",
    "RunRecord",
    "atomic_write_text",
    "display_name",
    "load_results",
    "write_record",
]
