"""Collect: read files, validate rows, quarantine bad ones, dedupe, stitch identities."""

from jingzhun.contracts.events import EVENT_NAMES, FIELDS, KINDS
from jingzhun.ingest.pipeline import BatchResult, Ingestor
from jingzhun.ingest.validate import IngestOptions

__all__ = ["EVENT_NAMES", "FIELDS", "KINDS", "BatchResult", "IngestOptions", "Ingestor"]
