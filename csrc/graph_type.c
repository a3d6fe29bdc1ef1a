/* graph_type.c: the Python type _core.Graph over graph.c's algorithms: order, dependants and
 * dependencies closures, levels, critical path, projection onto a subset. */
#include "graph.h"

#include <stdlib.h>
#include <string.h>

#include "errors.h"

static PyObject *tuple_name(void *names, Py_ssize_t i)
{
    return Py_NewRef(PyTuple_GET_ITEM((PyObject *)names, i));
}

/* ---- the Python type ---------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    pgvc_graph g;
    PyObject *names; /* tuple of str */
    Py_ssize_t *order; /* computed lazily; NULL until then */
} GraphObject;

static pgvc_state *graph_state(PyObject *self)
{
    PyObject *mod = PyType_GetModule(Py_TYPE(self));
    return mod ? PyModule_GetState(mod) : NULL;
}

/* {name: index} of names (a tuple), or NULL with TypeError (a name not a str) or ValueError
 * (a name twice). */
static PyObject *name_index(PyObject *names)
{
    PyObject *index = PyDict_New();
    for (Py_ssize_t i = 0; index && i < PyTuple_GET_SIZE(names); i++) {
        PyObject *name = PyTuple_GET_ITEM(names, i), *pos;
        int has;
        if (!PyUnicode_Check(name)) {
            PyErr_Format(PyExc_TypeError, "Graph: name %zd is not a str", i);
            Py_CLEAR(index);
            break;
        }
        if ((has = PyDict_Contains(index, name)) != 0) {
            if (has > 0)
                PyErr_Format(PyExc_ValueError, "Graph: %R is named twice", name);
            Py_CLEAR(index);
            break;
        }
        if (!(pos = PyLong_FromSsize_t(i)) || PyDict_SetItem(index, name, pos) < 0)
            Py_CLEAR(index);
        Py_XDECREF(pos);
    }
    return index;
}

/* RAISES_NEG: an edge (i, j) into edges for each dependency of node i on the node named j;
 * MissingDependencyError for a name index does not hold. */
static int collect_edges(pgvc_state *st, PyObject *names, PyObject *deps, PyObject *index,
                         pgvc_edges *edges)
{
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(deps); i++) {
        PyObject *seq = pgvc_frozen_sequence(PyTuple_GET_ITEM(deps, i),
                                             "Graph: dependencies must be sequences");
        if (!seq)
            return -1;
        for (Py_ssize_t k = 0; k < PySequence_Fast_GET_SIZE(seq); k++) {
            PyObject *dname = PySequence_Fast_GET_ITEM(seq, k);
            PyObject *pos = PyDict_GetItemWithError(index, dname);
            if (!pos && !PyErr_Occurred())
                pgvc_raise_missing(st, PyTuple_GET_ITEM(names, i), dname);
            if (!pos || pgvc_edges_push(edges, i, PyLong_AsSsize_t(pos)) < 0) {
                Py_DECREF(seq);
                return -1;
            }
        }
        Py_DECREF(seq);
    }
    return 0;
}

static PyObject *graph_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"names", "dependencies", NULL};
    PyObject *names_in, *deps_in, *names = NULL, *deps = NULL, *index = NULL;
    Py_ssize_t n;
    pgvc_edges edges = {0};
    GraphObject *self = NULL;
    PyObject *mod = PyType_GetModule(type);
    pgvc_state *st = mod ? PyModule_GetState(mod) : NULL;

    if (!st || !PyArg_ParseTupleAndKeywords(args, kwargs, "OO:Graph", kwlist, &names_in, &deps_in))
        return NULL;
    if (!(names = PySequence_Tuple(names_in)) || !(deps = PySequence_Tuple(deps_in)))
        goto error;
    n = PyTuple_GET_SIZE(names);
    if (PyTuple_GET_SIZE(deps) != n) {
        PyErr_SetString(PyExc_ValueError, "Graph: names and dependencies differ in length");
        goto error;
    }
    if (!(index = name_index(names)) || collect_edges(st, names, deps, index, &edges) < 0)
        goto error;
    if (!(self = (GraphObject *)type->tp_alloc(type, 0)))
        goto error;
    if (pgvc_graph_build(&self->g, n, edges.from, edges.to, edges.n) < 0)
        goto error;
    self->names = names;
    names = NULL;
    pgvc_edges_free(&edges);
    Py_DECREF(deps);
    Py_DECREF(index);
    return (PyObject *)self;
error:
    pgvc_edges_free(&edges);
    Py_XDECREF(names);
    Py_XDECREF(deps);
    Py_XDECREF(index);
    Py_XDECREF(self);
    return NULL;
}

