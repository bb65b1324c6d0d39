"""Neighborhood sampling: CSR indexes over edge arrays and typed k-hop samplers."""

from graph_meta.sampling.csr import CSR

__all__ = ["CSR"]
