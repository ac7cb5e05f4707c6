/* Strategy: the generic, resumable msgpack parser. It keeps a stack of open containers and
 * the little it must remember about the frame (elements 0-3, the first argument), so a
 * message can be fed in any number of pieces and each byte is parsed once. A header is consumed
 * only when all of it is present; a raw or ext payload is skipped in O(1) by storing its end.
 * It decides every error, in the order stated at the top of cocaine_http/codec/_python.py.
 */
#include <string.h>

#include "machine.h"

void cd_reset_message(cdec *d)
{
    d->pos = 0;
    d->skip_end = 0;
    d->top = 0;
    d->depth = 0;
    d->timestamp = 0;
    d->root_array = 0;
    d->args_open = 0;
    memset(d->el, 0, sizeof(d->el));
    memset(&d->arg0, 0, sizeof(d->arg0));
    for (int i = 0; i < 4; i++)
        d->el[i].kind = K_OTHER;
    d->arg0.kind = K_OTHER;
    d->arg_count = 0;
    d->stack[0].count = 0; /* an empty root array pushes no frame: its length is this 0 */
}

enum step cd_fail(cdec *d, int status, int reason)
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

/* Note an element of the frame (level 1) or the first of its argument array (level 2). */
static void track(cdec *d, const element *e)
{
    if (d->top == 1 && d->root_array) {
        uint64_t i = next_index(&d->stack[0]);
        if (i < 4) {
            d->el[i].kind = e->kind;
            d->el[i].value = e->value;
            d->el[i].b = e->b;
        }
    } else if (d->top == 2 && d->args_open == 1 && next_index(&d->stack[1]) == 0) {
        d->arg0 = *e;
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
            return cd_fail(d, CDEC_FRAME, CDEC_E_KEY);
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
        return cd_fail(d, CDEC_LIMIT, CDEC_E_NESTING);
    if (n > (is_map ? MAX_MAP_LEN : MAX_ARRAY_LEN))
        return cd_fail(d, CDEC_FRAME, CDEC_E_COUNT);
    if (d->top + 1 > d->depth)
        d->depth = d->top + 1;
    if (d->top == 0)
        d->root_array = !is_map;
    int is_args = d->top == 1 && d->root_array && next_index(&d->stack[0]) == 2 && !is_map;
    if (d->top == 1 && d->root_array && next_index(&d->stack[0]) >= 2 &&
        next_index(&d->stack[0]) < 4)
        d->el[next_index(&d->stack[0])].a = hp;
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
            return cd_fail(d, CDEC_FRAME, CDEC_E_EXT);
        if (n == 8 && (cd_be(p, 8) >> 34) > MAX_NANOS)
            return cd_fail(d, CDEC_FRAME, CDEC_E_TIMESTAMP);
        if (n == 12 && cd_be(p, 4) > MAX_NANOS)
            return cd_fail(d, CDEC_FRAME, CDEC_E_TIMESTAMP);
        if (n != 4 && n != 8 && n != 12)
            return cd_fail(d, CDEC_FRAME, CDEC_E_TIMESTAMP);
        d->timestamp = 1;
        element e = {K_OTHER, 0, hp, end};
        return value_done(d, &e);
    }
    element e = {K_RAW, 0, start, end};
    return value_done(d, &e);
}

/* Begin skipping a payload of `len` bytes at `start`; completes it at once if present. A
 * payload that has not arrived and would end past the size limit fails at its header: the
 * message cannot fit, so there is nothing to wait for. */
static enum step payload(cdec *d, const uint8_t *m, int64_t n, int64_t hp, int64_t start,
                         uint64_t len, int is_ext, int type)
{
    if ((uint64_t)(n - start) >= len) {
        d->pos = start + (int64_t)len;
        return payload_done(d, m, hp, start, start + (int64_t)len, is_ext, type);
    }
    if (start + (int64_t)len > d->max_size) /* len < 2**32: no overflow */
        return cd_fail(d, CDEC_LIMIT, CDEC_E_DECLARED_SIZE);
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
        uint64_t v = cd_be(p + 1, extra);
        e.kind = v > INT64_MAX ? K_UINT_BIG : K_INT;
        e.value = (int64_t)v;
    } else if (c >= 0xd0 && c <= 0xd3) {
        uint64_t v = cd_be(p + 1, extra);
        int bits = 8 * extra;
        if (bits < 64 && (v >> (bits - 1)) & 1)
            v |= ~(uint64_t)0 << bits; /* sign-extend */
        e.kind = K_INT;
        e.value = (int64_t)v;
    } else if (c == 0xc4 || c == 0xc5 || c == 0xc6 || (c >= 0xd9 && c <= 0xdb)) {
        return payload(d, m, n, hp, end, cd_be(p + 1, extra), 0, 0);
    } else if (c >= 0xd4 && c <= 0xd8) {
        return payload(d, m, n, hp, end, (uint64_t)1 << (c - 0xd4), 1, (int8_t)p[1]);
    } else if (c >= 0xc7 && c <= 0xc9) {
        return payload(d, m, n, hp, end, cd_be(p + 1, extra - 1), 1, (int8_t)p[extra]);
    } else if (c == 0xdc || c == 0xdd) {
        return open_container(d, 0, cd_be(p + 1, extra), hp, end);
    } else if (c == 0xde || c == 0xdf) {
        return open_container(d, 1, cd_be(p + 1, extra), hp, end);
    }
    /* nil, bools, floats: K_OTHER */
    return value_done(d, &e);
}

