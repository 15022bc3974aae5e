"""Rules of the suite itself: no test puts an upper bound on a measured time.

A busy machine makes anything slower, so ``assert elapsed < 2`` fails for reasons that
have nothing to do with the code. Tests check the mechanism instead (the request was
answered while the device was still held, the refusal came after so many bytes, the
probe's timeout is the short one); speed is measured by ``bench/``. Lower bounds ("not
before the deadline") stay allowed: load cannot make them fail.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
CLOCKS = {"monotonic", "perf_counter", "time", "monotonic_ns", "perf_counter_ns", "time_ns"}
MEASURED_NAMES = {"elapsed", "duration", "took", "seconds", "wall_s"}


def _reads_clock(node: ast.AST) -> bool:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute):
            owner = sub.func.value
            if sub.func.attr in CLOCKS and isinstance(owner, ast.Name) and owner.id == "time":
                return True
    return False


def _measured(node: ast.AST) -> bool:
    """Whether an expression is a measured duration (a clock difference, ``elapsed``...).

    A bare clock reading against a deadline (``time.monotonic() < deadline`` in a polling
    loop) is a hang guard, not a measurement, and is not one.
    """
    for sub in ast.walk(node):
        if isinstance(sub, ast.BinOp) and isinstance(sub.op, ast.Sub) and _reads_clock(sub):
            return True
        if isinstance(sub, ast.Name) and sub.id in MEASURED_NAMES:
            return True
        if isinstance(sub, ast.Attribute) and sub.attr in MEASURED_NAMES:
            return True
    return False


def _upper_bounds_on_time(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Assert):
            continue
        for compare in (n for n in ast.walk(node.test) if isinstance(n, ast.Compare)):
            operands = [compare.left, *compare.comparators]
            for op, left, right in zip(compare.ops, operands[:-1], operands[1:], strict=True):
                smaller = left if isinstance(op, ast.Lt | ast.LtE) else None
                smaller = right if isinstance(op, ast.Gt | ast.GtE) else smaller
                if smaller is not None and _measured(smaller):
                    lines.append(node.lineno)
    return lines


def test_no_test_bounds_a_measured_time_from_above() -> None:
    found = {
        f"{path.relative_to(TESTS)}:{line}"
        for path in TESTS.rglob("*.py")
        for line in _upper_bounds_on_time(ast.parse(path.read_text()))
    }
    assert not found, f"upper bounds on measured time (check the mechanism instead): {found}"


def test_the_rule_catches_what_it_is_for() -> None:
    caught = """
assert time.monotonic() - started < 2
assert elapsed < 2.0
assert 1.0 > reply.seconds
assert HEADER_S - 0.1 < reply.seconds < HEADER_S + 1.5
"""
    allowed = """
assert time.monotonic() < deadline, "never ready"
assert reply.seconds > HEADER_S - 0.1
assert clock.now >= 0.3
assert len(items) < 3
"""
    assert _upper_bounds_on_time(ast.parse(caught)) == [2, 3, 4, 5]
    assert _upper_bounds_on_time(ast.parse(allowed)) == []


def test_test_files_have_unique_names() -> None:
    """Test folders have no ``__init__.py``: pytest imports each file by its bare name, so
    two ``test_x.py`` in different folders collide ("import file mismatch") in one run."""
    seen: dict[str, Path] = {}
    clashes = []
    for path in sorted(TESTS.rglob("test_*.py")):
        if path.name in seen:
            clashes.append(f"{seen[path.name].relative_to(TESTS)} and {path.relative_to(TESTS)}")
        seen.setdefault(path.name, path)
    assert not clashes, clashes
