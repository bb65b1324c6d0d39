"""The message-passing layers the encoder can use (``model.conv``), by name.

A layer kind is two functions: ``build(hidden, edge_types, heads)`` makes one round's module
(its parameters are the encoder's ``convs.<round>.*``) and ``call(module, h, edge_index,
edge_types)`` returns the messages ``{node_type: [N, H]}`` of that round from the node
embeddings ``h`` and the round's edges. ``model.conv`` accepts :func:`conv_names`; adding a
kind is its two functions and a :func:`register_conv` line, plus its test.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn
from torch_geometric.nn import HeteroConv, HGTConv, SAGEConv

__all__ = ["ConvKind", "conv_kind", "conv_names", "register_conv"]

Build = Callable[[int, list[tuple], int], nn.Module]
Call = Callable[[nn.Module, dict[str, Tensor], dict[tuple, Tensor], list[tuple]],
                dict[str, Tensor]]


@dataclass(frozen=True)
class ConvKind:
    """One kind of message-passing round (module docstring)."""

    name: str
    build: Build
    call: Call


_CONVS: dict[str, ConvKind] = {}


def register_conv(name: str, build: Build, call: Call) -> ConvKind:
    """Make ``model.conv = name`` build rounds with ``build`` and run them with ``call``."""
    if name in _CONVS:
        raise ValueError(f"conv {name!r} is registered twice")
    _CONVS[name] = kind = ConvKind(name, build, call)
    return kind


def conv_names() -> tuple[str, ...]:
    """The values of ``model.conv``."""
    return tuple(_CONVS)


def conv_kind(name: str) -> ConvKind:
    """The registered kind ``name``."""
    if name not in _CONVS:
        raise ValueError(f"conv must be one of {list(_CONVS)}, got {name!r}")
    return _CONVS[name]


# --- "sage": HeteroConv of one SAGEConv per edge type, summed -------------------------------

def _sage_build(hidden: int, edge_types: list[tuple], heads: int) -> nn.Module:
    with warnings.catch_warnings():  # by design: the last round feeds User/Item only
        warnings.filterwarnings("ignore", message="There exist node types")
        return HeteroConv({et: SAGEConv((hidden, hidden), hidden) for et in edge_types},
                          aggr="sum")


def _sage_call(conv: nn.Module, h: dict[str, Tensor], edge_index: dict[tuple, Tensor],
               edge_types: list[tuple]) -> dict[str, Tensor]:
    return conv(h, edge_index)


# --- "hgt": one HGTConv over the node types the round's edges touch -------------------------

def _used_types(edge_types: list[tuple]) -> list[str]:
    return sorted({et[0] for et in edge_types} | {et[2] for et in edge_types})


def _hgt_build(hidden: int, edge_types: list[tuple], heads: int) -> nn.Module:
    return HGTConv(hidden, hidden, (_used_types(edge_types), edge_types), heads=heads)


def _hgt_call(conv: nn.Module, h: dict[str, Tensor], edge_index: dict[tuple, Tensor],
              edge_types: list[tuple]) -> dict[str, Tensor]:
    return conv({nt: h[nt] for nt in _used_types(edge_types)}, edge_index)


register_conv("sage", _sage_build, _sage_call)
register_conv("hgt", _hgt_build, _hgt_call)
