/* Strategy: the common request frame, decoded and validated in one pass. A fast path of
 * `parse_request` (cocaine_http/http/request.py), which stays the reference and the one place
 * the rules are stated: this file copies, for the frames every proxy sends, the msgpack walk of
 * `msgpack.unpackb(frame, raw=True, use_list=False)` and the checks of request.py and
 * http/validate.py (h11's token, request-target and field-value rules; Host, Content-Length,
 * Content-Type, Upgrade and the proxy headers; parse_host). It exists because the Python path
 * builds the whole msgpack object tree and then walks it again; here the frame's bytes are read
 * once and only the objects of the `Request` are made.
 *
 * The rule of a fast path: `parse(Request, frame, config)` returns a Request with the fields
 * the reference would give it (the slots are filled where their member descriptors keep
 * them, which saves the call and the twelve attribute stores), or None ("declined")
 * and the reference runs as if this did not exist, producing its own result or its own
 * BadRequestError. So every fault declines (no status is decided here, and h11's order of
 * checks is the reference's business), and so do the rare shapes whose rules are not worth a
 * second copy:
 * - a frame that is not bytes, is over LARGE_FRAME (its body becomes a view of the frame), has
 *   other than five fields, or has trailing bytes;
 * - a body over max_body_size, more than max_headers headers or over max_header_size bytes;
 * - an absolute-form target (`scheme://...`);
 * - Transfer-Encoding, a second Host or Content-Length, a Content-Length that is not plain
 *   digits (up to 18) or does not match the body, an Upgrade naming websocket;
 * - the tornado proxy's "HTTP/1.x" spelling together with a Cookie header (its cookie copies);
 * - a Host whose port part is longer than 18 octets.
 *
 * Objects are reused where that is safe (all are immutable): interned lower-case names of the
 * common headers, the method and version strings, and small caches keyed by the exact encoded
 * bytes: the header pair at each position of the last frames (a client repeats its headers in
 * the same order), the last target with its path parts, the last Host with its server tuple.
 * Cache entries are replaced only after the new objects exist, and nothing borrowed from a
 * cache is held across an allocation (an allocation may run the collector, and so Python).
 *
 * tests/test_http_crequest.py compares this against the reference on generated frames.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>
#ifdef Py_T_OBJECT_EX
#define MEMBER_OBJECT Py_T_OBJECT_EX
#define MEMBER_READONLY Py_READONLY
#else
#include <structmember.h>
#define MEMBER_OBJECT T_OBJECT_EX
#define MEMBER_READONLY READONLY
#endif

/* request.py's LARGE_FRAME (the test checks they agree). */
#define LARGE_FRAME 65536
/* More digits than this and the integer might not fit a long long: declined. */
#define MAX_DIGITS 18

/* validate.py's header kinds (COOKIE is this file's own: it only matters to the decline). */
enum { K_NONE, K_HOST, K_CONTENT_LENGTH, K_TRANSFER_ENCODING, K_CONTENT_TYPE,
       K_X_FORWARDED_FOR, K_X_FORWARDED_PROTO, K_X_REAL_IP, K_UPGRADE, K_COOKIE };

/* -- octet classes (validate.py: _TCHAR, _VCHAR, _FIELD_OCTETS) ------------------------------ */

static unsigned char is_tchar[256], is_vchar[256], is_field[256], lower[256];

static void init_tables(void)
{
    const char *t = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    for (int c = 0; c < 256; c++) {
        lower[c] = (unsigned char)((c >= 'A' && c <= 'Z') ? c + 32 : c);
        is_vchar[c] = c >= 0x21 && c <= 0x7e;
        is_field[c] = !(c == 0 || c == '\n' || c == 0x0b || c == 0x0c || c == '\r');
    }
    for (; *t; t++)
        is_tchar[(unsigned char)*t] = 1;
}

/* -- msgpack, the subset unpackb(raw=True) turns into bytes and tuples ----------------------- */

typedef struct {
    const unsigned char *p, *end;
} cursor;

