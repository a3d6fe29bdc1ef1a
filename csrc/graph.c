/* graph.c: the dependency graph in C: the growable edge list (pgvc_edges), building the graph,
 * stable topological order, closures, and the cycle path raised as CycleError. The Python type
 * _core.Graph over it is in graph_type.c. */
#include "graph.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"

int pgvc_edges_push(pgvc_edges *e, Py_ssize_t from, Py_ssize_t to)
{
    if (e->n == e->cap) {
        Py_ssize_t cap = e->cap ? e->cap : 64, *nf, *nt;
        if (e->cap) {
            if (cap > PY_SSIZE_T_MAX / 2 / (Py_ssize_t)sizeof(Py_ssize_t)) {
                PyErr_NoMemory();
                return -1;
            }
            cap *= 2;
        }
        /* Each array is kept as soon as it has grown, so pgvc_edges_free releases it either way. */
        if ((nf = realloc(e->from, sizeof(Py_ssize_t) * (size_t)cap)))
            e->from = nf;
        if ((nt = realloc(e->to, sizeof(Py_ssize_t) * (size_t)cap)))
            e->to = nt;
        if (!nf || !nt) {
            PyErr_NoMemory();
            return -1;
        }
        e->cap = cap;
    }
    e->from[e->n] = from;
    e->to[e->n++] = to;
    return 0;
}

void pgvc_edges_free(pgvc_edges *e)
{
    free(e->from);
    free(e->to);
    e->from = e->to = NULL;
    e->n = e->cap = 0;
}

int pgvc_graph_build(pgvc_graph *g, Py_ssize_t n, const Py_ssize_t *from, const Py_ssize_t *to,
                     Py_ssize_t nedges)
{
    Py_ssize_t *fill = NULL;
    memset(g, 0, sizeof *g);
    g->n = n;
    g->dep_off = calloc((size_t)n + 1, sizeof(Py_ssize_t));
    g->rdep_off = calloc((size_t)n + 1, sizeof(Py_ssize_t));
    g->dep = malloc(sizeof(Py_ssize_t) * (size_t)(nedges ? nedges : 1));
    g->rdep = malloc(sizeof(Py_ssize_t) * (size_t)(nedges ? nedges : 1));
    fill = calloc((size_t)n + 1, sizeof(Py_ssize_t));
    if (!g->dep_off || !g->rdep_off || !g->dep || !g->rdep || !fill)
        goto error;
    for (Py_ssize_t k = 0; k < nedges; k++) {
        g->dep_off[from[k] + 1]++;
        g->rdep_off[to[k] + 1]++;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        g->dep_off[i + 1] += g->dep_off[i];
        g->rdep_off[i + 1] += g->rdep_off[i];
    }
    for (Py_ssize_t k = 0; k < nedges; k++)
        g->dep[g->dep_off[from[k]] + fill[from[k]]++] = to[k];
    memset(fill, 0, sizeof(Py_ssize_t) * ((size_t)n + 1));
    for (Py_ssize_t k = 0; k < nedges; k++)
        g->rdep[g->rdep_off[to[k]] + fill[to[k]]++] = from[k];
    free(fill);
    return 0;
error:
    free(fill);
    pgvc_graph_free(g);
    PyErr_NoMemory();
    return -1;
}

void pgvc_graph_free(pgvc_graph *g)
{
    free(g->dep_off);
    free(g->dep);
    free(g->rdep_off);
    free(g->rdep);
    memset(g, 0, sizeof *g);
}

