/* The plugin loader: search order, trust checks and every ABI refusal, each with its message. */
#include "testutil.h"

#include "plugin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *plugin_dir(void)
{
    const char *d = getenv("SK_TEST_PLUGIN_DIR");
    assert_non_null(d);
    return d;
}

static void fixture_path(const char *name, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s.so", plugin_dir(), name);
}

/* Opens a fixture and expects a refusal whose message contains each needle. */
static void expect_refusal(const char *path, sk_status want, const char *needle1,
                           const char *needle2)
{
    sk__plugin *p = NULL;
    sk__err err = {{0}};
    assert_int_equal(sk__plugin_open(path, 1, &p, &err), want);
    assert_null(p);
    if (!strstr(err.msg, path))
        fail_msg("message does not name the file: %s", err.msg);
    if (!strstr(err.msg, needle1) || (needle2 && !strstr(err.msg, needle2)))
        fail_msg("message \"%s\" lacks \"%s\" / \"%s\"", err.msg, needle1, needle2 ? needle2 : "");
}

static void current_plugin_loads_with_its_option_table(void **state)
{
    (void)state;
    char path[1024];
    fixture_path("scripted", path, sizeof path);
    sk__plugin *p = NULL;
    sk__err err = {{0}};
    assert_int_equal(sk__plugin_open(path, 1, &p, &err), SK_OK);
    sk_plugin_info d;
    sk__plugin_describe(p, &d);
    assert_string_equal(d.name, "scripted");
    assert_int_equal(d.abi_minor, SK_TRANSPORT_ABI_MINOR);
    assert_non_null(d.options);
    assert_string_equal(d.options[0].name, "steps");
    sk__plugin_close(p);
}

static void plugin_built_for_older_minor_loads_and_reads_as_zero_past_its_size(void **state)
{
    (void)state;
    char path[1024];
    fixture_path("abi_old_minor", path, sizeof path);
    sk__plugin *p = NULL;
    sk__err err = {{0}};
    assert_int_equal(sk__plugin_open(path, 1, &p, &err), SK_OK);
    sk_plugin_info d;
    sk__plugin_describe(p, &d);
    assert_int_equal(d.abi_minor, 0);
    assert_int_equal(d.struct_size, SK_TRANSPORT_DESC_SIZE_1_0);
    assert_null(d.options); /* not read past the plugin's struct_size */
    json_t *opts = json_object();
    sk__plugin_host host = {.options = opts};
    assert_int_equal(sk__plugin_start(p, &host, &err), SK_OK);
    sk__plugin_close(p);
    json_decref(opts);
}

static void wrong_major_is_refused(void **state)
{
    (void)state;
    char path[1024];
    fixture_path("abi_wrong_major", path, sizeof path);
    expect_refusal(path, SK_ERR_PLUGIN, "ABI major mismatch: expected 1", "built for 2.");
}

static void newer_minor_is_refused(void **state)
{
    (void)state;
    char path[1024];
    fixture_path("abi_newer_minor", path, sizeof path);
    expect_refusal(path, SK_ERR_PLUGIN, "ABI minor too new", "built for 1.9");
}

static void missing_entry_symbol_is_refused(void **state)
{
    (void)state;
    char path[1024];
    fixture_path("abi_no_symbol", path, sizeof path);
    expect_refusal(path, SK_ERR_PLUGIN, "no entry symbol spec_kitty_transport_v1", NULL);
}

static void too_small_descriptor_is_refused(void **state)
{
    (void)state;
    char path[1024];
    fixture_path("abi_small", path, sizeof path);
    expect_refusal(path, SK_ERR_PLUGIN, "descriptor too small", "struct_size 16");
}

static void descriptor_without_send_is_malformed(void **state)
{
    (void)state;
    char path[1024];
    fixture_path("abi_no_send", path, sizeof path);
    expect_refusal(path, SK_ERR_PLUGIN, "malformed descriptor: send is missing", NULL);
}

