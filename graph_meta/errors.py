"""Error types: every data error names the file, and where known the line and the field.

Messages quote file content only as the offending value, cut short (:func:`short`,
:func:`short_names`), and never a secret (:func:`redact`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

_URI_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#\s]*@")


def short(value: object, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters (then ``...``): one line, whatever the
    value."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def short_names(names: Sequence[object], count: int = 8, limit: int = 40,
                total: int = 240) -> str:
    """A list of (column) names for a message: at most ``count`` of them and about ``total``
    characters, each cut by :func:`short`."""
    shown: list[str] = []
    for name in names[:count]:
        if shown and sum(len(t) + 2 for t in shown) + len(short(name, limit)) > total:
            break
        shown.append(short(name, limit))
    more = f", ... ({len(names) - len(shown)} more)" if len(names) > len(shown) else ""
    return f"[{', '.join(shown)}{more}]"


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with the userinfo of any URI (``bolt://user:pw@host``) and each non-empty
    secret (also percent-encoded) replaced by ``***``."""
    from urllib.parse import quote

    for secret in secrets:
        if secret:
            for form in {secret, quote(secret, safe="")}:
                text = text.replace(form, "***")
    return _URI_USERINFO.sub(r"\1***@", text)


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
            where.append(f"field {short(field)}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class SchemaError(GraphMetaError, ValueError):
    """A node label, relationship type or property that the graph schema does not know."""


class UnknownItemError(GraphMetaError, KeyError):
    """An item id that a trained model (or the graph) does not know. A ``KeyError`` whose
    ``str()`` is the message itself (not its quoted ``repr``)."""

    def __init__(self, item_id: object, *, hint: str | None = None) -> None:
        self.item_id = str(item_id)
        super().__init__(f"unknown item {short(self.item_id)}: not in the model's catalogue; "
                         + (hint or "a product added after training needs a row in items.csv, "
                            "then model.add_items(dataset) or `graph-meta add-items DATASET "
                            "--run RUN`"))

    def __str__(self) -> str:
        return str(self.args[0])
