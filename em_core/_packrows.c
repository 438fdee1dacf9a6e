/* Rows of metric records packed into the mapped log: the inner loop of Run.log_many
 * (em_core/_logmany.py), in C where it is built.
 *
 * It writes the bytes the struct formats of _logmany._packer write, record by record:
 *     <I size> <I schema id> <q step> <q epoch> <d time> <d|q value>... <I trailer>
 * (little-endian), one record per group per row. Each value must be of the class its
 * column was planned for, each step and epoch an int in [0, 2**63 - 1]; the first row that
 * is not (a value of another class, a number out of range) stops the packing before any of
 * its bytes are written, and the caller hands that row to Run.log, which explains it. The
 * trailer is written last, so a record cut short by a kill is one every reader skips.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    uint32_t size, sid, trailer;
    Py_ssize_t first, count; /* its columns: columns[first:first + count] */
    const char *kinds;       /* 'd' or 'q' per column */
} Group;

/* An int in [0, 2**63 - 1], or -1 (and no error set) for anything else. */
static long long
index_of(PyObject *v)
{
    if (!PyLong_CheckExact(v))
        return -1;
    int overflow;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow || x < 0) {
        PyErr_Clear();
        return -1;
    }
    return x;
}

static int
load_groups(PyObject *spec, Group **out, Py_ssize_t *nout, Py_ssize_t *ncols,
            Py_ssize_t *row_size)
{
    if (!PyTuple_Check(spec))
        goto bad;
    Py_ssize_t n = PyTuple_GET_SIZE(spec);
    Group *groups = PyMem_Calloc((size_t)(n ? n : 1), sizeof(Group));
    if (groups == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t cols = 0, bytes = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *g = PyTuple_GET_ITEM(spec, i);
        if (!PyTuple_Check(g) || PyTuple_GET_SIZE(g) != 4
            || !PyBytes_Check(PyTuple_GET_ITEM(g, 3))) {
            PyMem_Free(groups);
            goto bad;
        }
        unsigned long size = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(g, 0));
        unsigned long sid = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(g, 1));
        unsigned long trailer = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(g, 2));
        if (PyErr_Occurred()) {
            PyMem_Free(groups);
            return -1;
        }
        Py_ssize_t k = PyBytes_GET_SIZE(PyTuple_GET_ITEM(g, 3));
        if (size != (unsigned long)(36 + 8 * k) || size > UINT32_MAX || sid > UINT32_MAX
            || trailer > UINT32_MAX) {
            PyMem_Free(groups);
            goto bad;
        }
        groups[i].size = (uint32_t)size;
        groups[i].sid = (uint32_t)sid;
        groups[i].trailer = (uint32_t)trailer;
        groups[i].first = cols;
        groups[i].count = k;
        groups[i].kinds = PyBytes_AS_STRING(PyTuple_GET_ITEM(g, 3));
        cols += k;
        bytes += (Py_ssize_t)size;
    }
    *out = groups;
    *nout = n;
    *ncols = cols;
    *row_size = bytes;
    return 0;
bad:
    PyErr_SetString(PyExc_TypeError,
                    "pack(): groups must be (size, schema id, trailer, kinds) tuples");
    return -1;
}

PyDoc_STRVAR(pack_doc,
"pack(buffer, offset, rows, groups, steps, epochs, time, columns, classes) -> int\n\n"
"Pack `rows` rows of records into `buffer` at `offset` (see the module's comment): groups\n"
"as (size, schema id, trailer, kinds) tuples, kinds a bytes of 'd'/'q' per column;\n"
"`epochs` a list of ints or one int (-1: none); `columns` the groups' columns in order,\n"
"`classes` the class of each column's values. Returns how many rows were packed: `rows`,\n"
"or the index of the first row that cannot be (nothing of it written).");

