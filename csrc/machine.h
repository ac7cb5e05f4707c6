/* Internal to the decoder: the state of the resumable msgpack parser (machine.c) shared with
 * the fast path and the record writer (cdecoder.c). Not part of the cffi interface. */
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
    int64_t *rec, rec_cap, *patch, patch_cap; /* owned by the caller (cdec_bind_records) */
    int64_t offset;     /* stream offset of the first unfinished message */
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
    element arg0;       /* the first argument */
    frame stack[HARD_DEPTH + 1];
};

/* The argument shapes of a complete message, as far as the record writer cares. */
enum shape {
    SH_EMPTY, /* [] */
    SH_RAW,   /* [raw]: its payload is pa:b */
    SH_ARGS,  /* anything else: the argument array is a:b */
    SH_FULL   /* an id or session beyond int64, an unusable session, v0.12 headers to read:
               * the whole frame is a:b */
};

/* One complete message, offsets in the caller's buffer. */
typedef struct {
    int64_t id, session, shape, a, b;
    int64_t pa;         /* SH_RAW: where the raw payload starts (it ends at b) */
    int64_t start, end; /* the whole frame */
} result;

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
enum step cd_finish(cdec *d, const uint8_t *m, int64_t size, int64_t base, result *r);
/* The size of a v0.12 headers element at h[0, n) that needs no reading (see machine.c);
 * 0 when Python must read it, or when it is not all there. */
int64_t cd_headers_plain(const uint8_t *h, int64_t n);

#endif
