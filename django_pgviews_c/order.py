"""Orders a sync learns while it runs. A view may read another view without declaring it
(check W005); on a cold database creating it then fails with "relation ... does not exist".
When that relation is a view the same plan creates later, the sync learns "this one after that
one", starts the plan again from the beginning, and moves the first view (and everything that
depends on it) after the second."""

from __future__ import annotations

import re
from collections.abc import Sequence

from django.db.backends.base.base import BaseDatabaseWrapper

from django_pgviews_c import _core
from django_pgviews_c.dberrors import diag
from django_pgviews_c.declarations import Declarations
from django_pgviews_c.syncresult import Action

__all__ = ["LearnedOrder"]

# The relation in the server's "relation ... does not exist", as the statement named it
# (identifiers already folded by the parser, schema-qualified when the statement was).
# Read from the first quoted name, so a translated message (lc_messages) is read too.
_MISSING_RELATION = re.compile(r'"(?:([^".]+)\.)?([^"]+)"')


class LearnedOrder:
    """The (declaration, declaration it must follow) pairs learned from undeclared reads."""

    def __init__(self, decls: Declarations) -> None:
        self.decls = decls
        self.after: list[tuple[int, int]] = []

    def forget(self) -> None:
        """A new sync: nothing learned yet."""
        self.after = []

    def learn(self, decl: int, before: int) -> None:
        self.after.append((decl, before))

    def dependants(self, decl: int) -> set[int]:
        """The declaration and every one that depends on it, declared or learned."""
        index = {label: i for i, label in enumerate(self.decls.labels)}
        readers: dict[int, set[int]] = {}
        for i, t in enumerate(self.decls.tuples):
            for dep in t[5]:
                if dep in index:
                    readers.setdefault(index[dep], set()).add(i)
        for later, before in self.after:
            readers.setdefault(before, set()).add(later)
        found = {decl}
        todo = [decl]
        while todo:
            for reader in readers.get(todo.pop(), ()):
                if reader not in found:
                    found.add(reader)
                    todo.append(reader)
        return found

    def reorder(self, actions: list[Action]) -> list[Action]:
        """Apply the orders learned: the actions of a view (its create, indexes...) and of
        everything depending on it that come before the last action of the view it reads move
        just after that one, in their order, in that one's phase."""
        for decl, before in self.after:
            moved = self.dependants(decl)
            last = max((k for k, a in enumerate(actions) if a.decl == before), default=-1)
            if last < 0:
                continue
            phase = actions[last].phase
            head = actions[: last + 1]
            moving = [a for a in head if a.decl in moved]
            if not moving:
                continue
            for a in moving:
                a.phase = max(a.phase, phase)
            actions = [a for a in head if a.decl not in moved] + moving + actions[last + 1 :]
        return actions

    def misordered(
        self, connection: BaseDatabaseWrapper, action: Action, exc: BaseException, planned: Sequence[Action]
    ) -> int | None:
        """When creating a view failed because a relation it reads does not exist, and that
        relation is a view this plan (``planned``) creates after it: that view's declaration.
        None when the relation is not one of ours, or when ordering after it would make a
        cycle."""
        if action.decl < 0 or action.op not in ("create", "build"):
            return None
        found = _MISSING_RELATION.search(diag(exc)["message"] or "")
        if found is None:
            return None
        schema, name = found.groups()
        creates = {a.decl for a in planned if a.op in ("create", "build") and a.decl >= 0}
        candidates = [
            i for i, (_, n) in enumerate(self.decls.split) if n == name and i in creates and i != action.decl
        ]
        if not candidates:
            return None
        before = self._in_search_path(connection, candidates, schema)
        if before is None or before in self.dependants(action.decl) or (action.decl, before) in self.after:
            return None  # a cycle, or already ordered so and still missing
        return before

    def _in_search_path(
        self, connection: BaseDatabaseWrapper, candidates: list[int], schema: str | None
    ) -> int | None:
        """The one candidate the statement meant: in ``schema`` when it named one, else the one
        in the first schema of the search path that has one. None when that is not one."""
        # A db_table without a schema lives in the first schema of the search path; a name the
        # statement did not qualify means the first schema of the path that has it.
        with connection.cursor() as cursor:
            cursor.execute(_core.query_sql("current_schemas"))
            path = list(cursor.fetchone()[0])
        where = {i: self.decls.split[i][0] or (path[0] if path else None) for i in candidates}
        if schema is not None:
            candidates = [i for i in candidates if where[i] == schema]
        else:
            ranked = sorted((path.index(s), i) for i, s in where.items() if s in path)
            candidates = [ranked[0][1]] if ranked else []
        return candidates[0] if len(candidates) == 1 else None
