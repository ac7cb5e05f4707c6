/* Strategy: the framing of a worker's response, in C. It copies `Dialect.response` (and its
 * hand-inlined v0.11 form `V11.frame_response`) from cocaine_http/protocol/dialect.py: each
 * chunk becomes its chunk message header (session id packed as the shortest msgpack uint,
 * payload size as a msgpack v4 raw header: fixraw, raw16 or raw32) followed by the payload,
 * and end=True appends the choke; a response whose payloads total at most SMALL_JOIN bytes
 * comes back joined into one bytes, a larger one as the list of buffers the Python code gives
 * (headers as new bytes, payloads as the very objects passed in, never copied).
 *
 * Why: that framing ran about a tenth of the Python instructions of a bare request. The Python
 * code stays the reference and the one statement of the rule: this file either gives exactly
 * its result or declines (returns None) and Python frames. It declines whatever it cannot
 * prove it frames the same way: a session id that is not an exact int in [0, 2**64), chunks
 * that are not an exact list or tuple, a payload that is not exact bytes, bytearray or a
 * one-dimensional C-contiguous memoryview of one-byte items (or a list or tuple of them),
 * end not a bool, a payload of 2**32 bytes or more. tests/test_framing_c.py checks it
 * against the reference on generated inputs.
 *
 * Layouts (the dialects' chunk and choke, docs/protocol.md §3 and §3.8):
 *   0 (v0.11)  chunk 93 04 <sid> 91 <raw>    choke 93 06 <sid> 90
 *   1 (v0.12)  chunk 93 <sid> 00 91 <raw>    choke 93 <sid> 02 90
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>
#include <structmember.h>

/* dialect.SMALL_JOIN: payloads up to this many bytes are joined (a test checks they agree). */
#define SMALL_JOIN 4096
#define LAYOUT_V11 0
#define LAYOUT_V12 1
#define MAX_HEADER 17 /* 93 04 cf<8> 91 db<4> */
#define KEPT 16       /* chunk sizes the joining pass takes from the sizing pass */

typedef struct {
    unsigned char sid[9]; /* the session id, packed */
    int sid_len;
    int layout;
} framer;

/* 1 and the id packed into f, or 0 (no error set): not an id this code packs. */
static int pack_session(PyObject *session, framer *f)
{
    unsigned long long n;
    unsigned char *p = f->sid;
    if (!PyLong_CheckExact(session))
        return 0;
    n = PyLong_AsUnsignedLongLong(session);
    if (n == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear(); /* negative or 2**64 and up: Python's struct.error is the reference */
        return 0;
    }
    if (n < 0x80) {
        p[0] = (unsigned char)n;
        f->sid_len = 1;
    } else if (n < 0x100) {
        p[0] = 0xcc;
        p[1] = (unsigned char)n;
        f->sid_len = 2;
    } else if (n < 0x10000) {
        p[0] = 0xcd;
        p[1] = (unsigned char)(n >> 8);
        p[2] = (unsigned char)n;
        f->sid_len = 3;
    } else if (n < 0x100000000ULL) {
        p[0] = 0xce;
        for (int i = 0; i < 4; i++)
            p[1 + i] = (unsigned char)(n >> (24 - 8 * i));
        f->sid_len = 5;
    } else {
        p[0] = 0xcf;
        for (int i = 0; i < 8; i++)
            p[1 + i] = (unsigned char)(n >> (56 - 8 * i));
        f->sid_len = 9;
    }
    return 1;
}

/* buffer_of() for what is not exact bytes. */
static int other_buffer(PyObject *obj, const char **data, Py_ssize_t *len)
{
    PyTypeObject *t = Py_TYPE(obj);
    if (t == &PyByteArray_Type) {
        *data = PyByteArray_AS_STRING(obj);
        *len = PyByteArray_GET_SIZE(obj);
        return 1;
    }
    if (t == &PyMemoryView_Type) {
        Py_buffer view;
        int ok;
        /* a released view refuses: its Python len() raises, which is the reference's */
        if (PyObject_GetBuffer(obj, &view, PyBUF_FULL_RO) < 0) {
            PyErr_Clear();
            return 0;
        }
        /* contiguous as the memoryview itself judges it, which is what bytes.join asks of
         * it: one item, or a stride of one byte (PyBuffer_IsContiguous also passes an empty
         * view of any stride, which join refuses) */
        ok = view.ndim == 1 && view.itemsize == 1 && view.suboffsets == NULL &&
             (view.shape[0] == 1 || view.strides[0] == 1);
        /* the memoryview keeps its exporter's memory alive while it lives, and no Python
         * code runs before the caller has copied or referenced it */
        *data = view.buf;
        *len = view.len;
        PyBuffer_Release(&view);
        return ok;
    }
    return 0;
}

