/*
 * maildir_replay.h - reading a journal back: its checkpoint slots, and
 * the replay that makes every record after the last checkpoint whole in
 * its mailboxes again (after a crash, or a power cut that lost files the
 * checkpoint had not synced yet). Runs before the first client, or on the
 * committer's thread when it takes over a journal whose owner died.
 */
#ifndef MAILDIR_REPLAY_H
#define MAILDIR_REPLAY_H

#include <stdint.h>

#include "maildir_journal_record.h"

struct replay_result {
    unsigned records;       /* message records after the checkpoint */
    unsigned restored;      /* files written again (missing or damaged) */
    unsigned skipped;       /* names whose mailbox is gone */
};

/* The slot replay trusts, in *slot: 0, or -1 when neither slot of fd
 * (a journal of size bytes) is valid (a journal never used, or one whose
 * creation did not finish). */
int journal_slot_read(int fd, uint64_t size, struct jslot *slot);

/* Writes *slot into its place (by generation) and syncs it: the
 * checkpoint's last step. 0, or -1 with errno. */
int journal_slot_write(int fd, const struct jslot *slot);

/*
 * Replays the journal open (and locked) in fd into root's mailboxes:
 * each record after the checkpoint, up to the first that is torn or does
 * not follow (it was never acknowledged), is checked against new/ and
 * cur/ and written again where it is missing or differs. Then everything
 * is synced (syncfs of root's filesystem) and a new checkpoint written:
 * *end gets it, where the next record goes. A journal without a valid
 * slot replays nothing: *end has generation 0. 0, or -1 with errno.
 */
int journal_replay(const char *root, int fd, struct jslot *end,
                   struct replay_result *res);

/* At start: replays every journal in root/.journal/ that no running
 * instance holds (flock). How many files it wrote again, or -1 with
 * errno when the directory cannot be read. */
int journal_recover(const char *root);

#endif
