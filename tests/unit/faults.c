/* Fault injection for the unit tests: see faults.h. */
#include "faults.h"

#include <sqlite3.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static atomic_int armed_kind = -1;
static atomic_long countdown, reached;
static atomic_int sticky_fault;

void fault_arm(fault_kind kind, long nth, int sticky)
{
    atomic_store(&countdown, nth);
    atomic_store(&reached, 0);
    atomic_store(&sticky_fault, sticky);
    atomic_store(&armed_kind, (int)kind);
}

int fault_disarm(void)
{
    atomic_store(&armed_kind, -1);
    return atomic_load(&reached) != 0;
}

/* Counts one operation of kind; non-zero when it must fail. */
static int fault_now(fault_kind kind)
{
    if (atomic_load(&armed_kind) != (int)kind)
        return 0;
    long left = atomic_fetch_sub(&countdown, 1) - 1;
    if (left == 0 || (left < 0 && atomic_load(&sticky_fault))) {
        atomic_store(&reached, 1);
        return 1;
    }
    return 0;
}

/* ---- the allocator ------------------------------------------------------- */

static sqlite3_mem_methods sqlite_mem;

static void *sq_malloc(int n)
{
    return fault_now(FAULT_MALLOC) ? NULL : sqlite_mem.xMalloc(n);
}

static void *sq_realloc(void *p, int n)
{
    return fault_now(FAULT_MALLOC) ? NULL : sqlite_mem.xRealloc(p, n);
}

/* Our code's allocations (test_faults is linked with -Wl,--wrap=malloc,...). */
void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);

void *__wrap_malloc(size_t n)
{
    return fault_now(FAULT_MALLOC) ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
    return fault_now(FAULT_MALLOC) ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n)
{
    return fault_now(FAULT_MALLOC) ? NULL : __real_realloc(p, n);
}

/* ---- the VFS --------------------------------------------------------------- */

typedef struct fault_file {
    sqlite3_file base;
    sqlite3_file *real; /* the default VFS's file, allocated right after this struct */
} fault_file;

static sqlite3_vfs *real_vfs;
static sqlite3_vfs fault_vfs;

#define REAL(f) (((fault_file *)(f))->real)

static int io_fault(void)
{
    if (!fault_now(FAULT_IO))
        return 0;
    return atomic_load(&sticky_fault) ? SQLITE_FULL : SQLITE_IOERR_WRITE;
}

static int f_close(sqlite3_file *f)
{
    return REAL(f)->pMethods ? REAL(f)->pMethods->xClose(REAL(f)) : SQLITE_OK;
}
static int f_read(sqlite3_file *f, void *buf, int n, sqlite3_int64 off)
{
    return REAL(f)->pMethods->xRead(REAL(f), buf, n, off);
}
static int f_write(sqlite3_file *f, const void *buf, int n, sqlite3_int64 off)
{
    int rc = io_fault();
    return rc ? rc : REAL(f)->pMethods->xWrite(REAL(f), buf, n, off);
}
static int f_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    int rc = io_fault();
    return rc ? rc : REAL(f)->pMethods->xTruncate(REAL(f), size);
}
static int f_sync(sqlite3_file *f, int flags)
{
    return io_fault() ? SQLITE_IOERR_FSYNC : REAL(f)->pMethods->xSync(REAL(f), flags);
}
static int f_size(sqlite3_file *f, sqlite3_int64 *size)
{
    return REAL(f)->pMethods->xFileSize(REAL(f), size);
}
static int f_lock(sqlite3_file *f, int l)
{
    return REAL(f)->pMethods->xLock(REAL(f), l);
}
static int f_unlock(sqlite3_file *f, int l)
{
    return REAL(f)->pMethods->xUnlock(REAL(f), l);
}
static int f_check_lock(sqlite3_file *f, int *out)
{
    return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}
static int f_control(sqlite3_file *f, int op, void *arg)
{
    return REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}
static int f_sector(sqlite3_file *f)
{
    return REAL(f)->pMethods->xSectorSize(REAL(f));
}
static int f_caps(sqlite3_file *f)
{
    return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}
