/* The sync config: defaults, file values, environment, and each error message. */
#include "testutil.h"

#include "config.h"

#include <stdlib.h>
#include <string.h>

static sk__config *parse_ok(const char *text)
{
    sk__config *cfg = NULL;
    sk__err err = {{0}};
    sk_status st = sk__config_parse("/x/sync.json", text, &cfg, &err);
    if (st != SK_OK)
        fail_msg("unexpected config error: %s", err.msg);
    return cfg;
}

static void expect_error(const char *text, const char *needle)
{
    sk__config *cfg = NULL;
    sk__err err = {{0}};
    assert_int_equal(sk__config_parse("/x/sync.json", text, &cfg, &err), SK_ERR_CONFIG);
    assert_null(cfg);
    if (!strstr(err.msg, needle))
        fail_msg("error \"%s\" does not contain \"%s\"", err.msg, needle);
}

static size_t key_index(const char *name)
{
    for (size_t i = 0; i < sk__config_key_count(); i++) {
        sk__config_key_info k;
        sk__config_key_describe(i, &k);
        if (strcmp(k.name, name) == 0)
            return i;
    }
    fail_msg("no key %s", name);
    return 0;
}

static void missing_file_gives_documented_defaults(void **state)
{
    (void)state;
    unsetenv("SPEC_KITTY_SAAS_URL");
    sk__config *cfg = parse_ok(NULL);
    assert_false(cfg->file_exists);
    assert_string_equal(cfg->server_url, "");
    assert_string_equal(cfg->transport_plugin, "http-batch");
    assert_int_equal(cfg->transport_abi, 1);
    assert_int_equal(cfg->queue_max_events, 100000);
    assert_int_equal(cfg->queue_durability, SK__DURABILITY_FULL);
    assert_int_equal(cfg->interval_s, 300);
    assert_int_equal(cfg->max_batch_events, 1000);
    assert_int_equal(cfg->max_batch_bytes, 900000);
    assert_int_equal(cfg->min_batch_interval_ms, 5000);
    assert_int_equal(cfg->backoff_min_ms, 500);
    assert_int_equal(cfg->backoff_max_ms, 30000);
    assert_int_equal(cfg->max_retries, 20);
    assert_int_equal(cfg->shutdown_deadline_ms, 5000);
    assert_int_equal(json_object_size(cfg->transport_options), 0);
    assert_string_equal(cfg->transport_fallback, ""); /* no fallback unless asked for */
    assert_int_equal(cfg->transport_fallback_after, 3);
    assert_string_equal(cfg->transport_fallback_url, "");
    sk__config_source src;
    json_t *v = sk__config_value_json(cfg, key_index("schedule.interval_s"), &src);
    assert_int_equal(src, SK__SRC_DEFAULT);
    assert_int_equal(json_integer_value(v), 300);
    json_decref(v);
    sk__config_free(cfg);
}

static void file_values_override_defaults_and_say_so(void **state)
{
    (void)state;
    unsetenv("SPEC_KITTY_SAAS_URL");
    sk__config *cfg = parse_ok("{\"server_url\": \"https://sk.example\",\n"
                               " \"transport\": {\"plugin\": \"file-drop\", \"abi\": 1,\n"
                               "   \"options\": {\"outbox\": \"/tmp/o\"},\n"
                               "   \"fallback\": \"http-batch\", \"fallback_after\": 5,\n"
                               "   \"fallback_url\": \"http://fb.example\"},\n"
                               " \"plugin_path\": [\"/opt/sk\"],\n"
                               " \"queue\": {\"max_events\": 50, \"durability\": \"normal\"},\n"
                               " \"schedule\": {\"interval_s\": 60, \"max_retries\": 3}}");
    assert_true(cfg->file_exists);
    assert_string_equal(cfg->server_url, "https://sk.example");
    assert_string_equal(cfg->transport_plugin, "file-drop");
    assert_string_equal(json_string_value(json_object_get(cfg->transport_options, "outbox")),
                        "/tmp/o");
    assert_string_equal(json_string_value(json_array_get(cfg->plugin_path, 0)), "/opt/sk");
    assert_string_equal(cfg->transport_fallback, "http-batch");
    assert_int_equal(cfg->transport_fallback_after, 5);
    assert_string_equal(cfg->transport_fallback_url, "http://fb.example");
    assert_int_equal(cfg->queue_max_events, 50);
    assert_int_equal(cfg->queue_durability, SK__DURABILITY_NORMAL);
    assert_int_equal(cfg->interval_s, 60);
    assert_int_equal(cfg->max_retries, 3);
    sk__config_source src;
    json_decref(sk__config_value_json(cfg, key_index("queue.durability"), &src));
    assert_int_equal(src, SK__SRC_FILE);
    json_decref(sk__config_value_json(cfg, key_index("schedule.backoff_min_ms"), &src));
    assert_int_equal(src, SK__SRC_DEFAULT);
    assert_null(cfg->warnings);
    sk__config_free(cfg);
}

