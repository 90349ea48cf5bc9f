"""Turning a model's reply into a new train.py: search/replace blocks, a whole file, or a knobs JSON object.

Small models get the format slightly wrong all the time, so application is tolerant where tolerance is
safe (trailing whitespace, a uniformly different indentation, fence noise) and strict where it is not
(a search text must match exactly one place). Every failure raises ``EditError`` whose message is written
for the model: what was wrong and, for a search text that matches nothing, the closest lines of the file
("did you mean these lines?"), so the retry can succeed.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from ..backends.knobs import KnobError, read_knobs, set_knobs

SEARCH, DIVIDER, REPLACE = "<<<<<<< SEARCH", "=======", ">>>>>>> REPLACE"
_BLOCK = re.compile(r"^<{5,9} ?SEARCH[^\n]*\n(.*?)^={5,9}[ \t]*\n(.*?)^>{5,9} ?REPLACE[^\n]*$", re.M | re.S)
_FENCE = re.compile(r"```[a-zA-Z0-9_+-]*[ \t]*\n(.*?)```", re.S)


class EditError(ValueError):
    """The reply could not be applied; the message is feedback for the model."""


@dataclass(frozen=True)
class Block:
    search: str
    replace: str


def parse_blocks(reply: str) -> list[Block]:
    blocks = [Block(m.group(1), m.group(2)) for m in _BLOCK.finditer(reply.replace("\r\n", "\n"))]
    if not blocks:
        raise EditError(
            f"No edit blocks found. Write each change as:\n{SEARCH}\n<exact lines from train.py>\n{DIVIDER}\n"
            f"<the new lines>\n{REPLACE}"
        )
    return blocks


def _lines(text: str) -> list[str]:
    return text.split("\n")


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _find(source_lines: list[str], search_lines: list[str], key) -> list[int]:  # type: ignore[no-untyped-def]
    want = [key(s) for s in search_lines]
    have = [key(s) for s in source_lines]
    n = len(want)
    return [i for i in range(len(have) - n + 1) if have[i : i + n] == want]


def _strip_blank_edges(lines: list[str]) -> list[str]:
    while lines and not lines[0].strip():
        lines = lines[1:]
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    return lines


def apply_block(source: str, block: Block) -> str:
    """Apply one block: exact match first, then whitespace-tolerant; exactly one match is required."""
    if not block.search.strip():
        raise EditError("A SEARCH section is empty: copy the lines to change from train.py into it.")
    if source.count(block.search) == 1:
        return source.replace(block.search, block.replace, 1)
    if source.count(block.search) > 1:
        raise EditError(_ambiguous(block.search, source.count(block.search)))
    src = _lines(source)
    search = _strip_blank_edges(_lines(block.search.rstrip("\n")))
    replace = _lines(block.replace.rstrip("\n")) if block.replace.strip() else []
    # each tier is tried only if the stricter ones found nothing; any tier must find exactly one place
    hits: list[int] = []
    shift = None
    comments = False
    for tier, key in enumerate((lambda s: s.rstrip(),  # 1) trailing whitespace differs
                                lambda s: s.strip(),  # 2) indentation differs uniformly
                                lambda s: " ".join(s.split()),  # 3) and runs of spaces inside lines differ
                                _code)):  # 4) the search text left out the lines' trailing comments
        if tier == 3 and any("#" in line for line in search):
            break
        hits = _find(src, search, key)
        if tier:
            hits = [i for i in hits if _uniform_shift(src[i : i + len(search)], search) is not None]
        if hits:
            if tier:
                shift = _uniform_shift(src[hits[0] : hits[0] + len(search)], search)
            comments = tier == 3
            break
    if len(hits) > 1:
        raise EditError(_ambiguous(block.search, len(hits)))
    if not hits:
        raise EditError(_did_you_mean(src, search))
    i = hits[0]
    if shift is not None:
        old, new = shift
        replace = [(new + line[len(old):] if line.startswith(old) else new + line.lstrip()) if line.strip() else line
                   for line in replace]
    if comments and len(replace) == len(search):  # keep a line's comment on its new version (same target)
        replace = [r + _comment(f) if "#" not in r and _comment(f) and _target(r) and _target(r) == _target(f) else r
                   for r, f in zip(replace, src[i : i + len(search)])]
    return "\n".join(src[:i] + replace + src[i + len(search):])


def _code(line: str) -> str:
    """A line without its trailing comment, spaces normalised (a '#' inside a string is rare in train.py)."""
    return " ".join(line.split("#", 1)[0].split())


def _target(line: str) -> str:
    """What an assignment line assigns to ('' for other lines)."""
    code = line.split("#", 1)[0]
    head, eq, rest = code.partition("=")
    return head.strip() if eq and not rest.startswith("=") and head.strip().isidentifier() else ""


def _comment(line: str) -> str:
    """A line's trailing comment with the spaces before it, or ''."""
    code, sep, rest = line.partition("#")
    return "  #" + rest if sep and code.strip() else ""


