/*
 * The files an option names (tls_ca, credentials_file, token_file, and the consumer's
 * flags that take the same files), checked before anything connects: libnats would
 * open them only when it connects, wait for ever on a FIFO, and report a missing
 * or unreadable one as a failure to connect. The transport and sk-nats-consumer
 * share these checks, so both refuse the same files in the same words.
 */
#ifndef NJ_FILE_H
#define NJ_FILE_H

#include <stddef.h>

/* What nj_file_open wants of the file beyond being a readable regular file. */
typedef enum nj_file_kind {
    NJ_FILE_PUBLIC, /* anyone may read it (a CA bundle) */
    NJ_FILE_SECRET, /* ours or root's, closed to group and others (chmod 600) */
} nj_file_kind;

#define NJ_STR(x) NJ_STR_(x)
#define NJ_STR_(x) #x
/* What follows the path of a file larger than a bound of kib KiB. */
#define NJ_TOO_LARGE(kib, not_what) "is larger than " NJ_STR(kib) " KiB: not " not_what

/* Larger than any real token, small enough to read at once. */
#define NJ_TOKEN_MAX_KIB 4
#define NJ_TOKEN_MAX_BYTES (NJ_TOKEN_MAX_KIB * 1024)

/* Opens path for reading without waiting (a FIFO opens at once, then is refused) and
 * checks the open file: a NJ_FILE_SECRET one must be owner-only, and any must be a
 * regular file. Returns the descriptor (the caller closes it), or -1 with one line in
 * err: `what` (the option as the user wrote it), the path, and what is wrong. */
int nj_file_open(const char *path, const char *what, nj_file_kind kind, char *err, size_t cap);

/* nj_file_open's checks alone, for a file libnats opens itself (a CA bundle): 0, or -1
 * with its line in err. */
int nj_file_check(const char *path, const char *what, nj_file_kind kind, char *err, size_t cap);

/* Reads all of fd into buf, at most cap bytes; *len gets the count. 0, or -1 (errno). */
int nj_file_read(int fd, char *buf, size_t cap, size_t *len);

/* Reads the auth token held in path, a NJ_FILE_SECRET file of at most
 * NJ_TOKEN_MAX_BYTES, its trailing blanks and line ends dropped. 0 with *token a new
 * string the caller wipes (explicit_bzero) and frees; or -1 with one line in err as
 * nj_file_open writes it (an empty file included) - never a byte of the file. */
int nj_token_read(const char *path, const char *what, char **token, char *err, size_t cap);

#endif
