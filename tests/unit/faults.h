/*
 * Fault injection for the unit tests (linked into every unit test; inert until
 * installed and armed).
 *   - an SQLite VFS that wraps the default one and fails the Nth xWrite, xSync
 *     or xTruncate with SQLITE_IOERR_WRITE (or, sticky, every one from the Nth
 *     on with SQLITE_FULL, like a disk that filled up);
 *   - a failing allocator: the Nth allocation returns NULL, whether SQLite
 *     makes it (sqlite3_config(SQLITE_CONFIG_MALLOC)) or our code does
 *     (malloc/calloc/realloc, wrapped by the linker in test_faults only).
 * Counting starts when armed; fault_hit() says whether the Nth was reached.
 */
#ifndef SK_TEST_FAULTS_H
#define SK_TEST_FAULTS_H

typedef enum fault_kind { FAULT_IO, FAULT_MALLOC } fault_kind;

/* Registers the VFS as the default and the allocator; before any SQLite use. */
void fault_install(void);

/* Fails the nth operation of kind (1-based) from now on; sticky: and every later one. */
void fault_arm(fault_kind kind, long nth, int sticky);

/* Stops failing; returns non-zero when the armed fault was reached. */
int fault_disarm(void);

#endif
