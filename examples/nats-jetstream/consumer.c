/*
 * sk-nats-consumer: the other half of the nats-jetstream transport. It reads
 * the stream through a durable pull consumer, stores each event once in
 * SQLite (deduplicated by event_id, whatever JetStream's duplicate window
 * let through), and acks a message only after its row is committed: a crash
 * in between redelivers it, and the primary key drops it again.
 *
 *   sk-nats-consumer --stream NAME --db FILE [--servers URL[,URL...]]
 *       [--subject FILTER] [--durable NAME] [--idle-exit MS]
 *       [--credentials-file F] [--token-file F] [--tls-ca F]
 *
 * Exit status: 0 stopped (SIGINT/SIGTERM, or --idle-exit with nothing new),
 * 1 NATS or SQLite failed, 2 usage (a --credentials-file that is not an owner-only
 * .creds file, or a --token-file that is not an owner-only file holding a token,
 * included: both are checked before anything opens).
 */
#include "nj_creds.h"
#include "nj_file.h"

#include <jansson.h>
#include <nats/nats.h>
#include <sqlite3.h>

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define FETCH_BATCH 256
#define FETCH_WAIT_MS 500

typedef struct consumer_args {
    const char *servers;
    const char *stream;
    const char *subject;
    const char *durable;
    const char *db;
    const char *credentials_file;
    const char *token_file;
    const char *tls_ca;
    long idle_exit_ms; /* 0: run until a signal */
} consumer_args;

typedef struct counts {
    long long received;
    long long stored;
    long long duplicates;
} counts;

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void usage(FILE *to)
{
    fputs("Usage: sk-nats-consumer --stream NAME --db FILE [--servers URL[,URL...]]\n"
          "         [--subject FILTER] [--durable NAME] [--idle-exit MS]\n"
          "         [--credentials-file F] [--token-file F] [--tls-ca F]\n"
          "Stores each event of the stream once in FILE (table events), acking after commit.\n",
          to);
}

static int parse_args(int argc, char **argv, consumer_args *a)
{
    static const struct option longs[] = {{"servers", required_argument, NULL, 's'},
                                          {"stream", required_argument, NULL, 'S'},
                                          {"subject", required_argument, NULL, 'j'},
                                          {"durable", required_argument, NULL, 'd'},
                                          {"db", required_argument, NULL, 'b'},
                                          {"idle-exit", required_argument, NULL, 'i'},
                                          {"credentials-file", required_argument, NULL, 'c'},
                                          {"token-file", required_argument, NULL, 't'},
                                          {"tls-ca", required_argument, NULL, 'a'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
    *a = (consumer_args){.servers = "nats://127.0.0.1:4222",
                         .subject = "spec-kitty.events.*",
                         .durable = "spec-kitty-consumer"};
    int c;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (c) {
        case 's':
            a->servers = optarg;
            break;
        case 'S':
            a->stream = optarg;
            break;
        case 'j':
            a->subject = optarg;
            break;
        case 'd':
            a->durable = optarg;
            break;
        case 'b':
            a->db = optarg;
            break;
        case 'i': {
            char *end;
            errno = 0;
            a->idle_exit_ms = strtol(optarg, &end, 10);
            if (!isdigit((unsigned char)optarg[0]) || *end || errno) { /* no blank or sign */
                fprintf(stderr,
                        "sk-nats-consumer: --idle-exit \"%s\": not milliseconds "
                        "(0 to %ld)\n",
                        optarg, LONG_MAX);
                return -1;
            }
            break;
        }
        case 'c':
            a->credentials_file = optarg;
            break;
        case 't':
            a->token_file = optarg;
            break;
        case 'a':
            a->tls_ca = optarg;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            return -1;
        }
    }
    if (optind != argc || !a->stream || !a->db) {
        fprintf(stderr, "sk-nats-consumer: --stream and --db are required\n");
        return -1;
    }
    return 0;
}

static int db_open(const char *path, sqlite3 **db)
{
    const char *schema = "PRAGMA journal_mode=WAL;"
                         "CREATE TABLE IF NOT EXISTS events ("
                         " event_id TEXT PRIMARY KEY, subject TEXT NOT NULL,"
                         " stream_seq INTEGER NOT NULL, data TEXT NOT NULL,"
                         " received_at INTEGER NOT NULL);";
    if (sqlite3_open(path, db) != SQLITE_OK ||
        sqlite3_exec(*db, schema, NULL, NULL, NULL) != SQLITE_OK) {
        fprintf(stderr, "sk-nats-consumer: %s: %s\n", path, sqlite3_errmsg(*db));
        return -1;
    }
    sqlite3_busy_timeout(*db, 10000);
    return 0;
}

/* The event's id: the Nats-Msg-Id header, else the envelope's event_id. */
static char *event_id_of(natsMsg *m)
{
    const char *id = NULL;
    if (natsMsgHeader_Get(m, "Nats-Msg-Id", &id) == NATS_OK && id && *id)
        return strdup(id);
    json_t *env = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, NULL);
    const char *v = json_string_value(json_object_get(env, "event_id"));
    char *copy = v ? strdup(v) : NULL;
    json_decref(env);
    return copy;
}

