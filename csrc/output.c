/* Strategy: describe each parsed message for Python, in one of two layouts.
 *
 * - Batch (cdec_feed): ids and sessions in an int64 array, and every message's argument array
 *   copied into one canonical msgpack buffer so one msgpack.unpackb builds all of them; big
 *   arguments become fixups (a span in the caller's buffer) instead of a copy.
 * - Records (cdec_records): four int64 values per message (kind, session, a, b), so Python
 *   turns a whole read into one list with one tolist() and dispatches each message straight
 *   from it, slicing payloads from its own buffer. Only uncommon argument shapes need Python
 *   to decode anything; their record numbers go to a patch array.
 *
 * Every array has a fixed capacity; out_full() tells the parser loop to stop (CDEC_MORE)
 * before one would overflow. The per-message functions of the records layout are inline, in
 * machine.h, because they run once per message on the hot path.
 */
#include <string.h>

#include "machine.h"

void out_batch(output *o, cdec *d)
{
    memset(o, 0, sizeof(*o));
    o->cap = d->cap;
    o->ids = d->res + 4;
    o->sessions = d->res + 4 + d->cap;
    o->canon = d->canon;
    o->canon_cap = d->canon_cap;
    o->canon_len = 5; /* room for the array32 header */
    o->fix = d->fix;
    o->fix_cap = d->fix_cap;
}

void out_records(output *o, cdec *d)
{
    memset(o, 0, sizeof(*o));
    o->records = 1;
    o->cap = d->rec_cap;
    o->rec = d->rec;
    o->patch = d->patch + 1; /* patch[0] receives the count */
    o->patch_cap = d->patch_cap - 1;
}

/* Batch: arguments are copied into the canonical buffer when small, else described by a
 * fixup (and a nil placeholder) so Python slices them from its own buffer. */
void out_emit_batch(output *o, const uint8_t *buf, const result *r)
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

void out_close_batch(output *o, int64_t *res, int64_t consumed)
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
