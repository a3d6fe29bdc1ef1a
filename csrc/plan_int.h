/* plan_int.h: the planner's private shapes, shared by its files (plan.c, plan_input.c,
 * plan_graph.c, plan_decide.c, plan_defer.c, and the statements' ddl*.c through ddl.h). Nothing
 * outside the planner includes it. */
#ifndef PGVC_PLAN_INT_H
#define PGVC_PLAN_INT_H

#include "plan.h"

#include "errors.h"
#include "graph.h"
#include "sqlgen.h"

/* The positional contract of plan()'s input: one declaration tuple (declarations.py builds it)
 * and one catalog row (catalog.c's query returns it). */
enum {
    D_LABEL,
    D_SCHEMA,
    D_NAME,
    D_KIND,
    D_SQL,
    D_DEPS,
    D_WITH_DATA,
    D_TABLESPACE,
    D_INDEXES,
    D_CIDX,
    D_CIDX_TS,
    D_DBTABLE,
    D_COLUMNS,
    D_NFIELDS
};

/* The names of a declaration tuple's fields, in order (plan_input.c): the keys the decoder
 * names in its errors and the module's DECL_FIELDS. */
extern const char *const pgvc_decl_fields[D_NFIELDS];

enum {
    C_OID,
    C_SCHEMA,
    C_NAME,
    C_KIND,
    C_COMMENT,
    C_POPULATED,
    C_TABLESPACE,
    C_RW,
    C_DEFMD5,
    C_OWNER,
    C_ACL,
    C_INDEXES,
    C_REFS,
    C_FULLDEF,
    C_INDEXDEFS,
    C_CURSCHEMA,
    C_COLNAMES,
    C_COLTYPES,
    C_NFIELDS
};

enum adopt { ADOPT_UNKNOWN, ADOPT_DIFFERS, ADOPT_SAME, ADOPT_REINDEX };
enum action { A_SKIP, A_CREATE, A_REPLACE, A_RECREATE, A_BESIDE };
enum status { S_CREATED, S_UPDATED, S_EXISTS, S_FORCED };
/* What pgviews_status shows for a view: plan.c names them (state_names). */
enum state {
    ST_IN_SYNC,
    ST_MISSING,
    ST_CHANGED,
    ST_DRIFTED,
    ST_UNMANAGED,
    ST_UNSTAMPED,
    ST_INDEXES,
    ST_UNPOPULATED,
    ST_STALE,
    ST_COLUMNS,
    ST_PENDING,
    ST_NSTATES
};

/* A list of owned strings; n = -1 stands for SQL NULL. */
typedef struct {
    const char **items;
    Py_ssize_t n;
} StrList;

/* One piece of an index template: text, or a slot for the table ('T') or the index name ('N'),
 * placed by position (declarations.py splits Django's Statement template at its placeholders),
 * so nothing inside the text is ever searched for. */
typedef struct {
    char kind; /* 0: text, 'T', 'N' */
    const char *text;
} Seg;

typedef struct {
    const char *name;
    Seg *segs;
    Py_ssize_t nseg;
} DeclIndex;

/* A concrete field of the view's model: the column it reads and Django's type for it (NULL:
 * not known). */
typedef struct {
    const char *field, *column, *type;
} DeclColumn;

