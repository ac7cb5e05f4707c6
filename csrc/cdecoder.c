/* Strategy: a resumable msgpack state machine that validates Cocaine frames and describes each
 * complete message as one fixed-width record of int64 values, so that Python builds the
 * message from spans of its own buffer with one copy per string.
 *
 * Invariants:
 * - No globals, no Python.h; all state lives in the `cdec` the caller allocates and frees.
 * - Every read is preceded by a check that the bytes are inside [buf, buf + len). A header is
 *   consumed only when all of it is present; a raw or ext payload is skipped in O(1) (its end
 *   offset is stored and the parser waits until the buffer reaches it), so a big message that
 *   arrives in many reads is parsed once, not once per read.
 * - Growth is bounded: the container stack is fixed (HARD_DEPTH + 1 frames, msgpack's own
 *   limit), and a partial message longer than max_size is an error, so the caller never has
 *   to keep more than max_size bytes plus one read.
 * - Errors are decided in the order stated at the top of cocaine_http/codec/_python.py (the
 *   specification): msgpack-level errors as soon as the offending bytes are parsed (map keys
 *   when their map completes), then the size of a partial message, then, for a complete one,
 *   a decoded timestamp, the size, the depth, and the frame layout.
 * - Offsets inside the state are relative to the start of the current message, so Python may
 *   drop the bytes of finished messages between calls.
 */
#include <stdlib.h>
#include <string.h>

#include "cdecoder.h"

#define HARD_DEPTH 1024            /* msgpack-python's parser stack */
#define MAX_ARRAY_LEN 2147483647u  /* msgpack-python's max_array_len for our buffer size */
#define MAX_MAP_LEN 1073741823u    /* ... and max_map_len */
#define MAX_NANOS 999999999u

enum kind { K_INT, K_UINT_BIG, K_OTHER, K_RAW, K_ARRAY, K_MAP };
enum step { S_DONE, S_NEED, S_ERROR };

typedef struct {
    uint64_t remaining; /* items still to come; a map counts keys and values */
    uint64_t count;     /* items announced by the header */
    uint8_t is_map;
    uint8_t bad_key;    /* some key of this map was an array or a map */
} frame;

typedef struct {       /* what one element of the frame or of its argument array was */
    uint8_t kind;
    int64_t value;     /* K_INT */
    int64_t a, b;      /* K_RAW payload span; any kind: start and end of the element */
} element;

struct cdec {
    /* output arrays, owned by the caller (cdec_bind) */
    int64_t *res, cap;
    uint8_t *canon;
    int64_t canon_cap;
    int64_t *fix, fix_cap;
    int v12;
    int64_t max_size;
    int max_depth;
    int error;          /* sticky: once set every call fails the same way */
    int error_status;
    /* current message, offsets relative to its first byte */
    int64_t pos;        /* next header to parse */
    int64_t skip_end;   /* > 0 while waiting for the end of a raw or ext payload */
    int64_t skip_start; /* start of that payload */
    int64_t skip_hdr;   /* start of that object's header */
    int skip_ext;       /* 0: raw; 1: ext (its type is skip_type) */
    int skip_type;
    int top;            /* open containers */
    int depth;          /* deepest nesting seen */
    int timestamp;      /* a timestamp ext decoded (msgpack turns it into an object) */
    int root_array;     /* the message is an array (set when its header is read) */
    int args_open;      /* 1: stack[1] is the frame's argument array; 2: it has closed */
    uint64_t arg_count; /* items in the argument array */
    element el[4];      /* frame elements 0..3 */
    element arg[2];     /* argument elements 0..1 */
    frame stack[HARD_DEPTH + 1];
};

static uint64_t be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

static void reset_message(cdec *d)
{
    d->pos = 0;
    d->skip_end = 0;
    d->top = 0;
    d->depth = 0;
    d->timestamp = 0;
    d->root_array = 0;
    d->args_open = 0;
    memset(d->el, 0, sizeof(d->el));
    memset(d->arg, 0, sizeof(d->arg));
    for (int i = 0; i < 4; i++)
        d->el[i].kind = K_OTHER;
    d->arg[0].kind = d->arg[1].kind = K_OTHER;
    d->arg_count = 0;
}

