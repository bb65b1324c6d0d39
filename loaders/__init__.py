"""Data ingestion: dataset folders, importers (which split with
:mod:`graph_meta.eval.split`), synthetic catalogs."""

from loaders.folder import read_dataset, write_dataset

__all__ = ["read_dataset", "write_dataset"]
