/*
 * spec-kitty-transport-check PLUGIN.so [OPTIONS_JSON]
 *
 * Conformance checker for any transport: loads the plugin through the host's
 * own loader (trust checks, ABI negotiation), starts it with the given
 * transport.options, sends one batch of three valid events, and checks what a
 * host relies on: outcomes are known values, the result is filled as the
 * return code says, cancel() returns at once, destroy() returns. It delivers
 * real events to wherever the plugin sends them: point it at a test server.
 */
#include "event.h"
#include "plugin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

static void check(int ok, const char *what)
{
    printf("%s %s\n", ok ? "ok  " : "FAIL", what);
    failures += !ok;
}

static void log_line(void *ctx, sk_log_level level, const char *plugin, const char *line)
{
    (void)ctx;
    printf("     [%s %d] %s\n", plugin, (int)level, line);
}

/* Three valid envelopes, built by the host's own event builder. */
static int make_events(sk_event *evs, char ids[3][SK__ULID_LEN + 1], char *texts[3])
{
    sk__err err = {{0}};
    for (int i = 0; i < 3; i++) {
        json_t *payload =
            json_pack("{s:s, s:I}", "feature_slug", "conformance", "total_wps", (json_int_t)i);
        sk__event_fields f = {
            .event_type = "FeatureCompleted", .aggregate_id = "conformance", .payload = payload};
        json_t *env = NULL;
        sk_status st = sk__event_build(&f, i + 1, "000000000000", "local", &env, &err);
        json_decref(payload);
        if (st != SK_OK) {
            fprintf(stderr, "cannot build a test event: %s\n", err.msg);
            return -1;
        }
        texts[i] = json_dumps(env, JSON_COMPACT);
        snprintf(ids[i], sizeof ids[i], "%s", json_string_value(json_object_get(env, "event_id")));
        json_decref(env);
        evs[i] = (sk_event){ids[i], texts[i], strlen(texts[i])};
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3 || strcmp(argv[1], "--help") == 0) {
        fputs("Usage: spec-kitty-transport-check PLUGIN.so [OPTIONS_JSON]\n"
              "Loads a transport like the host does and checks its ABI behaviour.\n"
              "Exit status: 0 conformant, 1 a check failed, 2 usage or load error.\n",
              argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    json_error_t jerr;
    json_t *options = json_loads(argc == 3 ? argv[2] : "{}", 0, &jerr);
    if (!json_is_object(options)) {
        fprintf(stderr, "spec-kitty-transport-check: OPTIONS_JSON: %s\n",
                options ? "expected an object" : jerr.text);
        json_decref(options);
        return 2;
    }
    sk__plugin *p = NULL;
    sk__err err = {{0}};
    if (sk__plugin_open(argv[1], SK_TRANSPORT_ABI_MAJOR, &p, &err) != SK_OK) {
        fprintf(stderr, "spec-kitty-transport-check: %s\n", err.msg);
        json_decref(options);
        return 2;
    }
    sk_plugin_info d;
    sk__plugin_describe(p, &d);
    printf("%s %s (ABI %u.%u), capabilities 0x%x\n", d.name, d.version, d.abi_major, d.abi_minor,
           d.capabilities);
    check(*d.description, "has a description");
    sk__plugin_host host = {.server_url = getenv("SPEC_KITTY_SAAS_URL"),
                            .state_root = "/tmp",
                            .node_id = "000000000000",
                            .options = options,
                            .log = log_line};
    sk_event evs[3];
    char ids[3][SK__ULID_LEN + 1], *texts[3] = {0};
    if (sk__plugin_start(p, &host, &err) != SK_OK || make_events(evs, ids, texts) != 0) {
        if (err.msg[0])
            fprintf(stderr, "spec-kitty-transport-check: %s\n", err.msg);
        sk__plugin_close(p);
        json_decref(options);
        for (int i = 0; i < 3; i++)
            free(texts[i]);
        return 2;
    }
    sk_event_result res[3];
    for (int i = 0; i < 3; i++)
        res[i] = (sk_event_result){.outcome = SK_OUTCOME_TRANSIENT};
    sk_batch_result r = {.struct_size = sizeof r, .count = 3, .events = res};
    sk_batch b = {.struct_size = sizeof b,
                  .count = 3,
                  .events = evs,
                  .deadline_ms = sk__mono_ms() + 30000,
                  .batch_seq = 1};
    int64_t t0 = sk__mono_ms();
    int rc = sk__plugin_send(p, &b, &r);
    printf("     send returned %d in %lld ms: %s\n", rc, (long long)(sk__mono_ms() - t0),
           r.detail[0] ? r.detail : "(no detail)");
    check(rc >= SK_TRANSPORT_OK && rc <= SK_TRANSPORT_UNSUPPORTED, "send returns a known code");
    check(sk__mono_ms() - t0 <= 31000, "send returns by the batch deadline");
    int known = 1, delivered = 0;
    for (int i = 0; i < 3; i++) {
        known &= res[i].outcome >= SK_OUTCOME_DELIVERED && res[i].outcome <= SK_OUTCOME_TRANSIENT;
        delivered += res[i].outcome == SK_OUTCOME_DELIVERED;
        known &= memchr(res[i].message, '\0', sizeof res[i].message) != NULL;
    }
    check(known, "every outcome is a known value and every message is terminated");
    check(rc == SK_TRANSPORT_OK || delivered == 0, "a failed send reports nothing delivered");
    check(memchr(r.detail, '\0', sizeof r.detail) != NULL, "detail is terminated");
    t0 = sk__mono_ms();
    sk__plugin_cancel(p);
    check(sk__mono_ms() - t0 < 100, "cancel returns at once");
    sk__plugin_close(p); /* destroy: must join the plugin's threads */
    check(1, "destroy returns");
    for (int i = 0; i < 3; i++)
        free(texts[i]);
    json_decref(options);
    printf("%s\n", failures ? "NOT CONFORMANT" : "conformant");
    return failures ? 1 : 0;
}
