/* Strategy: the header part of a WSGI environ, in C. The rule is stated once, in Python:
 * cocaine_http/http/environ.py (`_headers_into`, with `_learn_key` for names it has not seen).
 * This is a checked copy of that loop for names it already learned: every header becomes its
 * CGI key through the same `keys` dict, its value decoded as latin-1, repeats joined with ", "
 * ("; " for HTTP_COOKIE), and names mapped to None dropped. It declines (returns False, the
 * environ untouched) when a name is not in `keys` yet or a header is not a (bytes, bytes)
 * pair, so learning keys and every odd shape stay with Python. tests/test_environ_c.py compares
 * the two on generated headers.
 *
 * Invariants: no state of its own; the arguments are type-checked before use; the environ is
 * modified only after every header passed the checks.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *cookie_key;
static PyObject *cookie_sep;
static PyObject *comma_sep;

/* headers(environ: dict, headers: list, keys: dict) -> bool */
static PyObject *
headers_into(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "headers_into(environ, headers, keys)");
        return NULL;
    }
    PyObject *environ = args[0], *headers = args[1], *keys = args[2];
    if (!PyDict_CheckExact(environ) || !PyList_CheckExact(headers) || !PyDict_CheckExact(keys))
        Py_RETURN_FALSE;
    Py_ssize_t n = PyList_GET_SIZE(headers);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PyList_GET_ITEM(headers, i);
        if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2)
            Py_RETURN_FALSE;
        PyObject *name = PyTuple_GET_ITEM(pair, 0);
        if (!PyBytes_CheckExact(name) || !PyBytes_CheckExact(PyTuple_GET_ITEM(pair, 1)))
            Py_RETURN_FALSE;
        PyObject *key = PyDict_GetItemWithError(keys, name);
        if (key == NULL) {
            if (PyErr_Occurred())
                return NULL;
            Py_RETURN_FALSE; /* not learned yet: Python learns it */
        }
        if (key != Py_None && !PyUnicode_CheckExact(key))
            Py_RETURN_FALSE;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PyList_GET_ITEM(headers, i);
        PyObject *name = PyTuple_GET_ITEM(pair, 0);
        PyObject *value = PyTuple_GET_ITEM(pair, 1);
        PyObject *key = PyDict_GetItemWithError(keys, name);
        if (key == NULL) { /* the checks above found it: only a failing __eq__ gets here */
            if (PyErr_Occurred())
                return NULL;
            PyErr_SetString(PyExc_RuntimeError, "environ keys changed while in use");
            return NULL;
        }
        if (key == Py_None)
            continue;
        Py_INCREF(key); /* held across the calls below, which may run arbitrary code */
        PyObject *text = PyUnicode_DecodeLatin1(PyBytes_AS_STRING(value),
                                                PyBytes_GET_SIZE(value), NULL);
        if (text == NULL) {
            Py_DECREF(key);
            return NULL;
        }
        PyObject *earlier = PyDict_GetItemWithError(environ, key);
        if (earlier != NULL) {
            int cookie = PyUnicode_Compare(key, cookie_key) == 0;
            PyObject *joined = PyUnicode_Concat(earlier, cookie ? cookie_sep : comma_sep);
            PyObject *whole = joined == NULL ? NULL : PyUnicode_Concat(joined, text);
            Py_XDECREF(joined);
            Py_DECREF(text);
            text = whole;
        } else if (PyErr_Occurred()) {
            Py_DECREF(text);
            text = NULL;
        }
        int failed = text == NULL || PyDict_SetItem(environ, key, text) < 0;
        Py_XDECREF(text);
        Py_DECREF(key);
        if (failed)
            return NULL;
    }
    Py_RETURN_TRUE;
}

static PyMethodDef methods[] = {
    {"headers_into", (PyCFunction)(void (*)(void))headers_into, METH_FASTCALL,
     "headers_into(environ, headers, keys) -> bool: the environ's HTTP_* keys from the request "
     "headers, or False (environ untouched) when Python must do it."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_cenviron", NULL, -1, methods,
};

PyMODINIT_FUNC PyInit__cenviron(void)
{
    cookie_key = PyUnicode_InternFromString("HTTP_COOKIE");
    cookie_sep = PyUnicode_InternFromString("; ");
    comma_sep = PyUnicode_InternFromString(", ");
    if (cookie_key == NULL || cookie_sep == NULL || comma_sep == NULL)
        return NULL;
    return PyModule_Create(&module);
}
