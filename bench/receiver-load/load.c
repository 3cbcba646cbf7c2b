/*
 * receiver-load: a small load client for spec-kitty-receiver (or any server
 * speaking the batch contract). Builds N gzip batches of valid events up
 * front (not timed), then posts them over C keep-alive connections and
 * reports events/s from the first request to the last answer.
 */
#include <curl/curl.h>
#include <getopt.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <zlib.h>

typedef struct opts {
    const char *url;
    const char *token;
    const char *cacert;
    long batches;
    long per_batch;
    long connections;
    int h2c;
    int identity;
    int verify;
} opts;

typedef struct body {
    char *data;
    size_t len;
} body;

typedef struct shared {
    const opts *o;
    body *bodies;
    atomic_long next;
    atomic_long success, duplicate, rejected, other, http_errors;
} shared;

/* Monotonic seconds. */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Crockford base32 digits of v, width chars, into out. */
static void crockford(unsigned long long v, int width, char *out)
{
    static const char a[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    for (int i = width - 1; i >= 0; i--) {
        out[i] = a[v & 31];
        v >>= 5;
    }
}

/* The JSON text of batch b: per_batch WPStatusChanged events with unique ids. */
static char *batch_json(const opts *o, const char run[11], long b, size_t *len)
{
    size_t cap = (size_t)o->per_batch * 600 + 64, n = 0;
    char *s = malloc(cap);
    if (!s)
        return NULL;
    n += (size_t)snprintf(s, cap, "{\"events\":[");
    for (long i = 0; i < o->per_batch; i++) {
        char id[27];
        memcpy(id, run, 10);
        crockford((unsigned long long)(b * o->per_batch + i), 16, id + 10);
        id[26] = '\0';
        n += (size_t)snprintf(
            s + n, cap - n,
            "%s{\"event_id\":\"%s\",\"event_type\":\"WPStatusChanged\",\"aggregate_id\":"
            "\"WP%02ld\",\"aggregate_type\":\"WorkPackage\",\"payload\":{\"wp_id\":\"WP%02ld\","
            "\"previous_status\":\"planned\",\"new_status\":\"doing\",\"changed_by\":"
            "\"load-client\",\"feature_slug\":\"042-load-test\"},\"node_id\":\"0123456789ab\","
            "\"lamport_clock\":%ld,\"causation_id\":null,\"timestamp\":"
            "\"2026-11-26T10:00:00.000Z\",\"team_slug\":\"local\"}",
            i ? "," : "", id, i % 100, i % 100, b * o->per_batch + i + 1);
    }
    n += (size_t)snprintf(s + n, cap - n, "]}");
    *len = n;
    return s;
}

/* gzip of in (a new buffer), or NULL. */
static char *gzip(const char *in, size_t len, size_t *out_len)
{
    z_stream z = {0};
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 8,
                     Z_DEFAULT_STRATEGY) != Z_OK)
        return NULL;
    size_t cap = deflateBound(&z, (uLong)len);
    char *out = malloc(cap);
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)len;
    z.next_out = (Bytef *)out;
    z.avail_out = (uInt)cap;
    int rc = out ? deflate(&z, Z_FINISH) : Z_MEM_ERROR;
    *out_len = z.total_out;
    deflateEnd(&z);
    if (rc != Z_STREAM_END) {
        free(out);
        return NULL;
    }
    return out;
}

/* Builds every batch body before timing starts. */
static int build_bodies(const opts *o, body *bodies)
{
    unsigned char rnd[8];
    char run[11];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
        return -1;
    unsigned long long r = 0;
    memcpy(&r, rnd, sizeof r);
    crockford(r >> 14, 10, run); /* 50 random bits: a fresh id space per run */
    run[0] = '0';
    run[10] = '\0';
    for (long b = 0; b < o->batches; b++) {
        size_t len = 0;
        char *text = batch_json(o, run, b, &len);
        if (!text)
            return -1;
        if (o->identity) {
            bodies[b].data = text;
            bodies[b].len = len;
            continue;
        }
        bodies[b].data = gzip(text, len, &bodies[b].len);
        free(text);
        if (!bodies[b].data)
            return -1;
    }
    return 0;
}

typedef struct response {
    char *data;
    size_t len;
} response;

static size_t on_data(char *p, size_t size, size_t n, void *cls)
{
    response *r = cls;
    char *nd = realloc(r->data, r->len + size * n + 1);
    if (!nd)
        return 0;
    memcpy(nd + r->len, p, size * n);
    r->data = nd;
    r->len += size * n;
    r->data[r->len] = '\0';
    return size * n;
}

/* Occurrences of needle in hay. */
static long count_of(const char *hay, const char *needle)
{
    long n = 0;
    size_t step = strlen(needle);
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += step)
        n++;
    return n;
}

/*
 * Counts the per-event statuses of one 200 answer. A plain text count, not a
 * JSON parse: the client must stay cheap so it measures the server. --verify
 * parses every answer with Jansson instead.
 */
static void count_results(shared *sh, const response *r)
{
    const char *t = r->data ? r->data : "";
    if (!sh->o->verify) {
        long ok = count_of(t, "\"status\":\"success\""),
             dup = count_of(t, "\"status\":\"duplicate\"");
        long bad = count_of(t, "\"status\":\"rejected\"");
        sh->success += ok;
        sh->duplicate += dup;
        sh->rejected += bad;
        sh->other += count_of(t, "\"status\":") - ok - dup - bad;
        return;
    }
    json_t *root = json_loadb(t, r->len, 0, NULL);
    size_t i;
    json_t *res;
    json_array_foreach(json_object_get(root, "results"), i, res)
    {
        const char *st = json_string_value(json_object_get(res, "status"));
        if (st && strcmp(st, "success") == 0)
            sh->success++;
        else if (st && strcmp(st, "duplicate") == 0)
            sh->duplicate++;
        else if (st && strcmp(st, "rejected") == 0)
            sh->rejected++;
        else
            sh->other++;
    }
    json_decref(root);
}

