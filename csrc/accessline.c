/* Strategy: the default access-log line of the worker's stderr fast path, built in one call and
 * one allocation. It is a copy of two rules of cocaine_http/http/accesslog.py, which stays the
 * reference and the one place they are stated:
 *   - default_line(): the gunicorn-format line for ACCESS_LOG_FORMAT (client, the %(t)s stamp,
 *     request line, status, size, Referer, User-Agent, duration in ms), the request's headers
 *     scanned once for the first Referer and User-Agent, bytes decoded as latin-1;
 *   - RecordPrefix: "<date to the second>,<milliseconds, truncated> <pid> INFO <logger>: ".
 * Python formats these in about 19k interpreter instructions per request; here it is a few
 * hundred machine instructions.
 *
 * Whatever depends on the second alone (the %(t)s stamp, the date of the prefix) is not
 * formatted here: the caller passes Python's own per-second caches, the (second, text) tuples
 * of accesslog._last_second and RecordPrefix.second, and when either belongs to another second
 * this declines (returns None) and Python formats the line, filling the caches on the way. The
 * same decline covers every input this does not copy the rule for: types other than the exact
 * ones the worker passes (str, bytes, int, float, tuple, list), str parts beyond latin-1, and
 * numbers outside the ranges below. So the result is exactly Python's, or None.
 *
 * Invariants:
 * - Nothing here calls back into Python code: only exact built-in types are read, so borrowed
 *   references stay valid for the whole call.
 * - Every piece is measured before the one PyUnicode_New, with the exact maximum character
 *   (127 when all of it is ASCII, 255 otherwise), so the str is canonical.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <string.h>

/* -- the Request fields, read through their slots -------------------------------------------- */

enum { F_METHOD, F_VERSION, F_TARGET, F_HEADERS, F_CLIENT, N_FIELDS };
static const char *const FIELD_NAMES[N_FIELDS] = {
    "method", "http_version", "target", "headers", "client",
};
/* The class bind() was given, and the offsets of its slots (exact instances only). */
static PyTypeObject *request_type = NULL;
static Py_ssize_t field_offset[N_FIELDS];
static PyObject *field_name[N_FIELDS];

/* The fields of `request` as new references; 0, or -1 with no exception set when one is
 * missing (Python would raise: it declines). */
static int get_fields(PyObject *request, PyObject **out)
{
    if (Py_TYPE(request) == request_type) {
        for (int i = 0; i < N_FIELDS; i++) {
            PyObject *v = *(PyObject **)((char *)request + field_offset[i]);
            if (v == NULL) {
                for (int j = 0; j < i; j++)
                    Py_DECREF(out[j]);
                return -1;
            }
            Py_INCREF(v);
            out[i] = v;
        }
        return 0;
    }
    for (int i = 0; i < N_FIELDS; i++) {
        out[i] = PyObject_GetAttr(request, field_name[i]);
        if (out[i] == NULL) {
            PyErr_Clear();
            for (int j = 0; j < i; j++)
                Py_DECREF(out[j]);
            return -1;
        }
    }
    return 0;
}

/* -- the pieces of the line -------------------------------------------------------------------- */

#define MAX_PIECES 40
typedef struct {
    const char *p[MAX_PIECES];
    Py_ssize_t n[MAX_PIECES];
    int count;
    Py_ssize_t len;
    int high; /* a character above 127 is among the pieces */
} line_t;

static inline void add(line_t *l, const char *p, Py_ssize_t n)
{
    l->p[l->count] = p;
    l->n[l->count++] = n;
    l->len += n;
}

#define ADD_LITERAL(l, s) add((l), (s), (Py_ssize_t)sizeof(s) - 1)

/* An exact str whose characters are all below 256. */
static inline int latin1_str(PyObject *s)
{
    return PyUnicode_CheckExact(s) && PyUnicode_KIND(s) == PyUnicode_1BYTE_KIND;
}

