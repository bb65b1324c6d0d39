"""Data ingestion: dataset folders, importers, the cold-start splitter, synthetic catalogs."""

from loaders.folder import read_dataset, write_dataset

__all__ = ["read_dataset", "write_dataset"]
