/*
 * maildir_journal_record.h - the bytes of the write-ahead journal, with
 * no I/O: a record's header made and read back, the header slots that
 * say where the last checkpoint left off. maildir_journal.c writes them,
 * maildir_replay.c reads them; fuzz/fuzz_journal.c feeds this parser
 * whole journal images.
 *
 * The file (little-endian throughout):
 *
 *   0      header slot 0 ┐ the valid one with the higher generation
 *   4096   header slot 1 ┘ says where replay starts
 *   8192   records, each 8-byte aligned:
 *            96-byte header: "SMTPDJR1", type (u32), names length (u32),
 *                            sequence (u64), body length (u64),
 *                            SHA-256 of the body, HMAC-SHA-256 of the
 *                            record (its first 64 header bytes and the
 *                            names) under the journal's key
 *            names:  the file's name in new/, then each mailbox, each
 *                    ending in a NUL
 *            body:   the exact bytes of the file
 *            zeros up to the next multiple of 8
 *
 * A record of type WRAP says "the next one is at 8192"; so does the end
 * of the file when fewer than 96 bytes are left there. Sequence numbers
 * go up by one per record (a WRAP counts), so a record left from an
 * earlier lap never passes for the next one. The key is 32 random bytes
 * drawn each time an instance takes the journal, kept in the slots
 * (the file is 0600): a message body is bytes a client chose, and once
 * the ring has wrapped an old body may lie right where replay looks for
 * the next record; without the key a client could have written one that
 * passes.
 */
#ifndef MAILDIR_JOURNAL_RECORD_H
#define MAILDIR_JOURNAL_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "maildir_sha256.h"

#define JOURNAL_SLOT_SIZE   4096
#define JOURNAL_DATA_START  (2 * JOURNAL_SLOT_SIZE)
#define JOURNAL_REC_HEADER  96
#define JOURNAL_SLOT_BYTES  96      /* the part of a slot that is used */
#define JOURNAL_KEY_LEN     32
#define JOURNAL_NAMES_MAX   8192    /* a name and up to 100 mailboxes */

enum jrec_type { JREC_MESSAGE = 1, JREC_WRAP = 2 };

struct jrec {
    uint32_t type;
    uint32_t names_len;
    uint64_t seq;
    uint64_t body_len;
    uint8_t body_sha[SHA256_LEN];
    uint8_t rec_sha[SHA256_LEN];
};

/* Where the last checkpoint left off: replay starts at tail_off with the
 * record numbered tail_seq. */
struct jslot {
    uint64_t generation;
    uint64_t tail_off;
    uint64_t tail_seq;
    uint8_t key[JOURNAL_KEY_LEN];   /* the records' checksum key */
};

/* Bytes a record takes in the file, padding included. */
uint64_t jrec_size(uint32_t names_len, uint64_t body_len);

/*
 * Fills r (its body_sha must be set by the caller, who hashed the body)
 * and writes its 96-byte header into out, computing the record's own
 * checksum over it and the names under key.
 */
void jrec_encode(struct jrec *r, const uint8_t key[JOURNAL_KEY_LEN],
                 const char *names, uint8_t out[JOURNAL_REC_HEADER]);

/*
 * Reads a header. 0 when it is a well-formed header of the record
 * numbered want_seq (magic, type, sizes within limits), else -1. The
 * names and body are not checked yet: jrec_check_names and the SHA-256s
 * after the caller has read them.
 */
int jrec_decode(const uint8_t in[JOURNAL_REC_HEADER], uint64_t want_seq,
                struct jrec *r);

/* 0 when names (r->names_len bytes) match the record's checksum under
 * key and are well formed: a file name, then 1-100 mailboxes, each
 * ending in a NUL, none empty, with no "/" in the file name and no "."
 * or ".." parts nor a leading "/" in a mailbox (a WRAP record: its
 * checksum alone, names ""). -1 otherwise. */
int jrec_check_names(const struct jrec *r, const uint8_t key[JOURNAL_KEY_LEN],
                     const uint8_t in[JOURNAL_REC_HEADER], const char *names);

/* The next NUL-terminated name after *pos in names (start with *pos 0),
 * or NULL at the end. */
const char *jrec_next_name(const char *names, uint32_t len, uint32_t *pos);

/* Header slot: 96 bytes made (with its checksum) and read back (0 when
 * the magic and checksum hold and the tail lies inside file_size). */
void jslot_encode(const struct jslot *s, uint8_t out[JOURNAL_SLOT_BYTES]);
int jslot_decode(const uint8_t in[JOURNAL_SLOT_BYTES], uint64_t file_size,
                 struct jslot *s);

/* The slot to trust of two (either may be NULL when it did not decode):
 * the one with the higher generation; NULL when neither. */
const struct jslot *jslot_pick(const struct jslot *a, const struct jslot *b);

#endif
