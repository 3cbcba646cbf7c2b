/* `spec-kitty sync import`: queue the events of file-drop bundles on a connected machine. */
#include "bundle.h"
#include "cli.h"
#include "event.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char USAGE[] =
    "Usage: spec-kitty sync import [--keep] [--verify-only] PATH...\n\n"
    "Queues the events of file-drop bundles (written on an air-gapped machine) so\n"
    "that the next sync delivers them. PATH is one bundle (a *.skb folder) or an\n"
    "outbox folder (all its bundles, in order). Each bundle is verified against its\n"
    "manifest before any of its events is queued; a damaged bundle is reported and\n"
    "left where it is. Events already queued are not duplicated, and the server\n"
    "drops duplicates of events it already has.\n\n"
    "Options:\n"
    "  --keep         leave imported bundles in place (default: move them into an\n"
    "                 imported/ folder beside them, so they are not imported twice)\n"
    "  --verify-only  check the bundles, queue nothing\n"
    "  -h, --help     this help\n\n"
    "Exit status: 0 every bundle imported, 1 some bundle was damaged or could not\n"
    "be queued (the others were), 2 usage error.\n";

typedef struct import_ctx {
    json_t **envs;
    size_t n, cap;
    char why[1024];
} import_ctx;

static sk_status collect(void *vctx, const char *event_id, const char *json, size_t len)
{
    import_ctx *c = vctx;
    if (cli_interrupted()) { /* the bundle is dropped whole: nothing of it is queued */
        snprintf(c->why, sizeof c->why, "interrupted by %s", cli_signal_name(cli_interrupted()));
        return SK_ERR_CANCELLED;
    }
    json_error_t jerr;
    json_t *env = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    sk__err err = {{0}};
    if (!env || sk__event_accept(env, &err) != SK_OK) {
        snprintf(c->why, sizeof c->why, "event %s: %s", event_id, env ? err.msg : jerr.text);
        json_decref(env);
        return SK_ERR_INVALID_EVENT;
    }
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 1024;
        json_t **grown = realloc(c->envs, cap * sizeof *grown);
        if (!grown) {
            json_decref(env);
            return SK_ERR_NOMEM;
        }
        c->envs = grown;
        c->cap = cap;
    }
    c->envs[c->n++] = env;
    return SK_OK;
}

static void release(import_ctx *c)
{
    for (size_t i = 0; i < c->n; i++)
        json_decref(c->envs[i]);
    c->n = 0;
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

static int import_bundle(sk_sync *s, const char *path, int keep, int verify_only, size_t *events)
{
    import_ctx c = {0};
    sk__bundle_info info;
    sk__err err = {{0}};
    sk_status st = sk__bundle_read(path, verify_only ? NULL : collect, &c, &info, &err);
    if (st != SK_OK) {
        cli_error("%s: not imported: %s", path, c.why[0] ? c.why : err.msg);
        release(&c);
        free(c.envs);
        return st == SK_ERR_CANCELLED ? EXIT_OK : EXIT_FAIL; /* not damaged: interrupted */
    }
    if (!verify_only)
        st = sk__sync_enqueue_envelopes(s, c.envs, c.n, &err);
    release(&c);
    free(c.envs);
    if (st != SK_OK) {
        cli_error("%s: not imported: %s", path, err.msg);
        return EXIT_FAIL;
    }
    *events += (size_t)info.event_count;
    printf("%s %s: %lld events (node %s)\n", verify_only ? "verified" : "imported", info.bundle_id,
           (long long)info.event_count, info.node_id[0] ? info.node_id : "unknown");
    char why[PATH_MAX + 64];
    if (!verify_only && !keep && move_aside(path, why, sizeof why) != 0)
        cli_warn("%s: imported, but not moved into imported/: %s", path, why);
    return EXIT_OK;
}

static int is_bundle(const char *path)
{
    size_t n = strlen(path);
    while (n > 0 && path[n - 1] == '/')
        n--;
    size_t sl = strlen(SK__BUNDLE_SUFFIX);
    return n > sl && strncmp(path + n - sl, SK__BUNDLE_SUFFIX, sl) == 0;
}

int cmd_import(int argc, char **argv)
{
    if (cli_wants_help(argc, argv, USAGE))
        return EXIT_OK;
    int keep = 0, verify_only = 0, first = 1;
    for (; first < argc && argv[first][0] == '-'; first++) {
        if (strcmp(argv[first], "--keep") == 0)
            keep = 1;
        else if (strcmp(argv[first], "--verify-only") == 0)
            verify_only = 1;
        else {
            cli_error("sync import: unknown option \"%s\" (see --help)", argv[first]);
            return EXIT_USAGE;
        }
    }
    if (first == argc) {
        cli_error("sync import: give one or more bundles or outbox folders (see --help)");
        return EXIT_USAGE;
    }
    int code;
    sk_sync *s = cli_open(&code);
    if (!s)
        return code;
    size_t events = 0, bundles = 0;
    int failed = 0;
    cli_cancel_scope_begin(s); /* a signal stops the import between bundles */
    for (int i = first; i < argc && !cli_interrupted(); i++) {
        struct stat sb;
        if (stat(argv[i], &sb) != 0 || !S_ISDIR(sb.st_mode)) {
            cli_error("%s: not a bundle or outbox folder", argv[i]);
            failed = 1;
            continue;
        }
        if (is_bundle(argv[i])) {
            failed |= import_bundle(s, argv[i], keep, verify_only, &events) != EXIT_OK;
            bundles++;
            continue;
        }
        char **names = NULL;
        size_t count = 0;
        sk__err err;
        if (sk__bundle_list(argv[i], &names, &count, &err) != SK_OK) {
            cli_error("%s", err.msg);
            failed = 1;
            continue;
        }
        for (size_t j = 0; j < count && !cli_interrupted(); j++) {
            char path[PATH_MAX * 2];
            snprintf(path, sizeof path, "%s/%s", argv[i], names[j]);
            failed |= import_bundle(s, path, keep, verify_only, &events) != EXIT_OK;
            bundles++;
        }
        sk__bundle_list_free(names, count);
    }
    printf("%s %zu events from %zu bundles%s%s\n", verify_only ? "verified" : "queued", events,
           bundles, failed ? " (some bundles failed: see above)" : "",
           cli_interrupted() ? " (interrupted: the other bundles were left as they are)" : "");
    cli_cancel_scope_end();
    sk_close(s);
    return failed ? EXIT_FAIL : EXIT_OK;
}
