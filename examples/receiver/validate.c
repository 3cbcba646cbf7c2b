/* Envelope validation (CONTRACT.md §1); see validate.h. */
#include "validate.h"

#include <stdio.h>
#include <string.h>

/* True when s is a 26-char Crockford base32 ULID (no I, L, O, U). */
static int is_ulid(const char *s)
{
    for (size_t i = 0; i < 26; i++) {
        char ch = s[i];
        int digit = ch >= '0' && ch <= '9';
        int letter = ch >= 'A' && ch <= 'Z' && ch != 'I' && ch != 'L' && ch != 'O' && ch != 'U';
        if (!digit && !letter)
            return 0; /* also stops at the terminating NUL of a short string */
    }
    return s[26] == '\0';
}

/* True when obj[key] is a non-empty string. */
static int has_text(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    return json_is_string(v) && json_string_length(v) > 0;
}

/* Required payload fields of the classic types, NULL-terminated per row. */
static const char *const classic_fields[][6] = {
    {"WPStatusChanged", "wp_id", "previous_status", "new_status", NULL},
    {"WPCreated", "wp_id", "title", "feature_slug", NULL},
    {"WPAssigned", "wp_id", "agent_id", "phase", NULL},
    {"FeatureCreated", "feature_slug", "feature_number", "target_branch", "wp_count", NULL},
    {"FeatureCompleted", "feature_slug", "total_wps", NULL},
    {"HistoryAdded", "wp_id", "entry_type", "entry_content", NULL},
    {"ErrorLogged", "error_type", "error_message", NULL},
    {"DependencyResolved", "wp_id", "dependency_wp_id", "resolution_type", NULL},
};

/* Checks the payload of a classic type; other types pass. */
static int check_payload(const char *type, const json_t *payload, char *msg, size_t cap)
{
    for (size_t i = 0; i < sizeof(classic_fields) / sizeof(classic_fields[0]); i++) {
        if (strcmp(classic_fields[i][0], type) != 0)
            continue;
        for (size_t f = 1; classic_fields[i][f]; f++) {
            const json_t *v = json_object_get(payload, classic_fields[i][f]);
            if (!v || json_is_null(v)) {
                snprintf(msg, cap, "payload.%s: missing", classic_fields[i][f]);
                return -1;
            }
        }
        return 0;
    }
    return 0;
}

int receiver_validate_event(const json_t *ev, char *msg, size_t cap)
{
    static const char *const text_fields[] = {"event_type", "aggregate_id", "aggregate_type",
                                              "node_id", "timestamp"};
    if (!json_is_object(ev)) {
        snprintf(msg, cap, "event: not a JSON object");
        return -1;
    }
    const json_t *id = json_object_get(ev, "event_id");
    if (!json_is_string(id) || !is_ulid(json_string_value(id))) {
        snprintf(msg, cap, "event_id: missing or not a ULID");
        return -1;
    }
    for (size_t i = 0; i < sizeof(text_fields) / sizeof(text_fields[0]); i++) {
        if (!has_text(ev, text_fields[i])) {
            snprintf(msg, cap, "%s: missing or not a non-empty string", text_fields[i]);
            return -1;
        }
    }
    const json_t *clock = json_object_get(ev, "lamport_clock");
    if (!json_is_integer(clock) || json_integer_value(clock) < 0) {
        snprintf(msg, cap, "lamport_clock: missing or not an integer >= 0");
        return -1;
    }
    const json_t *cause = json_object_get(ev, "causation_id");
    if (cause && !json_is_null(cause) &&
        !(json_is_string(cause) && is_ulid(json_string_value(cause)))) {
        snprintf(msg, cap, "causation_id: not a ULID or null");
        return -1;
    }
    const json_t *team = json_object_get(ev, "team_slug");
    if (team && !json_is_string(team)) {
        snprintf(msg, cap, "team_slug: not a string");
        return -1;
    }
    const json_t *payload = json_object_get(ev, "payload");
    if (!json_is_object(payload)) {
        snprintf(msg, cap, "payload: missing or not an object");
        return -1;
    }
    return check_payload(json_string_value(json_object_get(ev, "event_type")), payload, msg, cap);
}
