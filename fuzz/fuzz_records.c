/* libFuzzer harness over the decoder's records path (csrc/), built with ASan and UBSan by
 * `make fuzz`. Each input is a header of four control bytes and a stream (the layout is
 * fuzz/layout.py's, which the Python replay of the corpus reads too):
 *
 *   byte 0  bit 0: v0.12 dialect; bit 1: collect big payloads the way the Python side does
 *           (cdec_pending_raw / cdec_complete_raw); bits 2-4: records per call (from 1);
 *           bits 5-7: patches per call (from 1)
 *   byte 1  bits 0-2: max_message_size; bits 3-5: max_depth
 *   byte 2-3 seed of the split points
 *   rest    the stream
 *
 * The stream is decoded twice: whole, with big arrays, and in pieces at pseudo-random split
 * points with the configured (tiny) arrays, driven like cocaine_http/codec/_c.py drives it
 * (the unfinished message is passed again with the next piece appended, each call's buffer in
 * its own exact-size allocation so that a read past its end is an ASan error). Every call's
 * output is checked against the interface in cdecoder.h, and the two runs must deliver the
 * same messages and stop at the same offset: how a stream is split and how small the output
 * arrays are must not change what it means. The one allowed difference is which error an
 * oversized message gets: in pieces, its buffered bytes may pass the size limit before a
 * later byte of it would have been a FrameError.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdecoder.h"

#define CHECK(cond)                                                                           \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "check failed at line %d: %s\n", __LINE__, #cond);                \
            abort();                                                                          \
        }                                                                                     \
    } while (0)

static const int64_t RECORDS[8] = {1, 2, 3, 4, 5, 8, 64, 2048};
static const int64_t PATCHES[8] = {1, 2, 3, 4, 8, 16, 256, 2048};
static const int64_t SIZES[8] = {16, 64, 256, 1024, 4096, 65536, 75497472, 2147483647};
static const int DEPTHS[8] = {1, 2, 3, 4, 8, 32, 1000, 1024};
#define BIG 4096

typedef struct {
    int v12, collect;
    int64_t rec_cap, patch_cap, max_size;
    int max_depth;
    uint32_t seed;
} config;

/* What a run delivered, in a form independent of record shapes and splits. */
typedef struct {
    uint8_t *data;
    size_t len, cap;
} buffer;

typedef struct {
    int status, reason;
    int64_t offset; /* cdec_offset at the end */
    int64_t left;   /* bytes of the unfinished message at the end */
    buffer log;
} outcome;