/* A str whose characters are all below 256; 0 if `s` is anything else. */
static int add_str(line_t *l, PyObject *s)
{
    if (!latin1_str(s))
        return 0;
    if (!PyUnicode_IS_ASCII(s))
        l->high = 1;
    add(l, (const char *)PyUnicode_1BYTE_DATA(s), PyUnicode_GET_LENGTH(s));
    return 1;
}

/* Bytes as latin-1 text: each byte is the character of that code. */
static void add_latin1(line_t *l, PyObject *b)
{
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(b);
    Py_ssize_t n = PyBytes_GET_SIZE(b);
    unsigned char any = 0;
    for (Py_ssize_t i = 0; i < n; i++)
        any |= p[i];
    if (any & 0x80)
        l->high = 1;
    add(l, (const char *)p, n);
}

/* Decimal digits of v written backwards from end; returns the first character. */
static char *decimal(char *end, long long v)
{
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    char *p = end;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--p = '-';
    return p;
}

#define DIGITS 24

static inline void add_int(line_t *l, char *buf, long long v)
{
    char *first = decimal(buf + DIGITS, v);
    add(l, first, buf + DIGITS - first);
}

/* An exact int that fits a long long; 0 if not. */
static int as_long_long(PyObject *o, long long *v)
{
    int overflow;
    if (!PyLong_CheckExact(o))
        return 0;
    *v = PyLong_AsLongLongAndOverflow(o, &overflow);
    return !overflow;
}

/* The text of a (second, text) cache tuple when it is for `second`, else NULL. */
static PyObject *cached(PyObject *cache, long long second)
{
    long long key;
    if (!PyTuple_CheckExact(cache) || PyTuple_GET_SIZE(cache) != 2
        || !as_long_long(PyTuple_GET_ITEM(cache, 0), &key) || key != second)
        return NULL;
    return PyTuple_GET_ITEM(cache, 1);
}

/* int(x) of a float in the range where the C conversion equals Python's (truncation). */
#define TRUNCATES(x) ((x) > -9.0e15 && (x) < 9.0e15)

/* The headers' first User-Agent and Referer values (NULL when absent); 0 when a pair is not
 * an exact tuple of two with bytes names, or a value found is not bytes. */
static int scan_headers(PyObject *headers, PyObject **referer, PyObject **agent)
{
    PyObject **items;
    Py_ssize_t n;
    if (PyList_CheckExact(headers)) {
        items = ((PyListObject *)headers)->ob_item;
        n = PyList_GET_SIZE(headers);
    } else if (PyTuple_CheckExact(headers)) {
        items = ((PyTupleObject *)headers)->ob_item;
        n = PyTuple_GET_SIZE(headers);
    } else {
        return 0;
    }
    *referer = *agent = NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = items[i];
        if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2)
            return 0;
        PyObject *key = PyTuple_GET_ITEM(pair, 0);
        if (!PyBytes_CheckExact(key))
            return 0;
        Py_ssize_t size = PyBytes_GET_SIZE(key);
        const char *name = PyBytes_AS_STRING(key);
        PyObject **slot;
        if (size == 10 && memcmp(name, "user-agent", 10) == 0)
            slot = agent;
        else if (size == 7 && memcmp(name, "referer", 7) == 0)
            slot = referer;
        else
            continue;
        if (*slot == NULL) {
            PyObject *value = PyTuple_GET_ITEM(pair, 1);
            if (!PyBytes_CheckExact(value))
                return 0;
            *slot = value;
        }
    }
    return 1;
}

/* A header value as default_line prints it: "-" when absent or empty. */
static void add_header(line_t *l, PyObject *value)
{
    if (value == NULL || PyBytes_GET_SIZE(value) == 0)
        ADD_LITERAL(l, "-");
    else
        add_latin1(l, value);
}

