/* Strategy: the WSGI environ, in C. The rules are stated once, in Python:
 * cocaine_http/http/environ.py (`EnvironBuilder._build`, with `_learn_key` for header names it
 * has not seen). This is a checked copy of that builder for the common request: the template
 * copied, the request's fields under their PEP 3333 keys, and every header under its CGI key
 * through the same `keys` dict, its value decoded as latin-1, repeats joined with ", " ("; "
 * for HTTP_COOKIE), names mapped to None dropped. It declines (returns None) for a root path,
 * a '%' in the path, a body that is not bytes, a Host not yet in `servers`, an HTTP version
 * other than 1.0/1.1, a header name not in `keys` yet, or any odd shape, and Python then builds
 * the environ itself (learning what it meets). tests/test_environ_c.py compares the two.
 *
 * Invariants: no state beyond interned constants and io.BytesIO; every object read from the
 * arguments is type-checked before use; nothing of the arguments is modified.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

static PyObject *BytesIO;
static PyObject *s_cookie, *s_cookie_sep, *s_comma_sep, *s_zero, *s_empty, *s_http11, *s_http10,
    *s_v11, *s_v10;
static PyObject *k_path, *k_method, *k_query, *k_name, *k_port, *k_protocol, *k_length,
    *k_scheme, *k_input, *k_session, *k_remote;
static PyObject *a_raw_path, *a_server, *a_method, *a_query, *a_version, *a_body, *a_scheme,
    *a_client, *a_headers;

/* 1 when every header is a (bytes, bytes) pair whose name `keys` knows (as str or None),
 * 0 to decline, -1 on error. */
static int
headers_known(PyObject *headers, PyObject *keys)
{
    Py_ssize_t n = PyList_GET_SIZE(headers);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PyList_GET_ITEM(headers, i);
        if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2)
            return 0;
        PyObject *name = PyTuple_GET_ITEM(pair, 0);
        if (!PyBytes_CheckExact(name) || !PyBytes_CheckExact(PyTuple_GET_ITEM(pair, 1)))
            return 0;
        PyObject *key = PyDict_GetItemWithError(keys, name);
        if (key == NULL)
            return PyErr_Occurred() ? -1 : 0;
        if (key != Py_None && !PyUnicode_CheckExact(key))
            return 0;
    }
    return 1;
}

/* Every header into the environ under its key (after headers_known() said 1). Nothing here
 * runs Python code (bytes and str keys hash and compare in C), so `keys` cannot change. */
static int
headers_into(PyObject *environ, PyObject *headers, PyObject *keys)
{
    Py_ssize_t n = PyList_GET_SIZE(headers);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PyList_GET_ITEM(headers, i);
        PyObject *value = PyTuple_GET_ITEM(pair, 1);
        PyObject *key = PyDict_GetItemWithError(keys, PyTuple_GET_ITEM(pair, 0));
        if (key == NULL) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_RuntimeError, "environ keys changed while in use");
            return -1;
        }
        if (key == Py_None)
            continue;
        PyObject *text = PyUnicode_DecodeLatin1(PyBytes_AS_STRING(value),
                                                PyBytes_GET_SIZE(value), NULL);
        if (text == NULL)
            return -1;
        PyObject *earlier = PyDict_GetItemWithError(environ, key);
        if (earlier != NULL) {
            int cookie = PyUnicode_Compare(key, s_cookie) == 0;
            PyObject *joined = PyUnicode_Concat(earlier, cookie ? s_cookie_sep : s_comma_sep);
            PyObject *whole = joined == NULL ? NULL : PyUnicode_Concat(joined, text);
            Py_XDECREF(joined);
            Py_DECREF(text);
            text = whole;
        } else if (PyErr_Occurred()) {
            Py_CLEAR(text);
        }
        int failed = text == NULL || PyDict_SetItem(environ, key, text) < 0;
        Py_XDECREF(text);
        if (failed)
            return -1;
    }
    return 0;
}

static PyObject *
latin1(PyObject *raw)
{
    if (PyBytes_GET_SIZE(raw) == 0)
        return Py_NewRef(s_empty);
    return PyUnicode_DecodeLatin1(PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw), NULL);
}