static PyObject *
pack(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *buffer, *spec, *steps, *epochs, *columns, *classes;
    Py_ssize_t offset, rows;
    double now;
    if (!PyArg_ParseTuple(args, "OnnOO!OdO!O!:pack", &buffer, &offset, &rows, &spec,
                          &PyList_Type, &steps, &epochs, &now, &PyList_Type, &columns,
                          &PyTuple_Type, &classes))
        return NULL;
#if PY_LITTLE_ENDIAN
    Group *groups;
    Py_ssize_t ngroups, ncols, row_size;
    if (load_groups(spec, &groups, &ngroups, &ncols, &row_size) < 0)
        return NULL;
    PyObject **cols = NULL;
    union {
        double d;
        long long q;
    } *values = NULL;
    Py_buffer view = {0};
    PyObject *result = NULL;
    int epoch_list = PyList_Check(epochs);
    long long epoch_all = -1;
    if (!epoch_list && epochs != Py_None) {
        epoch_all = index_of(epochs);
        if (epoch_all < 0) {
            result = PyLong_FromSsize_t(0);
            goto done;
        }
    }
    if (PyList_GET_SIZE(columns) != ncols || PyTuple_GET_SIZE(classes) != ncols
        || rows < 0 || PyList_GET_SIZE(steps) < rows
        || (epoch_list && PyList_GET_SIZE(epochs) < rows)) {
        PyErr_SetString(PyExc_ValueError, "pack(): columns, classes, steps or epochs "
                                          "do not match the groups and rows");
        goto done;
    }
    cols = PyMem_Calloc((size_t)(ncols ? ncols : 1), sizeof(PyObject *));
    values = PyMem_Calloc((size_t)(ncols ? ncols : 1), sizeof(*values));
    if (cols == NULL || values == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t j = 0; j < ncols; j++) {
        cols[j] = PyList_GET_ITEM(columns, j);
        if (!PyList_Check(cols[j]) || PyList_GET_SIZE(cols[j]) < rows) {
            PyErr_SetString(PyExc_ValueError, "pack(): a column is not a list of `rows` "
                                              "values");
            goto done;
        }
    }
    if (PyObject_GetBuffer(buffer, &view, PyBUF_WRITABLE) < 0)
        goto done;
    if (offset < 0 || rows > (view.len - offset) / (row_size ? row_size : 1)) {
        PyErr_SetString(PyExc_ValueError, "pack(): the rows do not fit in the buffer");
        goto done;
    }
    char *at = (char *)view.buf + offset;
    Py_ssize_t r = 0;
    for (; r < rows; r++) {
        /* every value of the row is checked before any byte of it is written */
        long long step = index_of(PyList_GET_ITEM(steps, r));
        long long epoch = epoch_list ? index_of(PyList_GET_ITEM(epochs, r)) : epoch_all;
        if (step < 0 || (epoch_list && epoch < 0))
            break;
        int ok = 1;
        for (Py_ssize_t g = 0; g < ngroups && ok; g++) {
            for (Py_ssize_t c = 0; c < groups[g].count; c++) {
                Py_ssize_t j = groups[g].first + c;
                PyObject *v = PyList_GET_ITEM(cols[j], r);
                if ((PyObject *)Py_TYPE(v) != PyTuple_GET_ITEM(classes, j)) {
                    ok = 0;
                    break;
                }
                if (groups[g].kinds[c] == 'd') {
                    values[j].d = PyFloat_CheckExact(v) ? PyFloat_AS_DOUBLE(v)
                                                        : PyFloat_AsDouble(v);
                    if (values[j].d == -1.0 && PyErr_Occurred()) {
                        PyErr_Clear();
                        ok = 0;
                        break;
                    }
                }
                else {
                    int overflow;
                    values[j].q = PyLong_AsLongLongAndOverflow(v, &overflow);
                    if (overflow || (values[j].q == -1 && PyErr_Occurred())) {
                        PyErr_Clear();
                        ok = 0;
                        break;
                    }
                }
            }
        }
        if (!ok)
            break;
        for (Py_ssize_t g = 0; g < ngroups; g++) {
            const Group *gr = &groups[g];
            memcpy(at, &gr->size, 4);
            memcpy(at + 4, &gr->sid, 4);
            memcpy(at + 8, &step, 8);
            memcpy(at + 16, &epoch, 8);
            memcpy(at + 24, &now, 8);
            memcpy(at + 32, &values[gr->first], (size_t)(8 * gr->count));
            memcpy(at + 32 + 8 * gr->count, &gr->trailer, 4);
            at += gr->size;
        }
    }
    result = PyLong_FromSsize_t(r);
done:
    if (view.obj != NULL)
        PyBuffer_Release(&view);
    PyMem_Free(values);
    PyMem_Free(cols);
    PyMem_Free(groups);
    return result;
#else
    Py_RETURN_NOTIMPLEMENTED; /* the records are little-endian: struct packs them here */
#endif
}

static PyMethodDef methods[] = {
    {"pack", pack, METH_VARARGS, pack_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_packrows",
    .m_doc = "Run.log_many's packing loop in C (see em_core/_logmany.py).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__packrows(void)
{
    return PyModule_Create(&module);
}