/* The request's part: from the client to the closing quote of the User-Agent; 0 to decline. */
static int add_request(line_t *l, PyObject **f, PyObject *stamp, char *status, long long code,
                       char *size, long long bytes)
{
    PyObject *client = f[F_CLIENT], *referer, *agent;
    if (client == Py_None || (PyTuple_CheckExact(client) && PyTuple_GET_SIZE(client) == 0)) {
        ADD_LITERAL(l, "-");
    } else if (!PyTuple_CheckExact(client) || !add_str(l, PyTuple_GET_ITEM(client, 0))) {
        return 0;
    }
    ADD_LITERAL(l, " - - ");
    add_str(l, stamp);
    ADD_LITERAL(l, " \"");
    if (!add_str(l, f[F_METHOD]))
        return 0;
    ADD_LITERAL(l, " ");
    if (!PyBytes_CheckExact(f[F_TARGET]))
        return 0;
    if (PyBytes_GET_SIZE(f[F_TARGET]) == 0)
        ADD_LITERAL(l, "/");
    else
        add_latin1(l, f[F_TARGET]);
    ADD_LITERAL(l, " HTTP/");
    if (!add_str(l, f[F_VERSION]))
        return 0;
    ADD_LITERAL(l, "\" ");
    add_int(l, status, code);
    ADD_LITERAL(l, " ");
    if (bytes)
        add_int(l, size, bytes);
    else
        ADD_LITERAL(l, "-");
    if (!scan_headers(f[F_HEADERS], &referer, &agent))
        return 0;
    ADD_LITERAL(l, " \"");
    add_header(l, referer);
    ADD_LITERAL(l, "\" \"");
    add_header(l, agent);
    ADD_LITERAL(l, "\"");
    return 1;
}

static PyObject *join(const line_t *l)
{
    PyObject *out = PyUnicode_New(l->len, l->high ? 255 : 127);
    if (out == NULL)
        return NULL;
    char *w = (char *)PyUnicode_1BYTE_DATA(out);
    for (int i = 0; i < l->count; i++) {
        memcpy(w, l->p[i], (size_t)l->n[i]);
        w += l->n[i];
    }
    return out;
}

/* The whole line, newline included: a new str, Py_None (a new reference: decline), or NULL
 * with an exception (no memory). */
static PyObject *build(PyObject *request, PyObject *status, PyObject *size, double now,
                       double duration, PyObject *stamps, PyObject *dates, PyObject *tail)
{
    long long code, bytes, second, millis, ms;
    double started = now - duration, scaled = duration * 1000;
    /* now >= 0 keeps the milliseconds in 0..999, as "%03d" needs (NaN fails every test). */
    if (!as_long_long(status, &code) || !as_long_long(size, &bytes)
        || !(now >= 0 && now < 9.0e15) || !TRUNCATES(started) || !TRUNCATES(scaled))
        Py_RETURN_NONE;
    second = (long long)now;
    millis = (long long)scaled;
    ms = (long long)((now - (double)second) * 1000);
    PyObject *stamp = cached(stamps, (long long)started), *date = cached(dates, second);
    if (stamp == NULL || date == NULL || !latin1_str(stamp) || ms < 0 || ms > 999)
        Py_RETURN_NONE;

    line_t l;
    l.count = 0;
    l.len = 0;
    l.high = 0;
    char ms_buf[4] = {',', (char)('0' + ms / 100), (char)('0' + ms / 10 % 10),
                      (char)('0' + ms % 10)};
    char status_buf[DIGITS], size_buf[DIGITS], millis_buf[DIGITS];
    PyObject *f[N_FIELDS];
    int ok = add_str(&l, date);
    add(&l, ms_buf, 4);
    ok = ok && add_str(&l, tail);
    if (!ok)
        Py_RETURN_NONE;
    if (request == Py_None) {
        ADD_LITERAL(&l, "- - - ");
        add_str(&l, stamp);
        ADD_LITERAL(&l, " \"-\" ");
        add_int(&l, status_buf, code);
        ADD_LITERAL(&l, " ");
        if (bytes)
            add_int(&l, size_buf, bytes);
        else
            ADD_LITERAL(&l, "-");
        ADD_LITERAL(&l, " \"-\" \"-\"");
    } else {
        if (get_fields(request, f) < 0)
            Py_RETURN_NONE;
        ok = add_request(&l, f, stamp, status_buf, code, size_buf, bytes);
    }
    PyObject *result;
    if (ok) {
        ADD_LITERAL(&l, " ");
        add_int(&l, millis_buf, millis);
        ADD_LITERAL(&l, "ms\n");
        result = join(&l);
    } else {
        result = Py_None;
        Py_INCREF(result);
    }
    if (request != Py_None) {
        for (int i = 0; i < N_FIELDS; i++)
            Py_DECREF(f[i]);
    }
    return result;
}