static int graph_clear(GraphObject *self)
{
    Py_CLEAR(self->names);
    return 0;
}

static void graph_dealloc(GraphObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    pgvc_graph_free(&self->g);
    free(self->order);
    self->order = NULL;
    graph_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static int graph_traverse(GraphObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->names);
    return 0;
}

static PyObject *index_list(const Py_ssize_t *items, Py_ssize_t n)
{
    PyObject *list = PyList_New(n);
    for (Py_ssize_t i = 0; list && i < n; i++) {
        PyObject *v = PyLong_FromSsize_t(items[i]);
        if (!v) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, i, v);
    }
    return list;
}

static PyObject *float_list(const double *items, Py_ssize_t n)
{
    PyObject *list = PyList_New(n);
    for (Py_ssize_t i = 0; list && i < n; i++) {
        PyObject *v = PyFloat_FromDouble(items[i]);
        if (!v) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, i, v);
    }
    return list;
}

/* RAISES_NEG. Computes and caches the order, or raises CycleError. */
static int ensure_order(GraphObject *self)
{
    Py_ssize_t n = self->g.n, *cycle = NULL, clen = 0;
    int rc;
    if (self->order)
        return 0;
    self->order = malloc(sizeof(Py_ssize_t) * (size_t)(n ? n : 1));
    cycle = malloc(sizeof(Py_ssize_t) * (size_t)(n ? n : 1) + sizeof(Py_ssize_t));
    if (!self->order || !cycle) {
        PyErr_NoMemory();
        rc = -1;
        goto exit;
    }
    rc = pgvc_graph_order(&self->g, self->order, cycle, &clen);
    if (rc == 1) {
        pgvc_state *st = graph_state((PyObject *)self);
        if (st)
            pgvc_raise_cycle_path(st, cycle, clen, tuple_name, self->names);
        rc = -1;
    }
exit:
    if (rc < 0) {
        free(self->order);
        self->order = NULL;
    }
    free(cycle);
    return rc;
}

static PyObject *graph_order(GraphObject *self, PyObject *Py_UNUSED(ignored))
{
    if (ensure_order(self) < 0)
        return NULL;
    return index_list(self->order, self->g.n);
}

/* Mark the given indices; RAISES_NEG. */
static int mark_indices(GraphObject *self, PyObject *indices, char *mark)
{
    PyObject *seq = pgvc_frozen_sequence(indices, "expected a sequence of node indices");
    if (!seq)
        return -1;
    for (Py_ssize_t k = 0; k < PySequence_Fast_GET_SIZE(seq); k++) {
        Py_ssize_t i = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(seq, k));
        if (i == -1 && PyErr_Occurred())
            goto error;
        if (i < 0 || i >= self->g.n) {
            PyErr_Format(PyExc_IndexError, "node index %zd out of range", i);
            goto error;
        }
        mark[i] = 1;
    }
    Py_DECREF(seq);
    return 0;
error:
    Py_DECREF(seq);
    return -1;
}

/* Closure in topological order, the given nodes left out unless include_self. */
static PyObject *closure(GraphObject *self, PyObject *args, PyObject *kwargs, int down,
                         const char *fmt)
{
    static char *kwlist[] = {"indices", "include_self", NULL};
    PyObject *indices, *result = NULL;
    int include_self = 0;
    char *mark = NULL, *given = NULL;
    Py_ssize_t *picked = NULL, count = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, fmt, kwlist, &indices, &include_self))
        return NULL;
    if (ensure_order(self) < 0)
        return NULL;
    mark = calloc((size_t)self->g.n + 1, 1);
    given = calloc((size_t)self->g.n + 1, 1);
    picked = malloc(sizeof(Py_ssize_t) * (size_t)(self->g.n + 1));
    if (!mark || !given || !picked) {
        PyErr_NoMemory();
        goto exit;
    }
    if (mark_indices(self, indices, given) < 0)
        goto exit;
    memcpy(mark, given, (size_t)self->g.n);
    if (pgvc_graph_close(&self->g, mark, down) < 0)
        goto exit;
    for (Py_ssize_t k = 0; k < self->g.n; k++) {
        Py_ssize_t v = self->order[k];
        if (mark[v] && (include_self || !given[v]))
            picked[count++] = v;
    }
    result = index_list(picked, count);
exit:
    free(mark);
    free(given);
    free(picked);
    return result;
}

static PyObject *graph_dependants(GraphObject *self, PyObject *args, PyObject *kwargs)
{
    return closure(self, args, kwargs, 1, "O|p:dependants");
}

static PyObject *graph_dependencies(GraphObject *self, PyObject *args, PyObject *kwargs)
{
    return closure(self, args, kwargs, 0, "O|p:dependencies");
}