cdec *cdec_new(int v12, int64_t max_size, int max_depth)
{
    cdec *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return NULL;
    d->v12 = v12;
    d->max_size = max_size;
    d->max_depth = max_depth;
    reset_message(d);
    return d;
}

void cdec_free(cdec *d)
{
    free(d);
}

int cdec_error(const cdec *d)
{
    return d->error;
}

static enum step fail(cdec *d, int status, int reason)
{
    d->error_status = status;
    d->error = reason;
    return S_ERROR;
}

/* Index of the next item of the container on top of the stack. */
static uint64_t next_index(const frame *f)
{
    return f->count - (f->is_map ? f->remaining / 2 : f->remaining);
}

/* Note an element of the frame (level 1) or of its argument array (level 2). */
static void track(cdec *d, const element *e)
{
    if (d->top == 1 && d->root_array) {
        uint64_t i = next_index(&d->stack[0]);
        if (i < 4) {
            d->el[i].kind = e->kind;
            d->el[i].value = e->value;
            d->el[i].b = e->b;
        }
    } else if (d->top == 2 && d->args_open == 1) {
        uint64_t i = next_index(&d->stack[1]);
        if (i < 2)
            d->arg[i] = *e;
    }
}

/* A value is complete at the current level: record it, count it, close finished containers.
 * Returns S_DONE when the whole message is complete. */
static enum step value_done(cdec *d, element *e)
{
    for (;;) {
        if (d->top == 0)
            return S_DONE;
        track(d, e);
        frame *f = &d->stack[d->top - 1];
        if (f->is_map && f->remaining % 2 == 0 && (e->kind == K_ARRAY || e->kind == K_MAP))
            f->bad_key = 1;
        if (--f->remaining > 0)
            return S_NEED;
        /* the container on top is complete */
        if (f->bad_key)
            return fail(d, CDEC_FRAME, CDEC_E_KEY);
        e->kind = f->is_map ? K_MAP : K_ARRAY;
        if (d->top == 2 && d->args_open == 1)
            d->args_open = 2; /* closed */
        d->top--;
    }
}

/* Start a container of `n` items whose header began at `hp`. */
static enum step open_container(cdec *d, int is_map, uint64_t n, int64_t hp, int64_t end)
{
    if (d->top >= HARD_DEPTH)
        return fail(d, CDEC_LIMIT, CDEC_E_NESTING);
    if (n > (is_map ? MAX_MAP_LEN : MAX_ARRAY_LEN))
        return fail(d, CDEC_FRAME, CDEC_E_COUNT);
    if (d->top + 1 > d->depth)
        d->depth = d->top + 1;
    if (d->top == 0)
        d->root_array = !is_map;
    int is_args = d->top == 1 && d->root_array && next_index(&d->stack[0]) == 2 && !is_map;
    if (d->top == 1 && d->root_array && next_index(&d->stack[0]) == 2)
        d->el[2].a = hp;
    if (is_args)
        d->arg_count = n;
    if (n == 0) {
        element e = {is_map ? K_MAP : K_ARRAY, 0, hp, end};
        if (is_args)
            d->args_open = 2;
        return value_done(d, &e);
    }
    frame *f = &d->stack[d->top++];
    f->count = n;
    f->remaining = is_map ? 2 * n : n;
    f->is_map = (uint8_t)is_map;
    f->bad_key = 0;
    if (is_args)
        d->args_open = 1;
    return S_NEED;
}

/* A raw or ext payload [start, end) has fully arrived. */
static enum step payload_done(cdec *d, const uint8_t *m, int64_t hp, int64_t start, int64_t end,
                              int is_ext, int type)
{
    if (is_ext) {
        int64_t n = end - start;
        const uint8_t *p = m + start;
        if (type != -1)
            return fail(d, CDEC_FRAME, CDEC_E_EXT);
        if (n == 8 && (be(p, 8) >> 34) > MAX_NANOS)
            return fail(d, CDEC_FRAME, CDEC_E_TIMESTAMP);
        if (n == 12 && be(p, 4) > MAX_NANOS)
            return fail(d, CDEC_FRAME, CDEC_E_TIMESTAMP);
        if (n != 4 && n != 8 && n != 12)
            return fail(d, CDEC_FRAME, CDEC_E_TIMESTAMP);
        d->timestamp = 1;
        element e = {K_OTHER, 0, hp, end};
        return value_done(d, &e);
    }
    element e = {K_RAW, 0, start, end};
    return value_done(d, &e);
}

