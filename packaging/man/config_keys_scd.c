/*
 * Prints the KEYS section of spec-kitty-sync.json(5) in scdoc from the config key
 * table itself (host/config.c), so the page documents exactly what the parser reads.
 * Run at build time; spec-kitty-sync.json.5.scd.in holds the rest of the page.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>

/* scdoc reads * and _ as bold and underline, and \ as an escape. */
static void put_escaped(const char *s)
{
    for (; *s; s++) {
        if (*s == '*' || *s == '_' || *s == '\\')
            putchar('\\');
        putchar(*s);
    }
}

int main(void)
{
    sk__config *cfg = NULL;
    sk__err err = {{0}};
    if (sk__config_parse("(defaults)", "{}", &cfg, &err) != SK_OK) {
        fprintf(stderr, "config_keys_scd: %s\n", err.msg);
        return 1;
    }
    for (size_t i = 0; i < sk__config_key_count(); i++) {
        sk__config_key_info k;
        sk__config_key_describe(i, &k);
        json_t *dflt = sk__config_value_json(cfg, i, NULL);
        char *text = dflt ? json_dumps(dflt, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
        json_decref(dflt);
        if (!text) {
            fprintf(stderr, "config_keys_scd: cannot print the default of %s\n", k.name);
            sk__config_free(cfg);
            return 1;
        }
        putchar('*');
        put_escaped(k.name);
        fputs("* (", stdout);
        put_escaped(k.type);
        if (k.min != k.max || k.min != 0)
            printf(", %lld to %lld", (long long)k.min, (long long)k.max);
        fputs("; default: ", stdout);
        put_escaped(text);
        fputs(")\n\t", stdout);
        put_escaped(k.help);
        fputs("\n\n", stdout);
        free(text);
    }
    sk__config_free(cfg);
    return 0;
}
