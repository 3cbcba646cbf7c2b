/* `spec-kitty sync config`: the effective config, key by key, with its source. */
#include "cli.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static const char USAGE[] =
    "Usage: spec-kitty sync config [--json] [--keys]\n\n"
    "Prints the effective sync config and where each value came from (default,\n"
    "file, environment). The file is <state root>/sync.json.\n\n"
    "Options:\n"
    "  --json      machine-readable output\n"
    "  --keys      list every key with its type and meaning (with --json: a list of\n"
    "              {\"name\", \"type\", \"help\"})\n"
    "  -h, --help  this help\n";

/* --keys: every key, its type and meaning; with --json as [{name, type, help}]. */
static int print_keys(int json)
{
    json_t *list = json ? json_array() : NULL;
    for (size_t i = 0; i < sk_config_key_count(); i++) {
        sk_config_key k;
        sk_config_key_get(i, &k);
        if (json)
            json_array_append_new(
                list, json_pack("{s:s, s:s, s:s}", "name", k.name, "type", k.type, "help", k.help));
        else
            printf("%-32s %-20s %s\n", k.name, k.type, k.help);
    }
    return json ? cli_print_json(list) : EXIT_OK;
}

int cmd_config(int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                         {"keys", no_argument, NULL, 'k'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int json = 0, keys = 0, c;
    optind = 1;
    while ((c = cli_getopt(argc, argv, "sync config", "h", opts, 0)) != -1) {
        if (c == 'j')
            json = 1;
        else if (c == 'k')
            keys = 1;
        else if (c == 'h') {
            fputs(USAGE, stdout);
            return EXIT_OK;
        } else {
            return EXIT_USAGE;
        }
    }
    if (keys)
        return print_keys(json);
    int opened;
    sk_sync *s = cli_open(&opened);
    if (!s)
        return opened;
    json_t *all = json_object();
    int exists;
    const char *file = sk_config_file(s, &exists);
    if (!json)
        printf("# %s%s\n", file, exists ? "" : " (not found: defaults)");
    for (size_t i = 0; i < sk_config_key_count(); i++) {
        sk_config_key k;
        const char *source;
        sk_config_key_get(i, &k);
        char *text = sk_config_value(s, i, &source);
        if (json) {
            json_t *value = json_loads(text ? text : "null", JSON_DECODE_ANY, NULL);
            json_object_set_new(all, k.name,
                                json_pack("{s:o, s:s}", "value",
                                          value ? value : cli_json_text(text), "source", source));
        } else
            printf("%-32s %-40s (%s)\n", k.name, text ? text : "?", source);
        free(text);
    }
    int code = EXIT_OK;
    if (json)
        code = cli_print_json(json_pack("{s:o, s:b, s:o}", "file", cli_json_text(file),
                                        "file_exists", exists, "keys", all));
    else
        json_decref(all);
    sk_close(s);
    return code;
}
