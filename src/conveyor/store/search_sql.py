"""A search expression (:mod:`conveyor.store.search`) as a SQL condition on ``runs``.

Every value is a bound parameter; keys too. Parameters are JSON, so each
comparison first asks the value's JSON type (SQLite's ``json_type``,
PostgreSQL's ``json_typeof``) and compares only values of the literal's type:
``params.n >= 200`` matches the number 200, never the text "abc".
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from conveyor.store import schema
from conveyor.store.search import Compare, Expression, Junction, Not, Value, parse

__all__ = ["condition", "where_clause"]

_COLUMNS = {
    "id": schema.runs.c.id,
    "name": schema.runs.c.name,
    "status": schema.runs.c.status,
    "experiment": schema.runs.c.experiment,
    "started": schema.runs.c.started_at,
    "ended": schema.runs.c.ended_at,
}


def where_clause(text: str, dialect: str) -> sa.ColumnElement[bool]:
    """The condition ``text`` says, for the database ``dialect`` ("sqlite" or "postgresql")."""
    return condition(parse(text), dialect)


def condition(tree: Expression, dialect: str) -> sa.ColumnElement[bool]:
    if isinstance(tree, Not):
        return sa.not_(condition(tree.operand, dialect))
    if isinstance(tree, Junction):
        parts = [condition(o, dialect) for o in tree.operands]
        return sa.and_(*parts) if tree.op == "and" else sa.or_(*parts)
    return _compare(tree, dialect)


def _apply(left: sa.ColumnElement[Any], op: str, value: Value) -> sa.ColumnElement[bool]:
    if op == "like":
        return left.ilike(value)
    result: sa.ColumnElement[bool] = {
        "=": left.__eq__,
        "!=": left.__ne__,
        "<": left.__lt__,
        "<=": left.__le__,
        ">": left.__gt__,
        ">=": left.__ge__,
    }[op](value)
    return result


def _compare(c: Compare, dialect: str) -> sa.ColumnElement[bool]:
    runs = schema.runs
    if c.kind == "attributes":
        return _apply(_COLUMNS[c.key], c.op, c.value)
    if c.kind == "metrics":
        m = schema.metric_summary
        return sa.exists().where(
            (m.c.run_id == runs.c.id) & (m.c.key == c.key) & _apply(m.c.value, c.op, c.value)
        )
    if c.kind == "tags":
        t = schema.run_tags
        return sa.exists().where(
            (t.c.run_id == runs.c.id) & (t.c.key == c.key) & _apply(t.c.value, c.op, c.value)
        )
    p = schema.params
    return sa.exists().where(
        (p.c.run_id == runs.c.id) & (p.c.key == c.key) & _param(p.c.value, c, dialect)
    )


def _param(value: sa.ColumnElement[Any], c: Compare, dialect: str) -> sa.ColumnElement[bool]:
    """A JSON parameter compared with a literal of its own type only."""
    postgres = dialect == "postgresql"
    kind = sa.func.json_typeof(value) if postgres else sa.func.json_type(value)
    # The value as SQL sees it: text of the JSON scalar (PostgreSQL), or the native value.
    plain: sa.ColumnElement[Any] = (
        value.op("#>>", return_type=sa.Text)(sa.literal_column("'{}'"))
        if postgres
        else sa.func.json_extract(value, "$")
    )
    if isinstance(c.value, bool):
        wanted = c.value == (c.op == "=")
        if postgres:
            return (kind == "boolean") & (plain == ("true" if wanted else "false"))
        return kind == ("true" if wanted else "false")
    # CASE, not AND: PostgreSQL may evaluate a cast before the test beside it.
    if isinstance(c.value, float):
        numeric = ("number",) if postgres else ("integer", "real")
        number = sa.cast(plain, sa.Float) if postgres else plain
        typed = sa.case((kind.in_(numeric), number), else_=None)
    else:
        typed = sa.case((kind == ("string" if postgres else "text"), plain), else_=None)
    return _apply(typed, c.op, c.value)
