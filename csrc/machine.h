/* Internal to the decoder: the state of the resumable msgpack parser (machine.c) shared with
 * the fast path and the output code (cdecoder.c). Not part of the cffi interface. */
#ifndef COCAINE_MACHINE_H
#define COCAINE_MACHINE_H

#include <stdint.h>

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
    int64_t *rec, rec_cap, *patch, patch_cap; /* records mode (cdec_bind_records) */
    int64_t offset;     /* stream offset of the first unfinished message */
    int64_t last_count; /* records written by the last cdec_records call */
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

typedef struct {
    int64_t id, session, shape, x, a, b;
    int64_t pa;         /* RAW, INT_RAW: where the raw payload starts (it ends at b) */
    int64_t start, end; /* the whole frame */
} result;

/* Where one call's messages go: the batch arrays (cdec_feed) or the records (cdec_records). */
typedef struct {
    int records;
    int64_t count, cap;
    /* batch mode */
    int64_t *ids, *sessions;
    uint8_t *canon;
    int64_t canon_cap, canon_len;
    int64_t *fix, fix_cap, nfix;
    /* records mode */
    int64_t *rec, *patch, patch_cap, npatch;
} output;

/* output.c */
void out_batch(output *o, cdec *d);
void out_records(output *o, cdec *d);
void out_emit_batch(output *o, const uint8_t *buf, const result *r);
void out_close_batch(output *o, int64_t *res, int64_t consumed);

/* Whether the next message might not fit: the parser loop then stops with CDEC_MORE. */
static inline int out_full(const output *o)
{
    if (o->records)
        return o->count == o->cap || o->npatch == o->patch_cap;
    return o->count == o->cap || o->nfix == o->fix_cap ||
           o->canon_cap - o->canon_len < CDEC_SMALL_ARGS + 1;
}

/* Records (see cdecoder.h): the common shapes are spans; the rest are patched by Python. */
static inline void out_emit_record(output *o, const uint8_t *buf, const result *r)
{
    int64_t *rec = o->rec + o->count * CDEC_REC_WIDTH;
    int shape = (int)r->shape;
    if (shape == CDEC_FULL || r->id >= ((int64_t)1 << 60)) {
        rec[0] = CDEC_REC_FULL;
        rec[1] = 0;
        rec[2] = r->start;
        rec[3] = r->end;
        o->patch[o->npatch++] = o->count * CDEC_REC_WIDTH;
    } else if (shape == CDEC_EMPTY) {
        rec[0] = r->id * 8 + CDEC_REC_EMPTY;
        rec[1] = r->session;
        rec[2] = 0;
        rec[3] = 0;
    } else if (shape == CDEC_RAW && r->b - r->pa <= CDEC_SHORT_MAX) {
        int64_t v = 1; /* a marker byte, then the string's bytes */
        for (int64_t i = r->pa; i < r->b; i++)
            v = (v << 8) | buf[i];
        rec[0] = r->id * 8 + CDEC_REC_SHORT;
        rec[1] = r->session;
        rec[2] = v;
        rec[3] = 0;
    } else if (shape == CDEC_RAW) {
        rec[0] = r->id * 8 + CDEC_REC_RAW;
        rec[1] = r->session;
        rec[2] = r->pa;
        rec[3] = r->b;
    } else { /* INT_RAW, ARGS: the argument array, decoded by Python */
        rec[0] = r->id * 8 + CDEC_REC_ARGS;
        rec[1] = r->session;
        rec[2] = r->a;
        rec[3] = r->b;
        o->patch[o->npatch++] = o->count * CDEC_REC_WIDTH;
    }
    o->count++;
}

static inline void out_emit(output *o, const uint8_t *buf, const result *r)
{
    if (o->records)
        out_emit_record(o, buf, r);
    else
        out_emit_batch(o, buf, r);
}

/* A complete message of `size` bytes: apply the checks that need all of it. */

/* Big-endian unsigned integer of n bytes. */
static inline uint64_t cd_be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Size of the header starting with byte c beyond the first byte, or -1 for 0xc1. */
static inline int cd_header_extra(uint8_t c)
{
    if (c <= 0xbf || c >= 0xe0)
        return 0;
    static const signed char extra[32] = {
        0, -1, 0, 0, 1, 2, 4, 2, 3, 5, 4, 8, 1, 2, 4, 8, /* c0..cf */
        1, 2, 4, 8, 1, 1, 1, 1, 1, 1, 2, 4, 2, 4, 2, 4,  /* d0..df */
    };
    return extra[c - 0xc0];
}

void cd_reset_message(cdec *d);
enum step cd_fail(cdec *d, int status, int reason);
/* Continue the current message over m[0, n). */
enum step cd_parse(cdec *d, const uint8_t *m, int64_t n);
/* A complete message of `size` bytes at data offset `base`: the checks that need all of it. */
enum step cd_finish(cdec *d, int64_t size, int64_t base, result *r);

#endif