/* The bytes and length of a payload buffer, or 0 (no error set): not one this code frames.
 * A memoryview must be 1-D, C-contiguous, one-byte items: then len() is its byte count. */
static inline int buffer_of(PyObject *obj, const char **data, Py_ssize_t *len)
{
    if (PyBytes_CheckExact(obj)) {
        *data = PyBytes_AS_STRING(obj);
        *len = PyBytes_GET_SIZE(obj);
        return 1;
    }
    return other_buffer(obj, data, len);
}

/* The payload size of one chunk (a buffer, or a list/tuple of buffers), or -1 (no error
 * set): decline. */
static Py_ssize_t chunk_size(PyObject *chunk, Py_ssize_t *pieces)
{
    const char *data;
    Py_ssize_t n, total = 0;
    if (buffer_of(chunk, &data, &n)) {
        *pieces = 1;
        return n;
    }
    if (!PyList_CheckExact(chunk) && !PyTuple_CheckExact(chunk))
        return -1;
    *pieces = PySequence_Fast_GET_SIZE(chunk);
    for (Py_ssize_t i = 0; i < *pieces; i++) {
        if (!buffer_of(PySequence_Fast_GET_ITEM(chunk, i), &data, &n))
            return -1;
        total += n;
    }
    return total;
}

static inline int raw_header_len(Py_ssize_t n)
{
    return n < 32 ? 1 : n < 0x10000 ? 3 : 5;
}

/* Writes a message's start for the session at p: v0.11 [kind, sid, ...], v0.12 [sid, kind,
 * ...] (the three-element array header included); returns the position after it. */
static unsigned char *write_start(const framer *f, unsigned char *p, unsigned char v11_kind,
                                  unsigned char v12_kind)
{
    *p++ = 0x93;
    if (f->layout == LAYOUT_V11)
        *p++ = v11_kind;
    memcpy(p, f->sid, f->sid_len);
    p += f->sid_len;
    if (f->layout != LAYOUT_V11)
        *p++ = v12_kind;
    return p;
}

/* Writes the chunk message header for a payload of n bytes at p; returns its length. */
static int write_header(const framer *f, unsigned char *p, Py_ssize_t n)
{
    unsigned char *start = p;
    p = write_start(f, p, 0x04, 0x00);
    *p++ = 0x91;
    if (n < 32) {
        *p++ = (unsigned char)(0xa0 | n);
    } else if (n < 0x10000) {
        *p++ = 0xda;
        *p++ = (unsigned char)(n >> 8);
        *p++ = (unsigned char)n;
    } else {
        *p++ = 0xdb;
        *p++ = (unsigned char)(n >> 24);
        *p++ = (unsigned char)(n >> 16);
        *p++ = (unsigned char)(n >> 8);
        *p++ = (unsigned char)n;
    }
    return (int)(p - start);
}

static int write_choke(const framer *f, unsigned char *p)
{
    unsigned char *start = p;
    p = write_start(f, p, 0x06, 0x02);
    *p++ = 0x90;
    return (int)(p - start);
}

static unsigned char *copy_payload(unsigned char *p, PyObject *obj)
{
    const char *data;
    Py_ssize_t n;
    buffer_of(obj, &data, &n); /* checked by the sizing pass, nothing ran since */
    memcpy(p, data, n);
    return p + n;
}

/* The joined form: every header, payload and the choke in one new bytes. */
static PyObject *joined(const framer *f, PyObject *chunks, Py_ssize_t count, int end,
                        Py_ssize_t total, const Py_ssize_t *sizes)
{
    PyObject *out = PyBytes_FromStringAndSize(NULL, total);
    unsigned char *p;
    if (out == NULL)
        return NULL;
    p = (unsigned char *)PyBytes_AS_STRING(out);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *chunk = PySequence_Fast_GET_ITEM(chunks, i);
        Py_ssize_t pieces;
        Py_ssize_t n = i < KEPT ? sizes[i] : chunk_size(chunk, &pieces);
        p += write_header(f, p, n);
        if (PyList_CheckExact(chunk) || PyTuple_CheckExact(chunk)) {
            pieces = PySequence_Fast_GET_SIZE(chunk);
            for (Py_ssize_t j = 0; j < pieces; j++)
                p = copy_payload(p, PySequence_Fast_GET_ITEM(chunk, j));
        } else {
            p = copy_payload(p, chunk);
        }
    }
    if (end)
        p += write_choke(f, p);
    if ((char *)p != PyBytes_AS_STRING(out) + total) { /* the two passes disagree: a bug */
        Py_DECREF(out);
        PyErr_SetString(PyExc_SystemError, "response framing: size mismatch");
        return NULL;
    }
    return out;
}