/* environ[key] = value, dropping the reference to value; -1 on failure (value NULL too). */
static int
put(PyObject *environ, PyObject *key, PyObject *value)
{
    if (value == NULL)
        return -1;
    int r = PyDict_SetItem(environ, key, value);
    Py_DECREF(value);
    return r;
}

/* The request's attributes the environ reads. */
typedef struct {
    PyObject *raw_path, *server, *method, *query, *version, *body, *scheme, *client, *headers;
} fields;

static void
fields_clear(fields *f)
{
    Py_CLEAR(f->raw_path);
    Py_CLEAR(f->server);
    Py_CLEAR(f->method);
    Py_CLEAR(f->query);
    Py_CLEAR(f->version);
    Py_CLEAR(f->body);
    Py_CLEAR(f->scheme);
    Py_CLEAR(f->client);
    Py_CLEAR(f->headers);
}

/* Read and type-check the fields: 1 when they are the common request's, 0 to decline, -1 on
 * error. The caller clears `f` in every case. */
static int
fields_read(PyObject *request, fields *f)
{
    memset(f, 0, sizeof(*f));
    if ((f->raw_path = PyObject_GetAttr(request, a_raw_path)) == NULL ||
        (f->server = PyObject_GetAttr(request, a_server)) == NULL ||
        (f->method = PyObject_GetAttr(request, a_method)) == NULL ||
        (f->query = PyObject_GetAttr(request, a_query)) == NULL ||
        (f->version = PyObject_GetAttr(request, a_version)) == NULL ||
        (f->body = PyObject_GetAttr(request, a_body)) == NULL ||
        (f->scheme = PyObject_GetAttr(request, a_scheme)) == NULL ||
        (f->client = PyObject_GetAttr(request, a_client)) == NULL ||
        (f->headers = PyObject_GetAttr(request, a_headers)) == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError))
            return -1;
        PyErr_Clear();
        return 0;
    }
    if (!PyBytes_CheckExact(f->raw_path) || !PyBytes_CheckExact(f->query) ||
        !PyBytes_CheckExact(f->body) || !PyUnicode_CheckExact(f->method) ||
        !PyUnicode_CheckExact(f->version) || !PyUnicode_CheckExact(f->scheme) ||
        !PyList_CheckExact(f->headers))
        return 0;
    if (f->client != Py_None &&
        (!PyTuple_CheckExact(f->client) || PyTuple_GET_SIZE(f->client) < 1))
        return 0;
    if (memchr(PyBytes_AS_STRING(f->raw_path), '%', PyBytes_GET_SIZE(f->raw_path)) != NULL)
        return 0;
    return 1;
}

static PyObject *
build(PyObject *template, fields *f, PyObject *session, PyObject *servers, PyObject *keys)
{
    PyObject *server = PyDict_GetItemWithError(servers, f->server);
    if (server == NULL)
        return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    if (!PyTuple_CheckExact(server) || PyTuple_GET_SIZE(server) != 2)
        Py_RETURN_NONE;
    PyObject *protocol;
    if (PyUnicode_Compare(f->version, s_v11) == 0)
        protocol = s_http11;
    else if (PyUnicode_Compare(f->version, s_v10) == 0)
        protocol = s_http10;
    else
        Py_RETURN_NONE;
    int known = headers_known(f->headers, keys);
    if (known <= 0)
        return known < 0 ? NULL : Py_NewRef(Py_None);
    PyObject *environ = PyDict_Copy(template);
    if (environ == NULL)
        return NULL;
    Py_ssize_t size = PyBytes_GET_SIZE(f->body);
    if (put(environ, k_path, latin1(f->raw_path)) < 0 ||
        PyDict_SetItem(environ, k_method, f->method) < 0 ||
        put(environ, k_query, latin1(f->query)) < 0 ||
        PyDict_SetItem(environ, k_name, PyTuple_GET_ITEM(server, 0)) < 0 ||
        PyDict_SetItem(environ, k_port, PyTuple_GET_ITEM(server, 1)) < 0 ||
        PyDict_SetItem(environ, k_protocol, protocol) < 0 ||
        put(environ, k_length,
            size ? PyUnicode_FromFormat("%zd", size) : Py_NewRef(s_zero)) < 0 ||
        PyDict_SetItem(environ, k_scheme, f->scheme) < 0 ||
        put(environ, k_input, PyObject_CallOneArg(BytesIO, f->body)) < 0 ||
        PyDict_SetItem(environ, k_session, session) < 0 ||
        (f->client != Py_None &&
         PyDict_SetItem(environ, k_remote, PyTuple_GET_ITEM(f->client, 0)) < 0) ||
        headers_into(environ, f->headers, keys) < 0) {
        Py_DECREF(environ);
        return NULL;
    }
    return environ;
}

