"""The constants block of a training script ("the knobs"): read it with the AST, rewrite values in place.

The block is the run of top-level ``UPPER_CASE = <literal>`` assignments between the marker comments
``# --- knobs`` and ``# --- end of knobs`` (without markers: every such top-level assignment). Values are
Python literals (numbers, strings, booleans, tuples); ``2**13`` style powers are kept as such.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Any

from ..hardware import Profile

START, END = "# --- knobs", "# --- end of knobs"
_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


class KnobError(ValueError):
    pass


@dataclass
class Knob:
    name: str
    value: Any
    line: int  # 1-based line of the assignment
    comment: str  # the trailing comment, without '#'

    @property
    def type_name(self) -> str:
        return type(self.value).__name__


def _literal(node: ast.expr) -> Any:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
        base, exp = _literal(node.left), _literal(node.right)
        if isinstance(base, int) and isinstance(exp, int) and 0 <= exp <= 64:
            return base**exp
        raise ValueError("unsupported power")
    return ast.literal_eval(node)


def _block_range(lines: list[str]) -> tuple[int, int]:
    start = next((i for i, ln in enumerate(lines) if ln.strip().startswith(START)), None)
    end = next((i for i, ln in enumerate(lines) if ln.strip().startswith(END)), None)
    if start is None or end is None or end < start:
        return 0, len(lines)
    return start + 1, end + 1


def read_knobs(source: str) -> dict[str, Knob]:
    """The knobs of a script, in order. Raises KnobError when the script does not parse."""
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        raise KnobError(f"the script does not parse: {e}") from e
    lines = source.splitlines()
    lo, hi = _block_range(lines)
    knobs: dict[str, Knob] = {}
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            continue
        name = node.targets[0].id
        if not _NAME.match(name) or not (lo < node.lineno <= hi) or node.end_lineno != node.lineno:
            continue
        try:
            value = _literal(node.value)
        except (ValueError, SyntaxError, TypeError):
            continue
        text = lines[node.lineno - 1]
        comment = text.split("#", 1)[1].strip() if "#" in text[node.value.end_col_offset:] else ""
        knobs[name] = Knob(name, value, node.lineno, comment)
    return knobs


def format_value(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1024 and value & (value - 1) == 0:
        return f"2**{value.bit_length() - 1}"
    return repr(value)


def set_knobs(source: str, values: dict[str, Any]) -> str:
    """Rewrite the given knobs' values in place, keeping their comments. Unknown names raise KnobError."""
    knobs = read_knobs(source)
    missing = [k for k in values if k not in knobs]
    if missing:
        raise KnobError(f"not knobs of this script: {', '.join(missing)}; knobs are: {', '.join(knobs)}")
    lines = source.splitlines(keepends=True)
    for name, value in values.items():
        k = knobs[name]
        if isinstance(k.value, bool) != isinstance(value, bool):
            raise KnobError(f"{name} is a {k.type_name}, not {type(value).__name__}")
        newline = "\n" if lines[k.line - 1].endswith("\n") else ""
        comment = f"  # {k.comment}" if k.comment else ""
        lines[k.line - 1] = f"{name} = {format_value(value)}{comment}{newline}"
    out = "".join(lines)
    ast.parse(out)  # never hand back a broken script
    return out


PROFILE_KNOBS = {
    "DEPTH": "depth",
    "WIDTH": "width",
    "HEAD_DIM": "head_dim",
    "DEVICE_BATCH_SIZE": "device_batch_size",
    "TOTAL_BATCH_SIZE": "total_batch_size",
}


def render_for_profile(source: str, profile: Profile) -> str:
    """A template with the profile's model scale and batch sizes written into its knobs."""
    knobs = read_knobs(source)
    return set_knobs(source, {k: getattr(profile, attr) for k, attr in PROFILE_KNOBS.items() if k in knobs})
