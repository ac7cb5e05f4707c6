/* Cocaine message decoder: the interface cffi binds (build_decoder.py copies the declarations
 * between the CDEF markers into its cdef, so this header is the single source of truth).
 *
 * A decoder is fed a buffer whose byte 0 is the start of the first message it has not finished
 * yet. It parses as many complete messages as fit in `rec_cap` records and reports how many
 * bytes they took; Python then drops those bytes and later passes the rest again with new data
 * appended. Parsing resumes where it stopped: bytes are never parsed twice.
 */
#ifndef COCAINE_CDECODER_H
#define COCAINE_CDECODER_H

#include <stddef.h>
#include <stdint.h>

/* CDEF-BEGIN */
typedef struct cdec cdec;

/* Output: per message four int64 values, a record (kind, session, a, b), with
 * kind = id * 8 + shape:
 *   EMPTY   arguments []            a = b = 0
 *   RAW     arguments [data[a:b]]   (one raw string of more than CDEC_SHORT_MAX bytes)
 *   SHORT   arguments [s], one raw string s of at most CDEC_SHORT_MAX bytes, packed into a as
 *           a big-endian number: a 0x01 marker byte, then the bytes of s (b = 0). Python
 *           maps it to a cached str with one dict lookup (invoke event names), no slicing
 *   ARGS    any other arguments: data[a:b] is their msgpack array, to be decoded by the caller
 *           (its record index is listed in the patch array)
 *   FULL    kind is exactly 7: an id or session beyond the int64 range (or an id of 2**60 or
 *           more), a session that is not a non-negative integer (a message to drop, the
 *           stream still in sync), or a v0.12 headers element that needs reading (it may
 *           store headers, carry a trace or be refused: see cd_headers_plain); data[a:b] is
 *           the whole frame (also listed in the patch array)
 * The return value is the size of the records in bytes (32 per record) when every byte up
 * to len was a whole message and no record needs a patch (status CDEC_OK). Otherwise it is
 * the bitwise complement (so, negative) of: status in bits
 * 0-2, CDEC_PATCHED (patches were written) in bit 3, the record count in bits 4-23, and in
 * bits 24-62 the offset in data where parsing stopped (the first unfinished or failing
 * message). */
#define CDEC_REC_WIDTH 4
#define CDEC_REC_BYTES 32
#define CDEC_REC_EMPTY 0
#define CDEC_REC_RAW 1
#define CDEC_REC_ARGS 2
#define CDEC_REC_SHORT 3
#define CDEC_SHORT_MAX 7
#define CDEC_REC_FULL 7
#define CDEC_PATCHED 8
#define CDEC_COUNT_SHIFT 4
#define CDEC_COUNT_MASK 1048575
#define CDEC_STOP_SHIFT 24

/* Statuses of cdec_records (low 3 bits of its complemented return value). */
#define CDEC_OK 0        /* every complete message is in the records; the rest is partial */
#define CDEC_MORE 1      /* the records are full: call again after taking them */
#define CDEC_FRAME 2     /* FrameError; cdec_error() says why */
#define CDEC_LIMIT 3     /* LimitExceededError; cdec_error() says why */
#define CDEC_UNBOUND 4   /* cdec_bind_records was not called, or with too little room */

/* Reasons, from cdec_error(). */
#define CDEC_E_BYTE 1        /* 0xc1 is not a msgpack type */
#define CDEC_E_EXT 2         /* an ext type */
#define CDEC_E_TIMESTAMP 3   /* a malformed timestamp ext */
#define CDEC_E_COUNT 4       /* array or map longer than msgpack accepts */
#define CDEC_E_KEY 5         /* array or map used as a map key */
#define CDEC_E_NESTING 6     /* deeper than msgpack's own stack */
#define CDEC_E_PARTIAL_SIZE 7
#define CDEC_E_SIZE 8
#define CDEC_E_DEPTH 9
#define CDEC_E_NOT_ARRAY 10
#define CDEC_E_LAYOUT 11
#define CDEC_E_IDS 12         /* the message id is not a non-negative integer */
#define CDEC_E_ARGS 13
#define CDEC_E_DECLARED_SIZE 14 /* a payload header announces a message over the size limit */

cdec *cdec_new(int v12, int64_t max_size, int max_depth);
void cdec_free(cdec *d);
/* Give the decoder its records arrays (they must outlive it): rec holds cap records
 * (cap * CDEC_REC_WIDTH int64 values, cap at most CDEC_COUNT_MASK), patch holds patch_cap
 * int64 values (at least 2): after each call patch[0] is the number of patches and the next
 * ones are indices into rec (record number * CDEC_REC_WIDTH) of the ARGS and FULL records. */
void cdec_bind_records(cdec *d, int64_t *rec, int64_t cap, int64_t *patch, int64_t patch_cap);
/* Parse data[start:len], writing records (see above); start is where the first unfinished
 * message begins. */
int64_t cdec_records(cdec *d, const char *data, int64_t start, int64_t len);
int cdec_error(const cdec *d);
/* Stream offset (bytes consumed since creation) of the first message not yet
 * returned: the offending message's offset after an error. */
int64_t cdec_offset(const cdec *d);
/* Big payloads without assembly: when the unfinished message is waiting for the rest of a
 * raw payload that is its last byte and its only argument (a chunk: [id, session, [payload]]),
 * returns 1 and sets out[0], out[1] to the payload's span relative to the message's first byte
 * (so the message is out[1] bytes long); 0 otherwise, or if that size is over the limit (the
 * ordinary path then reports it). The caller may then collect the payload itself instead of
 * passing the whole message again, and call cdec_complete_raw once all of it has arrived. */
int cdec_pending_raw(const cdec *d, int64_t *out);
/* Finish that message as if its bytes had been parsed: same checks and errors as the ordinary
 * path. Returns CDEC_OK with out[0] = id and out[1] = session, or CDEC_FRAME or CDEC_LIMIT. */
int cdec_complete_raw(cdec *d, int64_t *out);
/* CDEF-END */

#endif
