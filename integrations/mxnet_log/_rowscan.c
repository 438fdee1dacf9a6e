/* Runs of MXNet batch reports in one layout, matched and converted in one pass.
 *
 * The compiled form of what integrations/mxnet_log/layouts.py's row pattern does with
 * `finditer` plus `float()` per value: the block path's hot loop (see layouts.py). The
 * layout comes as a program (layouts.program), a tuple of (op, literal) pairs; it matches
 * exactly the lines the row pattern matches, and a value converts exactly as float() does
 * (float() itself is called for anything but plain digits, signs, points and exponents).
 * rare_lines() is forms.RareLines's search for the lines the per-line path must read.
 * Only texts stored one byte per character (ASCII and Latin-1) are read here: for others,
 * and programs with a literal wider than that, scan() returns NotImplemented and the
 * regular expressions decide.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* keep in step with layouts.py's OPS */
enum {
    OP_LIT = 0,         /* the literal, exactly */
    OP_DIGITS = 1,      /* [0-9]+ */
    OP_EPOCH = 2,       /* [0-9]+, a column of str (the epoch as printed) */
    OP_BATCH = 3,       /* [0-9]+, a column of int */
    OP_EPOCH_AGAIN = 4, /* the unit's epoch, as printed (a backreference) */
    OP_BATCH_AGAIN = 5, /* the unit's batch, as printed */
    OP_VALUE = 6,       /* [-+.0-9A-Za-z_]+, a column of float */
    OP_LOSS = 7,        /* [^\t\n \]]+, a column of float */
    OP_EOL = 8,         /* the end of the text or before a '\n' */
};

typedef struct {
    int op;
    const Py_UCS1 *lit;
    Py_ssize_t len;
} Step;

static int
is_digit(Py_UCS1 c)
{
    return c >= '0' && c <= '9';
}

static int
is_value(Py_UCS1 c)
{
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-'
           || c == '+' || c == '.' || c == '_';
}

static int
is_loss(Py_UCS1 c)
{
    return c != '\t' && c != '\n' && c != ' ' && c != ']';
}

/* Match the unit at `at`; on success store where each capture is and return the end,
 * else -1. caps: (start, length) per capturing step, in order. */
static Py_ssize_t
match_unit(const Py_UCS1 *s, Py_ssize_t n, Py_ssize_t at, const Step *steps,
           Py_ssize_t nsteps, Py_ssize_t *caps)
{
    Py_ssize_t epoch_at = -1, epoch_len = 0, batch_at = -1, batch_len = 0;
    Py_ssize_t k = 0;
    for (Py_ssize_t i = 0; i < nsteps; i++) {
        const Step *st = &steps[i];
        Py_ssize_t start = at;
        switch (st->op) {
        case OP_LIT:
            if (n - at < st->len || memcmp(s + at, st->lit, (size_t)st->len) != 0)
                return -1;
            at += st->len;
            break;
        case OP_DIGITS:
        case OP_EPOCH:
        case OP_BATCH:
            while (at < n && is_digit(s[at]))
                at++;
            if (at == start)
                return -1;
            if (st->op == OP_EPOCH) {
                epoch_at = start;
                epoch_len = at - start;
            }
            else if (st->op == OP_BATCH) {
                batch_at = start;
                batch_len = at - start;
            }
            break;
        case OP_EPOCH_AGAIN:
        case OP_BATCH_AGAIN: {
            Py_ssize_t from = st->op == OP_EPOCH_AGAIN ? epoch_at : batch_at;
            Py_ssize_t len = st->op == OP_EPOCH_AGAIN ? epoch_len : batch_len;
            if (from < 0 || n - at < len || memcmp(s + at, s + from, (size_t)len) != 0)
                return -1;
            at += len;
            break;
        }
        case OP_VALUE:
            while (at < n && is_value(s[at]))
                at++;
            if (at == start)
                return -1;
            break;
        case OP_LOSS:
            while (at < n && is_loss(s[at]))
                at++;
            if (at == start)
                return -1;
            break;
        case OP_EOL:
            if (at != n && s[at] != '\n')
                return -1;
            break;
        default:
            return -1;
        }
        if (st->op == OP_EPOCH || st->op == OP_BATCH || st->op == OP_VALUE
            || st->op == OP_LOSS) {
            caps[2 * k] = start;
            caps[2 * k + 1] = at - start;
            k++;
        }
    }
    return at;
}