static inline uint32_t be16(const unsigned char *p) { return (uint32_t)p[0] << 8 | p[1]; }
static inline uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* A raw (str) or bin string: its bytes; 0 if the next item is anything else or is cut. */
static inline int read_str(cursor *c, const unsigned char **s, Py_ssize_t *n)
{
    const unsigned char *p = c->p;
    Py_ssize_t left = c->end - p;
    size_t len, head;
    if (left < 1)
        return 0;
    unsigned char tag = p[0];
    if (tag >= 0xa0 && tag <= 0xbf) {
        len = tag & 0x1f;
        head = 1;
    } else if (tag == 0xd9 || tag == 0xc4) {
        if (left < 2)
            return 0;
        len = p[1];
        head = 2;
    } else if (tag == 0xda || tag == 0xc5) {
        if (left < 3)
            return 0;
        len = be16(p + 1);
        head = 3;
    } else if (tag == 0xdb || tag == 0xc6) {
        if (left < 5)
            return 0;
        len = be32(p + 1);
        head = 5;
    } else {
        return 0;
    }
    if ((size_t)left - head < len)
        return 0;
    *s = p + head;
    *n = (Py_ssize_t)len;
    c->p = p + head + len;
    return 1;
}

/* An array header: its length; -1 if the next item is not an array or is cut. */
static inline Py_ssize_t read_array(cursor *c)
{
    const unsigned char *p = c->p;
    Py_ssize_t left = c->end - p;
    if (left < 1)
        return -1;
    unsigned char tag = p[0];
    if (tag >= 0x90 && tag <= 0x9f) {
        c->p = p + 1;
        return tag & 0x0f;
    }
    if (tag == 0xdc && left >= 3) {
        c->p = p + 3;
        return be16(p + 1);
    }
    if (tag == 0xdd && left >= 5) {
        c->p = p + 5;
        return (Py_ssize_t)be32(p + 1);
    }
    return -1;
}

/* -- reused objects ------------------------------------------------------------------------- */

typedef struct {
    const char *text;
    int kind;
    PyObject *obj;
} known;

/* Lower-case names of common headers: the first seven are validate.py's kinds. */
static known NAMES[] = {
    {"host", K_HOST, NULL},
    {"content-length", K_CONTENT_LENGTH, NULL},
    {"transfer-encoding", K_TRANSFER_ENCODING, NULL},
    {"content-type", K_CONTENT_TYPE, NULL},
    {"x-forwarded-for", K_X_FORWARDED_FOR, NULL},
    {"x-forwarded-proto", K_X_FORWARDED_PROTO, NULL},
    {"x-real-ip", K_X_REAL_IP, NULL},
    {"upgrade", K_UPGRADE, NULL},
    {"cookie", K_COOKIE, NULL},
    {"user-agent", K_NONE, NULL},
    {"accept", K_NONE, NULL},
    {"accept-encoding", K_NONE, NULL},
    {"accept-language", K_NONE, NULL},
    {"connection", K_NONE, NULL},
    {"referer", K_NONE, NULL},
    {"origin", K_NONE, NULL},
    {"authorization", K_NONE, NULL},
    {"cache-control", K_NONE, NULL},
    {"pragma", K_NONE, NULL},
    {"if-none-match", K_NONE, NULL},
    {"if-modified-since", K_NONE, NULL},
    {"x-request-id", K_NONE, NULL},
    {"expect", K_NONE, NULL},
    {"keep-alive", K_NONE, NULL},
    {"dnt", K_NONE, NULL},
    {"sec-fetch-site", K_NONE, NULL},
    {"sec-fetch-mode", K_NONE, NULL},
    {"sec-fetch-dest", K_NONE, NULL},
    {"upgrade-insecure-requests", K_NONE, NULL},
};
#define N_NAMES (sizeof(NAMES) / sizeof(NAMES[0]))

/* Method spellings as str (validate.method decodes the token as ASCII). */
static known METHODS[] = {
    {"GET", 0, NULL},    {"POST", 0, NULL},    {"HEAD", 0, NULL},
    {"PUT", 0, NULL},    {"DELETE", 0, NULL},  {"OPTIONS", 0, NULL},
    {"PATCH", 0, NULL},
};
#define N_METHODS (sizeof(METHODS) / sizeof(METHODS[0]))

static PyObject *s_v10, *s_v11, *s_http, *s_https, *s_slash, *b_slash, *b_empty, *zero;
static PyObject *a_max_body, *a_max_headers, *a_max_header_size, *a_proxy;

/* The known entry spelled exactly `s[:n]` (already lower-cased for names). */
static known *find(known *table, size_t count, const unsigned char *s, Py_ssize_t n)
{
    for (size_t i = 0; i < count; i++) {
        const char *t = table[i].text;
        if ((unsigned char)t[0] == s[0] && (Py_ssize_t)strlen(t) == n && !memcmp(t, s, n))
            return &table[i];
    }
    return NULL;
}

