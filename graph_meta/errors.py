"""Error types: every data error names the file, and where known the line and the field."""

from __future__ import annotations

from pathlib import Path


class GraphMetaError(Exception):
    """Base class of graph-meta's own errors."""


class DataError(GraphMetaError, ValueError):
    """Malformed input data.

    The message always starts with the file, then ``line N`` (1-based, counting the
    header as line 1) and ``field NAME`` where they are known, so that a user can open
    the file at the right place.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.file = str(file) if file is not None else None
        self.line = line
        self.field = field
        self.reason = message
        where = []
        if self.file is not None:
            where.append(self.file)
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class SchemaError(GraphMetaError, ValueError):
    """A node label, relationship type or property that the graph schema does not know."""