static int f_shm_map(sqlite3_file *f, int pg, int pgsz, int extend, void volatile **pp)
{
    return REAL(f)->pMethods->xShmMap(REAL(f), pg, pgsz, extend, pp);
}
static int f_shm_lock(sqlite3_file *f, int off, int n, int flags)
{
    return REAL(f)->pMethods->xShmLock(REAL(f), off, n, flags);
}
static void f_shm_barrier(sqlite3_file *f)
{
    REAL(f)->pMethods->xShmBarrier(REAL(f));
}
static int f_shm_unmap(sqlite3_file *f, int del)
{
    return REAL(f)->pMethods->xShmUnmap(REAL(f), del);
}
/* No memory-mapped reads: every page goes through xRead. */
static int f_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp)
{
    (void)f;
    (void)off;
    (void)n;
    *pp = NULL;
    return SQLITE_OK;
}
static int f_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
    (void)f;
    (void)off;
    (void)p;
    return SQLITE_OK;
}

static const sqlite3_io_methods fault_io = {
    3,         f_close,     f_read,      f_write,      f_truncate,    f_sync,
    f_size,    f_lock,      f_unlock,    f_check_lock, f_control,     f_sector,
    f_caps,    f_shm_map,   f_shm_lock,  f_shm_barrier, f_shm_unmap,  f_fetch,
    f_unfetch,
};

static int v_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out_flags)
{
    (void)vfs;
    fault_file *ff = (fault_file *)f;
    ff->real = (sqlite3_file *)(ff + 1);
    memset(ff->real, 0, (size_t)real_vfs->szOsFile);
    int rc = real_vfs->xOpen(real_vfs, name, ff->real, flags, out_flags);
    f->pMethods = rc == SQLITE_OK ? &fault_io : NULL;
    return rc;
}

static int v_delete(sqlite3_vfs *vfs, const char *name, int sync_dir)
{
    (void)vfs;
    return real_vfs->xDelete(real_vfs, name, sync_dir);
}
static int v_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
    (void)vfs;
    return real_vfs->xAccess(real_vfs, name, flags, out);
}
static int v_full(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
    (void)vfs;
    return real_vfs->xFullPathname(real_vfs, name, n, out);
}
static int v_random(sqlite3_vfs *vfs, int n, char *out)
{
    (void)vfs;
    return real_vfs->xRandomness(real_vfs, n, out);
}
static int v_sleep(sqlite3_vfs *vfs, int us)
{
    (void)vfs;
    return real_vfs->xSleep(real_vfs, us);
}
static int v_time(sqlite3_vfs *vfs, double *out)
{
    (void)vfs;
    return real_vfs->xCurrentTime(real_vfs, out);
}
static int v_error(sqlite3_vfs *vfs, int n, char *out)
{
    (void)vfs;
    return real_vfs->xGetLastError(real_vfs, n, out);
}
static int v_time64(sqlite3_vfs *vfs, sqlite3_int64 *out)
{
    (void)vfs;
    return real_vfs->xCurrentTimeInt64(real_vfs, out);
}

void fault_install(void)
{
    sqlite3_config(SQLITE_CONFIG_GETMALLOC, &sqlite_mem);
    sqlite3_mem_methods m = sqlite_mem;
    m.xMalloc = sq_malloc;
    m.xRealloc = sq_realloc;
    sqlite3_config(SQLITE_CONFIG_MALLOC, &m);
    sqlite3_initialize();
    real_vfs = sqlite3_vfs_find(NULL);
    fault_vfs = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = (int)sizeof(fault_file) + real_vfs->szOsFile,
        .mxPathname = real_vfs->mxPathname,
        .zName = "sk-faults",
        .xOpen = v_open,
        .xDelete = v_delete,
        .xAccess = v_access,
        .xFullPathname = v_full,
        .xRandomness = v_random,
        .xSleep = v_sleep,
        .xCurrentTime = v_time,
        .xGetLastError = v_error,
        .xCurrentTimeInt64 = v_time64,
    };
    sqlite3_vfs_register(&fault_vfs, 1);
}
