# The C core (csrc/), as its PyMethodDef tables and PyArg_ParseTupleAndKeywords formats define
# it: keyword names are the kwlists', "z" formats accept None, "p" formats any object's truth.
# Keep in step with csrc/module.c and the files it wires (graph.c, plan.c, queries.c,
# freshness.c, aside.c, pqpath.c); tests/test_core_stub.py compares the two.

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, Literal, TypeAlias, TypedDict, final

PG_VERSION_BUILT: Final[int]
# The field names of plan()'s declaration tuples, in order (plan.c).
DECL_FIELDS: Final[tuple[str, ...]]

# 'v' (view) or 'm' (materialized view); anything else raises ValueError. A str, as the catalog
# hands it over.
_Kind: TypeAlias = str
QueryName: TypeAlias = Literal[
    "access_exclusive_relations",
    "capture",
    "capture_exact",
    "clear_stats_snapshot",
    "client_check",
    "current_schemas",
    "database_checks",
    "drop_materialized_view",
    "drop_materialized_view_cascade",
    "drop_view",
    "drop_view_cascade",
    "exact_drop_function",
    "exact_forget",
    "exact_function",
    "exact_state",
    "exact_trigger",
    "exact_untrigger",
    "history_after",
    "history_capture_call",
    "history_drop_functions",
    "history_drop_refresh_function",
    "history_drop_run_function",
    "history_functions",
    "history_hold_stats",
    "history_insert",
    "history_insert_captured",
    "history_insert_counted",
    "history_insert_many",
    "history_latest",
    "history_present",
    "history_record_call",
    "history_record_run_call",
    "history_refresh_call",
    "history_refresh_function",
    "history_release_stats",
    "history_run_function",
    "history_schemas",
    "lock_guard",
    "lock_holders",
    "lock_restore",
    "owner_privileges",
    "owner_privileges_pg17",
    "refresher_lock_take",
    "session_timeouts",
    "status_sizes",
    "sync_sizes",
]

# ---- module.c: names and SQL text ----------------------------------------------------------

def quote_ident(name: str) -> str: ...
def quote_literal(value: str) -> str: ...
def split_table(db_table: str) -> tuple[str | None, str]: ...
def qualified_name(schema: str | None, name: str) -> str: ...
def derived_name(base: str, suffix: str) -> str: ...
def fingerprint(*parts: str | None) -> str: ...
def refresh_sql(db_table: str, concurrently: object = False) -> str: ...
def catalog_sql() -> str: ...
def freshness_sql(exact: bool = False) -> str: ...
def populated_sql() -> str: ...
def lock_holders_sql() -> str: ...
def libpq_version() -> int: ...

# ---- queries.c -----------------------------------------------------------------------------

def query_sql(
    name: QueryName,
    table: str | None = None,
    ms: int | None = None,
    schema: str | None = None,
    tables: Sequence[str] | None = None,
) -> str: ...
def query_names() -> tuple[str, ...]: ...

# ---- graph.c -------------------------------------------------------------------------------

@final
class Graph:
    """dependencies[i] names the nodes that names[i] depends on."""

    def __new__(cls, names: Sequence[str], dependencies: Sequence[Sequence[str]]) -> Graph: ...
    @property
    def names(self) -> tuple[str, ...]: ...
    def __len__(self) -> int: ...
    def order(self) -> list[int]: ...
    def dependants(self, indices: Sequence[int], include_self: object = False) -> list[int]: ...
    def dependencies(self, indices: Sequence[int], include_self: object = False) -> list[int]: ...
    def project(self, members: Sequence[int]) -> list[list[int]]: ...
    def levels(self) -> list[int]: ...
    def critical_path(self, weights: Sequence[float] | None = None) -> list[float]: ...

# ---- plan.c --------------------------------------------------------------------------------

@final
class PlanAction(tuple[str, int, str, str, str, int, int, bool]):
    """One statement of a sync plan (a PyStructSequence)."""

    n_fields: Final[int]
    n_sequence_fields: Final[int]
    n_unnamed_fields: Final[int]
    @property
    def op(self) -> str: ...
    @property
    def decl(self) -> int: ...
    @property
    def sql(self) -> str: ...
    @property
    def lock(self) -> str: ...
    @property
    def target(self) -> str: ...
    @property
    def phase(self) -> int: ...
    @property
    def sql_offset(self) -> int: ...
    @property
    def populates(self) -> bool: ...