/* The list form: [header, payload..., header, payload..., choke]; payloads by reference.
 * Allocating the list may run the garbage collector, and a finalizer may change the chunks:
 * every size is taken again and checked against the list's, and a change declines. */
static PyObject *listed(const framer *f, PyObject *chunks, Py_ssize_t count, int end,
                        Py_ssize_t items)
{
    unsigned char buf[MAX_HEADER];
    Py_ssize_t k = 0;
    PyObject *out = PyList_New(items);
    if (out == NULL)
        return NULL;
    if (PySequence_Fast_GET_SIZE(chunks) != count)
        goto changed;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *chunk = PySequence_Fast_GET_ITEM(chunks, i);
        Py_ssize_t pieces;
        Py_ssize_t n = chunk_size(chunk, &pieces);
        PyObject *header;
        if (n < 0 || n > 0xFFFFFFFFLL || k + 1 + pieces + (end ? 1 : 0) > items)
            goto changed;
        header = PyBytes_FromStringAndSize((char *)buf, write_header(f, buf, n));
        if (header == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, k++, header);
        if (PyList_CheckExact(chunk) || PyTuple_CheckExact(chunk)) {
            for (Py_ssize_t j = 0; j < pieces; j++) {
                PyObject *part = PySequence_Fast_GET_ITEM(chunk, j);
                Py_INCREF(part);
                PyList_SET_ITEM(out, k++, part);
            }
        } else {
            Py_INCREF(chunk);
            PyList_SET_ITEM(out, k++, chunk);
        }
    }
    if (end) {
        PyObject *choke = PyBytes_FromStringAndSize((char *)buf, write_choke(f, buf));
        if (choke == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, k++, choke);
    }
    if (k == items)
        return out;
changed: /* unset items are NULL, which the list's deallocation skips */
    Py_DECREF(out);
    Py_RETURN_NONE;
}

/* The framing of `chunks` (+ the choke), or None: decline. Sizes every chunk first, so it
 * declines before building anything. */
static PyObject *frame(const framer *f, PyObject *chunks, int end)
{
    Py_ssize_t count, size = 0, headers = 0, items = end ? 1 : 0;
    Py_ssize_t sizes[KEPT];
    if (!PyList_CheckExact(chunks) && !PyTuple_CheckExact(chunks))
        Py_RETURN_NONE;
    count = PySequence_Fast_GET_SIZE(chunks);
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_ssize_t pieces;
        Py_ssize_t n = chunk_size(PySequence_Fast_GET_ITEM(chunks, i), &pieces);
        if (n < 0 || n > 0xFFFFFFFFLL) /* raw32 is the largest raw: Python's struct.error */
            Py_RETURN_NONE;
        if (i < KEPT)
            sizes[i] = n;
        size += n;
        headers += 3 + f->sid_len + raw_header_len(n);
        items += 1 + pieces;
    }
    if (size <= SMALL_JOIN)
        return joined(f, chunks, count, end, size + headers + (end ? 3 + f->sid_len : 0), sizes);
    return listed(f, chunks, count, end, items);
}

static int parse_args(PyObject *const *args, Py_ssize_t nargs, const char *name, Py_ssize_t want,
                      framer *f, int *end)
{
    int layout;
    if (nargs != want) {
        PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments (%zd given)", name, want, nargs);
        return -1;
    }
    if (!PyLong_CheckExact(args[0])) {
        PyErr_Format(PyExc_TypeError, "%s(): layout must be an int", name);
        return -1;
    }
    layout = PyLong_AsLong(args[0]);
    if (layout != LAYOUT_V11 && layout != LAYOUT_V12) {
        if (!PyErr_Occurred())
            PyErr_Format(PyExc_ValueError, "%s(): unknown layout", name);
        return -1;
    }
    f->layout = layout;
    if (!PyBool_Check(args[nargs - 1]) || !pack_session(args[1], f))
        return 0;
    *end = args[nargs - 1] == Py_True;
    return 1;
}