/* A binary min-heap of node indices, in room for cap of them. */
static void heap_push(Py_ssize_t *h, Py_ssize_t *len, Py_ssize_t cap, Py_ssize_t v)
{
    Py_ssize_t i = (*len)++;
    assert(i < cap);
    while (i > 0) {
        Py_ssize_t parent = (i - 1) / 2;
        if (h[parent] <= v)
            break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = v;
}

static Py_ssize_t heap_pop(Py_ssize_t *h, Py_ssize_t *len)
{
    Py_ssize_t top = h[0], last = h[--(*len)], i = 0;
    for (;;) {
        Py_ssize_t c = 2 * i + 1;
        if (c >= *len)
            break;
        if (c + 1 < *len && h[c + 1] < h[c])
            c++;
        if (last <= h[c])
            break;
        h[i] = h[c];
        i = c;
    }
    if (*len)
        h[i] = last;
    return top;
}

/* RAISES_NEG. Every node left (indeg > 0) has a dependency that is left too: walk them until
 * one repeats; the cycle into cycle[0 .. *cycle_len). */
static int find_cycle(const pgvc_graph *g, const Py_ssize_t *indeg, Py_ssize_t *cycle,
                      Py_ssize_t *cycle_len)
{
    Py_ssize_t n = g->n, v = 0, step = 0, *seen = malloc(sizeof(Py_ssize_t) * (size_t)n);
    if (!seen) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        seen[i] = -1;
    while (indeg[v] == 0)
        v++;
    while (seen[v] < 0) {
        seen[v] = step;
        cycle[step++] = v;
        for (Py_ssize_t k = g->dep_off[v]; k < g->dep_off[v + 1]; k++)
            if (indeg[g->dep[k]] > 0) {
                v = g->dep[k];
                break;
            }
    }
    /* cycle[seen[v] .. step) is the cycle. */
    *cycle_len = step - seen[v];
    memmove(cycle, cycle + seen[v], sizeof(Py_ssize_t) * (size_t)*cycle_len);
    free(seen);
    return 0;
}

int pgvc_graph_order(const pgvc_graph *g, Py_ssize_t *order, Py_ssize_t *cycle,
                     Py_ssize_t *cycle_len)
{
    Py_ssize_t n = g->n, hlen = 0, count = 0, *indeg = NULL, *heap = NULL;
    int rc = -1;
    assert(n >= 0);
    indeg = malloc(sizeof(Py_ssize_t) * (size_t)(n ? n : 1));
    heap = malloc(sizeof(Py_ssize_t) * (size_t)(n ? n : 1));
    if (!indeg || !heap) {
        PyErr_NoMemory();
        goto exit;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        indeg[i] = g->dep_off[i + 1] - g->dep_off[i];
        if (indeg[i] == 0)
            heap_push(heap, &hlen, n, i);
    }
    /* A node enters the heap once, when its last dependency leaves it: hlen + count <= n. */
    while (hlen) {
        Py_ssize_t v = heap_pop(heap, &hlen);
        assert(count < n);
        order[count++] = v;
        for (Py_ssize_t k = g->rdep_off[v]; k < g->rdep_off[v + 1]; k++)
            if (--indeg[g->rdep[k]] == 0)
                heap_push(heap, &hlen, n, g->rdep[k]);
    }
    if (count == n) {
        rc = 0;
        goto exit;
    }
    rc = find_cycle(g, indeg, cycle, cycle_len) < 0 ? -1 : 1;
exit:
    free(indeg);
    free(heap);
    return rc;
}

int pgvc_graph_close(const pgvc_graph *g, char *mark, int down)
{
    Py_ssize_t *stack = malloc(sizeof(Py_ssize_t) * (size_t)(g->n ? g->n : 1)), top = 0;
    const Py_ssize_t *off = down ? g->rdep_off : g->dep_off, *adj = down ? g->rdep : g->dep;
    char *pushed;
    if (!stack) {
        PyErr_NoMemory();
        return -1;
    }
    if (!(pushed = calloc((size_t)g->n + 1, 1))) {
        free(stack);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < g->n; i++)
        if (mark[i]) {
            stack[top++] = i;
            pushed[i] = 1;
        }
    while (top) {
        Py_ssize_t v = stack[--top];
        for (Py_ssize_t k = off[v]; k < off[v + 1]; k++) {
            Py_ssize_t w = adj[k];
            assert(w >= 0 && w < g->n);
            mark[w] = 1;
            if (!pushed[w]) {
                assert(top < g->n); /* a node is pushed once */
                pushed[w] = 1;
                stack[top++] = w;
            }
        }
    }
    free(stack);
    free(pushed);
    return 0;
}

PyObject *pgvc_raise_cycle_path(void *st, const Py_ssize_t *cycle, Py_ssize_t clen,
                                PyObject *(*name)(void *ctx, Py_ssize_t i), void *ctx)
{
    PyObject *path = PyList_New(clen + 1);
    for (Py_ssize_t k = 0; path && k <= clen; k++) {
        PyObject *item = name(ctx, cycle[k % clen]); /* the path closes on its first node */
        if (!item) {
            Py_CLEAR(path);
            break;
        }
        PyList_SET_ITEM(path, k, item);
    }
    if (path)
        pgvc_raise_cycle((pgvc_state *)st, path);
    Py_XDECREF(path);
    return NULL;
}