static const double POW10[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
                               1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
                               1e21, 1e22};

/* The usual printed number ([sign] digits [. digits] [e [sign] digits], at most 15
 * significant digits, a decimal exponent within 22) in one multiplication or division of
 * two exact doubles: correctly rounded, so the same double as float() (Clinger's fast
 * path). 0 where the text is anything else: float() decides. */
static int
fast_double(const Py_UCS1 *s, Py_ssize_t len, double *out)
{
    Py_ssize_t i = 0;
    int neg = 0, sig = 0, frac = 0, digits = 0;
    long long m = 0;
    if (i < len && (s[i] == '+' || s[i] == '-'))
        neg = s[i++] == '-';
    for (; i < len && is_digit(s[i]); i++, digits++) {
        if (m || s[i] != '0')
            sig++;
        m = m * 10 + (s[i] - '0');
        if (sig > 15)
            return 0;
    }
    if (i < len && s[i] == '.') {
        for (i++; i < len && is_digit(s[i]); i++, digits++, frac++) {
            if (m || s[i] != '0')
                sig++;
            m = m * 10 + (s[i] - '0');
            if (sig > 15)
                return 0;
        }
    }
    if (digits == 0)
        return 0;
    int exp = 0;
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        int eneg = 0, edigits = 0;
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-'))
            eneg = s[i++] == '-';
        for (; i < len && is_digit(s[i]); i++, edigits++) {
            exp = exp * 10 + (s[i] - '0');
            if (exp > 1000)
                return 0;
        }
        if (edigits == 0)
            return 0;
        if (eneg)
            exp = -exp;
    }
    if (i != len)
        return 0;
    exp -= frac;
    if (exp < -22 || exp > 22)
        return 0;
    double v = exp >= 0 ? (double)m * POW10[exp] : (double)m / POW10[-exp];
    *out = neg ? -v : v;
    return 1;
}

/* float() of s[0:len] (a new reference), or NULL with no error set where float() raises
 * ValueError; NULL with an error set on anything else. */
static PyObject *
to_float(PyObject *text, const Py_UCS1 *s, Py_ssize_t at, Py_ssize_t len)
{
    char buf[64];
    double fast;
    if (fast_double(s + at, len, &fast))
        return PyFloat_FromDouble(fast);
    int plain = len < (Py_ssize_t)sizeof(buf);
    for (Py_ssize_t i = 0; plain && i < len; i++) {
        Py_UCS1 c = s[at + i];
        plain = is_digit(c) || c == '.' || c == '-' || c == '+' || c == 'e' || c == 'E';
    }
    if (plain) {
        /* what float() does with such a string, without the string */
        char *end;
        memcpy(buf, s + at, (size_t)len);
        buf[len] = '\0';
        double d = PyOS_string_to_double(buf, &end, NULL);
        if (d == -1.0 && PyErr_Occurred()) {
            if (!PyErr_ExceptionMatches(PyExc_ValueError))
                return NULL;
            PyErr_Clear();
            return NULL;
        }
        if (end != buf + len)
            return NULL;
        return PyFloat_FromDouble(d);
    }
    PyObject *sub = PyUnicode_Substring(text, at, at + len);
    if (sub == NULL)
        return NULL;
    PyObject *f = PyFloat_FromString(sub);
    Py_DECREF(sub);
    if (f == NULL && PyErr_ExceptionMatches(PyExc_ValueError))
        PyErr_Clear();
    return f;
}

static PyObject *
to_int(const Py_UCS1 *s, Py_ssize_t len)
{
    if (len <= 18) {
        long long v = 0;
        for (Py_ssize_t i = 0; i < len; i++)
            v = v * 10 + (s[i] - '0');
        return PyLong_FromLongLong(v);
    }
    char *buf = PyMem_Malloc((size_t)len + 1);
    if (buf == NULL)
        return PyErr_NoMemory();
    memcpy(buf, s, (size_t)len);
    buf[len] = '\0';
    PyObject *v = PyLong_FromString(buf, NULL, 10);
    PyMem_Free(buf);
    return v;
}