/* Size of the header starting with byte c beyond the first byte, or -1 for 0xc1. */
static int header_extra(uint8_t c)
{
    if (c <= 0xbf || c >= 0xe0)
        return 0;
    static const signed char extra[32] = {
        0, -1, 0, 0, 1, 2, 4, 2, 3, 5, 4, 8, 1, 2, 4, 8, /* c0..cf */
        1, 2, 4, 8, 1, 1, 1, 1, 1, 1, 2, 4, 2, 4, 2, 4,  /* d0..df */
    };
    return extra[c - 0xc0];
}

/* Begin skipping a payload of `len` bytes at `start`; completes it at once if present. */
static enum step payload(cdec *d, const uint8_t *m, int64_t n, int64_t hp, int64_t start,
                         uint64_t len, int is_ext, int type)
{
    if ((uint64_t)(n - start) >= len) {
        d->pos = start + (int64_t)len;
        return payload_done(d, m, hp, start, start + (int64_t)len, is_ext, type);
    }
    d->skip_hdr = hp;
    d->skip_start = start;
    d->skip_end = start + (int64_t)len; /* len < 2**32, so no overflow */
    d->skip_ext = is_ext;
    d->skip_type = type;
    d->pos = n;
    return S_NEED;
}

/* Parse one object header at d->pos (all of it is present). */
static enum step object(cdec *d, const uint8_t *m, int64_t n, int64_t hp, int extra)
{
    const uint8_t *p = m + hp;
    uint8_t c = p[0];
    int64_t end = hp + 1 + extra;
    element e = {K_OTHER, 0, hp, end};
    d->pos = end;
    if (c <= 0x7f || c >= 0xe0) {
        e.kind = K_INT;
        e.value = c <= 0x7f ? c : (int64_t)(int8_t)c;
    } else if (c <= 0x8f) {
        return open_container(d, 1, c & 0x0f, hp, end);
    } else if (c <= 0x9f) {
        return open_container(d, 0, c & 0x0f, hp, end);
    } else if (c <= 0xbf) {
        return payload(d, m, n, hp, end, c & 0x1f, 0, 0);
    } else if (c >= 0xcc && c <= 0xcf) {
        uint64_t v = be(p + 1, extra);
        e.kind = v > INT64_MAX ? K_UINT_BIG : K_INT;
        e.value = (int64_t)v;
    } else if (c >= 0xd0 && c <= 0xd3) {
        uint64_t v = be(p + 1, extra);
        int bits = 8 * extra;
        if (bits < 64 && (v >> (bits - 1)) & 1)
            v |= ~(uint64_t)0 << bits; /* sign-extend */
        e.kind = K_INT;
        e.value = (int64_t)v;
    } else if (c == 0xc4 || c == 0xc5 || c == 0xc6 || (c >= 0xd9 && c <= 0xdb)) {
        return payload(d, m, n, hp, end, be(p + 1, extra), 0, 0);
    } else if (c >= 0xd4 && c <= 0xd8) {
        return payload(d, m, n, hp, end, (uint64_t)1 << (c - 0xd4), 1, (int8_t)p[1]);
    } else if (c >= 0xc7 && c <= 0xc9) {
        return payload(d, m, n, hp, end, be(p + 1, extra - 1), 1, (int8_t)p[extra]);
    } else if (c == 0xdc || c == 0xdd) {
        return open_container(d, 0, be(p + 1, extra), hp, end);
    } else if (c == 0xde || c == 0xdf) {
        return open_container(d, 1, be(p + 1, extra), hp, end);
    }
    /* nil, bools, floats: K_OTHER */
    return value_done(d, &e);
}