/* Header pairs by position: the encoded bytes of the pair, and its validated result. */
#define PAIR_SLOTS 32
#define PAIR_RAW_MAX 600  /* validate.CACHE_VALUE_MAX (512) plus a name */
typedef struct {
    Py_ssize_t len;
    PyObject *pair;  /* (lower_name, value), or NULL while empty */
    int kind;
    Py_ssize_t size; /* len(name) + len(value) */
    unsigned char raw[PAIR_RAW_MAX];
} pair_slot;
static pair_slot pairs[PAIR_SLOTS];

/* The last target and its (target, raw_path, query_string, path). */
#define TARGET_RAW_MAX 256
static struct {
    Py_ssize_t len;
    PyObject *parts; /* tuple of four, or NULL */
    unsigned char raw[TARGET_RAW_MAX];
} last_target;

/* The last Host value (with the scheme it was read for) and its server tuple. */
static struct {
    Py_ssize_t len;
    int https;
    PyObject *server;
    unsigned char raw[TARGET_RAW_MAX];
} last_host;

/* The limits of the last HttpConfig seen (frozen: the same object has the same values). */
static struct {
    PyObject *config;
    long long max_body, max_headers, max_header_size;
    int proxy;
} limits;

/* Request's fields, in the order of its __slots__, and where the last class seen keeps them. */
#define N_FIELDS 12
static const char *FIELDS[N_FIELDS] = {
    "method", "http_version", "target", "raw_path", "query_string", "path", "headers", "body",
    "content_type", "scheme", "client", "server",
};
static struct {
    PyObject *cls;
    Py_ssize_t offsets[N_FIELDS];
} shape;

static void set_slot(PyObject **slot, PyObject *value)
{
    PyObject *old = *slot;
    *slot = value;
    Py_XDECREF(old);
}

/* -- the pieces of a Request ---------------------------------------------------------------- */

/* An int attribute of the config clamped to long long; 0 and an error set if it is none. */
static int read_limit(PyObject *config, PyObject *name, long long *out)
{
    PyObject *v = PyObject_GetAttr(config, name);
    if (v == NULL)
        return 0;
    int ok = PyLong_CheckExact(v);
    if (ok) {
        int overflow;
        *out = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (overflow)
            *out = overflow > 0 ? LLONG_MAX : LLONG_MIN;
    } else {
        PyErr_SetString(PyExc_TypeError, "limit is not an int");
    }
    Py_DECREF(v);
    return ok;
}

/* Load the limits of `config`; 0 (no error set) if they cannot be read: decline. */
static int load_limits(PyObject *config)
{
    if (config == limits.config)
        return 1;
    long long body, headers, size;
    int proxy = -1;
    if (read_limit(config, a_max_body, &body) && read_limit(config, a_max_headers, &headers)
        && read_limit(config, a_max_header_size, &size)) {
        PyObject *v = PyObject_GetAttr(config, a_proxy);
        if (v != NULL) {
            proxy = PyObject_IsTrue(v);
            Py_DECREF(v);
        }
    }
    if (proxy < 0) {
        PyErr_Clear();
        return 0;
    }
    limits.max_body = body;
    limits.max_headers = headers;
    limits.max_header_size = size;
    limits.proxy = proxy;
    Py_INCREF(config);
    set_slot(&limits.config, config);
    return 1;
}

/* The slot offsets of `cls`, a class with a writable __slots__ member for each field (what
 * `Request()` and twelve attribute stores would fill); 0 (no error set) if it is not one. */
static int load_shape(PyObject *cls, Py_ssize_t *offsets)
{
    if (cls != shape.cls) {
        if (!PyType_Check(cls) || ((PyTypeObject *)cls)->tp_itemsize != 0)
            return 0;
        Py_ssize_t size = ((PyTypeObject *)cls)->tp_basicsize, found[N_FIELDS];
        for (int i = 0; i < N_FIELDS; i++) {
            PyObject *d = PyObject_GetAttrString(cls, FIELDS[i]);
            if (d == NULL) {
                PyErr_Clear();
                return 0;
            }
            PyMemberDef *m = Py_TYPE(d) == &PyMemberDescr_Type
                                 ? ((PyMemberDescrObject *)d)->d_member : NULL;
            int ok = m != NULL && m->type == MEMBER_OBJECT && !(m->flags & MEMBER_READONLY)
                     && m->offset >= (Py_ssize_t)sizeof(PyObject)
                     && m->offset + (Py_ssize_t)sizeof(PyObject *) <= size;
            found[i] = ok ? m->offset : 0;
            Py_DECREF(d);
            if (!ok)
                return 0;
        }
        memcpy(shape.offsets, found, sizeof(found));
        Py_INCREF(cls);
        set_slot(&shape.cls, cls);
    }
    memcpy(offsets, shape.offsets, sizeof(shape.offsets));
    return 1;
}