PyDoc_STRVAR(response_doc,
"response(layout, session, chunks, end) -> bytes | list | None\n\n"
"Dialect.response() of the dialect with this layout (0: v0.11, 1: v0.12), or None when the\n"
"inputs are not ones this module frames exactly as the Python reference does.");

static PyObject *response(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    framer f;
    int end, ok = parse_args(args, nargs, "response", 4, &f, &end);
    (void)self;
    if (ok < 0)
        return NULL;
    if (ok == 0)
        Py_RETURN_NONE;
    return frame(&f, args[2], end);
}

/* Framer(layout, fallback): a dialect's response(session, chunks, end) in one C call: the
 * framing above, or fallback(session, chunks, end) (the Python reference) where it declines.
 * The dialect objects hold one as their `response`, so the hot path runs no Python frame. */
typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *fallback;
    int layout;
} Framer;

static PyObject *framer_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf,
                                   PyObject *kwnames)
{
    Framer *self = (Framer *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    framer f;
    PyObject *out;
    if (kwnames == NULL && nargs == 3 && PyBool_Check(args[2])) {
        f.layout = self->layout;
        if (pack_session(args[0], &f)) {
            out = frame(&f, args[1], args[2] == Py_True);
            if (out != Py_None)
                return out;
            Py_DECREF(out);
        }
    }
    return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
}

static PyObject *framer_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    int layout;
    PyObject *fallback;
    Framer *self;
    static char *names[] = {"layout", "fallback", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iO:Framer", names, &layout, &fallback))
        return NULL;
    if (layout != LAYOUT_V11 && layout != LAYOUT_V12) {
        PyErr_SetString(PyExc_ValueError, "Framer(): unknown layout");
        return NULL;
    }
    if (!PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "Framer(): fallback must be callable");
        return NULL;
    }
    self = (Framer *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->vectorcall = framer_vectorcall;
    self->layout = layout;
    Py_INCREF(fallback);
    self->fallback = fallback;
    return (PyObject *)self;
}

static int framer_traverse(Framer *self, visitproc visit, void *arg)
{
    Py_VISIT(self->fallback);
    return 0;
}

static int framer_clear(Framer *self)
{
    Py_CLEAR(self->fallback);
    return 0;
}

static void framer_dealloc(Framer *self)
{
    PyObject_GC_UnTrack(self);
    framer_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *framer_repr(Framer *self)
{
    return PyUnicode_FromFormat("<Framer %s, falls back to %R>",
                                self->layout == LAYOUT_V11 ? "v0.11" : "v0.12", self->fallback);
}

static PyMemberDef framer_members[] = {
    {"layout", T_INT, offsetof(Framer, layout), READONLY, "0: v0.11, 1: v0.12"},
    {"fallback", T_OBJECT, offsetof(Framer, fallback), READONLY,
     "what frames the inputs the C framing declines"},
    {NULL, 0, 0, 0, NULL},
};

PyDoc_STRVAR(framer_doc,
"Framer(layout, fallback)(session, chunks, end) -> bytes | list\n\n"
"response(layout, session, chunks, end), or fallback(session, chunks, end) where that\n"
"declines: one dialect's response() as one C call.");

static PyTypeObject FramerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "cocaine_http.protocol._cframing.Framer",
    .tp_basicsize = sizeof(Framer),
    .tp_dealloc = (destructor)framer_dealloc,
    .tp_vectorcall_offset = offsetof(Framer, vectorcall),
    .tp_repr = (reprfunc)framer_repr,
    .tp_call = PyVectorcall_Call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = framer_doc,
    .tp_traverse = (traverseproc)framer_traverse,
    .tp_clear = (inquiry)framer_clear,
    .tp_members = framer_members,
    .tp_new = framer_new,
};

static PyMethodDef methods[] = {
    {"response", (PyCFunction)(void (*)(void))response, METH_FASTCALL, response_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_cframing",
    "The framing of a worker's response in C (the reference is protocol/dialect.py).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__cframing(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyType_Ready(&FramerType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&FramerType);
    if (PyModule_AddObject(m, "Framer", (PyObject *)&FramerType) < 0) {
        Py_DECREF(&FramerType);
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "SMALL_JOIN", SMALL_JOIN) < 0 ||
        PyModule_AddIntConstant(m, "V11", LAYOUT_V11) < 0 ||
        PyModule_AddIntConstant(m, "V12", LAYOUT_V12) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
