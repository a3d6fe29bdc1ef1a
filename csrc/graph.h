/* graph.h: the dependency graph. Node i depends on each node in deps(i); an order lists every
 * node after all of its dependencies. */
#ifndef PGVC_GRAPH_H
#define PGVC_GRAPH_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

typedef struct {
    Py_ssize_t n;
    Py_ssize_t *dep_off, *dep; /* CSR: dependencies of i are dep[dep_off[i] .. dep_off[i+1]) */
    Py_ssize_t *rdep_off, *rdep; /* CSR: dependants of i */
} pgvc_graph;

/* A growable list of edges: from[k] depends on to[k]. Starts zeroed ({0}); pgvc_edges_free
 * releases it. */
typedef struct {
    Py_ssize_t *from, *to, n, cap;
} pgvc_edges;

/* Append the edge "from depends on to". RAISES_NEG (MemoryError, also when the list would
 * outgrow what a size_t can count). */
int pgvc_edges_push(pgvc_edges *e, Py_ssize_t from, Py_ssize_t to);
void pgvc_edges_free(pgvc_edges *e);

/* Edge k says: from[k] depends on to[k]. RAISES_NEG (MemoryError). */
int pgvc_graph_build(pgvc_graph *g, Py_ssize_t n, const Py_ssize_t *from, const Py_ssize_t *to,
                     Py_ssize_t nedges);
void pgvc_graph_free(pgvc_graph *g);

/* Stable topological order: among the nodes that are ready, the lowest index goes first, so a
 * graph declared in dependency order keeps its declaration order.
 * Returns 0 and fills order[n]; 1 on a cycle, with the cycle's nodes in cycle[] (each depends on
 * the next, the last on the first) and their count in *cycle_len; -1 with MemoryError set. */
int pgvc_graph_order(const pgvc_graph *g, Py_ssize_t *order, Py_ssize_t *cycle,
                     Py_ssize_t *cycle_len);

/* Mark (mark[i] = 1) every node reachable from the marked ones, following dependants when
 * `down` is true, dependencies otherwise. RAISES_NEG (MemoryError). */
int pgvc_graph_close(const pgvc_graph *g, char *mark, int down);

/* Raise CycleError for cycle[0..clen) as a closed path (a -> b -> a); name(ctx, i) returns a
 * new reference to node i's name, or NULL with an exception set. Returns NULL. */
PyObject *pgvc_raise_cycle_path(void *st, const Py_ssize_t *cycle, Py_ssize_t clen,
                                PyObject *(*name)(void *ctx, Py_ssize_t i), void *ctx);

extern PyType_Spec pgvc_graph_spec;

#endif