/* An ASCII str of `s[:n]` (validated octets only). */
static PyObject *ascii_str(const unsigned char *s, Py_ssize_t n)
{
    PyObject *u = PyUnicode_New(n, 127);
    if (u != NULL)
        memcpy(PyUnicode_1BYTE_DATA(u), s, n);
    return u;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = lower[c];
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* urllib.parse.unquote of an ASCII path: %XX escapes (either case) become octets, any other
 * '%' stays, and the octets are decoded as UTF-8 with replacement. */
static PyObject *unquote(const unsigned char *s, Py_ssize_t n)
{
    unsigned char stack[256];
    unsigned char *buf = n <= (Py_ssize_t)sizeof(stack) ? stack : PyMem_Malloc(n);
    if (buf == NULL)
        return PyErr_NoMemory();
    Py_ssize_t o = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int hi, lo;
        if (s[i] == '%' && i + 2 < n && (hi = hexval(s[i + 1])) >= 0
            && (lo = hexval(s[i + 2])) >= 0) {
            buf[o++] = (unsigned char)(hi << 4 | lo);
            i += 2;
        } else {
            buf[o++] = s[i];
        }
    }
    PyObject *u = PyUnicode_DecodeUTF8((const char *)buf, o, "replace");
    if (buf != stack)
        PyMem_Free(buf);
    return u;
}

/* (target, raw_path, query_string, path) as request.py's _split_target makes them, except
 * for its absolute-form branch; Py_None (borrowed) to decline, NULL on error. */
static PyObject *split_target(const unsigned char *u, Py_ssize_t n)
{
    if (n <= TARGET_RAW_MAX && last_target.parts != NULL && last_target.len == n
        && !memcmp(last_target.raw, u, n)) {
        Py_INCREF(last_target.parts);
        return last_target.parts;
    }
    if (n > 0 && u[0] != '/') {  /* "://" at 1..15: the absolute form, the reference's own */
        for (Py_ssize_t i = 1; i < 16 && i + 3 <= n; i++)
            if (u[i] == ':' && u[i + 1] == '/' && u[i + 2] == '/')
                return Py_None;
    }
    Py_ssize_t q = n, pct = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = u[i];
        if (!is_vchar[c])
            return Py_None;
        if (c == '?' && q == n)
            q = i;
        else if (c == '%' && q == n)
            pct = 1;
    }
    PyObject *target, *raw_path, *query, *path;
    target = PyBytes_FromStringAndSize((const char *)u, n);
    if (target == NULL)
        return NULL;
    if (q == 0) {  /* "" */
        raw_path = b_slash;
        Py_INCREF(raw_path);
    } else if (q == n) {
        raw_path = target;  /* bytes.partition gives the object itself */
        Py_INCREF(raw_path);
    } else {
        raw_path = PyBytes_FromStringAndSize((const char *)u, q);
    }
    query = q + 1 >= n ? (Py_INCREF(b_empty), b_empty)
                       : PyBytes_FromStringAndSize((const char *)u + q + 1, n - q - 1);
    if (q == 0 || (q == 1 && u[0] == '/'))
        path = (Py_INCREF(s_slash), s_slash);
    else
        path = pct ? unquote(u, q) : ascii_str(u, q);
    PyObject *parts = NULL;
    if (raw_path != NULL && query != NULL && path != NULL) {
        parts = PyTuple_Pack(4, target, raw_path, query, path);
    }
    Py_DECREF(target);
    Py_XDECREF(raw_path);
    Py_XDECREF(query);
    Py_XDECREF(path);
    if (parts != NULL && n <= TARGET_RAW_MAX) {
        memcpy(last_target.raw, u, n);
        last_target.len = n;
        Py_INCREF(parts);
        set_slot(&last_target.parts, parts);
    }
    return parts;
}