/* Continue the current message over m[0, n). */
static enum step parse(cdec *d, const uint8_t *m, int64_t n)
{
    if (d->skip_end > 0) {
        if (n < d->skip_end)
            return S_NEED;
        int64_t end = d->skip_end;
        d->skip_end = 0;
        d->pos = end;
        enum step s = payload_done(d, m, d->skip_hdr, d->skip_start, end, d->skip_ext,
                                   d->skip_type);
        if (s != S_NEED)
            return s;
    }
    while (d->pos < n) {
        int64_t hp = d->pos;
        int extra = header_extra(m[hp]);
        if (extra < 0)
            return fail(d, CDEC_FRAME, CDEC_E_BYTE);
        if (n - hp - 1 < extra)
            return S_NEED;
        enum step s = object(d, m, n, hp, extra);
        if (s != S_NEED)
            return s;
        if (d->skip_end > 0)
            return S_NEED;
    }
    return S_NEED;
}

static int is_uint(const element *e)
{
    return (e->kind == K_INT && e->value >= 0) || e->kind == K_UINT_BIG;
}

/* What Python needs to build one message: ids, and the argument array as a span plus a shape
 * (used when the arguments are too big to copy into the canonical buffer). */
typedef struct {
    int64_t id, session, shape, x, a, b;
    int64_t pa; /* RAW, INT_RAW: where the raw payload starts (it ends at b) */
} result;

/* A complete message of `size` bytes: apply the checks that need all of it. */
static enum step finish(cdec *d, int64_t size, int64_t base, result *r)
{
    if (d->timestamp)
        return fail(d, CDEC_FRAME, CDEC_E_EXT);
    if (size > d->max_size)
        return fail(d, CDEC_LIMIT, CDEC_E_SIZE);
    if (d->depth > d->max_depth)
        return fail(d, CDEC_LIMIT, CDEC_E_DEPTH);
    if (!d->root_array)
        return fail(d, CDEC_FRAME, CDEC_E_NOT_ARRAY);
    uint64_t len = d->stack[0].count;
    if (d->v12 ? (len != 3 && !(len == 4 && d->el[3].kind == K_ARRAY)) : len != 3)
        return fail(d, CDEC_FRAME, CDEC_E_LAYOUT);
    const element *id = &d->el[d->v12 ? 1 : 0], *session = &d->el[d->v12 ? 0 : 1];
    if (!is_uint(id) || !is_uint(session))
        return fail(d, CDEC_FRAME, CDEC_E_IDS);
    if (d->el[2].kind != K_ARRAY)
        return fail(d, CDEC_FRAME, CDEC_E_ARGS);
    r->id = id->value;
    r->session = session->value;
    r->x = 0;
    if (id->kind == K_UINT_BIG || session->kind == K_UINT_BIG) {
        r->shape = CDEC_FULL;
        r->a = base;
        r->b = base + size;
        return S_DONE;
    }
    const element *a0 = &d->arg[0], *a1 = &d->arg[1];
    uint64_t n = d->arg_count;
    r->shape = CDEC_ARGS;
    r->a = base + d->el[2].a;
    r->b = base + d->el[2].b;
    if (n == 0) {
        r->shape = CDEC_EMPTY;
    } else if (n == 1 && a0->kind == K_RAW) {
        r->shape = CDEC_RAW;
        r->pa = base + a0->a;
    } else if (n == 2 && a0->kind == K_INT && a1->kind == K_RAW) {
        r->shape = CDEC_INT_RAW;
        r->x = a0->value;
        r->pa = base + a1->a;
    }
    return S_DONE;
}

/* -- fast path: a complete message made of scalars and raw strings only ----------------------
 * It accepts only what the generic parser would accept unchanged, and otherwise returns 0
 * without touching the decoder, so the generic parser decides every error. */