PyDoc_STRVAR(line_doc,
"line(request, status, size, now, duration, stamps, dates, tail) -> str | None\n\n"
"record_line(prefix, request, status, size, now, duration) for the RecordPrefix `prefix`\n"
"whose `second` is `dates` and whose `tail` is `tail`, with `stamps` the access log's\n"
"_last_second; None when Python must format it.");

static PyObject *line(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "line() takes 8 arguments");
        return NULL;
    }
    if (!PyFloat_CheckExact(args[3]) || !PyFloat_CheckExact(args[4]))
        Py_RETURN_NONE;
    return build(args[0], args[1], args[2], PyFloat_AS_DOUBLE(args[3]),
                 PyFloat_AS_DOUBLE(args[4]), args[5], args[6], args[7]);
}

/* -- Logger: the whole per-request step of the fast path ------------------------------------ */

/* time.time() and time.perf_counter(), read as those functions read them. */
static int read_clocks(double *now, double *perf)
{
#if PY_VERSION_HEX >= 0x030D0000
    PyTime_t t, p;
    if (PyTime_Time(&t) < 0 || PyTime_PerfCounter(&p) < 0)
        return -1;
    *now = PyTime_AsSecondsDouble(t);
    *perf = PyTime_AsSecondsDouble(p);
#else
    *now = _PyTime_AsSecondsDouble(_PyTime_GetSystemClock());
    *perf = _PyTime_AsSecondsDouble(_PyTime_GetPerfCounter());
#endif
    return 0;
}

/* One attribute read per call: through the slot when the object is of the class it was found
 * in (RecordPrefix and LineBuffer have __slots__), by name otherwise. */
typedef struct {
    PyTypeObject *type; /* NULL: by name */
    Py_ssize_t offset;
    PyObject *name;
} attr_t;

static void attr_find(attr_t *a, PyObject *obj, PyObject *name)
{
    a->type = NULL;
    a->name = name;
    PyObject *descr = _PyType_Lookup(Py_TYPE(obj), name); /* borrowed */
    if (descr != NULL && Py_IS_TYPE(descr, &PyMemberDescr_Type)
        && ((PyMemberDescrObject *)descr)->d_member->type == T_OBJECT_EX) {
        a->type = Py_TYPE(obj);
        a->offset = ((PyMemberDescrObject *)descr)->d_member->offset;
    }
}

/* A new reference, or NULL with an exception. */
static PyObject *attr_get(const attr_t *a, PyObject *obj)
{
    if (Py_TYPE(obj) == a->type) {
        PyObject *v = *(PyObject **)((char *)obj + a->offset);
        if (v != NULL)
            return Py_NewRef(v);
    }
    return PyObject_GetAttr(obj, a->name);
}

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    attr_t second;      /* prefix.second */
    attr_t pending;     /* buffer.pending */
    PyObject *fallback; /* the Python step: fallback(request, status, size, started) */
    PyObject *prefix;   /* the RecordPrefix; its `second` is read at each call */
    PyObject *tail;     /* prefix.tail */
    PyObject *buffer;   /* the LineBuffer; its `pending` is read at each call */
    PyObject *lines;    /* buffer.lines */
    PyObject *append;   /* buffer.lines.append */
    Py_ssize_t limit;   /* buffer.limit */
    PyObject *globals;  /* cocaine_http.http.accesslog's namespace, for _last_second */
} Logger;

