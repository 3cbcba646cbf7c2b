/* credentials.json: the parsing half of sk__creds_load, then the state checks
 * that `auth status` makes. */
#include "auth.h"
#include "fuzz_util.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fz_cstr(data, size);
    sk__creds c;
    sk__err err = {{0}};
    if (sk__creds_parse("credentials.json", text, &c, &err) == SK_OK) {
        const int64_t now_ms = 1780000000000;
        sk__auth_state st = sk__creds_state(&c, now_ms);
        FZ_CHECK(st == SK__AUTH_NONE || st == SK__AUTH_OK || st == SK__AUTH_EXPIRED,
                 "a stored session in an impossible state");
        (void)sk__auth_needs_refresh(&c, now_ms);
        (void)sk__auth_state_name(st);
    } else {
        FZ_CHECK(err.msg[0] != '\0', "a refused file must come with a message");
        FZ_CHECK(c.access[0] == '\0' && c.refresh[0] == '\0', "tokens left behind after a refusal");
    }
    sk__creds_wipe(&c);
    free(text);
    return 0;
}
