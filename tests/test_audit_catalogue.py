"""The audit log's catalogue of actions names every action the code records.

The actions are read from the source: the first argument of each record() and
record_now() call, followed through the parameters of helpers that pass it on
(schema._save_schema), so a new action missing from audit.ACTIONS fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from wave_web import audit

PACKAGE = Path(audit.__file__).parent
RECORDERS = {"record": 0, "record_now": 0}  # function name → position of `action`


def _calls() -> list[tuple[Path, ast.FunctionDef | None, ast.Call]]:
    """Every call in the package with the function it is written in."""
    found = []

    def visit(path: Path, node: ast.AST, func: ast.FunctionDef | None) -> None:
        for child in ast.iter_child_nodes(node):
            inner = child if isinstance(child, ast.FunctionDef) else func
            if isinstance(child, ast.Call):
                found.append((path, func, child))
            visit(path, child, inner)

    for path in sorted(PACKAGE.rglob("*.py")):
        visit(path, ast.parse(path.read_text(encoding="utf-8")), None)
    return found


def _name(call: ast.Call) -> str | None:
    f = call.func
    return f.id if isinstance(f, ast.Name) else getattr(f, "attr", None)


def _argument(call: ast.Call, position: int, keyword: str) -> ast.expr | None:
    for kw in call.keywords:
        if kw.arg == keyword:
            return kw.value
    return call.args[position] if len(call.args) > position else None


def recorded_actions() -> tuple[set[str], list[str]]:
    """(actions found, calls whose action cannot be told from the source)."""
    calls = _calls()
    actions: set[str] = set()
    unknown: list[str] = []

    def resolve(expr, func, where: str, depth: int = 0) -> None:
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            actions.add(expr.value)
        elif isinstance(expr, ast.IfExp):
            resolve(expr.body, func, where, depth)
            resolve(expr.orelse, func, where, depth)
        elif isinstance(expr, ast.Name) and func is not None and depth < 5:
            params = [a.arg for a in func.args.args]
            if expr.id not in params:
                unknown.append(where)
                return
            position = params.index(expr.id)
            callers = [c for c in calls if _name(c[2]) == func.name]
            if not callers:
                unknown.append(where)
            for path, outer, call in callers:
                arg = _argument(call, position, expr.id)
                here = f"{path.name}:{call.lineno}"
                if arg is None:
                    unknown.append(here)
                else:
                    resolve(arg, outer, here, depth + 1)
        else:
            unknown.append(where)

    for path, func, call in calls:
        if _name(call) in RECORDERS and (func is None or func.name not in RECORDERS):
            arg = _argument(call, RECORDERS[_name(call)], "action")
            resolve(arg, func, f"{path.name}:{call.lineno}")
    return actions, unknown


def test_catalogue_names_every_recorded_action():
    actions, unknown = recorded_actions()
    assert not unknown, f"pass the audit action as a literal at {unknown}"
    assert len(actions) > 30  # the scan found the calls
    missing = sorted(actions - audit.ACTIONS.keys())
    assert not missing, f"add {missing} to wave_web.audit.ACTIONS"


def test_catalogue_check_fails_for_an_action_it_does_not_know(monkeypatch):
    monkeypatch.delitem(audit.ACTIONS, "rows.import")
    actions, _ = recorded_actions()
    assert "rows.import" in actions - audit.ACTIONS.keys()


def test_actions_passed_through_a_helper_are_found():
    actions, _ = recorded_actions()
    # schema._save_schema(xtype, defs, "type.drop_column", …) records them
    assert {"type.drop_column", "type.rename_column", "user.disable"} <= actions


@pytest.mark.parametrize("name", sorted(audit.ACTIONS))
def test_every_action_has_a_readable_label(name):
    label = audit.action_label(name)
    assert " · " in label and name not in label
