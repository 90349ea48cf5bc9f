"""What the integrity check hands back: violations, the report, and its wording for the model.

The messages go back to the model that wrote the script, so each says in one sentence what is not allowed
and why; ``src`` is how a piece of the script is quoted in them.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Violation:
    """One problem: where (1-based line, 0-based column), which rule, and a one-sentence message."""

    line: int
    col: int
    rule: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message} [{self.rule}]"


@dataclass
class IntegrityReport:
    """The result of check_script: ``ok`` when there are no violations."""

    violations: list[Violation] = field(default_factory=list)
    backend: str = "torch"

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def rules(self) -> set[str]:
        return {v.rule for v in self.violations}

    def by_rule(self, rule: str) -> list[Violation]:
        return [v for v in self.violations if v.rule == rule]


def format_report(report: IntegrityReport) -> str:
    """The report as feedback for the model that wrote the script (one line per problem)."""
    if report.ok:
        return "Integrity check passed: train.py uses only the harness's public API."
    n = len(report.violations)
    lines = [
        f"Integrity check failed: train.py was rejected before training ({n} problem{'s' if n != 1 else ''}). "
        "Fix each line below and keep the rest of your change; the harness alone provides the data, the clock "
        "and the score:"
    ]
    lines += [f"- {v}" for v in report.violations]
    return "\n".join(lines)


def src(node: ast.AST, limit: int = 60) -> str:
    """An expression as the script wrote it, cut to ``limit`` characters, for a message."""
    try:
        text = ast.unparse(node)
    except Exception:  # pragma: no cover - unparse handles every parsed node
        return "<expr>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
