"""Data ingestion: dataset folders (read, validate, write), importers and the cold-start splitter."""

from loaders.folder import read_dataset, write_dataset

__all__ = ["read_dataset", "write_dataset"]