static void not_a_shared_object_reports_dlerror(void **state)
{
    (void)state;
    char *dir = sk_test_mkdtemp();
    char path[1024];
    snprintf(path, sizeof path, "%s/junk.so", dir);
    sk_test_write_file(path, "not an ELF file");
    chmod(path, 0755);
    expect_refusal(path, SK_ERR_PLUGIN, "cannot load:", NULL);
    sk_test_rmtree(dir);
    free(dir);
}

/* dlopen would wait for ever on a FIFO's writer, and read a device without end. */
static void fifo_or_device_is_refused_without_waiting(void **state)
{
    (void)state;
    char *dir = sk_test_mkdtemp();
    char path[1024];
    snprintf(path, sizeof path, "%s/fifo.so", dir);
    assert_int_equal(mkfifo(path, 0755), 0);
    expect_refusal(path, SK_ERR_PLUGIN, "cannot load:", "is not a regular file");
    expect_refusal("/dev/zero", SK_ERR_PLUGIN, "cannot load:", "is not a regular file");
    sk_test_rmtree(dir);
    free(dir);
}

/* Copies the scripted plugin into a fresh folder; returns the folder. */
static char *copy_plugin(char *out, size_t cap)
{
    char *dir = sk_test_mkdtemp();
    char src[1024], cmd[3072];
    fixture_path("scripted", src, sizeof src);
    snprintf(out, cap, "%s/scripted.so", dir);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", src, out);
    assert_int_equal(system(cmd), 0);
    chmod(out, 0755);
    return dir;
}

static void group_writable_file_is_refused(void **state)
{
    (void)state;
    char path[1024];
    char *dir = copy_plugin(path, sizeof path);
    chmod(path, 0775);
    expect_refusal(path, SK_ERR_PERMISSION, "writable by group", "chmod go-w");
    sk_test_rmtree(dir);
    free(dir);
}

static void world_writable_folder_is_refused(void **state)
{
    (void)state;
    char path[1024];
    char *dir = copy_plugin(path, sizeof path);
    chmod(dir, 0777);
    expect_refusal(path, SK_ERR_PERMISSION, "folder", "writable by others");
    chmod(dir, 0700);
    sk_test_rmtree(dir);
    free(dir);
}

/* Whoever can write a folder above the plugin's can swap the folder below it. */
static void writable_ancestor_folder_is_refused_unless_root_sticky(void **state)
{
    (void)state;
    char top[1024], sub[1100], path[1200], src[1024], cmd[3072];
    char *dir = sk_test_mkdtemp();
    snprintf(top, sizeof top, "%s/ww", dir);
    snprintf(sub, sizeof sub, "%s/sub", top);
    snprintf(path, sizeof path, "%s/scripted.so", sub);
    assert_int_equal(mkdir(top, 0755), 0);
    assert_int_equal(mkdir(sub, 0755), 0);
    fixture_path("scripted", src, sizeof src);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", src, path);
    assert_int_equal(system(cmd), 0);
    chmod(path, 0755);
    chmod(top, 0777);
    expect_refusal(path, SK_ERR_PERMISSION, "folder", "writable by others");
    sk__err err = {{0}};
    sk__plugin *p = NULL;
    char named[1100];
    snprintf(named, sizeof named, "folder %s is writable", top);
    assert_int_equal(sk__plugin_open(path, 1, &p, &err), SK_ERR_PERMISSION);
    if (!strstr(err.msg, named))
        fail_msg("the refusal should name the writable ancestor %s: %s", top, err.msg);
    chmod(top, 0775);
    expect_refusal(path, SK_ERR_PERMISSION, "folder", "writable by group");
    /* Sticky (like /tmp): others may add entries but cannot replace ours... */
    chmod(top, 01777);
    if (geteuid() == 0) {
        assert_int_equal(sk__plugin_open(path, 1, &p, &err), SK_OK);
        sk__plugin_close(p);
    } else {
        /* ...when root owns the folder: a sticky folder of ours is refused. */
        expect_refusal(path, SK_ERR_PERMISSION, "folder", "writable by others");
    }
    chmod(top, 0755);
    sk_test_rmtree(dir);
    free(dir);
}

