/* Strategy: the decoder's entry points. A fast path parses a complete message made only of
 * scalars and raw strings (every common Cocaine message) in one linear pass; anything else, or
 * anything incomplete, goes to the resumable parser in machine.c, which decides every error.
 * Each message is then described for Python by one record of four int64 (see cdecoder.h), so
 * Python dispatches a whole read from one array: the common shapes are spans of the caller's
 * buffer, the rest are listed as patches for Python to decode.
 *
 * Invariants:
 * - No globals, no Python.h; all state lives in the `cdec` the caller allocates and frees, and
 *   the records arrays the caller binds to it.
 * - Every read is preceded by a check that the bytes are inside [data, data + len).
 * - Growth is bounded: the parser's stack is fixed, a partial message longer than max_size is
 *   an error, and the output arrays have fixed capacities (a full one ends the call with
 *   CDEC_MORE, to be called again).
 * - Offsets inside the parser's state are relative to the start of the current message, so
 *   Python may drop the bytes of finished messages between calls.
 */
#include <stdlib.h>
#include <string.h>

#include "machine.h"

cdec *cdec_new(int v12, int64_t max_size, int max_depth)
{
    cdec *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return NULL;
    d->v12 = v12;
    d->max_size = max_size;
    d->max_depth = max_depth;
    cd_reset_message(d);
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

/* -- fast path: a complete message made of scalars and raw strings only ----------------------
 * It accepts only what the generic parser would accept unchanged, and otherwise returns 0
 * without touching the decoder, so the generic parser decides every error. */

/* One scalar or raw string at m[*pos]; 0 if it is anything else or incomplete. */
static int fast_item(const uint8_t *m, int64_t n, int64_t *pos, element *e)
{
    int64_t hp = *pos;
    uint8_t c = m[hp];
    int extra = cd_header_extra(c);
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
        len = cd_be(p + 1, extra);
        goto raw;
    } else if (c >= 0xcc && c <= 0xcf) {
        uint64_t v = cd_be(p + 1, extra);
        if (v > INT64_MAX)
            return 0;
        e->kind = K_INT;
        e->value = (int64_t)v;
    } else if (c >= 0xd0 && c <= 0xd3) {
        uint64_t v = cd_be(p + 1, extra);
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

/* A fixarray of scalars and raws; its item count in *count, its first item in *first. */
static int fast_array(const uint8_t *m, int64_t n, int64_t *pos, element *first, int *count)
{
    if (*pos >= n || (m[*pos] & 0xf0) != 0x90)
        return 0;
    int k = m[(*pos)++] & 0x0f;
    element scratch;
    for (int i = 0; i < k; i++) {
        if (*pos >= n || !fast_item(m, n, pos, i == 0 ? first : &scratch))
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
    element arg;
    int count;
    if (!fast_uint(m, n, &pos, &first) || !fast_uint(m, n, &pos, &second))
        return 0;
    int64_t args_start = pos;
    if (!fast_array(m, n, &pos, &arg, &count))
        return 0;
    int64_t args_end = pos;
    if (m[0] == 0x94) { /* headers: [] or plain ones (see cd_headers_plain) */
        if (pos < n && m[pos] == 0x90) {
            pos++;
        } else {
            int64_t size = d->max_depth >= 3 ? cd_headers_plain(m + pos, n - pos) : 0;
            if (size == 0)
                return 0;
            pos += size;
        }
    }
    if (pos > d->max_size)
        return 0;
    r->id = d->v12 ? second : first;
    r->session = d->v12 ? first : second;
    r->shape = SH_ARGS;
    r->a = base + args_start;
    r->b = base + args_end;
    if (count == 0) {
        r->shape = SH_EMPTY;
    } else if (count == 1 && arg.kind == K_RAW) {
        r->shape = SH_RAW;
        r->pa = base + arg.a;
    }
    return pos;
}

/* -- records --------------------------------------------------------------------------------
 * Every array has a fixed capacity: the parser loop stops (CDEC_MORE) before one would
 * overflow. */

typedef struct {
    int64_t *rec, count, cap;
    int64_t *patch, npatch, patch_cap; /* patch[0] receives the count: entries start at 1 */
} output;

static int out_full(const output *o)
{
    return o->count == o->cap || o->npatch == o->patch_cap;
}

/* One message's record (see cdecoder.h): the common shapes are spans, the rest are patched by
 * Python. Inline: it runs once per message on the hot path. */
static inline void out_emit(output *o, const uint8_t *buf, const result *r)
{
    int64_t *rec = o->rec + o->count * CDEC_REC_WIDTH;
    if (r->shape == SH_FULL || r->id >= ((int64_t)1 << 60)) {
        rec[0] = CDEC_REC_FULL;
        rec[1] = 0;
        rec[2] = r->start;
        rec[3] = r->end;
        o->patch[1 + o->npatch++] = o->count * CDEC_REC_WIDTH;
    } else if (r->shape == SH_EMPTY) {
        rec[0] = r->id * 8 + CDEC_REC_EMPTY;
        rec[1] = r->session;
        rec[2] = 0;
        rec[3] = 0;
    } else if (r->shape == SH_RAW && r->b - r->pa <= CDEC_SHORT_MAX) {
        int64_t v = 1; /* a marker byte, then the string's bytes */
        for (int64_t i = r->pa; i < r->b; i++)
            v = (v << 8) | buf[i];
        rec[0] = r->id * 8 + CDEC_REC_SHORT;
        rec[1] = r->session;
        rec[2] = v;
        rec[3] = 0;
    } else if (r->shape == SH_RAW) {
        rec[0] = r->id * 8 + CDEC_REC_RAW;
        rec[1] = r->session;
        rec[2] = r->pa;
        rec[3] = r->b;
    } else { /* the argument array, decoded by Python */
        rec[0] = r->id * 8 + CDEC_REC_ARGS;
        rec[1] = r->session;
        rec[2] = r->a;
        rec[3] = r->b;
        o->patch[1 + o->npatch++] = o->count * CDEC_REC_WIDTH;
    }
    o->count++;
}

/* -- entry points ---------------------------------------------------------------------------- */

static int parse_all(cdec *d, const uint8_t *buf, int64_t *startp, int64_t len, output *o);

void cdec_bind_records(cdec *d, int64_t *rec, int64_t cap, int64_t *patch, int64_t patch_cap)
{
    d->rec = rec;
    d->rec_cap = cap < CDEC_COUNT_MASK ? cap : CDEC_COUNT_MASK;
    d->patch = patch;
    d->patch_cap = patch_cap;
}

int64_t cdec_records(cdec *d, const char *data, int64_t start, int64_t len)
{
    if (d->rec == NULL || d->patch_cap < 2 || d->rec_cap < 1)
        return CDEC_UNBOUND;
    if (d->error) {
        d->patch[0] = 0;
        return ~(d->error_status + (start << CDEC_STOP_SHIFT));
    }
    output o = {d->rec, 0, d->rec_cap, d->patch, 0, d->patch_cap - 1};
    int64_t first = start;
    int status = parse_all(d, (const uint8_t *)data, &start, len, &o);
    d->offset += start - first;
    d->patch[0] = o.npatch;
    if (d->error)
        status = d->error_status;
    if (status == CDEC_OK && o.npatch == 0 && start == len)
        return o.count * CDEC_REC_BYTES; /* the common read: every byte is a whole message */
    return ~((start << CDEC_STOP_SHIFT) + (o.count << CDEC_COUNT_SHIFT) +
             (o.npatch ? CDEC_PATCHED : 0) + status);
}

int64_t cdec_offset(const cdec *d)
{
    return d->offset;
}

/* The loop of cdec_records: messages from data[*start:len] until the data, the output room or
 * the input's validity runs out. */
static int parse_all(cdec *d, const uint8_t *buf, int64_t *startp, int64_t len, output *o)
{
    int status = CDEC_OK;
    int64_t start = *startp;
    result r = {0, 0, 0, 0, 0, 0, 0, 0};
    while (start < len) {
        if (out_full(o)) {
            status = CDEC_MORE;
            break;
        }
        const uint8_t *m = buf + start;
        int64_t n = len - start;
        int64_t size = d->pos == 0 && d->skip_end == 0 ? fast(d, m, n, start, &r) : 0;
        if (size == 0) {
            enum step s = cd_parse(d, m, n);
            if (s == S_NEED) {
                if (n > d->max_size)
                    cd_fail(d, CDEC_LIMIT, CDEC_E_PARTIAL_SIZE);
                break;
            }
            if (s == S_DONE)
                s = cd_finish(d, m, d->pos, start, &r);
            if (s == S_ERROR)
                break;
            size = d->pos;
            cd_reset_message(d);
        }
        r.start = start;
        r.end = start + size;
        out_emit(o, buf, &r);
        start += size;
    }
    *startp = start;
    return status;
}