def _uniform_shift(found: list[str], search: list[str]) -> tuple[str, str] | None:
    """(indent in the search text, indent in the file) when one prefix swap explains every line."""
    pairs = {(_indent(s), _indent(f)) for s, f in zip(search, found) if s.strip()}
    if not pairs:
        return None
    base_s = min((p[0] for p in pairs), key=len)
    base_f = min((p[1] for p in pairs), key=len)
    for s_ind, f_ind in pairs:
        if not (s_ind.startswith(base_s) and f_ind.startswith(base_f) and s_ind[len(base_s):] == f_ind[len(base_f):]):
            return None
    return base_s, base_f


def _ambiguous(search: str, n: int) -> str:
    first = search.strip().splitlines()[0][:80]
    return (f"The SEARCH text starting with {first!r} matches {n} places in train.py. Include more surrounding "
            "lines so that it matches exactly one.")


def _did_you_mean(src: list[str], search: list[str]) -> str:
    n = max(1, len(search))

    def code(lines: list[str]) -> str:  # comments differ most often in a model's copy: compare code too
        return "\n".join(line.split("#", 1)[0].strip() for line in lines)

    target, target_code = "\n".join(s.strip() for s in search), code(search)
    best, best_i = 0.0, 0
    for i in range(0, max(1, len(src) - n + 1)):
        window = src[i : i + n]
        ratio = max(difflib.SequenceMatcher(None, target, "\n".join(s.strip() for s in window), autojunk=False).ratio(),
                    difflib.SequenceMatcher(None, target_code, code(window), autojunk=False).ratio())
        if ratio > best:
            best, best_i = ratio, i
    first = search[0].strip()[:80] if search else ""
    msg = f"The SEARCH text starting with {first!r} does not match train.py exactly."
    if best > 0.5:
        snippet = "\n".join(src[best_i : best_i + n])
        msg += f" Did you mean these lines?\n{snippet}\nCopy the lines exactly as they are in the file."
    else:
        msg += " Copy the lines to change exactly from the current train.py."
    return msg


def apply_blocks(source: str, reply: str) -> str:
    """All blocks of a reply, in order. The first failing block's error names its position."""
    out = source
    blocks = parse_blocks(reply)
    for k, block in enumerate(blocks, 1):
        try:
            out = apply_block(out, block)
        except EditError as e:
            raise EditError(f"Edit block {k} of {len(blocks)}: {e}") from None
    if out == source:
        raise EditError("The edit blocks change nothing: propose an actual change.")
    return out


def whole_file(reply: str) -> str:
    """The complete new train.py from a reply: the longest fenced code block (or the bare reply if it parses)."""
    blocks = _FENCE.findall(reply.replace("\r\n", "\n"))
    text = max(blocks, key=len) if blocks else reply
    text = text.strip("\n") + "\n"
    try:
        compile(text, "train.py", "exec")
    except SyntaxError as e:
        raise EditError(f"The new train.py does not parse: line {e.lineno}: {e.msg}. Send the complete file again.") from None
    if len(text.strip().splitlines()) < 20:
        raise EditError("The reply does not contain the complete train.py: send the whole file in one ```python block.")
    return text


