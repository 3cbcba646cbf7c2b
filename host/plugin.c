/* The transport plugin loader: search, trust checks, dlopen, ABI negotiation, upcalls. */
#include "plugin.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_METRICS 32

struct sk__plugin {
    char path[PATH_MAX];
    void *handle;
    sk_transport_desc desc; /* the plugin's descriptor, zero past its struct_size */
    void *self;
    const sk__plugin_host *host;
    char *options_text; /* transport.options as compact JSON, for option_json */
    sk_host_api api;
    pthread_mutex_t mu;
    char *metric_names[MAX_METRICS];
    int64_t metric_values[MAX_METRICS];
    unsigned char metric_levels[MAX_METRICS]; /* set by metric_set: a level, not a counter */
    int nmetrics;
    uint64_t instance; /* this load's serial: the metrics tell a reload from a counter */
    atomic_int warned_hints; /* unknown hint bits were logged once */
};

/* ---- search ------------------------------------------------------------ */

/* Calls fn(dir) for each search folder in order; stops when fn returns non-zero. */
static int each_search_dir(const json_t *plugin_path, int (*fn)(void *, const char *), void *ctx)
{
    size_t i;
    json_t *item;
    if (json_is_array(plugin_path))
        json_array_foreach(plugin_path, i, item) if (json_is_string(item) &&
                                                     fn(ctx, json_string_value(item))) return 1;
    const char *env = getenv("SPEC_KITTY_PLUGIN_PATH");
    if (env && *env) {
        char *copy = strdup(env), *save = NULL;
        for (char *d = copy ? strtok_r(copy, ":", &save) : NULL; d;
             d = strtok_r(NULL, ":", &save)) {
            if (fn(ctx, d)) {
                free(copy);
                return 1;
            }
        }
        free(copy);
    }
    /* Relative to the running binary (<prefix>/bin/..), so an install is relocatable. */
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char rel[PATH_MAX + 64];
        snprintf(rel, sizeof rel, "%s/../" SK_PLUGIN_SUBDIR, dirname(exe));
        char real[PATH_MAX];
        if (realpath(rel, real) && strcmp(real, SK_INSTALL_PLUGIN_DIR) != 0 && fn(ctx, real))
            return 1;
    }
    return fn(ctx, SK_INSTALL_PLUGIN_DIR);
}

typedef struct find_ctx {
    const char *name;
    char *out;
    size_t cap;
    char looked[2048];
} find_ctx;

static int try_dir(void *vctx, const char *dir)
{
    find_ctx *f = vctx;
    char candidate[PATH_MAX];
    if (sk__fmt(candidate, sizeof candidate, "%s/%s.so", dir, f->name))
        return 0;
    size_t used = strlen(f->looked);
    snprintf(f->looked + used, sizeof f->looked - used, "%s%s", used ? ", " : "", dir);
    if (access(candidate, F_OK) != 0)
        return 0;
    snprintf(f->out, f->cap, "%s", candidate);
    return 1;
}

sk_status sk__plugin_find(const char *name, const json_t *plugin_path, char *out, size_t cap,
                          sk__err *err)
{
    if (name[0] == '/') {
        if (sk__fmt(out, cap, "%s", name))
            return sk__fail(err, SK_ERR_PLUGIN, "plugin path too long: %s", name);
        return SK_OK;
    }
    if (strchr(name, '/'))
        return sk__fail(err, SK_ERR_PLUGIN,
                        "transport.plugin \"%s\": give a bare name or an absolute path", name);
    find_ctx f = {.name = name, .out = out, .cap = cap};
    if (each_search_dir(plugin_path, try_dir, &f))
        return SK_OK;
    return sk__fail(err, SK_ERR_PLUGIN,
                    "transport plugin \"%s\" not found (looked for %s.so in: %s)", name, name,
                    f.looked);
}

/* ---- trust and ABI checks ---------------------------------------------- */

/*
 * Whoever can write the plugin file, or any folder on its way from /, can
 * swap the code we are about to run, so (as ssh does for its keys) each must
 * belong to root or to us and be writable by no one else. The one exception
 * is a root-owned sticky folder like /tmp: others may add entries there but
 * cannot rename or replace ours.
 */