/* One scalar or raw string at m[*pos]; 0 if it is anything else or incomplete. */
static int fast_item(const uint8_t *m, int64_t n, int64_t *pos, element *e)
{
    int64_t hp = *pos;
    uint8_t c = m[hp];
    int extra = header_extra(c);
    if (extra < 0 || n - hp - 1 < extra)
        return 0;
    const uint8_t *p = m + hp;
    uint64_t len;
    int64_t end = hp + 1 + extra;
    e->kind = K_OTHER;
    if (c <= 0x7f || c >= 0xe0) {
        e->kind = K_INT;
        e->value = c <= 0x7f ? c : (int64_t)(int8_t)c;
    } else if (c >= 0xa0 && c <= 0xbf) {
        len = c & 0x1f;
        goto raw;
    } else if (c == 0xc4 || c == 0xc5 || c == 0xc6 || (c >= 0xd9 && c <= 0xdb)) {
        len = be(p + 1, extra);
        goto raw;
    } else if (c >= 0xcc && c <= 0xcf) {
        uint64_t v = be(p + 1, extra);
        if (v > INT64_MAX)
            return 0;
        e->kind = K_INT;
        e->value = (int64_t)v;
    } else if (c >= 0xd0 && c <= 0xd3) {
        uint64_t v = be(p + 1, extra);
        int bits = 8 * extra;
        if (bits < 64 && (v >> (bits - 1)) & 1)
            v |= ~(uint64_t)0 << bits;
        e->kind = K_INT;
        e->value = (int64_t)v;
    } else if (c != 0xc0 && c != 0xc2 && c != 0xc3 && c != 0xca && c != 0xcb) {
        return 0; /* containers, ext */
    }
    *pos = end;
    return 1;
raw:
    if ((uint64_t)(n - end) < len)
        return 0;
    e->kind = K_RAW;
    e->a = end;
    *pos = end + (int64_t)len;
    return 1;
}

/* A fixarray of scalars and raws; its item count in *count. */
static int fast_array(const uint8_t *m, int64_t n, int64_t *pos, element *first, int *count)
{
    if (*pos >= n || (m[*pos] & 0xf0) != 0x90)
        return 0;
    int k = m[(*pos)++] & 0x0f;
    element scratch;
    for (int i = 0; i < k; i++) {
        if (*pos >= n || !fast_item(m, n, pos, i < 2 ? &first[i] : &scratch))
            return 0;
    }
    *count = k;
    return 1;
}

static int fast_uint(const uint8_t *m, int64_t n, int64_t *pos, int64_t *value)
{
    element e;
    if (*pos >= n || !fast_item(m, n, pos, &e) || e.kind != K_INT || e.value < 0)
        return 0;
    *value = e.value;
    return 1;
}

/* Parse a whole simple message at m; returns its size, or 0 to use the generic parser. */
static int64_t fast(const cdec *d, const uint8_t *m, int64_t n, int64_t base, result *r)
{
    if (d->max_depth < 2 || n < 4 || !(m[0] == 0x93 || (d->v12 && m[0] == 0x94)))
        return 0;
    int64_t pos = 1, first, second;
    element args[2], hdr[2];
    int count, hcount;
    if (!fast_uint(m, n, &pos, &first) || !fast_uint(m, n, &pos, &second))
        return 0;
    int64_t args_start = pos;
    if (!fast_array(m, n, &pos, args, &count))
        return 0;
    int64_t args_end = pos;
    if (m[0] == 0x94 && !fast_array(m, n, &pos, hdr, &hcount))
        return 0;
    if (pos > d->max_size)
        return 0;
    r->id = d->v12 ? second : first;
    r->session = d->v12 ? first : second;
    r->shape = CDEC_ARGS;
    r->x = 0;
    r->a = base + args_start;
    r->b = base + args_end;
    if (count == 0) {
        r->shape = CDEC_EMPTY;
    } else if (count == 1 && args[0].kind == K_RAW) {
        r->shape = CDEC_RAW;
        r->pa = base + args[0].a;
    } else if (count == 2 && args[0].kind == K_INT && args[1].kind == K_RAW) {
        r->shape = CDEC_INT_RAW;
        r->x = args[0].value;
        r->pa = base + args[1].a;
    }
    return pos;
}

/* -- output ----------------------------------------------------------------------------------- */

typedef struct {
    int64_t *ids, *sessions, cap, count;
    uint8_t *canon;
    int64_t canon_cap, canon_len;
    int64_t *fix, fix_cap, nfix;
} output;