def knobs_schema(source: str) -> dict[str, Any]:
    """A JSON schema for a change of the knobs (used for constrained decoding: Ollama `format`, OpenAI `response_format`)."""
    types = {"int": {"type": "integer"}, "float": {"type": "number"}, "bool": {"type": "boolean"}, "str": {"type": "string"}}
    props: dict[str, Any] = {}
    for name, knob in read_knobs(source).items():
        if knob.type_name in types:
            props[name] = dict(types[knob.type_name], description=knob.comment or name)
    return {
        "type": "object",
        "properties": {
            "description": {"type": "string", "description": "one line: what you change and why"},
            "changes": {"type": "object", "properties": props, "additionalProperties": False, "minProperties": 1},
        },
        "required": ["description", "changes"],
        "additionalProperties": False,
    }


def _coerce(want: Any, value: Any) -> Any:
    """Small models quote values: "true" for a bool, "2**10" or "0.03" for a number. Take them when unambiguous."""
    if not isinstance(value, str) or isinstance(want, str):
        return value
    text = value.strip()
    if isinstance(want, bool):
        return {"true": True, "false": False}.get(text.lower(), value)
    if isinstance(want, (int, float)):
        number = _arithmetic(text)
        return value if number is None else number
    return value


def _sensible(x: int | float) -> bool:
    """A finite number no knob exceeds (a bound that also stops runaway arithmetic in a quoted value)."""
    return math.isfinite(x) and abs(x) <= 1e15


def _arithmetic(text: str) -> int | float | None:
    """The value of a plain arithmetic expression over number literals ("2**10", "3e-4", "64 * 8"), else None."""
    import ast
    import operator

    ops = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.Pow: operator.pow, ast.USub: operator.neg}

    def bounded(x: int | float) -> int | float:
        if not _sensible(x):  # refuse before it grows further
            raise ValueError("out of range")
        return x

    def ev(node: ast.AST) -> int | float:
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return bounded(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in ops:
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Pow) and (abs(right) > 64 or abs(left) > 1e6):
                raise ValueError("power too large")
            return bounded(ops[type(node.op)](left, right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        raise ValueError("not arithmetic")

    try:
        return ev(ast.parse(text, mode="eval").body)
    except (SyntaxError, ValueError, TypeError, ZeroDivisionError, OverflowError, RecursionError, MemoryError):
        return None


_PLACEHOLDER = re.compile(r"^\W*(one line\W*)?what you change(d)? and why\W*$", re.I)


def apply_knobs(source: str, reply: str) -> tuple[str, str]:
    """(new source, description) from a knobs JSON reply {"description": ..., "changes": {NAME: value}}."""
    text = reply.strip()
    fenced = _FENCE.findall(text)
    if fenced:
        text = fenced[0]
    try:
        data = json.loads(text[text.find("{"): text.rfind("}") + 1] if "{" in text else text)
    except ValueError as e:
        raise EditError(f"The reply is not valid JSON ({e}). Answer with one JSON object: "
                        '{"description": "...", "changes": {"NAME": value}}') from None
    if not isinstance(data, dict) or not isinstance(data.get("changes"), dict) or not data["changes"]:
        raise EditError('The JSON must have "changes": an object of knob names to new values, with at least one change.')
    knobs = read_knobs(source)
    changes: dict[str, Any] = {}
    for name, value in data["changes"].items():
        if name not in knobs:
            raise EditError(f"{name} is not a knob. Knobs: {', '.join(knobs)}.")
        want = knobs[name].value
        value = _coerce(want, value)
        if isinstance(want, bool) != isinstance(value, bool) or (isinstance(want, (int, float)) and not isinstance(value, (int, float))):
            raise EditError(f"{name} must be a {knobs[name].type_name}, got {value!r}.")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not _sensible(value):
            raise EditError(f"{name} must be a finite {knobs[name].type_name} of a sensible size, got {value!r}.")
        changes[name] = int(value) if isinstance(want, int) and not isinstance(want, bool) and float(value).is_integer() else value
    if all(changes[k] == knobs[k].value for k in changes):
        raise EditError("Every value is the same as now: change at least one knob.")
    try:
        new = set_knobs(source, changes)
    except KnobError as e:
        raise EditError(str(e)) from None
    summary = ", ".join(f"{k} {knobs[k].value!r} -> {v!r}" for k, v in changes.items() if v != knobs[k].value)
    description = (str(data.get("description") or "").strip().splitlines() or [""])[0]
    if not description or _PLACEHOLDER.search(description):  # small models copy the schema's own wording
        description = summary
    return new, description