static sk_status check_trusted(mode_t type, const char *path, const char *shown, sk__err *err)
{
    const char *what = type == S_IFREG ? "file" : "folder";
    struct stat st;
    if (stat(path, &st) != 0)
        return sk__fail(err, SK_ERR_PLUGIN, "%s: %s", shown, strerror(errno));
    /* dlopen would wait for ever on a FIFO, and read a device until memory runs out. */
    if ((st.st_mode & S_IFMT) != type)
        return sk__fail(err, SK_ERR_PLUGIN, "%s: cannot load: %s is not a %s", shown, path,
                        type == S_IFREG ? "regular file" : "folder");
    int sticky_root_folder = S_ISDIR(st.st_mode) && (st.st_mode & S_ISVTX) && st.st_uid == 0;
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) && !sticky_root_folder)
        return sk__fail(err, SK_ERR_PERMISSION,
                        "%s: refusing to load: %s %s is writable by %s (mode %03o; chmod go-w %s)",
                        shown, what, path, (st.st_mode & S_IWOTH) ? "others" : "group",
                        (unsigned)(st.st_mode & 0777), path);
    if (st.st_uid != 0 && st.st_uid != geteuid())
        return sk__fail(err, SK_ERR_PERMISSION,
                        "%s: refusing to load: %s %s is owned by uid %u (expected root or uid %u)",
                        shown, what, path, (unsigned)st.st_uid, (unsigned)geteuid());
    return SK_OK;
}

/* Checks the file (symbolic links resolved), its folder and every folder above it. */
static sk_status check_file_trust(const char *path, sk__err *err)
{
    char real[PATH_MAX];
    if (!realpath(path, real))
        return sk__fail(err, SK_ERR_PLUGIN, "%s: %s", path, strerror(errno));
    sk_status st = check_trusted(S_IFREG, real, path, err);
    for (char *slash; st == SK_OK && (slash = strrchr(real, '/')) != NULL;) {
        slash[slash == real] = '\0'; /* "/x/y" -> "/x", "/x" -> "/" */
        st = check_trusted(S_IFDIR, real, path, err);
        if (slash == real)
            break;
    }
    return st;
}

/* Size a descriptor of the given minor must have at least. */
static size_t desc_size_for_minor(uint16_t minor)
{
    return minor == 0 ? SK_TRANSPORT_DESC_SIZE_1_0 : sizeof(sk_transport_desc);
}

static sk_status check_desc(const char *path, int abi_major, const sk_transport_desc *d,
                            sk_transport_desc *copy, sk__err *err)
{
    if (!d)
        return sk__fail(err, SK_ERR_PLUGIN,
                        "%s: malformed descriptor: the entry point returned NULL", path);
    if (d->struct_size < offsetof(sk_transport_desc, name))
        return sk__fail(err, SK_ERR_PLUGIN, "%s: malformed descriptor: struct_size %u is too small",
                        path, (unsigned)d->struct_size);
    if (d->abi_major != abi_major)
        return sk__fail(err, SK_ERR_PLUGIN,
                        "%s: ABI major mismatch: expected %d, plugin was built for %u.%u", path,
                        abi_major, (unsigned)d->abi_major, (unsigned)d->abi_minor);
    if (d->abi_minor > SK_TRANSPORT_ABI_MINOR)
        return sk__fail(err, SK_ERR_PLUGIN,
                        "%s: ABI minor too new: host supports up to %d.%d, plugin was built for "
                        "%u.%u (upgrade spec-kitty)",
                        path, SK_TRANSPORT_ABI_MAJOR, SK_TRANSPORT_ABI_MINOR,
                        (unsigned)d->abi_major, (unsigned)d->abi_minor);
    if (d->struct_size < desc_size_for_minor(d->abi_minor))
        return sk__fail(err, SK_ERR_PLUGIN,
                        "%s: descriptor too small for ABI %u.%u: struct_size %u, expected at least "
                        "%zu",
                        path, (unsigned)d->abi_major, (unsigned)d->abi_minor,
                        (unsigned)d->struct_size, desc_size_for_minor(d->abi_minor));
    memset(copy, 0, sizeof *copy);
    size_t n = d->struct_size < sizeof *copy ? d->struct_size : sizeof *copy;
    memcpy(copy, d, n);
    const char *missing = !copy->name || !*copy->name                            ? "name"
                          : !copy->version                                       ? "version"
                          : !copy->create                                        ? "create"
                          : !copy->destroy                                       ? "destroy"
                          : !copy->cancel                                        ? "cancel"
                          : !(copy->capabilities & (SK_CAP_SYNC | SK_CAP_ASYNC)) ? "capabilities"
                          : (copy->capabilities & SK_CAP_SYNC) && !copy->send    ? "send"
                          : (copy->capabilities & SK_CAP_ASYNC) && !copy->submit ? "submit"
                          : (copy->capabilities & SK_CAP_PROBE) && !copy->probe  ? "probe"
                                                                                 : NULL;
    if (missing)
        return sk__fail(err, SK_ERR_PLUGIN, "%s: malformed descriptor: %s is missing", path,
                        missing);
    if ((copy->capabilities & SK_CAP_ASYNC) && copy->max_in_flight < 1)
        copy->max_in_flight = 1;
    return SK_OK;
}