static PyObject *s_second, *s_pending, *s_write, *s_last_second;

/* Queue the line: the common case of LineBuffer.write (room in the queue and the writing
 * thread already woken) is a deque append; any other case is that method's own. */
static int queue(Logger *self, PyObject *text)
{
    PyObject *pending = attr_get(&self->pending, self->buffer), *r;
    if (pending == NULL)
        return -1;
    Py_ssize_t queued = PyObject_Length(self->lines);
    if (queued < 0) {
        Py_DECREF(pending);
        return -1;
    }
    if (pending == Py_True && queued < self->limit)
        r = PyObject_CallOneArg(self->append, text);
    else
        r = PyObject_CallMethodOneArg(self->buffer, s_write, text);
    Py_DECREF(pending);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

static PyObject *logger_call(PyObject *op, PyObject *const *args, size_t nargsf,
                             PyObject *kwnames)
{
    Logger *self = (Logger *)op;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs != 4 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames))) {
        PyErr_SetString(PyExc_TypeError, "Logger takes (request, status, size, started)");
        return NULL;
    }
    double now, perf;
    PyObject *text = Py_None, *dates, *stamps;
    if (PyFloat_CheckExact(args[3])) {
        if (read_clocks(&now, &perf) < 0)
            return NULL;
        stamps = PyDict_GetItemWithError(self->globals, s_last_second);
        if (stamps == NULL && PyErr_Occurred())
            return NULL;
        dates = attr_get(&self->second, self->prefix);
        if (dates == NULL)
            return NULL;
        text = stamps == NULL ? Py_NewRef(Py_None)
                              : build(args[0], args[1], args[2], now,
                                      perf - PyFloat_AS_DOUBLE(args[3]), stamps, dates,
                                      self->tail);
        Py_DECREF(dates);
        if (text == NULL)
            return NULL;
    } else {
        Py_INCREF(text);
    }
    if (text == Py_None) {
        Py_DECREF(text);
        return PyObject_Vectorcall(self->fallback, args, nargs, NULL);
    }
    int failed = queue(self, text);
    Py_DECREF(text);
    if (failed)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *logger_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *fallback, *prefix, *buffer, *module;
    static char *kwlist[] = {"fallback", "prefix", "buffer", "formats", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOO!:Logger", kwlist, &fallback, &prefix,
                                     &buffer, &PyModule_Type, &module))
        return NULL;
    Logger *self = (Logger *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->vectorcall = logger_call;
    attr_find(&self->second, prefix, s_second);
    attr_find(&self->pending, buffer, s_pending);
    self->fallback = Py_NewRef(fallback);
    self->prefix = Py_NewRef(prefix);
    self->buffer = Py_NewRef(buffer);
    self->globals = Py_NewRef(PyModule_GetDict(module));
    self->tail = PyObject_GetAttrString(prefix, "tail");
    self->lines = PyObject_GetAttrString(buffer, "lines");
    self->append = self->lines ? PyObject_GetAttrString(self->lines, "append") : NULL;
    PyObject *limit = PyObject_GetAttrString(buffer, "limit");
    self->limit = limit ? PyLong_AsSsize_t(limit) : -1;
    Py_XDECREF(limit);
    if (self->tail == NULL || self->append == NULL || PyErr_Occurred()) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static int logger_traverse(PyObject *op, visitproc visit, void *arg)
{
    Logger *self = (Logger *)op;
    Py_VISIT(self->fallback);
    Py_VISIT(self->prefix);
    Py_VISIT(self->tail);
    Py_VISIT(self->buffer);
    Py_VISIT(self->lines);
    Py_VISIT(self->append);
    Py_VISIT(self->globals);
    return 0;
}

static int logger_clear(PyObject *op)
{
    Logger *self = (Logger *)op;
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->prefix);
    Py_CLEAR(self->tail);
    Py_CLEAR(self->buffer);
    Py_CLEAR(self->lines);
    Py_CLEAR(self->append);
    Py_CLEAR(self->globals);
    return 0;
}