/* A 2-tuple of two new references, which it takes over; NULL (both released) when either
 * is NULL or the tuple cannot be made. */
static PyObject *pair_of(PyObject *first, PyObject *second)
{
    PyObject *pair = first != NULL && second != NULL ? PyTuple_New(2) : NULL;
    if (pair == NULL) {
        Py_XDECREF(first);
        Py_XDECREF(second);
        return NULL;
    }
    PyTuple_SET_ITEM(pair, 0, first);
    PyTuple_SET_ITEM(pair, 1, second);
    return pair;
}

/* A run of ASCII digits as a long long; -1 if it is empty, too long or has another octet. */
static long long digits(const unsigned char *s, Py_ssize_t n)
{
    if (n < 1 || n > MAX_DIGITS)
        return -1;
    long long v = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* request.py's parse_host: (name, port) from a Host value; Py_None (borrowed) to decline. */
static PyObject *parse_host(const unsigned char *h, Py_ssize_t n, int https)
{
    if (last_host.server != NULL && last_host.len == n && last_host.https == https
        && !memcmp(last_host.raw, h, n)) {
        Py_INCREF(last_host.server);
        return last_host.server;
    }
    Py_ssize_t name_start = 0, name_end = n, port_start = n;
    long long port = https ? 443 : 80;
    if (n > 0 && h[0] == '[') {
        const unsigned char *close = memchr(h, ']', n);
        if (close != NULL) {
            Py_ssize_t end = close - h;
            name_start = 1;
            name_end = end;
            if (end + 1 < n && h[end + 1] == ':')
                port_start = end + 2;
        }
    } else {
        const unsigned char *colon = NULL;
        for (Py_ssize_t i = n; i-- > 0;)
            if (h[i] == ':') {
                colon = h + i;
                break;
            }
        if (colon != NULL && memchr(h, ':', colon - h) == NULL)
            port_start = colon - h + 1;
    }
    if (port_start <= n) {
        long long v = digits(h + port_start, n - port_start);
        if (v < 0) {
            if (n - port_start > MAX_DIGITS)
                return Py_None;  /* maybe digits, too many for here */
        } else {
            port = v;
            if (h[0] != '[')
                name_end = port_start - 1;
        }
    }
    PyObject *server = pair_of(PyUnicode_DecodeLatin1((const char *)h + name_start,
                                                      name_end - name_start, NULL),
                               PyLong_FromLongLong(port));
    if (server == NULL)
        return NULL;
    if (n <= TARGET_RAW_MAX) {
        memcpy(last_host.raw, h, n);
        last_host.len = n;
        last_host.https = https;
        Py_INCREF(server);
        set_slot(&last_host.server, server);
    }
    return server;
}

static void strip(const unsigned char **s, Py_ssize_t *n)
{
    const unsigned char *a = *s, *b = *s + *n;
    while (a < b && Py_ISSPACE(*a))
        a++;
    while (b > a && Py_ISSPACE(b[-1]))
        b--;
    *s = a;
    *n = b - a;
}

/* The stripped last comma-separated item of a header value. */
static void last_item(PyObject *value, const unsigned char **s, Py_ssize_t *n)
{
    const unsigned char *v = (const unsigned char *)PyBytes_AS_STRING(value);
    Py_ssize_t len = PyBytes_GET_SIZE(value), i = len;
    while (i > 0 && v[i - 1] != ',')
        i--;
    *s = v + i;
    *n = len - i;
    strip(s, n);
}

/* Whether `s[:n]` contains "websocket" in any case (request.py: in value.lower()). */
static int has_websocket(const unsigned char *s, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i + 9 <= n; i++) {
        int j = 0;
        while (j < 9 && lower[s[i + j]] == (unsigned char)"websocket"[j])
            j++;
        if (j == 9)
            return 1;
    }
    return 0;
}

/* One header pair, validated (validate.header): the (lower_name, value) tuple, or Py_None
 * (borrowed) to decline, NULL on error. */
