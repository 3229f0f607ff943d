"""Plain, front-end independent description of a flow's layers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

__all__ = ["LayerSpec", "RepeatSpec", "FlowItem"]


@dataclass(frozen=True)
class LayerSpec:
    """One layer, listed in the z -> x direction.

    `options` hold plain values (numbers, strings, lists, dicts). A `net` option
    is passed untouched to the `make_net` / `make_made` callbacks of `build_flow`.
    """

    name: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RepeatSpec:
    """`repeat count { body }`: the body unrolled `count` times."""

    count: int
    body: list["FlowItem"]


FlowItem = Union[LayerSpec, RepeatSpec]
