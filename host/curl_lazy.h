/*
 * libcurl, loaded on first use. Most `spec-kitty` processes (emit, status)
 * never speak HTTP themselves, and mapping libcurl with its thirty-odd
 * dependencies cost each of them about 10 ms of start-up; only login and
 * token refresh need it, so host/auth.c calls it through this table.
 */
#ifndef SK_HOST_CURL_LAZY_H
#define SK_HOST_CURL_LAZY_H

#include "common.h"

#include <curl/curl.h>

typedef struct sk__curl_api {
    __typeof__(&curl_global_init) global_init;
    __typeof__(&curl_easy_init) easy_init;
    __typeof__(&curl_easy_setopt) easy_setopt;
    __typeof__(&curl_easy_perform) easy_perform;
    __typeof__(&curl_easy_getinfo) easy_getinfo;
    __typeof__(&curl_easy_cleanup) easy_cleanup;
    __typeof__(&curl_easy_strerror) easy_strerror;
    __typeof__(&curl_free) free;
    __typeof__(&curl_slist_append) slist_append;
    __typeof__(&curl_slist_free_all) slist_free_all;
    __typeof__(&curl_url) url;
    __typeof__(&curl_url_cleanup) url_cleanup;
    __typeof__(&curl_url_get) url_get;
    __typeof__(&curl_url_set) url_set;
} sk__curl_api;

/*
 * The loaded table, with curl_global_init done once (thread-safe). NULL when
 * libcurl cannot be loaded; err then names the library and dlerror()'s text.
 */
const sk__curl_api *sk__curl(sk__err *err);

#endif