static PyObject *make_pair(const unsigned char *name, Py_ssize_t nn, const unsigned char *value,
                           Py_ssize_t vn, int *kind)
{
    unsigned char buf[64];
    if (nn < 1)
        return Py_None;
    if (vn > 0 && (value[0] == ' ' || value[0] == '\t' || value[vn - 1] == ' '
                   || value[vn - 1] == '\t'))
        return Py_None;
    for (Py_ssize_t i = 0; i < vn; i++)
        if (!is_field[value[i]])
            return Py_None;
    PyObject *lname;
    *kind = K_NONE;
    if (nn <= (Py_ssize_t)sizeof(buf)) {
        for (Py_ssize_t i = 0; i < nn; i++) {
            if (!is_tchar[name[i]])
                return Py_None;
            buf[i] = lower[name[i]];
        }
        known *k = find(NAMES, N_NAMES, buf, nn);
        if (k != NULL) {
            *kind = k->kind;
            lname = k->obj;
            Py_INCREF(lname);
        } else {
            lname = PyBytes_FromStringAndSize((const char *)buf, nn);
        }
    } else {
        for (Py_ssize_t i = 0; i < nn; i++)
            if (!is_tchar[name[i]])
                return Py_None;
        lname = PyBytes_FromStringAndSize(NULL, nn);
        if (lname != NULL) {
            unsigned char *d = (unsigned char *)PyBytes_AS_STRING(lname);
            for (Py_ssize_t i = 0; i < nn; i++)
                d[i] = lower[name[i]];
        }
    }
    if (lname == NULL)
        return NULL;
    return pair_of(lname, PyBytes_FromStringAndSize((const char *)value, vn));
}

/* What the header loop gathers for the rest of the request. */
typedef struct {
    PyObject *host, *content_type, *forwarded_for, *forwarded_proto, *real_ip; /* borrowed */
    long long declared;  /* Content-Length, -1 when absent */
    int cookie;
} gathered;

/* The headers list (validate.py's rules, request.py's _read_headers); Py_None (borrowed) to
 * decline, NULL on error. */
static PyObject *read_headers(cursor *c, Py_ssize_t count, long long max_size, gathered *g)
{
    PyObject *list = PyList_New(count);
    if (list == NULL)
        return NULL;
    long long size = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        const unsigned char *start = c->p, *name, *value;
        Py_ssize_t nn, vn;
        if (read_array(c) != 2 || !read_str(c, &name, &nn) || !read_str(c, &value, &vn))
            goto decline;
        Py_ssize_t raw = c->p - start;
        PyObject *pair;
        int kind;
        pair_slot *slot = i < PAIR_SLOTS ? &pairs[i] : NULL;
        if (slot != NULL && slot->pair != NULL && slot->len == raw
            && !memcmp(slot->raw, start, raw)) {
            pair = slot->pair;
            Py_INCREF(pair);
            kind = slot->kind;
        } else {
            pair = make_pair(name, nn, value, vn, &kind);
            if (pair == NULL) {
                Py_DECREF(list);
                return NULL;
            }
            if (pair == Py_None)
                goto decline;
            if (slot != NULL && raw <= PAIR_RAW_MAX) {
                memcpy(slot->raw, start, raw);
                slot->len = raw;
                slot->kind = kind;
                Py_INCREF(pair);
                set_slot(&slot->pair, pair);
            }
        }
        PyList_SET_ITEM(list, i, pair);
        size += nn + vn;
        if (kind == K_NONE)
            continue;
        PyObject *v = PyTuple_GET_ITEM(pair, 1);
        switch (kind) {
        case K_HOST:
            if (g->host != NULL)
                goto decline;
            g->host = v;
            break;
        case K_CONTENT_LENGTH:
            if (g->declared >= 0)
                goto decline;
            g->declared = digits((const unsigned char *)PyBytes_AS_STRING(v),
                                 PyBytes_GET_SIZE(v));
            if (g->declared < 0)
                goto decline;
            break;
        case K_TRANSFER_ENCODING:
            goto decline;
        case K_CONTENT_TYPE:
            if (g->content_type == NULL)
                g->content_type = v;
            break;
        case K_X_FORWARDED_FOR:
            g->forwarded_for = v;
            break;
        case K_X_FORWARDED_PROTO:
            g->forwarded_proto = v;
            break;
        case K_X_REAL_IP:
            g->real_ip = v;
            break;
        case K_UPGRADE:
            if (has_websocket((const unsigned char *)PyBytes_AS_STRING(v), PyBytes_GET_SIZE(v)))
                goto decline;
            break;
        case K_COOKIE:
            g->cookie = 1;
            break;
        }
    }
    if (size > max_size)
        goto decline;
    return list;
decline:
    Py_DECREF(list);
    return Py_None;
}