/* Append one message: its arguments are copied into the canonical buffer when small, else
 * described by a fixup (and a nil placeholder) so Python slices them from its own buffer. */
static void emit(output *o, const uint8_t *buf, const result *r)
{
    int64_t span = r->b - r->a;
    o->ids[o->count] = r->id;
    o->sessions[o->count] = r->session;
    if (r->shape != CDEC_FULL && span <= CDEC_SMALL_ARGS) {
        memcpy(o->canon + o->canon_len, buf + r->a, (size_t)span);
        o->canon_len += span;
    } else {
        int64_t *f = o->fix + o->nfix++ * CDEC_FIX_WIDTH;
        f[0] = o->count;
        f[1] = r->shape;
        f[2] = r->x;
        f[3] = r->shape == CDEC_RAW || r->shape == CDEC_INT_RAW ? r->pa : r->a;
        f[4] = r->b;
        o->canon[o->canon_len++] = 0xc0;
    }
    o->count++;
}

static int full(const output *o)
{
    return o->count == o->cap || o->nfix == o->fix_cap ||
           o->canon_cap - o->canon_len < CDEC_SMALL_ARGS + 1;
}

static void close_output(output *o, int64_t *res, int64_t consumed)
{
    uint64_t n = (uint64_t)o->count;
    o->canon[0] = 0xdd; /* array32 header over every message's arguments */
    for (int i = 0; i < 4; i++)
        o->canon[1 + i] = (uint8_t)(n >> (24 - 8 * i));
    res[0] = o->count;
    res[1] = consumed;
    res[2] = o->canon_len;
    res[3] = o->nfix;
    /* sessions follow the ids directly, so Python converts both with one tolist() */
    if (o->sessions != o->ids + o->count)
        memmove(o->ids + o->count, o->sessions, (size_t)o->count * sizeof(int64_t));
}

void cdec_bind(cdec *d, int64_t *res, int64_t cap, uint8_t *canon, int64_t canon_cap,
               int64_t *fix, int64_t fix_cap)
{
    d->res = res;
    d->cap = cap;
    d->canon = canon;
    d->canon_cap = canon_cap;
    d->fix = fix;
    d->fix_cap = fix_cap;
}

static int parse_all(cdec *d, const uint8_t *buf, int64_t *startp, int64_t len, output *o);

int64_t cdec_feed(cdec *d, const char *data, int64_t start, int64_t len)
{
    if (d->res == NULL)
        return CDEC_UNBOUND;
    const uint8_t *buf = (const uint8_t *)data;
    output o = {d->res + 4, d->res + 4 + d->cap, d->cap, 0,
                d->canon, d->canon_cap, 5, d->fix, d->fix_cap, 0};
    int64_t *out = d->res;
    int status;
    if (d->error) {
        close_output(&o, out, start);
        return d->error_status;
    }
    status = parse_all(d, buf, &start, len, &o);
    close_output(&o, out, start);
    return o.count * 8 + (d->error ? d->error_status : status);
}

/* The loop of cdec_feed: messages from data[*start:len] until the data, the output room or
 * the input's validity runs out. */
static int parse_all(cdec *d, const uint8_t *buf, int64_t *startp, int64_t len, output *o)
{
    int status = CDEC_OK;
    int64_t start = *startp;
    result r = {0, 0, 0, 0, 0, 0, 0};
    while (start < len) {
        if (full(o)) {
            status = CDEC_MORE;
            break;
        }
        const uint8_t *m = buf + start;
        int64_t n = len - start;
        int64_t size = d->pos == 0 && d->skip_end == 0 ? fast(d, m, n, start, &r) : 0;
        if (size == 0) {
            enum step s = parse(d, m, n);
            if (s == S_NEED) {
                if (n > d->max_size)
                    fail(d, CDEC_LIMIT, CDEC_E_PARTIAL_SIZE);
                break;
            }
            if (s == S_DONE)
                s = finish(d, d->pos, start, &r);
            if (s == S_ERROR)
                break;
            size = d->pos;
            reset_message(d);
        }
        emit(o, buf, &r);
        start += size;
    }
    *startp = start;
    return status;
}