/* Stores one fetched list in one transaction. 0, or -1 (nothing is acked then). */
static int store(sqlite3 *db, natsMsgList *list, counts *n)
{
    sqlite3_stmt *ins = NULL;
    int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(db,
                                "INSERT OR IGNORE INTO events(event_id, subject, stream_seq, "
                                "data, received_at) VALUES (?, ?, ?, ?, strftime('%s','now'))",
                                -1, &ins, NULL);
    long long stored = 0, dups = 0;
    for (int i = 0; rc == SQLITE_OK && i < list->Count; i++) {
        natsMsg *m = list->Msgs[i];
        char *id = event_id_of(m);
        jsMsgMetaData *meta = NULL;
        natsMsg_GetMetaData(&meta, m);
        if (!id) {
            fprintf(stderr, "sk-nats-consumer: message %llu has no event id: skipped\n",
                    meta ? (unsigned long long)meta->Sequence.Stream : 0ull);
            jsMsgMetaData_Destroy(meta);
            continue;
        }
        sqlite3_bind_text(ins, 1, id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(ins, 2, natsMsg_GetSubject(m), -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(ins, 3, meta ? (sqlite3_int64)meta->Sequence.Stream : 0);
        sqlite3_bind_text(ins, 4, natsMsg_GetData(m), natsMsg_GetDataLength(m), SQLITE_TRANSIENT);
        rc = sqlite3_step(ins) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
        if (sqlite3_changes(db) == 1)
            stored++;
        else
            dups++;
        sqlite3_reset(ins);
        free(id);
        jsMsgMetaData_Destroy(meta);
    }
    sqlite3_finalize(ins);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        fprintf(stderr, "sk-nats-consumer: %s\n", sqlite3_errmsg(db));
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    n->received += list->Count;
    n->stored += stored;
    n->duplicates += dups;
    return 0;
}

/* The files the flags name are configuration, checked before anything opens: a
 * fault is one line naming the flag and the file (exit 2), not a failure to connect
 * later (or a wait for ever on a FIFO). *token gets --token-file's token (the caller
 * wipes and frees it). 0, or -1. */
static int read_secrets(const consumer_args *a, char **token)
{
    char err[PATH_MAX + 256];
    int rc = 0;
    if (a->tls_ca)
        rc =
            nj_file_check(a->tls_ca, "sk-nats-consumer: --tls-ca", NJ_FILE_PUBLIC, err, sizeof err);
    if (rc == 0 && a->credentials_file)
        rc = nj_creds_check(a->credentials_file, "sk-nats-consumer: --credentials-file", err,
                            sizeof err);
    if (rc == 0 && a->token_file)
        rc = nj_token_read(a->token_file, "sk-nats-consumer: --token-file", token, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "%s\n", err);
    return rc;
}

/* token: --token-file's, read by read_secrets; NULL without one. */
static natsStatus open_connection(const consumer_args *a, const char *token, natsConnection **nc)
{
    natsOptions *o = NULL;
    natsStatus s = natsOptions_Create(&o);
    char *list = strdup(a->servers);
    const char *urls[16];
    int n = 0;
    bool tls = a->tls_ca != NULL; /* libnats alone would read tls:// as nats:// */
    for (char *save = NULL, *u = list ? strtok_r(list, ",", &save) : NULL; u && n < 16;
         u = strtok_r(NULL, ",", &save)) {
        urls[n++] = u;
        tls = tls || strncasecmp(u, "tls://", 6) == 0;
    }
    if (s == NATS_OK)
        s = n ? natsOptions_SetServers(o, urls, n) : NATS_INVALID_ARG;
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(o, -1);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectWait(o, 250);
    if (s == NATS_OK && a->credentials_file) /* checked by read_secrets */
        s = natsOptions_SetUserCredentialsFromFiles(o, a->credentials_file, NULL);
    if (s == NATS_OK && token)
        s = natsOptions_SetToken(o, token);
    if (s == NATS_OK && tls)
        s = natsOptions_SetSecure(o, true);
    if (s == NATS_OK && a->tls_ca)
        s = natsOptions_LoadCATrustedCertificates(o, a->tls_ca);
    if (s == NATS_OK)
        s = natsConnection_Connect(nc, o);
    natsOptions_Destroy(o);
    free(list);
    return s;
}

/* Binds the durable pull consumer (created on first use). A cluster may still be
 * electing the stream's or its own leader: other errors than a missing stream are
 * retried for 30 s. */
static natsStatus subscribe(const consumer_args *a, jsCtx *js, natsSubscription **sub)
{
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = a->stream;
    so.Config.AckPolicy = js_AckExplicit;
    so.Config.AckWait = 30LL * 1000000000LL; /* nanoseconds */
    long long give_up = mono_ms() + 30000;
    for (;;) {
        jsErrCode jerr = 0;
        natsStatus s = js_PullSubscribe(sub, js, a->subject, a->durable, NULL, &so, &jerr);
        if (s == NATS_OK || jerr == JSStreamNotFoundErr || stop || mono_ms() >= give_up)
            return s;
        nats_Sleep(250);
    }
}

/* Fetches, stores and acks until a signal, or until idle for --idle-exit. */
static int consume(const consumer_args *a, natsSubscription *sub, sqlite3 *db, counts *n)
{
    long long idle_since = mono_ms();
    while (!stop) {
        natsMsgList list = {0};
        jsErrCode jerr = 0;
        natsStatus s = natsSubscription_Fetch(&list, sub, FETCH_BATCH, FETCH_WAIT_MS, &jerr);
        if (s == NATS_TIMEOUT || (s == NATS_OK && list.Count == 0)) {
            natsMsgList_Destroy(&list);
            if (a->idle_exit_ms && mono_ms() - idle_since >= a->idle_exit_ms)
                break;
            continue;
        }
        if (s != NATS_OK) {
            /* Reconnecting, leader moving: wait and fetch again; unacked messages come back. */
            fprintf(stderr, "sk-nats-consumer: fetch: %s\n", natsStatus_GetText(s));
            natsMsgList_Destroy(&list);
            nats_Sleep(250);
            continue;
        }
        if (store(db, &list, n) != 0) {
            natsMsgList_Destroy(&list);
            return -1;
        }
        for (int i = 0; i < list.Count; i++)
            natsMsg_Ack(list.Msgs[i], NULL);
        natsMsgList_Destroy(&list);
        idle_since = mono_ms();
    }
    return 0;
}

int main(int argc, char **argv)
{
    consumer_args a;
    if (parse_args(argc, argv, &a) != 0) {
        usage(stderr);
        return 2;
    }
    char *token = NULL;
    if (read_secrets(&a, &token) != 0)
        return 2;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    sqlite3 *db = NULL;
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    natsSubscription *sub = NULL;
    counts n = {0};
    int rc = 1;
    if (db_open(a.db, &db) != 0)
        goto out;
    natsStatus s = open_connection(&a, token, &nc);
    if (s == NATS_OK)
        s = natsConnection_JetStream(&js, nc, NULL);
    if (s == NATS_OK)
        s = subscribe(&a, js, &sub);
    if (s != NATS_OK) {
        const char *why = nats_GetLastError(NULL);
        fprintf(stderr, "sk-nats-consumer: %s: %s\n", a.servers,
                why && *why ? why : natsStatus_GetText(s));
        goto out;
    }
    if (consume(&a, sub, db, &n) == 0)
        rc = 0;
    printf("received %lld messages: %lld events stored, %lld duplicates dropped\n", n.received,
           n.stored, n.duplicates);
out:
    natsSubscription_Destroy(sub);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    sqlite3_close(db);
    nats_Close();
    if (token)
        explicit_bzero(token, strlen(token));
    free(token);
    return rc;
}