/* scheme, client and server from the gathered headers (request.py's _apply_proxy and
 * parse_host); 0 to decline, -1 on error (the outputs are set only on 1). */
static int addresses(const gathered *g, int proxy, PyObject **scheme, PyObject **client,
                     PyObject **server)
{
    int https = 0;
    const unsigned char *s = NULL;
    Py_ssize_t n = 0;
    if (proxy && g->forwarded_proto != NULL) {
        last_item(g->forwarded_proto, &s, &n);
        https = (n == 5 && lower[s[0]] == 'h' && lower[s[1]] == 't' && lower[s[2]] == 't'
                 && lower[s[3]] == 'p' && lower[s[4]] == 's')
                || (n == 3 && lower[s[0]] == 'w' && lower[s[1]] == 's' && lower[s[2]] == 's');
    }
    PyObject *srv = Py_None;
    if (g->host != NULL) {
        srv = parse_host((const unsigned char *)PyBytes_AS_STRING(g->host),
                         PyBytes_GET_SIZE(g->host), https);
        if (srv == NULL)
            return -1;
        if (srv == Py_None)
            return 0;
    } else {
        Py_INCREF(srv);
    }
    PyObject *cli = Py_None;
    n = 0;
    if (proxy && g->real_ip != NULL) {
        s = (const unsigned char *)PyBytes_AS_STRING(g->real_ip);
        n = PyBytes_GET_SIZE(g->real_ip);
        strip(&s, &n);
    }
    if (proxy && n == 0 && g->forwarded_for != NULL)
        last_item(g->forwarded_for, &s, &n);
    if (n > 0) {
        cli = pair_of(PyUnicode_DecodeLatin1((const char *)s, n, NULL), Py_NewRef(zero));
        if (cli == NULL) {
            Py_DECREF(srv);
            return -1;
        }
    } else {
        Py_INCREF(cli);
    }
    *scheme = https ? s_https : s_http;
    Py_INCREF(*scheme);
    *client = cli;
    *server = srv;
    return 1;
}

/* -- the entry point ------------------------------------------------------------------------ */

#define DECLINE(x) do { result = (x); goto done; } while (0)

static PyObject *parse(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "parse(cls, frame, config) takes three arguments");
        return NULL;
    }
    PyObject *frame = args[1];
    Py_ssize_t offsets[N_FIELDS];
    if (!PyBytes_CheckExact(frame) || PyBytes_GET_SIZE(frame) > LARGE_FRAME
        || !load_shape(args[0], offsets) || !load_limits(args[2]))
        Py_RETURN_NONE;
    PyTypeObject *cls = (PyTypeObject *)args[0];
    cursor c = {(const unsigned char *)PyBytes_AS_STRING(frame), NULL};
    c.end = c.p + PyBytes_GET_SIZE(frame);
    const unsigned char *method, *uri, *version, *body;
    Py_ssize_t mn, un, vn, bn;
    if (read_array(&c) != 5 || !read_str(&c, &method, &mn) || !read_str(&c, &uri, &un)
        || !read_str(&c, &version, &vn))
        Py_RETURN_NONE;
    PyObject *http_version;
    int tornado = 0;
    if (vn == 8 && !memcmp(version, "HTTP/", 5)) {
        tornado = 1;
        version += 5;
        vn = 3;
    }
    if (vn != 3 || version[0] != '1' || version[1] != '.')
        Py_RETURN_NONE;
    if (version[2] == '1')
        http_version = s_v11;
    else if (version[2] == '0')
        http_version = s_v10;
    else
        Py_RETURN_NONE;
    /* a copy: a collection during an allocation may run a parse with another config */
    long long max_body = limits.max_body, max_header_size = limits.max_header_size;
    int proxy = limits.proxy;
    Py_ssize_t count = read_array(&c);
    /* a pair takes three bytes at least: a count the frame cannot hold allocates nothing */
    if (count < 0 || count > limits.max_headers || count > (c.end - c.p) / 3)
        Py_RETURN_NONE;

    PyObject *result = Py_None, *headers = NULL, *target = NULL, *method_str = NULL;
    PyObject *body_obj = NULL, *scheme = NULL, *client = NULL, *server = NULL;
    gathered g = {NULL, NULL, NULL, NULL, NULL, -1, 0};
    headers = read_headers(&c, count, max_header_size, &g);
    if (headers == NULL || headers == Py_None) {
        PyObject *r = headers == NULL ? NULL : Py_None;
        headers = NULL;
        DECLINE(r);
    }
    if (!read_str(&c, &body, &bn) || c.p != c.end || bn > max_body
        || (g.declared >= 0 && g.declared != bn) || (tornado && g.cookie))
        DECLINE(Py_None);
    if (mn < 1)
        DECLINE(Py_None);
    for (Py_ssize_t i = 0; i < mn; i++)
        if (!is_tchar[method[i]])
            DECLINE(Py_None);
    known *m = find(METHODS, N_METHODS, method, mn);
    if (m != NULL) {
        method_str = m->obj;
        Py_INCREF(method_str);
    } else if ((method_str = ascii_str(method, mn)) == NULL) {
        DECLINE(NULL);
    }
    target = split_target(uri, un);
    if (target == NULL || target == Py_None) {
        PyObject *r = target == NULL ? NULL : Py_None;
        target = NULL;
        DECLINE(r);
    }
    int got = addresses(&g, proxy, &scheme, &client, &server);
    if (got <= 0) {
        scheme = client = server = NULL;
        DECLINE(got < 0 ? NULL : Py_None);
    }
    body_obj = PyBytes_FromStringAndSize((const char *)body, bn);
    if (body_obj == NULL)
        DECLINE(NULL);
    Py_INCREF(cls);  /* tp_alloc may run Python, which may drop the last other reference */
    result = cls->tp_alloc(cls, 0);
    Py_DECREF(cls);
    if (result == NULL)
        DECLINE(NULL);
    PyObject *content_type = g.content_type != NULL ? g.content_type : Py_None;
    Py_INCREF(http_version);
    Py_INCREF(content_type);
    PyObject *items[N_FIELDS] = {
        method_str, http_version, PyTuple_GET_ITEM(target, 0), PyTuple_GET_ITEM(target, 1),
        PyTuple_GET_ITEM(target, 2), PyTuple_GET_ITEM(target, 3), headers, body_obj,
        content_type, scheme, client, server,
    };
    for (int i = 2; i < 6; i++)
        Py_INCREF(items[i]);
    for (int i = 0; i < N_FIELDS; i++)  /* what the slots' member descriptors do */
        *(PyObject **)((char *)result + offsets[i]) = items[i];
    Py_DECREF(target);
    return result;