/* Every string is an owned copy (the plan's arena), checked once at the boundary. */
typedef struct {
    const char *label, *schema, *name, *sql, *tablespace, *cidx, *cidx_ts, *db_table;
    const char *cidx_cols; /* the concurrent index's columns, parsed and quoted */
    const char *target; /* "label (schema.name)", for messages and actions */
    PyObject *label_obj; /* an exact str we own: dict key, messages */
    PyObject *deps; /* a tuple of exact str we own */
    DeclIndex *indexes;
    Py_ssize_t nindexes;
    DeclColumn *columns;
    Py_ssize_t ncolumns;
    char kind;
    int with_data, explicit_schema;
    Py_ssize_t node;
    int action, status, refresh, reindex, restamp, dropped, taint;
    int chain; /* built in the build schema (phase 0), moved into place (phase 1) */
    int probe; /* its object has no stamp and may equal the declaration: probe it */
    int adopt; /* its object unstamped, or stamped with other SQL: the probe's verdict, ADOPT_* */
    const char *reason;
    int state; /* enum state: the code that goes with the reason */
    const char *inplace_after; /* rebuilt in place (not beside) because this item changed */
    /* Deferred rebuilds (plan_defer.c). */
    int defer; /* plan(defer=[...]) names it: a rebuild may wait beside the old object */
    int deferred; /* its rebuild waits: the old object serves on, untouched */
    int along; /* deferred although its own definition holds: it reads a view whose rebuild
                  waits, and its waiting version reads that one's (plan_defer.c) */
    int defer_state; /* the state deferring along replaced, put back when it is undone */
    int defer_action; /* the action deferring replaced, put back when the deferral is undone */
    const char *defer_reason;
    Py_ssize_t pending; /* node of its waiting new version, -1 */
    int pending_build; /* a new pending version is created (phase 0) */
    int swap_asked; /* plan(swap_pending=[...]) names it */
    int pending_swap; /* its populated pending version takes the old one's place (phase 1) */
    int pending_in_build; /* its waiting version is in the build schema while new ones that
                             read it are created (phase 0, ddl_defer.c) */
    char body_fp[33], idx_fp[33];
    char cidx_name[PGVC_NAMEDATALEN];
} Decl;

typedef struct {
    const char *schema, *name, *comment, *tablespace, *rw, *defmd5, *owner, *fulldef;
    const char *target; /* "schema.name" */
    const char
        *refused_by; /* a dependant we may not drop: the label of what re-creation needs it */
    int refused_pruned; /* ... and that is an orphan being pruned */
    StrList acl, index_names, index_defs;
    StrList colnames, coltypes; /* the view's columns and their types (format_type) */
    long long *refs; /* oids of what it reads */
    Py_ssize_t nrefs;
    char relkind;
    int populated;
    Py_ssize_t decl, item;
    long long oid;
    int dropped, restore, taint, external_below;
    /* A pending version (plan_defer.c): its stamp says pending=1, its name is derived from its
     * declaration's (PGVC_PENDING_SUFFIX). */
    int pending_mark;
    Py_ssize_t pending_of; /* the declaration it waits for, -1 */
    int pending_discard; /* dropped in phase 0: stale, or its declaration no longer defers */
    int pending_upstream_dropped;
    pgvc_stamp stamp; /* our part of the comment, parsed (stamp.h) */
} Node;

typedef struct {
    pgvc_state *st;
    Decl *decls;
    Node *nodes;
    Py_ssize_t nd, nn, ni; /* declared, catalog nodes, items */
    Py_ssize_t *item_node; /* item -> node or -1 */
    pgvc_graph g; /* over items: declared and catalog dependencies */
    pgvc_graph cg; /* over catalog nodes: what pg_depend says, the edges a DROP follows */
    Py_ssize_t *order;
    PyObject *actions;
    pgvc_buf buf;
    int force, update, check_sql_changed, restore, beside, chain;
    int probed; /* plan(adopt=...) was given: the probes' verdicts are in Decl.adopt */
    int prune; /* drop orphans: objects with our stamp that no declaration claims */
    int create_schemas; /* PGVIEWS_CREATE_SCHEMAS: create a db_table's missing schema */
    int no_data; /* a dry run: every materialized view built WITH NO DATA, nothing populated */
    int nchain;
    int swap_pending; /* plan(swap_pending=...) was given: only those swaps, nothing else */
    int pending_linked; /* some new pending version reads another (ddl_defer.c) */
    int populates; /* the next action emitted computes a declared materialized view's data */
    const char *current_schema;
    PyObject *schemas; /* set of existing schema names */
    void **arena; /* every allocation of this call, freed together */
    Py_ssize_t narena, carena;
} Plan;

/* Fields of _core.PlanAction, in order (plan.c describes them). */
#define PGVC_ACTION_NFIELDS 8

/* The build schema of a changed chain: the new versions of changed views and of every
 * materialized view that reads them are created there, under their own names, with the build
 * schema first on the search_path, so unqualified names inside their SQL find the new versions.
 * Readers keep the old ones until the swap moves the new ones into place. */