static void logger_dealloc(PyObject *op)
{
    PyObject_GC_UnTrack(op);
    logger_clear(op);
    Py_TYPE(op)->tp_free(op);
}

static PyMemberDef logger_members[] = {
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(Logger, vectorcall), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

PyDoc_STRVAR(logger_doc,
"Logger(fallback, prefix, buffer, formats)\n\n"
"AccessLog's stderr step in one call: Logger(request, status, size, started) reads the two\n"
"clocks, builds the line with line() from the RecordPrefix `prefix` and the `formats` module's\n"
"_last_second, and queues it on the LineBuffer `buffer`; when line() declines it calls\n"
"fallback(request, status, size, started) instead.");

static PyTypeObject LoggerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "cocaine_http.http._caccess.Logger",
    .tp_basicsize = sizeof(Logger),
    .tp_dealloc = logger_dealloc,
    .tp_vectorcall_offset = offsetof(Logger, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = logger_doc,
    .tp_traverse = logger_traverse,
    .tp_clear = logger_clear,
    .tp_members = logger_members,
    .tp_new = logger_new,
};

/* -- binding the Request class ---------------------------------------------------------------- */

PyDoc_STRVAR(bind_doc,
"bind(cls) -> bool\n\n"
"Read the request fields of exact `cls` instances through its slots (else by attribute);\n"
"False when `cls` does not keep them all in slots.");

static PyObject *bind(PyObject *module, PyObject *cls)
{
    (void)module;
    Py_ssize_t offsets[N_FIELDS];
    if (!PyType_Check(cls)) {
        PyErr_SetString(PyExc_TypeError, "bind() takes a class");
        return NULL;
    }
    for (int i = 0; i < N_FIELDS; i++) {
        PyObject *descr = PyDict_GetItemWithError(((PyTypeObject *)cls)->tp_dict, field_name[i]);
        if (descr == NULL) {
            if (PyErr_Occurred())
                return NULL;
            Py_RETURN_FALSE;
        }
        if (!Py_IS_TYPE(descr, &PyMemberDescr_Type))
            Py_RETURN_FALSE;
        PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
        if (member->type != T_OBJECT_EX)
            Py_RETURN_FALSE;
        offsets[i] = member->offset;
    }
    Py_INCREF(cls);
    Py_XSETREF(request_type, (PyTypeObject *)cls);
    memcpy(field_offset, offsets, sizeof(offsets));
    Py_RETURN_TRUE;
}

static PyMethodDef methods[] = {
    {"line", (PyCFunction)(void (*)(void))line, METH_FASTCALL, line_doc},
    {"bind", bind, METH_O, bind_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_caccess",
    "The default access-log line in C (the reference is cocaine_http.http.accesslog).", -1,
    methods, NULL, NULL, NULL, NULL,
};

static PyObject *intern(PyObject **slot, const char *text)
{
    if (*slot == NULL)
        *slot = PyUnicode_InternFromString(text);
    return *slot;
}

PyMODINIT_FUNC PyInit__caccess(void)
{
    for (int i = 0; i < N_FIELDS; i++) {
        if (intern(&field_name[i], FIELD_NAMES[i]) == NULL)
            return NULL;
    }
    if (intern(&s_second, "second") == NULL || intern(&s_pending, "pending") == NULL
        || intern(&s_write, "write") == NULL || intern(&s_last_second, "_last_second") == NULL
        || PyType_Ready(&LoggerType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&LoggerType);
    if (PyModule_AddObject(m, "Logger", (PyObject *)&LoggerType) < 0) {
        Py_DECREF(&LoggerType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
