/*
 * gzip of one batch body, zlib against libdeflate: bytes and time per level.
 * The body is what http-batch sends, {"events": [1000 envelopes]} (~470 kB);
 * compression is whole-buffer in both (zlib: deflateInit2 for gzip, one
 * deflate(Z_FINISH); libdeflate: libdeflate_gzip_compress), decompression
 * too (zlib: inflate into a buffer of the known size, as the receiver did).
 * Usage: bench_gzip [rounds] (default 50). CPU time per batch, median of
 * the rounds.
 */
#define _POSIX_C_SOURCE 200809L
#include "bench.h"

#include <libdeflate.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#define EVENTS 1000

static double cpu_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static char *batch_body(size_t *len)
{
    size_t cap = EVENTS * 700 + 64, n = 0;
    char *b = malloc(cap);
    n += (size_t)snprintf(b, cap, "{\"events\":[");
    bench_envelope e;
    for (long i = 0; i < EVENTS; i++) {
        bench_envelope_make(&e, i);
        n += (size_t)snprintf(b + n, cap - n, "%s%s", i ? "," : "", e.data);
    }
    n += (size_t)snprintf(b + n, cap - n, "]}");
    *len = n;
    return b;
}

static size_t zlib_gzip(const char *in, size_t len, unsigned char *out, size_t cap, int level)
{
    z_stream z = {0};
    if (deflateInit2(&z, level, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return 0;
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)len;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    int rc = deflate(&z, Z_FINISH);
    size_t n = rc == Z_STREAM_END ? z.total_out : 0;
    deflateEnd(&z);
    return n;
}

static size_t zlib_gunzip(const unsigned char *in, size_t len, char *out, size_t cap)
{
    z_stream z = {0};
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK)
        return 0;
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)len;
    z.next_out = (Bytef *)out;
    z.avail_out = (uInt)cap;
    int rc = inflate(&z, Z_FINISH);
    size_t n = rc == Z_STREAM_END ? z.total_out : 0;
    inflateEnd(&z);
    return n;
}

static size_t ld_gzip(const char *in, size_t len, unsigned char *out, size_t cap, int level)
{
    struct libdeflate_compressor *c = libdeflate_alloc_compressor(level);
    size_t n = c ? libdeflate_gzip_compress(c, in, len, out, cap) : 0;
    libdeflate_free_compressor(c);
    return n;
}

static size_t ld_gunzip(const unsigned char *in, size_t len, char *out, size_t cap)
{
    struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
    size_t n = 0;
    if (d && libdeflate_gzip_decompress(d, in, len, out, cap, &n) != LIBDEFLATE_SUCCESS)
        n = 0;
    libdeflate_free_decompressor(d);
    return n;
}

typedef struct codec {
    const char *name;
    size_t (*gzip)(const char *, size_t, unsigned char *, size_t, int);
    size_t (*gunzip)(const unsigned char *, size_t, char *, size_t);
} codec;

static void measure(const codec *c, int level, const char *body, size_t len, int rounds)
{
    size_t cap = len + len / 10 + 1024, n = 0;
    unsigned char *z = malloc(cap);
    char *back = malloc(len);
    double *comp = calloc((size_t)rounds, sizeof *comp), *dec = calloc((size_t)rounds, sizeof *dec);
    for (int r = 0; r < rounds; r++) {
        double t0 = cpu_us();
        n = c->gzip(body, len, z, cap, level);
        double t1 = cpu_us();
        size_t m = c->gunzip(z, n, back, len);
        comp[r] = t1 - t0;
        dec[r] = cpu_us() - t1;
        if (!n || m != len || memcmp(back, body, len) != 0) {
            fprintf(stderr, "bench_gzip: %s level %d: round trip failed\n", c->name, level);
            exit(1);
        }
    }
    qsort(comp, (size_t)rounds, sizeof *comp, cmp_double);
    qsort(dec, (size_t)rounds, sizeof *dec, cmp_double);
    printf("%-10s level %2d: %7zu bytes (%4.1fx), gzip %6.0f us, gunzip %5.0f us per batch "
           "(%.2f / %.2f us per event)\n",
           c->name, level, n, (double)len / (double)n, comp[rounds / 2], dec[rounds / 2],
           comp[rounds / 2] / EVENTS, dec[rounds / 2] / EVENTS);
    free(z);
    free(back);
    free(comp);
    free(dec);
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 50;
    if (rounds <= 0) {
        fprintf(stderr, "usage: bench_gzip [rounds]\n");
        return 2;
    }
    size_t len = 0;
    char *body = batch_body(&len);
    printf("batch body: %d events, %zu bytes\n", EVENTS, len);
    static const codec zl = {"zlib", zlib_gzip, zlib_gunzip};
    static const codec ld = {"libdeflate", ld_gzip, ld_gunzip};
    static const int zlib_levels[] = {1, 6, 9}, ld_levels[] = {1, 3, 6, 9, 12};
    for (size_t i = 0; i < sizeof zlib_levels / sizeof *zlib_levels; i++)
        measure(&zl, zlib_levels[i], body, len, rounds);
    for (size_t i = 0; i < sizeof ld_levels / sizeof *ld_levels; i++)
        measure(&ld, ld_levels[i], body, len, rounds);
    free(body);
    return 0;
}