static PyObject *graph_levels(GraphObject *self, PyObject *Py_UNUSED(ignored))
{
    Py_ssize_t n = self->g.n, *level;
    PyObject *result;
    if (ensure_order(self) < 0)
        return NULL;
    if (!(level = calloc((size_t)n + 1, sizeof(Py_ssize_t))))
        return PyErr_NoMemory();
    for (Py_ssize_t k = 0; k < n; k++) {
        Py_ssize_t v = self->order[k];
        for (Py_ssize_t e = self->g.dep_off[v]; e < self->g.dep_off[v + 1]; e++)
            if (level[self->g.dep[e]] + 1 > level[v])
                level[v] = level[self->g.dep[e]] + 1;
    }
    result = index_list(level, n);
    free(level);
    return result;
}

static PyObject *graph_critical_path(GraphObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"weights", NULL};
    PyObject *weights = Py_None, *seq = NULL, *result = NULL;
    Py_ssize_t n = self->g.n;
    double *w = NULL, *chain = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O:critical_path", kwlist, &weights))
        return NULL;
    if (ensure_order(self) < 0)
        return NULL;
    w = malloc(sizeof(double) * (size_t)(n + 1));
    chain = malloc(sizeof(double) * (size_t)(n + 1));
    if (!w || !chain) {
        PyErr_NoMemory();
        goto exit;
    }
    if (weights == Py_None) {
        for (Py_ssize_t i = 0; i < n; i++)
            w[i] = 1.0;
    } else {
        if (!(seq = pgvc_frozen_sequence(weights, "critical_path: weights must be a sequence")))
            goto exit;
        if (PySequence_Fast_GET_SIZE(seq) != n) {
            PyErr_SetString(PyExc_ValueError, "critical_path: one weight per node");
            goto exit;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            w[i] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(seq, i));
            if (w[i] == -1.0 && PyErr_Occurred())
                goto exit;
        }
    }
    /* Longest chain from each node through its dependants, its own weight included. */
    for (Py_ssize_t k = n - 1; k >= 0; k--) {
        Py_ssize_t v = self->order[k];
        double best = 0.0;
        for (Py_ssize_t e = self->g.rdep_off[v]; e < self->g.rdep_off[v + 1]; e++)
            if (chain[self->g.rdep[e]] > best)
                best = chain[self->g.rdep[e]];
        chain[v] = w[v] + best;
    }
    result = float_list(chain, n);
exit:
    Py_XDECREF(seq);
    free(w);
    free(chain);
    return result;
}

static int cmp_ssize(const void *a, const void *b)
{
    Py_ssize_t x = *(const Py_ssize_t *)a, y = *(const Py_ssize_t *)b;
    return (x > y) - (x < y);
}

/* RAISES_NEG: pos[v] = k and node[k] = v for each members[k] = v (seq, a sequence of m ints,
 * each a node index once); pos[v] stays -1 for a non-member. */
static int load_members(PyObject *seq, Py_ssize_t n, Py_ssize_t *pos, Py_ssize_t *node)
{
    for (Py_ssize_t k = 0; k < PySequence_Fast_GET_SIZE(seq); k++) {
        PyObject *o = PySequence_Fast_GET_ITEM(seq, k);
        Py_ssize_t v;
        if (!PyLong_Check(o)) {
            PyErr_Format(PyExc_TypeError, "project: members[%zd] must be an int, not %.100s", k,
                         Py_TYPE(o)->tp_name);
            return -1;
        }
        v = PyLong_AsSsize_t(o);
        if (v == -1 && PyErr_Occurred())
            return -1;
        if (v < 0 || v >= n) {
            PyErr_Format(PyExc_IndexError, "project: node index %zd out of range", v);
            return -1;
        }
        if (pos[v] >= 0) {
            PyErr_Format(PyExc_ValueError, "project: node %zd is a member twice", v);
            return -1;
        }
        pos[v] = k;
        node[k] = v;
    }
    return 0;
}

/* The positions (in members, sorted) of the members member k reaches first through its
 * dependencies; stamp marks the nodes this walk has seen with k, stack and found are scratch. */
static PyObject *project_one(const pgvc_graph *g, Py_ssize_t k, const Py_ssize_t *pos,
                             const Py_ssize_t *node, Py_ssize_t *stamp, Py_ssize_t *stack,
                             Py_ssize_t *found)
{
    Py_ssize_t top = 0, nfound = 0;
    stamp[node[k]] = k;
    stack[top++] = node[k];
    while (top) {
        Py_ssize_t v = stack[--top];
        for (Py_ssize_t e = g->dep_off[v]; e < g->dep_off[v + 1]; e++) {
            Py_ssize_t w = g->dep[e];
            if (stamp[w] == k)
                continue;
            stamp[w] = k;
            if (pos[w] >= 0)
                found[nfound++] = pos[w];
            else
                stack[top++] = w;
        }
    }
    qsort(found, (size_t)nfound, sizeof(Py_ssize_t), cmp_ssize);
    return index_list(found, nfound);
}

