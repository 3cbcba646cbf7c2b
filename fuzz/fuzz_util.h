/*
 * Helpers shared by the libFuzzer harnesses: NUL-terminated copies of the
 * input, a private scratch folder, and the check that turns a broken
 * invariant into a crash libFuzzer reports.
 */
#ifndef SK_FUZZ_UTIL_H
#define SK_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* A malloc'd NUL-terminated copy of data[0..size) (aborts when memory runs out). */
char *fz_cstr(const uint8_t *data, size_t size);

/* Aborts with "fuzz invariant: WHY" when cond is false: libFuzzer saves the input. */
#define FZ_CHECK(cond, why)                                                                        \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fz_fail(why, __FILE__, __LINE__);                                                      \
    } while (0)
void fz_fail(const char *why, const char *file, int line) __attribute__((noreturn));

/*
 * A private folder for this process (under /dev/shm when it is writable, so
 * file-based harnesses stay off the disk), removed with its files at exit.
 * Returns its path; aborts when it cannot be made.
 */
const char *fz_scratch_dir(void);

/* The gzip (one member, zlib level) of in[0..len) in *out (malloc'd); returns its
 * size. Aborts on a zlib or memory failure. */
size_t fz_gzip(const uint8_t *in, size_t len, int level, uint8_t **out);

/* Writes size bytes to path (replacing it); aborts on an I/O error. */
void fz_write_file(const char *path, const void *data, size_t size);

#endif
