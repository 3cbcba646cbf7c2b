/* libcurl through dlopen on first use: see curl_lazy.h for why. */
#include "curl_lazy.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define LIBCURL "libcurl.so.4"

static sk__curl_api api;
static char load_error[512];
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* Resolves one symbol into *slot (object pointer to function pointer, as dlsym requires). */
static int resolve(void *lib, const char *name, void *slot, size_t size)
{
    void *sym = dlsym(lib, name);
    if (!sym) {
        snprintf(load_error, sizeof load_error, "%s: no symbol %s", LIBCURL, name);
        return -1;
    }
    memcpy(slot, &sym, size);
    return 0;
}

#define RESOLVE(field, name) resolve(lib, name, &api.field, sizeof api.field)

static void load(void)
{
    /* Never closed: libcurl registers exit-time cleanups of its TLS library. */
    void *lib = dlopen(LIBCURL, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        const char *why = dlerror();
        snprintf(load_error, sizeof load_error, "cannot load %s: %s", LIBCURL,
                 why ? why : "unknown error");
        return;
    }
    if (RESOLVE(global_init, "curl_global_init") || RESOLVE(easy_init, "curl_easy_init") ||
        RESOLVE(easy_setopt, "curl_easy_setopt") || RESOLVE(easy_perform, "curl_easy_perform") ||
        RESOLVE(easy_getinfo, "curl_easy_getinfo") || RESOLVE(easy_cleanup, "curl_easy_cleanup") ||
        RESOLVE(easy_strerror, "curl_easy_strerror") || RESOLVE(free, "curl_free") ||
        RESOLVE(slist_append, "curl_slist_append") ||
        RESOLVE(slist_free_all, "curl_slist_free_all") || RESOLVE(url, "curl_url") ||
        RESOLVE(url_cleanup, "curl_url_cleanup") || RESOLVE(url_get, "curl_url_get") ||
        RESOLVE(url_set, "curl_url_set")) {
        memset(&api, 0, sizeof api);
        return;
    }
    api.global_init(CURL_GLOBAL_DEFAULT);
}

const sk__curl_api *sk__curl(sk__err *err)
{
    pthread_once(&once, load);
    if (!api.easy_init) {
        sk__fail(err, SK_ERR_INTERNAL, "%s", load_error);
        return NULL;
    }
    return &api;
}
