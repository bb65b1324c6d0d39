"""Training and evaluation entry points, and the ``graph-meta`` command line."""
