/* The token endpoints' 200 answer (CONTRACT.md §4), as login and refresh apply it. */
#include "auth.h"
#include "fuzz_util.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *body = fz_cstr(data, size);
    const int64_t now_ms = 1780000000000;
    sk__creds c;
    memset(&c, 0, sizeof c);
    strcpy(c.refresh, "old-refresh-token");
    c.refresh_expires_ms = now_ms + 1000;
    sk__err err = {{0}};
    if (sk__auth_apply_token_response(&c, body, now_ms, &err) == SK_OK) {
        FZ_CHECK(c.access[0] != '\0', "accepted an answer without an access token");
        FZ_CHECK(c.access_expires_ms > now_ms, "access token expires in the past");
        FZ_CHECK(c.refresh[0] != '\0' && c.refresh_expires_ms > now_ms, "refresh token lost");
        FZ_CHECK(sk__creds_state(&c, now_ms) == SK__AUTH_OK, "a fresh session is not usable");
    } else {
        FZ_CHECK(err.msg[0] != '\0', "a refused answer must come with a message");
        FZ_CHECK(strcmp(c.refresh, "old-refresh-token") == 0,
                 "a refused answer changed the session");
    }
    sk__creds_wipe(&c);
    free(body);
    return 0;
}