/* Continue the current message over m[0, n). */
enum step cd_parse(cdec *d, const uint8_t *m, int64_t n)
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
        int extra = cd_header_extra(m[hp]);
        if (extra < 0)
            return cd_fail(d, CDEC_FRAME, CDEC_E_BYTE);
        /* msgpack adds the type byte to an ext32 length in 32 bits: 2**32-1 wraps to 0 and it
         * rejects the header as soon as the length is there, type byte or not */
        if (m[hp] == 0xc9 && n - hp > 4 && cd_be(m + hp + 1, 4) == 0xffffffffu)
            return cd_fail(d, CDEC_FRAME, CDEC_E_EXT);
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

/* -- v0.12 headers the record writer may pass over ---------------------------------------
 * A headers element is "plain" when reading it cannot change the connection's header table
 * nor yield a trace nor fail: every entry is a static index (1..82) alone, or [false, name,
 * value] with a raw value and a raw name or static index, and no trace header in it has a
 * value other than 8 zero bytes (the runtime's frames outside a trace). Anything else is
 * handed to Python whole (codec/hpack.py has the rules). Bounds are checked on every read, so
 * this also serves the fast path on bytes not known to be a whole message. */

#define STATIC_SIZE 83
#define TRACE_FIRST 80

/* A static index (1..82) at h[*p] in its shortest encodings; -1 if it is anything else. */
static int static_index(const uint8_t *h, int64_t n, int64_t *p)
{
    int v;
    if (*p >= n)
        return -1;
    if (h[*p] <= 0x7f) {
        v = h[*p];
        *p += 1;
    } else if (h[*p] == 0xcc && n - *p >= 2) {
        v = h[*p + 1];
        *p += 2;
    } else {
        return -1;
    }
    return v >= 1 && v < STATIC_SIZE ? v : -1;
}

/* A whole raw string at h[*p]: its payload span; 0 if it is anything else or incomplete. */
static int raw_span(const uint8_t *h, int64_t n, int64_t *p, int64_t *start, int64_t *len)
{
    if (*p >= n)
        return 0;
    uint8_t c = h[*p];
    int width;
    uint64_t size;
    if (c >= 0xa0 && c <= 0xbf) {
        width = 0;
        size = c & 0x1f;
    } else if (c == 0xc4 || c == 0xd9) {
        width = 1;
    } else if (c == 0xc5 || c == 0xda) {
        width = 2;
    } else if (c == 0xc6 || c == 0xdb) {
        width = 4;
    } else {
        return 0;
    }
    if (n - *p - 1 < width)
        return 0;
    if (width)
        size = cd_be(h + *p + 1, width);
    int64_t at = *p + 1 + width;
    if ((uint64_t)(n - at) < size)
        return 0;
    *start = at;
    *len = (int64_t)size;
    *p = at + (int64_t)size;
    return 1;
}

static int is_trace_name(const uint8_t *s, int64_t len)
{
    return (len == 8 && memcmp(s, "trace_id", 8) == 0) ||
           (len == 7 && memcmp(s, "span_id", 7) == 0) ||
           (len == 9 && memcmp(s, "parent_id", 9) == 0);
}

int64_t cd_headers_plain(const uint8_t *h, int64_t n)
{
    if (n < 1 || (h[0] & 0xf0) != 0x90)
        return 0;
    int count = h[0] & 0x0f;
    int64_t p = 1;
    for (int i = 0; i < count; i++) {
        if (p >= n)
            return 0;
        if (h[p] != 0x93) {
            if (static_index(h, n, &p) < 0)
                return 0;
            continue; /* a static entry alone: the trace headers' values there are zeros */
        }
        p++;
        if (p >= n || h[p] != 0xc2) /* false: not stored */
            return 0;
        p++;
        int64_t ns, nl, vs, vl;
        int trace;
        if (p < n && ((h[p] & 0xe0) == 0xa0 || h[p] == 0xc4 || h[p] == 0xc5 || h[p] == 0xc6 ||
                      (h[p] >= 0xd9 && h[p] <= 0xdb))) {
            if (!raw_span(h, n, &p, &ns, &nl))
                return 0;
            trace = is_trace_name(h + ns, nl);
        } else {
            int index = static_index(h, n, &p);
            if (index < 0)
                return 0;
            trace = index >= TRACE_FIRST;
        }
        if (!raw_span(h, n, &p, &vs, &vl))
            return 0;
        if (trace && (vl != 8 || cd_be(h + vs, 8) != 0))
            return 0;
    }
    return p;
}

