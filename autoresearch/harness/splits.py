"""Deterministic train / val / test assignment.

A dataset is read as *units* (a file, a hub shard, ...) that yield documents. The split of a document
depends only on stable identifiers, never on timing or on the order of threads:

- ``"auto"`` units, when there are at least three of them, are assigned whole: a hash of the unit id
  picks the split (about 2% val, 2% test), so the chunks of one file never straddle two splits. If no
  unit landed in val (or test), the train unit with the smallest hash is moved there, so every split
  gets at least one unit.
- ``"auto"`` units, when there are fewer than three (a single big .txt, say), are split by document
  index instead: document 0 goes to train, 1 to val, 2 to test, and every later one by a hash of
  (unit id, index) with the same 2% / 2% proportions.
- ``"train"`` units (the training files of a hub dataset) go to train whole.
- ``"heldout"`` units (a hub dataset's validation file or shard) are shared between val and test by
  document index: 0 to val, 1 to test, later ones by hash, half each.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Role = Literal["auto", "train", "heldout"]

VAL_FRACTION = 0.02
TEST_FRACTION = 0.02
MIN_UNITS_FOR_UNIT_SPLIT = 3
_SALT = "autoresearch-split-v1"


def hash_fraction(key: str) -> float:
    """A stable number in [0, 1) derived from ``key`` (sha256, so the same on every machine and Python)."""
    digest = hashlib.sha256(f"{_SALT}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _by_fraction(u: float, val: float, test: float) -> str:
    if u < val:
        return "val"
    if u < val + test:
        return "test"
    return "train"


@dataclass(frozen=True)
class SplitPlan:
    """Where each document goes. Build it with :func:`plan_splits`."""

    unit_splits: dict[str, str]  # unit id -> split, for units assigned whole
    doc_modes: dict[str, str]  # unit id -> "docs" or "heldout", for units split by document index

    def describe(self) -> dict[str, int]:
        """Counts for the provenance record: units assigned whole per split, units split by document."""
        whole = list(self.unit_splits.values())
        out = {f"{split}_units": whole.count(split) for split in ("train", "val", "test")}
        out["units_split_by_document"] = len(self.doc_modes)
        return out

    def unit_split(self, unit_id: str) -> str | None:
        """The split of a whole unit, or None when its documents are spread over several splits."""
        return self.unit_splits.get(unit_id)

    def split_of(self, unit_id: str, index: int) -> str:
        """The split of document number ``index`` (0-based, in reading order) of unit ``unit_id``."""
        whole = self.unit_splits.get(unit_id)
        if whole is not None:
            return whole
        mode = self.doc_modes[unit_id]
        if mode == "heldout":
            if index < 2:
                return ("val", "test")[index]
            return "val" if hash_fraction(f"{unit_id}#{index}") < 0.5 else "test"
        if index < 3:
            return ("train", "val", "test")[index]
        return _by_fraction(hash_fraction(f"{unit_id}#{index}"), VAL_FRACTION, TEST_FRACTION)


def plan_splits(units: Iterable[tuple[str, Role]]) -> SplitPlan:
    """Assign (unit id, role) pairs to splits; see the module docstring for the rules."""
    units = list(units)
    ids = [u for u, _ in units]
    if len(set(ids)) != len(ids):
        raise ValueError("unit ids must be unique")
    unit_splits: dict[str, str] = {}
    doc_modes: dict[str, str] = {}
    auto = [u for u, role in units if role == "auto"]
    for unit_id, role in units:
        if role == "train":
            unit_splits[unit_id] = "train"
        elif role == "heldout":
            doc_modes[unit_id] = "heldout"
    if len(auto) >= MIN_UNITS_FOR_UNIT_SPLIT:
        fractions = {u: hash_fraction(u) for u in auto}
        for u in auto:
            unit_splits[u] = _by_fraction(fractions[u], VAL_FRACTION, TEST_FRACTION)
        for split in ("val", "test"):
            if split not in (unit_splits[u] for u in auto):
                candidates = sorted((fractions[u], u) for u in auto if unit_splits[u] == "train")
                if len(candidates) > 1:  # never empty the train split
                    unit_splits[candidates[0][1]] = split
    else:
        for u in auto:
            doc_modes[u] = "docs"
    return SplitPlan(unit_splits=unit_splits, doc_modes=doc_modes)
