"""Applying one change to another version of a script: what applies, what is a conflict (never misplaced)."""

from __future__ import annotations

from autoresearch.engine.merge import apply_change, changed_lines

BASE = "A = 1\nB = 2\nC = 3\nD = 4\n\ndef f():\n    return A\n"


def test_a_change_applies_where_its_lines_are() -> None:
    after = BASE.replace("C = 3", "C = 9")
    assert apply_change(BASE, BASE, after) == after
    moved = "# a comment added at the top\n" + BASE  # the other version has lines the change never saw
    assert apply_change(moved, BASE, after) == "# a comment added at the top\n" + after


def test_neighbouring_lines_are_independent_changes() -> None:
    one = BASE.replace("B = 2", "B = 5")  # a left-out change of the line above
    two = one.replace("C = 3", "C = 9")  # the change, written on top of it
    assert apply_change(BASE, one, two) == BASE.replace("C = 3", "C = 9")


def test_a_change_to_lines_that_are_not_there_is_a_conflict() -> None:
    one = BASE.replace("B = 2", "B = 5")
    two = one.replace("B = 5", "B = 7")  # rewrites what the left-out change wrote
    assert apply_change(BASE, one, two) is None


def test_an_insertion_after_lines_a_left_out_change_wrote_is_a_conflict_not_misplaced() -> None:
    one = BASE.replace("    return A\n", "    x = A * 2\n    return x\n")
    two = one.replace("    x = A * 2\n", "    x = A * 2\n    x += 1\n")  # inserts after a line of ``one``
    assert apply_change(BASE, one, two) is None
    three = one + "\nprint(f())\n"  # an insertion at the end, after a line ``one`` wrote
    assert apply_change(BASE, one, three) is None


def test_taking_a_change_back_from_a_later_version() -> None:
    one = BASE.replace("A = 1", "A = 0")
    later = one.replace("D = 4", "D = 8")
    assert apply_change(later, one, BASE) == BASE.replace("D = 4", "D = 8")  # one reverted, the later kept
    assert changed_lines(BASE, one) == ({"A = 1"}, {"A = 0"})