/* Append the row's captures to the columns; 0 on success, 1 where a value is one float()
 * does not read (nothing appended to the value columns from then on), -1 on error. */
static int
add_row(PyObject *text, const Py_UCS1 *s, const Step *steps, Py_ssize_t nsteps,
        const Py_ssize_t *caps, PyObject *cols, int convert)
{
    Py_ssize_t k = 0;
    for (Py_ssize_t i = 0; i < nsteps; i++) {
        int op = steps[i].op;
        if (op != OP_EPOCH && op != OP_BATCH && op != OP_VALUE && op != OP_LOSS)
            continue;
        Py_ssize_t at = caps[2 * k], len = caps[2 * k + 1];
        PyObject *v;
        if (op == OP_EPOCH)
            v = PyUnicode_Substring(text, at, at + len);
        else if (op == OP_BATCH)
            v = to_int(s + at, len);
        else if (!convert)
            return 1;
        else {
            v = to_float(text, s, at, len);
            if (v == NULL)
                return PyErr_Occurred() ? -1 : 1;
        }
        if (v == NULL)
            return -1;
        int failed = PyList_Append(PyList_GET_ITEM(cols, k), v);
        Py_DECREF(v);
        if (failed)
            return -1;
        k++;
    }
    return 0;
}

static int
load_program(PyObject *program, Step **out, Py_ssize_t *nout, Py_ssize_t *ncaps)
{
    if (!PyTuple_Check(program)) {
        PyErr_SetString(PyExc_TypeError, "scan(): the program must be a tuple");
        return -1;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(program);
    Step *steps = PyMem_Calloc((size_t)(n ? n : 1), sizeof(Step));
    if (steps == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    *ncaps = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyTuple_GET_ITEM(program, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2
            || !PyLong_Check(PyTuple_GET_ITEM(item, 0))
            || !PyUnicode_Check(PyTuple_GET_ITEM(item, 1))) {
            PyMem_Free(steps);
            PyErr_SetString(PyExc_TypeError, "scan(): a step must be (int, str)");
            return -1;
        }
        PyObject *lit = PyTuple_GET_ITEM(item, 1);
        steps[i].op = (int)PyLong_AsLong(PyTuple_GET_ITEM(item, 0));
        if (PyUnicode_KIND(lit) != PyUnicode_1BYTE_KIND) {
            PyMem_Free(steps);
            return 1; /* a wider literal: for the regular expressions */
        }
        steps[i].lit = PyUnicode_1BYTE_DATA(lit);
        steps[i].len = PyUnicode_GET_LENGTH(lit);
        if (steps[i].op == OP_EPOCH || steps[i].op == OP_BATCH || steps[i].op == OP_VALUE
            || steps[i].op == OP_LOSS)
            (*ncaps)++;
    }
    *out = steps;
    *nout = n;
    return 0;
}

PyDoc_STRVAR(scan_doc,
"scan(text, pos, program) -> (start, end, columns) | None | NotImplemented\n\n"
"The first run of consecutive units of `program` in `text` from `pos` on (a unit starts\n"
"at a '\\n'): where it starts and ends, and its captures column by column (epochs as str,\n"
"batches as int, values as float), or columns None where a value is one float() does not\n"
"read. None if no unit matches; NotImplemented for a text or literal stored wider than\n"
"one byte per character.");

static PyObject *
scan(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *text, *program;
    Py_ssize_t pos;
    if (!PyArg_ParseTuple(args, "UnO:scan", &text, &pos, &program))
        return NULL;
    if (PyUnicode_KIND(text) != PyUnicode_1BYTE_KIND)
        Py_RETURN_NOTIMPLEMENTED;
    Step *steps;
    Py_ssize_t nsteps, ncaps;
    int loaded = load_program(program, &steps, &nsteps, &ncaps);
    if (loaded < 0)
        return NULL;
    if (loaded > 0)
        Py_RETURN_NOTIMPLEMENTED;
    const Py_UCS1 *s = PyUnicode_1BYTE_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    Py_ssize_t *caps = PyMem_Calloc((size_t)(2 * ncaps + 2), sizeof(Py_ssize_t));
    PyObject *cols = NULL, *result = NULL;
    if (caps == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (pos < 0)
        pos = 0;
    /* the first unit: tried at every '\n' from pos on, as the pattern's search does */
    Py_ssize_t start = -1, end = -1;
    for (Py_ssize_t at = pos; at < n;) {
        const Py_UCS1 *nl = memchr(s + at, '\n', (size_t)(n - at));
        if (nl == NULL)
            break;
        at = nl - s;
        end = match_unit(s, n, at, steps, nsteps, caps);
        if (end >= 0) {
            start = at;
            break;
        }
        at++;
    }
    if (start < 0) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    cols = PyList_New(ncaps);
    if (cols == NULL)
        goto done;
    for (Py_ssize_t k = 0; k < ncaps; k++) {
        PyObject *col = PyList_New(0);
        if (col == NULL)
            goto done;
        PyList_SET_ITEM(cols, k, col);
    }
    int convert = 1;
    for (;;) {
        int added = add_row(text, s, steps, nsteps, caps, cols, convert);
        if (added < 0)
            goto done;
        if (added > 0)
            convert = 0;
        Py_ssize_t next = match_unit(s, n, end, steps, nsteps, caps);
        if (next < 0)
            break;
        end = next;
    }
    result = Py_BuildValue("nnO", start, end, convert ? cols : Py_None);
done:
    Py_XDECREF(cols);
    PyMem_Free(caps);
    PyMem_Free(steps);
    return result;
}

PyDoc_STRVAR(rare_lines_doc,
"rare_lines(text, lo, hi, words) -> list[int] | NotImplemented\n\n"
"Where the lines of text[lo:hi] holding one of `words` begin (at their '\\n'; `lo` is a\n"
"'\\n' or 0, `hi` a '\\n' or the end), in order: forms.RareLines's search, without a\n"
"Python call per word. NotImplemented for a text or word stored wider than one byte per\n"
"character.");

static PyObject *
rare_lines(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *text, *words;
    Py_ssize_t lo, hi;
    if (!PyArg_ParseTuple(args, "UnnO!:rare_lines", &text, &lo, &hi, &PyTuple_Type, &words))
        return NULL;
    if (PyUnicode_KIND(text) != PyUnicode_1BYTE_KIND)
        Py_RETURN_NOTIMPLEMENTED;
    const Py_UCS1 *s = PyUnicode_1BYTE_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    if (lo < 0)
        lo = 0;
    if (hi > n)
        hi = n;
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t w = 0; w < PyTuple_GET_SIZE(words); w++) {
        PyObject *word = PyTuple_GET_ITEM(words, w);
        if (!PyUnicode_Check(word) || PyUnicode_KIND(word) != PyUnicode_1BYTE_KIND
            || PyUnicode_GET_LENGTH(word) == 0) {
            Py_DECREF(out);
            Py_RETURN_NOTIMPLEMENTED;
        }
        const Py_UCS1 *ws = PyUnicode_1BYTE_DATA(word);
        size_t wn = (size_t)PyUnicode_GET_LENGTH(word);
        Py_ssize_t at = lo;
        while (at < hi) {
            const Py_UCS1 *found = memmem(s + at, (size_t)(hi - at), ws, wn);
            if (found == NULL)
                break;
            Py_ssize_t start = found - s;
            while (start > lo && s[start] != '\n')
                start--;
            PyObject *v = PyLong_FromSsize_t(start);
            if (v == NULL || PyList_Append(out, v) < 0) {
                Py_XDECREF(v);
                Py_DECREF(out);
                return NULL;
            }
            Py_DECREF(v);
            const Py_UCS1 *nl = memchr(found, '\n', (size_t)(s + hi - found));
            if (nl == NULL)
                break;
            at = nl - s;
        }
    }
    if (PyList_GET_SIZE(out) > 1 && PyList_Sort(out) < 0) {
        Py_DECREF(out);
        return NULL;
    }
    return out;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS, scan_doc},
    {"rare_lines", rare_lines, METH_VARARGS, rare_lines_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_rowscan",
    .m_doc = "The block path's row matcher and rare-line search in C (see "
             "integrations/mxnet_log/layouts.py and forms.py).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__rowscan(void)
{
    return PyModule_Create(&module);
}
