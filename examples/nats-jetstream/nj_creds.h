/*
 * The shape of a NATS .creds file, checked before anything connects: the transport
 * (options.credentials_file) and sk-nats-consumer (--credentials-file) share it.
 * libnats reads the file only when it connects, and then a file without a seed looks
 * like a server that refuses us; this makes it a configuration error instead.
 */
#ifndef NJ_CREDS_H
#define NJ_CREDS_H

#include <stddef.h>

/* Larger than any real .creds file (about 1 KiB), small enough to read at once. */
#define NJ_CREDS_MAX_KIB 64
#define NJ_CREDS_MAX_BYTES (NJ_CREDS_MAX_KIB * 1024)

/* Checks that path is a secret file (nj_file_open, NJ_FILE_SECRET: owner-only, a
 * FIFO or a folder refused without waiting) holding what nats tooling writes to a
 * .creds file, in the order libnats reads it: a user JWT block, then an NKey seed
 * block, each one non-empty line between its BEGIN and END lines. Reads at most
 * NJ_CREDS_MAX_BYTES into memory it wipes before returning. 0, or -1 with one line
 * in err: `what` (the option as the user wrote it), the path, and what is wrong -
 * never a byte of the file. */
int nj_creds_check(const char *path, const char *what, char *err, size_t cap);

#endif