/* What the record writer needs of one message: ids, and where its arguments are. */
enum step cd_finish(cdec *d, const uint8_t *m, int64_t size, int64_t base, result *r)
{
    if (d->timestamp)
        return cd_fail(d, CDEC_FRAME, CDEC_E_EXT);
    if (size > d->max_size)
        return cd_fail(d, CDEC_LIMIT, CDEC_E_SIZE);
    if (d->depth > d->max_depth)
        return cd_fail(d, CDEC_LIMIT, CDEC_E_DEPTH);
    if (!d->root_array)
        return cd_fail(d, CDEC_FRAME, CDEC_E_NOT_ARRAY);
    uint64_t len = d->stack[0].count;
    if (d->v12 ? (len != 3 && !(len == 4 && d->el[3].kind == K_ARRAY)) : len != 3)
        return cd_fail(d, CDEC_FRAME, CDEC_E_LAYOUT);
    const element *id = &d->el[d->v12 ? 1 : 0], *session = &d->el[d->v12 ? 0 : 1];
    if (!is_uint(id))
        return cd_fail(d, CDEC_FRAME, CDEC_E_IDS);
    if (d->el[2].kind != K_ARRAY)
        return cd_fail(d, CDEC_FRAME, CDEC_E_ARGS);
    r->id = id->value;
    r->session = session->value;
    /* a session that is no non-negative integer leaves the stream in sync: the message is
     * handed over whole (FULL) for Python to report and drop */
    if (id->kind == K_UINT_BIG || session->kind == K_UINT_BIG || !is_uint(session)) {
        r->shape = SH_FULL;
        r->a = base;
        r->b = base + size;
        return S_DONE;
    }
    /* headers that may change the table, carry a trace or be refused: Python reads them */
    if (len == 4 && (m == NULL || cd_headers_plain(m + d->el[3].a, d->el[3].b - d->el[3].a) !=
                                      d->el[3].b - d->el[3].a)) {
        r->shape = SH_FULL;
        r->a = base;
        r->b = base + size;
        return S_DONE;
    }
    r->shape = SH_ARGS;
    r->a = base + d->el[2].a;
    r->b = base + d->el[2].b;
    if (d->arg_count == 0) {
        r->shape = SH_EMPTY;
    } else if (d->arg_count == 1 && d->arg0.kind == K_RAW) {
        r->shape = SH_RAW;
        r->pa = base + d->arg0.a;
    }
    return S_DONE;
}

int cdec_pending_raw(const cdec *d, int64_t *out)
{
    /* (skip_end > max_size cannot happen, the header failed: kept as the guard of the
     * caller's allocation) */
    if (d->error || d->skip_end == 0 || d->skip_ext || !d->root_array || d->top != 2 ||
        d->args_open != 1 || d->skip_end > d->max_size)
        return 0;
    const frame *f0 = &d->stack[0], *f1 = &d->stack[1];
    if (f1->is_map || f1->count != 1 || f1->remaining != 1 || f0->remaining != 1)
        return 0;
    /* ids beyond int64 and unusable sessions take the general path (their record is a whole
     * frame) */
    if (d->el[0].kind != K_INT || d->el[1].kind != K_INT || d->el[0].value < 0 ||
        d->el[1].value < 0)
        return 0;
    out[0] = d->skip_start;
    out[1] = d->skip_end;
    return 1;
}

int cdec_complete_raw(cdec *d, int64_t *out)
{
    int64_t end = d->skip_end;
    if (d->error)
        return d->error_status;
    if (end == 0 || d->skip_ext)
        return cd_fail(d, CDEC_FRAME, CDEC_E_LAYOUT), d->error_status; /* misuse */
    d->skip_end = 0;
    d->pos = end;
    result r = {0, 0, 0, 0, 0, 0, 0, 0};
    enum step s = payload_done(d, NULL, d->skip_hdr, d->skip_start, end, 0, 0);
    if (s == S_NEED) /* cannot happen after cdec_pending_raw said yes */
        s = cd_fail(d, CDEC_FRAME, CDEC_E_LAYOUT);
    if (s == S_DONE)
        s = cd_finish(d, NULL, end, 0, &r); /* a collected chunk's frame has no headers */
    if (s == S_ERROR)
        return d->error_status;
    out[0] = r.id;
    out[1] = r.session;
    d->offset += end;
    cd_reset_message(d);
    return CDEC_OK;
}
