"""House rules the linters cannot see: SQL is written only in `flowjobs/store/`, and run
statuses are named only through `flowjobs.store.states` outside it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "flowjobs"
SQL = re.compile(r"^\s*(SELECT|UPDATE|INSERT INTO|DELETE FROM|WITH)\s+\S")
RUN_STATUSES = {"delayed", "queued", "executing"}


def strings(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def modules_outside_store():
    for path in sorted(PACKAGE.rglob("*.py")):
        if "store" not in path.relative_to(PACKAGE).parts:
            yield path


def test_sql_is_written_only_in_the_store():
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {text.strip()[:60]}"
        for path in modules_outside_store()
        for line, text in strings(path)
        if SQL.match(text)
    ]
    assert found == [], "SQL outside flowjobs/store/:\n" + "\n".join(found)


def test_the_rule_sees_sql_when_there_is_some(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text('Q = "SELECT id FROM flowjobs_runs"\nR = "INSERT, UPDATE or DELETE"\n')
    assert [text for _, text in strings(sample) if SQL.match(text)] == [
        "SELECT id FROM flowjobs_runs"
    ]


def compared(path: Path):
    """String constants a status could be named by: operands of a comparison (`== "x"`,
    `in ("x", "y")`) and the members of module-level tuples and sets (`PENDING = (...)`);
    labels and keys are other uses of the same words."""
    tree = ast.parse(path.read_text(), str(path))
    nodes = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            nodes += [node.left, *node.comparators]
    for node in tree.body:
        if isinstance(node, ast.Assign):
            nodes.append(node.value)
    for node in nodes:
        items = node.elts if isinstance(node, ast.Tuple | ast.List | ast.Set) else [node]
        for item in items:
            if isinstance(item, ast.Constant) and isinstance(item.value, str):
                yield item.lineno, item.value


def test_run_statuses_are_named_by_enum_outside_the_store():
    """`"queued"` and its kin are compared only in store/ (the enum, the SQL catalogue). Words
    shared with other vocabularies (completed, failed, canceled, retrying, expired: payments,
    deliveries, checkout sessions) cannot be told apart by text, so the check covers the words
    only runs use."""
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {text!r}"
        for path in modules_outside_store()
        for line, text in compared(path)
        if text in RUN_STATUSES
    ]
    assert found == [], "run statuses spelled outside flowjobs/store/:\n" + "\n".join(found)


def test_the_status_rule_sees_a_comparison_but_not_a_label(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text(
        'WAITING = ("queued", "delayed")\n'
        'def f(s):\n    header = "executing"\n    return s == "executing" or s in ("queued",)\n'
    )
    assert sorted(text for _, text in compared(sample)) == [
        "delayed",
        "executing",
        "queued",
        "queued",
    ]