/* The graph restricted to `members` (node indices): for each member, the positions (in members)
 * of the members it depends on directly or through non-members only. Each walk stops at the
 * first member it meets, so a long chain of members costs its length, not its square. */
static PyObject *graph_project(GraphObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"members", NULL};
    PyObject *members, *seq = NULL, *result = NULL;
    Py_ssize_t n = self->g.n, m, *pos = NULL, *stamp = NULL, *stack = NULL, *found = NULL,
               *node = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O:project", kwlist, &members))
        return NULL;
    if (!(seq = PySequence_Fast(members, "project: members must be a sequence of node indices")))
        return NULL;
    m = PySequence_Fast_GET_SIZE(seq);
    pos = malloc(sizeof(Py_ssize_t) * (size_t)(n + 1));
    stamp = malloc(sizeof(Py_ssize_t) * (size_t)(n + 1));
    stack = malloc(sizeof(Py_ssize_t) * (size_t)(n + 1));
    found = malloc(sizeof(Py_ssize_t) * (size_t)(n + 1));
    node = malloc(sizeof(Py_ssize_t) * (size_t)(m + 1));
    if (!pos || !stamp || !stack || !found || !node) {
        PyErr_NoMemory();
        goto exit;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        pos[i] = stamp[i] = -1;
    if (load_members(seq, n, pos, node) < 0 || !(result = PyList_New(m)))
        goto exit;
    for (Py_ssize_t k = 0; k < m; k++) {
        PyObject *deps = project_one(&self->g, k, pos, node, stamp, stack, found);
        if (!deps) {
            Py_CLEAR(result);
            goto exit;
        }
        PyList_SET_ITEM(result, k, deps);
    }
exit:
    Py_XDECREF(seq);
    free(pos);
    free(stamp);
    free(stack);
    free(found);
    free(node);
    return result;
}

static Py_ssize_t graph_len(GraphObject *self) { return self->g.n; }

static PyObject *graph_get_names(GraphObject *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->names);
}

static PyMethodDef graph_methods[] = {
    {"order", (PyCFunction)graph_order, METH_NOARGS,
     "order()\n--\n\nNode indices, every node after its dependencies; ties keep index order.\n"
     "Raises CycleError naming the whole cycle."},
    {"dependants", (PyCFunction)(void (*)(void))graph_dependants, METH_VARARGS | METH_KEYWORDS,
     "dependants(indices, include_self=False)\n--\n\nEvery node that depends on the given ones, "
     "directly or not, in order."},
    {"dependencies", (PyCFunction)(void (*)(void))graph_dependencies, METH_VARARGS | METH_KEYWORDS,
     "dependencies(indices, include_self=False)\n--\n\nEvery node the given ones depend on, "
     "directly or not, in order."},
    {"project", (PyCFunction)(void (*)(void))graph_project, METH_VARARGS | METH_KEYWORDS,
     "project(members)\n--\n\nThe graph restricted to the given node indices: for each, the "
     "positions in members of the members it depends on directly or through non-members."},
    {"levels", (PyCFunction)graph_levels, METH_NOARGS,
     "levels()\n--\n\nFor each node, the length of its longest chain of dependencies."},
    {"critical_path", (PyCFunction)(void (*)(void))graph_critical_path,
     METH_VARARGS | METH_KEYWORDS,
     "critical_path(weights=None)\n--\n\nFor each node, the weight of the heaviest chain that "
     "starts at it and runs through its dependants (its own weight included)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef graph_getset[] = {
    {"names", (getter)graph_get_names, NULL, "The node names, by index.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot graph_slots[] = {
    {Py_tp_new, graph_new},
    {Py_tp_dealloc, graph_dealloc},
    {Py_tp_traverse, graph_traverse},
    {Py_tp_clear, graph_clear},
    {Py_tp_methods, graph_methods},
    {Py_tp_getset, graph_getset},
    {Py_sq_length, graph_len},
    {Py_tp_doc, "Graph(names, dependencies)\n--\n\nA dependency graph: dependencies[i] names the "
                "nodes that names[i] depends on. Raises MissingDependencyError for an unknown "
                "name."},
    {0, NULL},
};

PyType_Spec pgvc_graph_spec = {
    .name = "django_pgviews_c._core.Graph",
    .basicsize = sizeof(GraphObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = graph_slots,
};
