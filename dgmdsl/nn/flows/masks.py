"""The `mask = alternate` rule, tracked through permutations."""

from __future__ import annotations

from typing import Sequence

__all__ = ["AlternatingMask"]


class AlternatingMask:
    """Which positions the next `mask = alternate` coupling transforms.

    Positions are 0-based. The first coupling transforms the odd positions
    given the even ones; each later one transforms the coordinates the previous
    coupling kept, followed to wherever permutations have moved them.
    """

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._to_transform = set(range(1, dim, 2))

    def next_split(self) -> tuple[list[int], list[int]]:
        """(kept, transformed) positions for the next coupling, which then becomes 'previous'."""
        if self.dim < 2:
            raise ValueError("a coupling layer needs at least 2 dimensions")
        transformed = sorted(self._to_transform)
        kept = [p for p in range(self.dim) if p not in self._to_transform]
        self._to_transform = set(kept)
        return kept, transformed

    def permute(self, permutation: Sequence[int]) -> None:
        """Follow a layer with `out[j] = in[permutation[j]]`."""
        self._to_transform = {j for j, source in enumerate(permutation) if source in self._to_transform}