/* One connection: posts batches until none are left. */
static void *worker(void *cls)
{
    shared *sh = cls;
    const opts *o = sh->o;
    CURL *h = curl_easy_init();
    struct curl_slist *hdrs = NULL;
    char auth[512], url[1024];
    snprintf(url, sizeof url, "%s/api/v1/events/batch/", o->url);
    hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    hdrs = curl_slist_append(hdrs, "X-Spec-Kitty-Sync-Protocol: 2.0");
    hdrs = curl_slist_append(hdrs, "Expect:");
    if (!o->identity)
        hdrs = curl_slist_append(hdrs, "Content-Encoding: gzip");
    if (o->token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", o->token);
        hdrs = curl_slist_append(hdrs, auth);
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    if (o->h2c) {
        curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE);
        /* libcurl 7.88 (Debian 12) fails the second request on a reused h2c
         * prior-knowledge connection (curl issue 10634, fixed in 8.0): one
         * connection per batch instead. */
        curl_easy_setopt(h, CURLOPT_FORBID_REUSE, 1L);
    }
    if (o->cacert)
        curl_easy_setopt(h, CURLOPT_CAINFO, o->cacert);
    long b;
    while ((b = sh->next++) < o->batches) {
        response r = {0};
        long code = 0;
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, sh->bodies[b].data);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)sh->bodies[b].len);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &r);
        CURLcode rc = curl_easy_perform(h);
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
        if (rc == CURLE_OK && code == 200) {
            count_results(sh, &r);
        } else if (sh->http_errors++ == 0) {
            fprintf(stderr, "receiver-load: batch %ld: %s, HTTP %ld: %.200s\n", b,
                    curl_easy_strerror(rc), code, r.data ? r.data : "");
        }
        free(r.data);
    }
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    return NULL;
}

static const char usage[] =
    "usage: receiver-load --url BASE [--batches N] [--events-per-batch M] [--connections C]\n"
    "                     [--token ACCESS] [--cacert FILE] [--h2c] [--identity] [--verify]\n";

/* Parses argv; returns 0 or the exit code. */
static int parse(int argc, char **argv, opts *o)
{
    static const struct option lo[] = {{"url", 1, NULL, 'u'},
                                       {"batches", 1, NULL, 'b'},
                                       {"events-per-batch", 1, NULL, 'e'},
                                       {"connections", 1, NULL, 'c'},
                                       {"token", 1, NULL, 't'},
                                       {"cacert", 1, NULL, 'k'},
                                       {"h2c", 0, NULL, '2'},
                                       {"identity", 0, NULL, 'i'},
                                       {"help", 0, NULL, 'h'},
                                       {"verify", 0, NULL, 'v'},
                                       {NULL, 0, NULL, 0}};
    *o = (opts){.batches = 200, .per_batch = 1000, .connections = 2};
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'u':
            o->url = optarg;
            break;
        case 'b':
            o->batches = atol(optarg);
            break;
        case 'e':
            o->per_batch = atol(optarg);
            break;
        case 'c':
            o->connections = atol(optarg);
            break;
        case 't':
            o->token = optarg;
            break;
        case 'k':
            o->cacert = optarg;
            break;
        case '2':
            o->h2c = 1;
            break;
        case 'i':
            o->identity = 1;
            break;
        case 'v':
            o->verify = 1;
            break;
        case 'h':
            fputs(usage, stdout);
            return -1;
        default:
            fputs(usage, stderr);
            return 2;
        }
    }
    if (!o->url || o->batches < 1 || o->per_batch < 1 || o->connections < 1 ||
        o->connections > 256) {
        fputs(usage, stderr);
        return 2;
    }
    return 0;
}

int main(int argc, char **argv)
{
    opts o;
    int rc = parse(argc, argv, &o);
    if (rc)
        return rc < 0 ? 0 : rc;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    shared sh = {.o = &o};
    sh.bodies = calloc((size_t)o.batches, sizeof *sh.bodies);
    pthread_t *threads = calloc((size_t)o.connections, sizeof *threads);
    if (!sh.bodies || !threads || build_bodies(&o, sh.bodies) != 0) {
        fprintf(stderr, "receiver-load: cannot build the batches\n");
        return 1;
    }
    size_t bytes = 0;
    for (long b = 0; b < o.batches; b++)
        bytes += sh.bodies[b].len;
    double t0 = now_s();
    for (long i = 0; i < o.connections; i++)
        pthread_create(&threads[i], NULL, worker, &sh);
    for (long i = 0; i < o.connections; i++)
        pthread_join(threads[i], NULL);
    double secs = now_s() - t0;
    long total = o.batches * o.per_batch;
    printf("batches=%ld events=%ld connections=%ld body_bytes=%zu seconds=%.3f "
           "events_per_s=%.0f success=%ld duplicate=%ld rejected=%ld other=%ld http_errors=%ld\n",
           o.batches, total, o.connections, bytes, secs, (double)sh.success / secs,
           (long)sh.success, (long)sh.duplicate, (long)sh.rejected, (long)sh.other,
           (long)sh.http_errors);
    for (long b = 0; b < o.batches; b++)
        free(sh.bodies[b].data);
    free(sh.bodies);
    free(threads);
    curl_global_cleanup();
    return sh.http_errors || sh.success != total ? 1 : 0;
}