sk_status sk__plugin_open(const char *path, int abi_major, sk__plugin **out, sk__err *err)
{
    *out = NULL;
    if (access(path, F_OK) != 0)
        return sk__fail(err, SK_ERR_PLUGIN, "%s: plugin file not found", path);
    sk_status st = check_file_trust(path, err);
    if (st != SK_OK)
        return st;
    sk__plugin *p = calloc(1, sizeof *p);
    if (!p)
        return sk__fail(err, SK_ERR_NOMEM, "out of memory loading %s", path);
    static atomic_uint_fast64_t loads;
    p->instance = atomic_fetch_add(&loads, 1) + 1;
    snprintf(p->path, sizeof p->path, "%s", path);
    pthread_mutex_init(&p->mu, NULL);
    p->handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!p->handle) {
        const char *why = dlerror();
        st = sk__fail(err, SK_ERR_PLUGIN, "%s: cannot load: %s", path, why ? why : "unknown");
        goto fail;
    }
    char sym[64];
    snprintf(sym, sizeof sym, "spec_kitty_transport_v%d", abi_major);
    dlerror();
    void *entry = dlsym(p->handle, sym);
    if (!entry) {
        st = sk__fail(err, SK_ERR_PLUGIN, "%s: no entry symbol %s (not a transport for ABI %d)",
                      path, sym, abi_major);
        goto fail;
    }
    sk_transport_entry_v1_fn fn;
    memcpy(&fn, &entry, sizeof fn); /* object-to-function pointer, as POSIX dlsym requires */
    st = check_desc(path, abi_major, fn(SK_TRANSPORT_ABI_MINOR), &p->desc, err);
    if (st != SK_OK)
        goto fail;
    *out = p;
    return SK_OK;
fail:
    /* Never dlclose: a half-initialised library may have started threads or exit hooks. */
    pthread_mutex_destroy(&p->mu);
    free(p);
    return st;
}

/* ---- upcalls ------------------------------------------------------------ */