static void environment_url_overrides_file(void **state)
{
    (void)state;
    setenv("SPEC_KITTY_SAAS_URL", "http://127.0.0.1:9", 1);
    sk__config *cfg = parse_ok("{\"server_url\": \"https://sk.example\"}");
    assert_string_equal(cfg->server_url, "http://127.0.0.1:9");
    sk__config_source src;
    json_decref(sk__config_value_json(cfg, key_index("server_url"), &src));
    assert_int_equal(src, SK__SRC_ENV);
    assert_string_equal(sk__config_source_name(src), "environment");
    sk__config_free(cfg);
    unsetenv("SPEC_KITTY_SAAS_URL");
}

static void malformed_json_names_file_line_and_column(void **state)
{
    (void)state;
    expect_error("{\n  \"server_url\": \"x\",\n  oops\n}", "/x/sync.json:3:");
    expect_error("[1, 2]", "/x/sync.json: expected a JSON object at the top level");
    expect_error("{\"a\": 1, \"a\": 2}", "/x/sync.json:1:");
}

static void wrong_type_names_key_and_expected_type(void **state)
{
    (void)state;
    expect_error("{\"queue\": {\"max_events\": \"many\"}}",
                 "/x/sync.json: queue.max_events: expected integer");
    expect_error("{\"server_url\": 5}", "server_url: expected string");
    expect_error("{\"queue\": {\"durability\": \"sometimes\"}}",
                 "queue.durability: expected \"full\" or \"normal\"");
    expect_error("{\"transport\": {\"options\": []}}", "transport.options: expected object");
    expect_error("{\"plugin_path\": [\"/a\", 3]}", "plugin_path: expected list of strings");
    expect_error("{\"schedule\": 7}", "schedule: expected object");
}

static void out_of_range_values_are_refused(void **state)
{
    (void)state;
    expect_error("{\"schedule\": {\"max_batch_events\": 5000}}",
                 "schedule.max_batch_events: 5000 is out of range (expected 1 to 1000)");
    expect_error("{\"transport\": {\"abi\": 2}}", "transport.abi: 2 is out of range");
    expect_error("{\"schedule\": {\"backoff_min_ms\": 9000, \"backoff_max_ms\": 1000}}",
                 "schedule.backoff_min_ms (9000) is larger than schedule.backoff_max_ms (1000)");
    expect_error("{\"transport\": {\"plugin\": \"\"}}", "transport.plugin: must not be empty");
}

static void unknown_keys_warn_and_do_not_fail(void **state)
{
    (void)state;
    sk__config *cfg = parse_ok("{\"colour\": true, \"schedule\": {\"interval\": 5}}");
    assert_non_null(cfg->warnings);
    assert_non_null(strstr(cfg->warnings[0], "unknown key \"colour\""));
    assert_non_null(strstr(cfg->warnings[1], "unknown key \"schedule.interval\""));
    assert_null(cfg->warnings[2]);
    assert_int_equal(cfg->interval_s, 300);
    sk__config_free(cfg);
}

static void load_reads_the_state_root_file(void **state)
{
    (void)state;
    char *root = sk_test_mkdtemp();
    char path[1024];
    snprintf(path, sizeof path, "%s/sync.json", root);
    sk__config *cfg = NULL;
    sk__err err = {{0}};
    assert_int_equal(sk__config_load(root, &cfg, &err), SK_OK);
    assert_false(cfg->file_exists);
    sk__config_free(cfg);
    sk_test_write_file(path, "{\"schedule\": {\"interval_s\": 42}}");
    assert_int_equal(sk__config_load(root, &cfg, &err), SK_OK);
    assert_true(cfg->file_exists);
    assert_int_equal(cfg->interval_s, 42);
    assert_string_equal(cfg->path, path);
    sk__config_free(cfg);
    sk_test_write_file(path, "{");
    assert_int_equal(sk__config_load(root, &cfg, &err), SK_ERR_CONFIG);
    assert_non_null(strstr(err.msg, path));
    sk_test_rmtree(root);
    free(root);
}

static void every_key_is_described(void **state)
{
    (void)state;
    assert_true(sk__config_key_count() >= 14);
    for (size_t i = 0; i < sk__config_key_count(); i++) {
        sk__config_key_info k;
        sk__config_key_describe(i, &k);
        assert_true(strlen(k.name) > 0);
        assert_true(strlen(k.help) > 10);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(missing_file_gives_documented_defaults),
        cmocka_unit_test(file_values_override_defaults_and_say_so),
        cmocka_unit_test(environment_url_overrides_file),
        cmocka_unit_test(malformed_json_names_file_line_and_column),
        cmocka_unit_test(wrong_type_names_key_and_expected_type),
        cmocka_unit_test(out_of_range_values_are_refused),
        cmocka_unit_test(unknown_keys_warn_and_do_not_fail),
        cmocka_unit_test(load_reads_the_state_root_file),
        cmocka_unit_test(every_key_is_described),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
