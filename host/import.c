/* `sync import`: file-drop bundles into the queue, each verified whole before any event is queued. */
#include "import.h"
#include "bundle.h"
#include "event.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct import_ctx {
    sk_sync *s;
    json_t **envs;
    size_t n, cap;
    char why[1024];
} import_ctx;

/* One verified bundle line: an envelope, accepted as `emit --file` accepts a full one. */
static sk_status collect(void *vctx, const char *event_id, const char *json, size_t len)
{
    import_ctx *c = vctx;
    if (atomic_load(&c->s->cancel)) { /* the bundle is dropped whole: nothing of it is queued */
        snprintf(c->why, sizeof c->why, "cancelled");
        return SK_ERR_CANCELLED;
    }
    size_t cap = c->cap;
    if (!sk__grow((void **)&c->envs, &cap, c->n + 1, sizeof *c->envs))
        return SK_ERR_NOMEM;
    c->cap = cap;
    sk__err err = {{0}};
    sk_status st = sk__event_from_line(json, len, NULL, &c->envs[c->n], NULL, &err);
    if (st != SK_OK) {
        snprintf(c->why, sizeof c->why, "event %s: %s", event_id, err.msg);
        return st;
    }
    c->n++;
    return SK_OK;
}

static void release(import_ctx *c)
{
    for (size_t i = 0; i < c->n; i++)
        json_decref(c->envs[i]);
    free(c->envs);
}

/*
 * Moves a bundle folder into imported/ beside it, through a descriptor of
 * imported/ opened without following links: an imported/ that is a symbolic
 * link would send processed bundles wherever it points. On failure, why says
 * what went wrong.
 */
static int move_aside(const char *bundle, char *why, size_t cap)
{
    char copy[PATH_MAX], dir[PATH_MAX];
    snprintf(copy, sizeof copy, "%s", bundle);
    snprintf(dir, sizeof dir, "%s/imported", dirname(copy));
    snprintf(copy, sizeof copy, "%s", bundle);
    const char *name = basename(copy);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(why, cap, "cannot create %s: %s", dir, strerror(errno));
        return -1;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct stat sb;
    if (fd < 0) {
        int saved = errno;
        snprintf(why, cap, "%s: %s", dir,
                 lstat(dir, &sb) == 0 && S_ISLNK(sb.st_mode) ? "a symbolic link: refused"
                 : saved == ENOTDIR                          ? "not a folder"
                                                             : strerror(saved));
        return -1;
    }
    int rc = renameat(AT_FDCWD, bundle, fd, name);
    if (rc != 0)
        snprintf(why, cap, "%s: %s", dir, strerror(errno));
    close(fd);
    return rc;
}

/* Imports one bundle folder and reports it. */
static sk_status import_bundle(sk_sync *s, const char *path, unsigned flags, sk_bundle_fn fn,
                               void *ctx)
{
    import_ctx c = {.s = s};
    sk__bundle_info info;
    sk__err err = {{0}};
    int verify_only = (flags & SK_IMPORT_VERIFY_ONLY) != 0;
    sk_status st = sk__bundle_read(path, verify_only ? NULL : collect, &c, &info, &err);
    if (st == SK_OK && !verify_only)
        st = sk__sync_enqueue_envelopes(s, c.envs, c.n, &err);
    release(&c);
    char why[PATH_MAX + 64] = "";
    if (st == SK_OK && !verify_only && !(flags & SK_IMPORT_KEEP))
        move_aside(path, why, sizeof why);
    sk_bundle_report r = {.path = path,
                          .status = st,
                          .error = st == SK_OK ? "" : c.why[0] ? c.why : err.msg,
                          .warning = why,
                          .bundle_id = info.bundle_id,
                          .node_id = info.node_id,
                          .events = info.event_count};
    if (fn)
        fn(ctx, &r);
    return st;
}

static int is_bundle(const char *path)
{
    size_t n = strlen(path);
    while (n > 0 && path[n - 1] == '/')
        n--;
    size_t sl = strlen(SK__BUNDLE_SUFFIX);
    return n > sl && strncmp(path + n - sl, SK__BUNDLE_SUFFIX, sl) == 0;
}

sk_status sk__sync_import(sk_sync *s, const char *path, unsigned flags, sk_bundle_fn fn, void *ctx)
{
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return sk__fail(&s->err, SK_ERR_NOT_FOUND, "%s: not a bundle or outbox folder", path);
    if (is_bundle(path))
        return import_bundle(s, path, flags, fn, ctx);
    char **names = NULL;
    size_t count = 0;
    sk_status st = sk__bundle_list(path, &names, &count, &s->err);
    if (st != SK_OK)
        return st;
    sk_status first = SK_OK;
    for (size_t j = 0; j < count && !atomic_load(&s->cancel); j++) {
        char bundle[PATH_MAX * 2];
        snprintf(bundle, sizeof bundle, "%s/%s", path, names[j]);
        st = import_bundle(s, bundle, flags, fn, ctx);
        if (first == SK_OK)
            first = st;
    }
    sk__bundle_list_free(names, count);
    if (atomic_load(&s->cancel))
        return SK_ERR_CANCELLED;
    return first;
}