static void put(buffer *b, const void *p, size_t n)
{
    if (n == 0)
        return;
    if (b->len + n > b->cap) {
        b->cap = 2 * (b->len + n) + 64;
        b->data = realloc(b->data, b->cap);
        CHECK(b->data != NULL);
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void put_entry(buffer *log, char tag, int64_t id, int64_t session, const uint8_t *p,
                      int64_t n)
{
    put(log, &tag, 1);
    put(log, &id, sizeof(id));
    put(log, &session, sizeof(session));
    put(log, &n, sizeof(n));
    put(log, p, (size_t)n);
}

/* Log and check one call's records. buf[0, len) is the call's buffer. */
static void take_records(const int64_t *rec, int64_t count, const int64_t *patch, int64_t stop,
                         int64_t start, const uint8_t *buf, buffer *log)
{
    int64_t npatch = patch[0], next_patch = 0;
    for (int64_t i = 0; i < count; i++) {
        const int64_t *r = rec + i * CDEC_REC_WIDTH;
        int64_t kind = r[0], session = r[1], a = r[2], b = r[3], shape = kind & 7;
        int patched = next_patch < npatch && patch[1 + next_patch] == i * CDEC_REC_WIDTH;
        next_patch += patched;
        CHECK(kind >= 0);
        if (kind == CDEC_REC_FULL) {
            CHECK(patched && session == 0 && start <= a && a < b && b <= stop);
            put_entry(log, 'F', 0, 0, buf + a, b - a);
        } else if (shape == CDEC_REC_EMPTY) {
            CHECK(!patched && a == 0 && b == 0 && session >= 0);
            put_entry(log, 'E', kind >> 3, session, NULL, 0);
        } else if (shape == CDEC_REC_RAW) {
            CHECK(!patched && start < a && a + CDEC_SHORT_MAX < b && b <= stop);
            put_entry(log, 'R', kind >> 3, session, buf + a, b - a);
        } else if (shape == CDEC_REC_SHORT) {
            CHECK(!patched && a >= 1 && a < ((int64_t)1 << 57) && b == 0); /* marker + 7 bytes */
            uint8_t s[8];
            int n = 0;
            while (n < CDEC_SHORT_MAX && (a >> (8 * (n + 1))) != 0)
                n++;
            for (int k = 0; k < n; k++)
                s[k] = (uint8_t)(a >> (8 * (n - 1 - k)));
            CHECK((a >> (8 * n)) == 1); /* the marker byte */
            put_entry(log, 'R', kind >> 3, session, s, n);
        } else {
            CHECK(shape == CDEC_REC_ARGS && patched && start < a && a < b && b <= stop);
            put_entry(log, 'A', kind >> 3, session, buf + a, b - a);
        }
    }
    CHECK(next_patch == npatch); /* every patch names an ARGS or FULL record, in order */
}

/* One cdec_records call over a private copy of buf[0, len); returns where parsing stopped and
 * sets *status. */
static int64_t call(cdec *d, const uint8_t *buf, int64_t start, int64_t len, const int64_t *rec,
                    int64_t rec_cap, const int64_t *patch, int64_t patch_cap, buffer *log,
                    int *status)
{
    uint8_t *copy = malloc(len ? (size_t)len : 1);
    CHECK(copy != NULL);
    memcpy(copy, buf, (size_t)len);
    int64_t r = cdec_records(d, (const char *)copy, start, len);
    int64_t count, stop;
    int patched;
    if (r >= 0) {
        CHECK(r % CDEC_REC_BYTES == 0);
        count = r / CDEC_REC_BYTES;
        stop = len;
        *status = CDEC_OK;
        patched = 0;
    } else {
        int64_t v = ~r;
        *status = (int)(v & 7);
        patched = (int)((v >> 3) & 1);
        count = (v >> CDEC_COUNT_SHIFT) & CDEC_COUNT_MASK;
        stop = v >> CDEC_STOP_SHIFT;
        CHECK(*status == CDEC_OK || *status == CDEC_MORE || *status == CDEC_FRAME ||
              *status == CDEC_LIMIT);
        CHECK(*status != CDEC_OK || patched || stop < len);
    }
    CHECK(count <= rec_cap && start <= stop && stop <= len);
    CHECK(patch[0] >= 0 && patch[0] <= patch_cap - 1 && patched == (patch[0] > 0));
    CHECK(*status != CDEC_MORE || count == rec_cap || patch[0] == patch_cap - 1);
    take_records(rec, count, patch, stop, start, copy, log);
    free(copy);
    return stop;
}

static uint32_t next_random(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* The length of the next piece, as fuzz/layout.py computes it. */
static int64_t piece(uint32_t *s)
{
    uint32_t v = next_random(s);
    switch (v & 3) {
    case 0:
        return 1;
    case 1:
        return 1 + (v >> 2) % 8;
    case 2:
        return 1 + (v >> 2) % 64;
    default:
        return 1 + (v >> 2) % 1024;
    }
}

/* Decode data[0, n): whole when `whole`, else in pieces with the configured arrays. */
static void run(const uint8_t *data, int64_t n, const config *c, int whole, outcome *out)
{
    int64_t rec_cap = whole ? BIG : c->rec_cap, patch_cap = whole ? BIG : c->patch_cap;
    cdec *d = cdec_new(c->v12, c->max_size, c->max_depth);
    int64_t *rec = malloc((size_t)rec_cap * CDEC_REC_WIDTH * sizeof(int64_t));
    int64_t *patch = malloc((size_t)patch_cap * sizeof(int64_t));
    CHECK(d != NULL && rec != NULL && patch != NULL);
    cdec_bind_records(d, rec, rec_cap, patch, patch_cap);
    uint32_t seed = c->seed | 1;
    int64_t base = 0, fed = 0; /* base: stream offset of the first unfinished message */
    int64_t collecting = 0, info[2] = {0, 0};
    int status = CDEC_OK;
    while (fed < n && (status == CDEC_OK || status == CDEC_MORE)) {
        int64_t step = whole ? n : piece(&seed);
        fed = fed + step < n ? fed + step : n;
        int64_t start = 0;
        if (collecting) { /* the payload's bytes do not go through the parser */
            if (fed - base < collecting)
                continue;
            int64_t ids[2];
            status = cdec_complete_raw(d, ids);
            if (status != CDEC_OK)
                break;
            CHECK(ids[0] >= 0 && ids[1] >= 0);
            if (ids[0] >= ((int64_t)1 << 60))
                put_entry(&out->log, 'F', 0, 0, data + base, collecting);
            else
                put_entry(&out->log, 'R', ids[0], ids[1], data + base + info[0],
                          collecting - info[0]);
            start = collecting;
            collecting = 0;
        }
        do {
            start = call(d, data + base, start, fed - base, rec, rec_cap, patch, patch_cap,
                         &out->log, &status);
        } while (status == CDEC_MORE);
        if (status != CDEC_OK)
            break;
        base += start;
        CHECK(cdec_offset(d) == base);
        if (c->collect && base < fed && cdec_pending_raw(d, info)) {
            CHECK(0 < info[0] && info[0] <= fed - base && fed - base < info[1]);
            CHECK(info[1] <= c->max_size);
            collecting = info[1];
        }
    }
    if (status != CDEC_OK) {
        CHECK(status == CDEC_FRAME || status == CDEC_LIMIT);
        out->reason = cdec_error(d);
        CHECK(out->reason >= CDEC_E_BYTE && out->reason <= CDEC_E_DECLARED_SIZE);
        /* broken for good: the same error again, nothing delivered */
        int again;
        buffer none = {NULL, 0, 0};
        call(d, data + base, 0, fed - base, rec, rec_cap, patch, patch_cap, &none, &again);
        CHECK(again == status && none.len == 0 && cdec_error(d) == out->reason);
        free(none.data);
    }
    out->status = status;
    out->offset = cdec_offset(d);
    out->left = fed - base;
    free(rec);
    free(patch);
    cdec_free(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    config c;
    c.v12 = data[0] & 1;
    c.collect = (data[0] >> 1) & 1;
    c.rec_cap = RECORDS[(data[0] >> 2) & 7];
    c.patch_cap = 1 + PATCHES[(data[0] >> 5) & 7]; /* patch[0] is the count */
    c.max_size = SIZES[data[1] & 7];
    c.max_depth = DEPTHS[(data[1] >> 3) & 7];
    c.seed = (uint32_t)data[2] | (uint32_t)data[3] << 8;
    const uint8_t *stream = data + 4;
    int64_t n = (int64_t)size - 4;

    outcome whole = {0, 0, 0, 0, {NULL, 0, 0}}, split = {0, 0, 0, 0, {NULL, 0, 0}};
    run(stream, n, &c, 1, &whole);
    run(stream, n, &c, 0, &split);
    /* the one allowed difference: in pieces, the size limit may come first */
    int same = whole.offset == split.offset &&
               (whole.status == CDEC_OK) == (split.status == CDEC_OK) &&
               (whole.status == CDEC_OK ? whole.left == split.left
                                        : (whole.status == split.status &&
                                           whole.reason == split.reason) ||
                                              split.status == CDEC_LIMIT);
    if (!same)
        fprintf(stderr, "whole: status %d reason %d offset %lld left %lld; split: %d %d %lld %lld\n",
                whole.status, whole.reason, (long long)whole.offset, (long long)whole.left,
                split.status, split.reason, (long long)split.offset, (long long)split.left);
    CHECK(same);
    CHECK(whole.log.len == split.log.len);
    CHECK(whole.log.len == 0 || memcmp(whole.log.data, split.log.data, whole.log.len) == 0);
    free(whole.log.data);
    free(split.log.data);
    return 0;
}