static void up_log(void *ctx, sk_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void up_log(void *ctx, sk_log_level level, const char *fmt, ...)
{
    sk__plugin *p = ctx;
    if (!p->host->log)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    p->host->log(p->host->ctx, level, p->desc.name, line);
}

static int64_t up_now_ms(void *ctx)
{
    (void)ctx;
    return sk__mono_ms();
}

static json_t *option(sk__plugin *p, const char *key)
{
    return p->host->options ? json_object_get(p->host->options, key) : NULL;
}

static const char *up_option_string(void *ctx, const char *key, const char *dflt)
{
    json_t *v = option(ctx, key);
    return json_is_string(v) ? json_string_value(v) : dflt;
}

static int64_t up_option_int(void *ctx, const char *key, int64_t dflt)
{
    json_t *v = option(ctx, key);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : dflt;
}

static int up_option_bool(void *ctx, const char *key, int dflt)
{
    json_t *v = option(ctx, key);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

static const char *up_option_json(void *ctx)
{
    sk__plugin *p = ctx;
    return p->options_text ? p->options_text : "{}";
}

static const char *up_host_value(void *ctx, const char *key)
{
    sk__plugin *p = ctx;
    if (strcmp(key, "server_url") == 0)
        return p->host->server_url;
    if (strcmp(key, "state_root") == 0)
        return p->host->state_root;
    if (strcmp(key, "node_id") == 0)
        return p->host->node_id;
    if (strcmp(key, "version") == 0)
        return SK_VERSION;
    return NULL;
}

static size_t up_auth_header(void *ctx, char *buf, size_t cap)
{
    sk__plugin *p = ctx;
    if (!p->host->auth_header) {
        if (cap > 0)
            buf[0] = '\0';
        return 0;
    }
    return p->host->auth_header(p->host->ctx, buf, cap);
}

/* The slot of metric name, added at 0 on first use; -1 when the table is full
   or out of memory. Called with p->mu held. */
static int metric_slot(sk__plugin *p, const char *name)
{
    int i = 0;
    while (i < p->nmetrics && strcmp(p->metric_names[i], name) != 0)
        i++;
    if (i < p->nmetrics)
        return i;
    if (i == MAX_METRICS || !(p->metric_names[i] = strdup(name)))
        return -1;
    p->metric_values[i] = 0;
    p->metric_levels[i] = 0;
    return p->nmetrics++;
}

static void up_metric_add(void *ctx, const char *name, int64_t delta)
{
    sk__plugin *p = ctx;
    pthread_mutex_lock(&p->mu);
    int i = metric_slot(p, name);
    if (i >= 0)
        p->metric_values[i] += delta;
    pthread_mutex_unlock(&p->mu);
}

static void up_metric_set(void *ctx, const char *name, int64_t value)
{
    sk__plugin *p = ctx;
    pthread_mutex_lock(&p->mu);
    int i = metric_slot(p, name);
    if (i >= 0) {
        p->metric_values[i] = value;
        p->metric_levels[i] = 1;
    }
    pthread_mutex_unlock(&p->mu);
}

void sk__plugin_each_metric(sk__plugin *p, sk__plugin_metric_fn fn, void *ctx)
{
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < p->nmetrics; i++)
        fn(ctx, &(sk__plugin_metric){p->metric_names[i], p->metric_values[i],
                                     p->metric_levels[i], p->instance});
    pthread_mutex_unlock(&p->mu);
}

sk_status sk__plugin_start(sk__plugin *p, const sk__plugin_host *host, sk__err *err)
{
    p->host = host;
    if (host->options)
        p->options_text = json_dumps(host->options, JSON_COMPACT);
    p->api = (sk_host_api){
        .struct_size = sizeof(sk_host_api),
        .abi_major = SK_TRANSPORT_ABI_MAJOR,
        .abi_minor = SK_TRANSPORT_ABI_MINOR,
        .host_ctx = p,
        .log = up_log,
        .now_ms = up_now_ms,
        .option_string = up_option_string,
        .option_int = up_option_int,
        .option_bool = up_option_bool,
        .option_json = up_option_json,
        .host_value = up_host_value,
        .auth_header = up_auth_header,
        .metric_add = up_metric_add,
        .metric_set = up_metric_set,
    };
    char why[512] = "";
    if (p->desc.create(&p->api, &p->self, why, sizeof why) != 0 || !p->self) {
        p->self = NULL;
        return sk__fail(err, SK_ERR_PLUGIN, "transport %s could not start: %s (%s)", p->desc.name,
                        why[0] ? why : "no reason given", p->path);
    }
    return SK_OK;
}

void sk__plugin_close(sk__plugin *p)
{
    if (!p)
        return;
    if (p->self)
        p->desc.destroy(p->self);
    for (int i = 0; i < p->nmetrics; i++)
        free(p->metric_names[i]);
    free(p->options_text);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

/* ---- verbs ------------------------------------------------------------- */

void sk__plugin_describe(const sk__plugin *p, sk_plugin_info *out)
{
    const sk_transport_desc *d = &p->desc;
    *out = (sk_plugin_info){.file = p->path,
                             .name = d->name,
                             .version = d->version,
                             .description = d->description ? d->description : "",
                             .abi_major = d->abi_major,
                             .abi_minor = d->abi_minor,
                             .struct_size = d->struct_size,
                             .capabilities = d->capabilities,
                             .options = d->options};
}

const char *sk__plugin_name(const sk__plugin *p)
{
    return p->desc.name;
}

uint32_t sk__plugin_caps(const sk__plugin *p)
{
    return p->desc.capabilities;
}

/* Completion rendezvous: sk__plugin_send over a plugin that only implements submit(). */
typedef struct send_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    int rc;
} send_wait;

static void send_done(void *ctx, int rc, sk_batch_result *result)
{
    (void)result;
    send_wait *w = ctx;
    pthread_mutex_lock(&w->mu);
    w->done = 1;
    w->rc = rc;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

int sk__plugin_send(sk__plugin *p, const sk_batch *b, sk_batch_result *r)
{
    if (p->desc.capabilities & SK_CAP_SYNC)
        return p->desc.send(p->self, b, r);
    send_wait w = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    int rc = p->desc.submit(p->self, b, r, send_done, &w);
    if (rc != SK_TRANSPORT_OK)
        return rc;
    pthread_mutex_lock(&w.mu);
    while (!w.done)
        pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    return w.rc;
}

/* The sk_batch_hint bits this host acts on. */
#define KNOWN_HINTS                                                                            \
    (SK_HINT_RETRY_AFTER | SK_HINT_REAUTHENTICATE | SK_HINT_TOO_LARGE | SK_HINT_POISONED |     \
     SK_HINT_PROTOCOL_MISMATCH)

uint32_t sk__plugin_hints(sk__plugin *p, const sk_batch_result *r)
{
    uint32_t unknown = r->hints & ~(uint32_t)KNOWN_HINTS;
    if (unknown && !atomic_exchange(&p->warned_hints, 1))
        up_log(p, SK_LOG_WARN, "batch hints 0x%x are unknown to this host: ignored", unknown);
    return r->hints & KNOWN_HINTS;
}

uint32_t sk__plugin_async_slots(const sk__plugin *p)
{
    return (p->desc.capabilities & SK_CAP_ASYNC) ? p->desc.max_in_flight : 0;
}

int sk__plugin_submit(sk__plugin *p, const sk_batch *b, sk_batch_result *r, sk_completion_fn done,
                      void *ctx)
{
    if (!(p->desc.capabilities & SK_CAP_ASYNC))
        return SK_TRANSPORT_UNSUPPORTED;
    return p->desc.submit(p->self, b, r, done, ctx);
}

void sk__plugin_cancel(sk__plugin *p)
{
    if (p->self)
        p->desc.cancel(p->self);
}

int sk__plugin_probe(sk__plugin *p, int64_t deadline_ms, char *reason, size_t cap)
{
    if (!(p->desc.capabilities & SK_CAP_PROBE)) {
        snprintf(reason, cap, "transport %s cannot probe a server", p->desc.name);
        return SK__PROBE_NONE;
    }
    reason[0] = '\0';
    return p->desc.probe(p->self, deadline_ms, reason, cap);
}

/* ---- listing ------------------------------------------------------------ */

typedef struct list_ctx {
    int abi_major;
    sk__plugin_list_fn fn;
    void *ctx;
    char seen[64][128];
    int nseen;
} list_ctx;

static int seen_before(list_ctx *l, const char *file)
{
    for (int i = 0; i < l->nseen; i++)
        if (strcmp(l->seen[i], file) == 0)
            return 1;
    if (l->nseen < 64)
        snprintf(l->seen[l->nseen++], sizeof l->seen[0], "%s", file);
    return 0;
}

static int name_cmp(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int list_dir(void *vctx, const char *dir)
{
    list_ctx *l = vctx;
    struct dirent **names;
    int n = scandir(dir, &names, NULL, name_cmp);
    for (int i = 0; i < n; i++) {
        const char *f = names[i]->d_name;
        size_t len = strlen(f);
        if (len > 3 && strcmp(f + len - 3, ".so") == 0 && !seen_before(l, f)) {
            char path[PATH_MAX];
            snprintf(path, sizeof path, "%s/%s", dir, f);
            sk__plugin *p = NULL;
            sk__err err = {{0}};
            sk_plugin_info e = {.file = path, .error = err.msg};
            if (sk__plugin_open(path, l->abi_major, &p, &err) == SK_OK)
                sk__plugin_describe(p, &e);
            l->fn(l->ctx, &e);
            sk__plugin_close(p); /* never started: frees the loader state, keeps the library */
        }
        free(names[i]);
    }
    if (n >= 0)
        free(names);
    return 0;
}

void sk__plugin_list(const json_t *plugin_path, int abi_major, sk__plugin_list_fn fn, void *ctx)
{
    list_ctx l = {.abi_major = abi_major, .fn = fn, .ctx = ctx};
    each_search_dir(plugin_path, list_dir, &l);
}