#define PGVC_BUILD_SCHEMA "_pgviews_c_build"

/* The new version of a materialized view whose rebuild is deferred waits beside the old one
 * under this derived name, WITH NO DATA, until refresh_pgviews --pending populates it and
 * swaps it in. */
#define PGVC_PENDING_SUFFIX "_pgvc_pending"

/* ---- plan_input.c: decoding into owned data. Each RAISES_NEG: TypeError or ValueError naming
 * the argument for a malformed one, PlanError naming the view for a declaration PostgreSQL
 * cannot take. */
int pgvc_plan_read_decls(Plan *P, PyObject *decls);
int pgvc_plan_read_catalog(Plan *P, PyObject *catalog);
/* The arena: NULL with MemoryError set when out of memory. pgvc_plan_calloc: an array of
 * count items of size bytes, zeroed (MemoryError when count * size overflows). */
void *pgvc_plan_alloc(Plan *P, size_t size);
void *pgvc_plan_calloc(Plan *P, size_t count, size_t size);
const char *pgvc_plan_format(Plan *P, const char *fmt, ...);
void pgvc_plan_free_arena(Plan *P);
void pgvc_plan_free_decls(Plan *P);

/* ---- plan_graph.c: match declarations to nodes, build the item graph and its order.
 * RAISES_NEG (CycleError, MissingDependencyError, PlanError). */
int pgvc_plan_build_graph(Plan *P);

/* ---- plan_decide.c */
/* Decide one declaration's action from its catalog row (forced: re-create it). */
int pgvc_plan_classify(Plan *P, Decl *d, int forced); /* RAISES_NEG */
/* Does field k of d read a column the view (n) lacks (1, *have_type NULL) or one of another type
 * family (2, *have_type its type)? 0 when it matches or cannot be told. */
int pgvc_plan_column_problem(const Decl *d, const Node *n, Py_ssize_t k, const char **have_type);
/* Spread drops and stale data forward. Returns the list of refused dependants, NULL on error. */
PyObject *pgvc_plan_propagate(Plan *P);
/* Decide which declarations form chains. Returns the number chosen, -1 on error. */
Py_ssize_t pgvc_plan_choose_chain(Plan *P);

/* ---- plan_defer.c: deferred rebuilds. Each RAISES_NEG. */
/* Read plan(defer=..., swap_pending=...): lists of declaration indexes (None: none). */
int pgvc_defer_read(Plan *P, PyObject *defer, PyObject *swap);
/* Match pending versions to their declarations (after match_decls). */
int pgvc_defer_match(Plan *P);
/* After classify(): defer a rebuild, or (swap_pending) choose the swaps and leave the rest. */
void pgvc_defer_classify(Plan *P, Decl *d);
/* In propagate(): a deferred rebuild whose inputs change is done now after all. Returns 1 when
 * d's pending swap stands whatever its inputs do (the caller only drops the old version). */
int pgvc_defer_spread(Plan *P, Decl *d, Py_ssize_t tainted_by, Py_ssize_t dropped_by);
/* In propagate(): a pending version n whose inputs are dropped (dropped_by >= 0), or not. */
void pgvc_defer_spread_node(Plan *P, Node *n, Py_ssize_t dropped_by);
/* Before propagate(), in a swap: a swap whose waiting version reads the waiting version of a
 * view not swapped in is not made either. RAISES_NEG. */
int pgvc_defer_together(Plan *P);
/* Before propagate(), in a sync: the views that read a deferred rebuild and do not change wait
 * along with it (a plain view only when a waiting materialized view reads it). RAISES_NEG. */
int pgvc_defer_along(Plan *P);
/* After spread(): which pending versions stay, go, or are created. */
void pgvc_defer_settle(Plan *P);
/* Phase 0: drop stale pending versions, create new ones. */
int pgvc_defer_emit(Plan *P);
/* plan()'s "pending": (decl, schema, name of the pending version, populated, ready, the decls
 * whose pending versions it reads) per declaration with a pending version, in dependency
 * order. NULL on error. */
PyObject *pgvc_defer_result(Plan *P);

#endif
