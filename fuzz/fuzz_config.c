/*
 * sync.json: the text sk__config_load reads goes through sk__config_parse;
 * then every key's effective value is rendered, as `spec-kitty sync config` does.
 */
#include "config.h"
#include "fuzz_util.h"

#include <stdlib.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    unsetenv("SPEC_KITTY_SAAS_URL"); /* the file alone decides */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fz_cstr(data, size);
    sk__config *cfg = NULL;
    sk__err err = {{0}};
    if (sk__config_parse("sync.json", text, &cfg, &err) == SK_OK) {
        FZ_CHECK(cfg && cfg->server_url && *cfg->transport_plugin, "parsed config incomplete");
        for (size_t i = 0; i < sk__config_key_count(); i++) {
            json_t *v = sk__config_value_json(cfg, i, NULL);
            FZ_CHECK(v != NULL, "a key has no effective value");
            free(json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY));
            json_decref(v);
        }
        sk__config_free(cfg);
    } else {
        FZ_CHECK(cfg == NULL && err.msg[0], "a refused config must come with a message");
    }
    free(text);
    return 0;
}