# (declaration, statements that create it beside the object, the query comparing the two).
_Probe: TypeAlias = tuple[int, tuple[str, ...], str]
# (declaration, field, column, field type, column type or None, the view's columns).
_ColumnProblem: TypeAlias = tuple[int, str, str, str | None, str | None, tuple[str, ...]]

class PlanResult(TypedDict):
    actions: list[PlanAction]
    statuses: list[str]
    reasons: list[str]
    states: list[str]
    order: list[int]
    current_schema: str | None
    probes: list[_Probe]
    orphans: list[tuple[str, str, str]]
    columns: list[_ColumnProblem]
    # (declaration, schema, name, populated, current, the declarations whose waiting versions it
    # reads): a deferred rebuild's waiting version, in dependency order
    pending: list[tuple[int, str, str, bool, bool, tuple[int, ...]]]

def plan(
    decls: list[tuple[Any, ...]],
    catalog: list[tuple[Any, ...]],
    *,
    force: object = False,
    update: object = True,
    check_sql_changed: object = True,
    restore_dependants: object = False,
    build_beside: object = True,
    recreate: Iterable[int] = (),
    chain: object = True,
    no_data: object = False,
    adopt: dict[int, bool] | None = None,
    create_schemas: object = False,
    prune: object = False,
    defer: Iterable[int] | None = None,
    swap_pending: Iterable[int] | None = None,
) -> PlanResult: ...

# ---- aside.c -------------------------------------------------------------------------------

def aside_sql() -> str: ...
def aside_relations_sql() -> str: ...
def aside_lock_sql() -> str: ...
def aside_statement(op: Literal["drop", "refresh"], schema: str | None, name: str, kind: _Kind) -> str: ...
def restore_statements(
    schema: str | None,
    name: str,
    kind: _Kind,
    definition: str,
    populated: object,
    tablespace: str | None,
    indexes: list[str] | None,
    comment: str | None,
    acl: list[str] | None,
    owner: str | None,
) -> list[str]: ...
def grant_statements(
    schema: str | None, name: str, kind: _Kind, acl: list[str] | None, owner: str | None
) -> list[str]: ...
def comment_statement(
    schema: str | None, name: str, kind: _Kind, old: str | None, new: str | None
) -> str | None: ...

# (statement, offset in characters of the declaration's SQL in it)
def build_check_statement(schema: str | None, name: str, sql: str) -> tuple[str, int]: ...

# ---- pqpath.c ------------------------------------------------------------------------------

_TaskState: TypeAlias = Literal["waiting", "running", "ok", "failed", "skipped", "cancelled"]
# The error of a failed statement: sqlstate, message, detail, hint, ... (errors.c).
_Error: TypeAlias = dict[str, Any]

def run_parallel(
    conninfo: dict[str, str] | None,
    statements: Sequence[str],
    dependencies: Sequence[Sequence[int]],
    priority: Sequence[float] | None,
    jobs: int,
    setup: str | None = None,
    on_event: Callable[[int, str, float, _Error | None], object] | None = None,
    session: dict[str, str] | None = None,
    guard: Sequence[str | None] | None = None,
    on_notice: Callable[[int, str, str], object] | None = None,
    lock_retries: int = 10,
    lock_timeout_ms: int = 200,
    last_lock_timeout_ms: int = 10000,
    connections: _LoopConnections | None = None,
    on_refused: Callable[[int, int, str], object] | None = None,
) -> list[tuple[_TaskState, float, _Error | None]]: ...

@final
class _LoopConnections:
    """What connect_loop() returns (a capsule): connections for one run_parallel."""

def connect_loop(
    conninfo: dict[str, str] | None,
    jobs: int,
    session: dict[str, str] | None = None,
    setup: str | None = None,
) -> _LoopConnections: ...
def close_loop_connections(connections: _LoopConnections, /) -> None: ...

@final
class Schedule:
    """The parallel loop's schedule, stepped one statement at a time."""

    def __new__(
        cls, dependencies: Sequence[Sequence[int]], priority: Sequence[float] | None = None
    ) -> Schedule: ...
    def next(self) -> int | None: ...
    def done(self, index: int, ok: object) -> list[int]: ...