done:
    Py_XDECREF(headers);
    Py_XDECREF(target);
    Py_XDECREF(method_str);
    Py_XDECREF(body_obj);
    Py_XDECREF(scheme);
    Py_XDECREF(client);
    Py_XDECREF(server);
    Py_XINCREF(result);
    return result;
}

static PyMethodDef methods[] = {
    {"parse", (PyCFunction)(void (*)(void))parse, METH_FASTCALL,
     "parse(cls, frame, config) -> a cls (Request) with its fields set, or None to let the "
     "Python reference parse the frame."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_crequest",
    "The common request frame parsed in one pass (fast path of http.request.parse_request).",
    -1, methods, NULL, NULL, NULL, NULL,
};

static int intern_all(known *table, size_t count, int as_bytes)
{
    for (size_t i = 0; i < count; i++) {
        table[i].obj = as_bytes ? PyBytes_FromString(table[i].text)
                                : PyUnicode_InternFromString(table[i].text);
        if (table[i].obj == NULL)
            return -1;
    }
    return 0;
}

PyMODINIT_FUNC PyInit__crequest(void)
{
    init_tables();
    if (intern_all(NAMES, N_NAMES, 1) < 0 || intern_all(METHODS, N_METHODS, 0) < 0)
        return NULL;
    if (!(s_v10 = PyUnicode_InternFromString("1.0")) || !(s_v11 = PyUnicode_InternFromString("1.1"))
        || !(s_http = PyUnicode_InternFromString("http"))
        || !(s_https = PyUnicode_InternFromString("https"))
        || !(s_slash = PyUnicode_InternFromString("/")) || !(b_slash = PyBytes_FromString("/"))
        || !(b_empty = PyBytes_FromString("")) || !(zero = PyLong_FromLong(0))
        || !(a_max_body = PyUnicode_InternFromString("max_body_size"))
        || !(a_max_headers = PyUnicode_InternFromString("max_headers"))
        || !(a_max_header_size = PyUnicode_InternFromString("max_header_size"))
        || !(a_proxy = PyUnicode_InternFromString("proxy_headers")))
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "LARGE_FRAME", LARGE_FRAME) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