static void file_owned_by_another_user_is_refused(void **state)
{
    (void)state;
    char path[1024];
    char *dir = copy_plugin(path, sizeof path);
    if (geteuid() == 0) {
        assert_int_equal(chown(path, 4242, 4242), 0);
        expect_refusal(path, SK_ERR_PERMISSION, "owned by uid 4242", NULL);
    } else {
        /* Only root can give a file away; the owner check is exercised as root (CI). */
        expect_refusal("/nonexistent/x.so", SK_ERR_PLUGIN, "not found", NULL);
    }
    sk_test_rmtree(dir);
    free(dir);
}

static void bare_name_search_lists_every_place_looked(void **state)
{
    (void)state;
    char out[1024];
    sk__err err = {{0}};
    json_t *pp = json_pack("[s]", plugin_dir());
    setenv("SPEC_KITTY_PLUGIN_PATH", "/nonexistent/a:/nonexistent/b", 1);
    assert_int_equal(sk__plugin_find("scripted", pp, out, sizeof out, &err), SK_OK);
    char want[1024];
    fixture_path("scripted", want, sizeof want);
    assert_string_equal(out, want);
    assert_int_equal(sk__plugin_find("nosuch", pp, out, sizeof out, &err), SK_ERR_PLUGIN);
    assert_non_null(strstr(err.msg, "transport plugin \"nosuch\" not found"));
    assert_non_null(strstr(err.msg, plugin_dir()));
    assert_non_null(strstr(err.msg, "/nonexistent/b"));
    assert_int_equal(sk__plugin_find("../evil", pp, out, sizeof out, &err), SK_ERR_PLUGIN);
    unsetenv("SPEC_KITTY_PLUGIN_PATH");
    json_decref(pp);
}

typedef struct listing {
    int good, broken;
} listing;

static void count_listing(void *ctx, const sk_plugin_info *e)
{
    listing *l = ctx;
    if (!e->error) {
        assert_non_null(e->name);
        l->good++;
    } else {
        assert_null(e->name);
        l->broken++;
    }
}

static void listing_reports_good_and_broken_plugins(void **state)
{
    (void)state;
    json_t *pp = json_pack("[s]", plugin_dir());
    listing l = {0};
    sk__plugin_list(pp, 1, count_listing, &l);
    assert_true(l.good >= 2);   /* scripted, abi_old_minor */
    assert_true(l.broken >= 5); /* wrong major, newer minor, no symbol, small, no send */
    json_decref(pp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(current_plugin_loads_with_its_option_table),
        cmocka_unit_test(plugin_built_for_older_minor_loads_and_reads_as_zero_past_its_size),
        cmocka_unit_test(wrong_major_is_refused),
        cmocka_unit_test(newer_minor_is_refused),
        cmocka_unit_test(missing_entry_symbol_is_refused),
        cmocka_unit_test(too_small_descriptor_is_refused),
        cmocka_unit_test(descriptor_without_send_is_malformed),
        cmocka_unit_test(not_a_shared_object_reports_dlerror),
        cmocka_unit_test(fifo_or_device_is_refused_without_waiting),
        cmocka_unit_test(group_writable_file_is_refused),
        cmocka_unit_test(world_writable_folder_is_refused),
        cmocka_unit_test(writable_ancestor_folder_is_refused_unless_root_sticky),
        cmocka_unit_test(file_owned_by_another_user_is_refused),
        cmocka_unit_test(bare_name_search_lists_every_place_looked),
        cmocka_unit_test(listing_reports_good_and_broken_plugins),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
