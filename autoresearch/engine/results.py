"""``results.tsv``: upstream autoresearch's table (commit, val_bpb, memory_gb, status, description) plus our
extra columns, written from the experiments and read back from ours or from upstream's own files.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from .events import FAILURE_STATUSES
from .experiments import Experiment

UPSTREAM_COLUMNS = ("commit", "val_bpb", "memory_gb", "status", "description")
EXTRA_COLUMNS = ("index", "delta", "seeds", "training_seconds", "test_bpb")
RESULTS_HEADER = "\t".join(UPSTREAM_COLUMNS + EXTRA_COLUMNS)


def _clean_text(text: str) -> str:
    return " ".join(str(text).replace("\t", " ").splitlines()).strip()


def format_result_row(exp: Experiment) -> str:
    """One results.tsv line in upstream's format (+ the extra columns)."""
    status = exp.status or ""
    val = exp.val_bpb if exp.val_bpb is not None and status not in FAILURE_STATUSES else None
    cols = [
        _clean_text(exp.commit or "")[:7],  # upstream's short sha
        f"{val:.6f}" if val is not None else "0.000000",
        f"{exp.memory_gb:.1f}" if exp.memory_gb is not None else "0.0",
        status,
        _clean_text(exp.description),
        str(exp.index),
        f"{exp.delta:+.6f}" if exp.delta is not None else "",
        str(len(exp.trainings)),
        f"{exp.training_seconds:.1f}" if exp.training_seconds is not None else "",
        f"{exp.test_bpb:.6f}" if exp.test_bpb is not None else "",
    ]
    return "\t".join(cols)


# ----------------------------------------------------------------------------------------------------
# reading results.tsv (ours or upstream's)


@dataclass
class ResultRow:
    """One row of a results.tsv. ``val_bpb`` is None for failures (upstream writes 0.000000 there)."""

    commit: str
    val_bpb: float | None
    memory_gb: float | None
    status: str
    description: str
    index: int
    delta: float | None = None
    seeds: int | None = None
    training_seconds: float | None = None
    test_bpb: float | None = None
    extra: dict[str, str] = field(default_factory=dict)


def _float(text: str | None) -> float | None:
    if text is None or not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _int(text: str | None) -> int | None:
    value = _float(text)
    return int(value) if value is not None else None


def read_results_tsv(path: str | os.PathLike[str]) -> list[ResultRow]:
    """Read a results.tsv written by upstream autoresearch (5 columns) or by this ledger (10 columns).

    Columns are matched by the header's names; a file without a header is read as upstream's 5 columns.
    Without an ``index`` column, rows are numbered from 0 in file order. Tabs inside a description of a
    5-column file (more fields than header names) are kept as spaces.
    """
    rows: list[ResultRow] = []
    with open(path, encoding="utf-8") as f:
        lines = [line.rstrip("\r\n") for line in f]
    lines = [line for line in lines if line.strip()]
    if not lines:
        return rows
    first = lines[0].split("\t")
    if first and first[0].strip().lower() == "commit":
        header = [h.strip().lower() for h in first]
        body = lines[1:]
    else:
        header = list(UPSTREAM_COLUMNS)
        body = lines
    desc_at = header.index("description") if "description" in header else None
    for n, line in enumerate(body):
        fields = line.split("\t")
        if len(fields) > len(header) and desc_at is not None and desc_at == len(header) - 1:
            fields = fields[:desc_at] + [" ".join(fields[desc_at:])]
        rec = dict(zip(header, fields))
        status = rec.get("status", "").strip()
        val = _float(rec.get("val_bpb"))
        if val is not None and val == 0.0:  # upstream's "no score" (a failure, a run stopped early): never a real bpb
            val = None
        memory = _float(rec.get("memory_gb"))
        index = _int(rec.get("index"))
        rows.append(ResultRow(
            commit=rec.get("commit", "").strip(),
            val_bpb=val,
            memory_gb=memory,
            status=status,
            description=rec.get("description", "").strip(),
            index=index if index is not None else n,
            delta=_float(rec.get("delta")),
            seeds=_int(rec.get("seeds")),
            training_seconds=_float(rec.get("training_seconds")),
            test_bpb=_float(rec.get("test_bpb")),
            extra={k: v for k, v in rec.items() if k not in UPSTREAM_COLUMNS + EXTRA_COLUMNS},
        ))
    return rows
