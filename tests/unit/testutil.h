/* Small helpers shared by the CMocka unit tests. */
#ifndef SK_TESTUTIL_H
#define SK_TESTUTIL_H

#include <stddef.h>

/* CMocka needs these before <cmocka.h>. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <cmocka.h>

/* Creates a fresh private temporary folder; returns its path (static storage per call slot). */
char *sk_test_mkdtemp(void);
/* Removes a folder tree (rm -rf). */
void sk_test_rmtree(const char *path);
/* Writes a text file. */
void sk_test_write_file(const char *path, const char *text);

#endif