/* environ(template, request, session, root, servers, keys) -> dict | None */
static PyObject *
build_environ(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError,
                        "environ(template, request, session, root, servers, keys)");
        return NULL;
    }
    PyObject *template = args[0], *request = args[1], *session = args[2], *root = args[3];
    PyObject *servers = args[4], *keys = args[5];
    if (!PyDict_CheckExact(template) || !PyDict_CheckExact(servers) ||
        !PyDict_CheckExact(keys) || !PyUnicode_CheckExact(root) ||
        PyUnicode_GET_LENGTH(root) != 0)
        Py_RETURN_NONE;
    fields f;
    int ok = fields_read(request, &f);
    PyObject *result = ok < 0    ? NULL
                       : ok == 0 ? Py_NewRef(Py_None)
                                 : build(template, &f, session, servers, keys);
    fields_clear(&f);
    return result;
}

static PyMethodDef methods[] = {
    {"environ", (PyCFunction)(void (*)(void))build_environ, METH_FASTCALL,
     "environ(template, request, session, root, servers, keys) -> dict | None: the WSGI "
     "environ of a common request, or None when Python must build it."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_cenviron",
    .m_size = -1,
    .m_methods = methods,
};

static PyObject *
intern(const char *text, int *failed)
{
    PyObject *s = PyUnicode_InternFromString(text);
    if (s == NULL)
        *failed = 1;
    return s;
}

PyMODINIT_FUNC PyInit__cenviron(void)
{
    int failed = 0;
    s_cookie = intern("HTTP_COOKIE", &failed);
    s_cookie_sep = intern("; ", &failed);
    s_comma_sep = intern(", ", &failed);
    s_zero = intern("0", &failed);
    s_empty = intern("", &failed);
    s_http11 = intern("HTTP/1.1", &failed);
    s_http10 = intern("HTTP/1.0", &failed);
    s_v11 = intern("1.1", &failed);
    s_v10 = intern("1.0", &failed);
    k_path = intern("PATH_INFO", &failed);
    k_method = intern("REQUEST_METHOD", &failed);
    k_query = intern("QUERY_STRING", &failed);
    k_name = intern("SERVER_NAME", &failed);
    k_port = intern("SERVER_PORT", &failed);
    k_protocol = intern("SERVER_PROTOCOL", &failed);
    k_length = intern("CONTENT_LENGTH", &failed);
    k_scheme = intern("wsgi.url_scheme", &failed);
    k_input = intern("wsgi.input", &failed);
    k_session = intern("cocaine.session", &failed);
    k_remote = intern("REMOTE_ADDR", &failed);
    a_raw_path = intern("raw_path", &failed);
    a_server = intern("server", &failed);
    a_method = intern("method", &failed);
    a_query = intern("query_string", &failed);
    a_version = intern("http_version", &failed);
    a_body = intern("body", &failed);
    a_scheme = intern("scheme", &failed);
    a_client = intern("client", &failed);
    a_headers = intern("headers", &failed);
    if (failed)
        return NULL;
    PyObject *io = PyImport_ImportModule("io");
    if (io == NULL)
        return NULL;
    BytesIO = PyObject_GetAttrString(io, "BytesIO");
    Py_DECREF(io);
    if (BytesIO == NULL)
        return NULL;
    return PyModule_Create(&module);
}
