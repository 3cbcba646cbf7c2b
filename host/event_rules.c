/*
 * Validation of event envelopes: the two vocabularies of CONTRACT.md, each a
 * table (type -> fields -> value rule), and the id forms spec-kitty accepts.
 *
 * An envelope with "schema_version" 3.x is a current one (§1b); without
 * schema_version it is a classic one (§1). Types a vocabulary does not know
 * pass when well-formed: newer servers know more types than we do.
 * The receiver validates with the same functions, so both sides agree.
 */
#include "event.h"

#include <ctype.h>
#include <string.h>

/* ------------------------------------------------------------------ ids -- */

static const char crockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/* A ULID in either case (I, L, O, U are not Crockford digits). */
static int ulid_any_case(const char *s, size_t len)
{
    if (len != SK__ULID_LEN)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (!strchr(crockford, toupper((unsigned char)s[i])))
            return 0;
    }
    return 1;
}

/* Every one of the n characters at s is of the class (isdigit, isxdigit). */
static int all_of(const char *s, size_t n, int (*is_class)(int))
{
    for (size_t i = 0; i < n; i++) {
        if (!is_class((unsigned char)s[i]))
            return 0;
    }
    return 1;
}

/* 8-4-4-4-12 hex digits. */
static int uuid_hyphenated(const char *s, size_t len)
{
    static const size_t groups[] = {8, 4, 4, 4, 12};
    if (len != 36)
        return 0;
    for (size_t g = 0, off = 0; g < SK__ARRAY_LEN(groups); g++) {
        if (!all_of(s + off, groups[g], isxdigit) || (g < 4 && s[off + groups[g]] != '-'))
            return 0;
        off += groups[g] + 1;
    }
    return 1;
}

sk__id_form sk__event_id_normalize(const char *in, char out[SK__EVENT_ID_MAX])
{
    size_t len = in ? strnlen(in, SK__EVENT_ID_MAX) : 0;
    if (ulid_any_case(in, len)) {
        for (size_t i = 0; i <= len; i++)
            out[i] = (char)toupper((unsigned char)in[i]);
        return SK__ID_ULID;
    }
    if (uuid_hyphenated(in, len) || (len == 32 && all_of(in, len, isxdigit))) {
        /* Bare hex gets its hyphens after digits 8, 12, 16 and 20. */
        size_t o = 0;
        for (size_t i = 0; i < len; i++) {
            if (len == 32 && (i == 8 || i == 12 || i == 16 || i == 20))
                out[o++] = '-';
            out[o++] = (char)tolower((unsigned char)in[i]);
        }
        out[o] = '\0';
        return SK__ID_UUID;
    }
    out[0] = '\0';
    return SK__ID_INVALID;
}

static const char *const id_fields[] = {"event_id", "causation_id", "correlation_id",
                                        "project_uuid"};

sk_status sk__event_normalize_ids(json_t *env, sk__err *err)
{
    for (size_t i = 0; i < SK__ARRAY_LEN(id_fields); i++) {
        const char *v = json_string_value(json_object_get(env, id_fields[i]));
        char norm[SK__EVENT_ID_MAX];
        if (!v || sk__event_id_normalize(v, norm) == SK__ID_INVALID || strcmp(v, norm) == 0)
            continue; /* validation reports what cannot be normalised */
        if (json_object_set_new(env, id_fields[i], json_string(norm)) != 0)
            return sk__fail(err, SK_ERR_NOMEM, "%s: out of memory", id_fields[i]);
    }
    return SK_OK;
}

/* --------------------------------------------------------- value rules -- */

/* What a value must be. Each kind is one case of check_value(). */
typedef enum value_kind {
    V_STRING,         /* any string */
    V_NONEMPTY,       /* non-empty string */
    V_STRING_NULL,    /* string or null */
    V_NONEMPTY_NULL,  /* non-empty string or null */
    V_COUNT,          /* integer >= 0 */
    V_COUNT_NULL,     /* integer >= 0 or null */
    V_AMOUNT,         /* number >= 0 */
    V_BOOL,
    V_ARRAY,
    V_OBJECT_NULL,    /* object or null */
    V_PRESENT,        /* anything but null */
    V_DATETIME,       /* ISO-8601 date-time */
    V_ONE_OF,         /* one of the rule's values */
    V_ACTOR,          /* non-empty string, or an object of role/tool/profile/model strings */
    V_WP_ID,          /* ^WP\d{2}$ */
    V_WP_ID_NULL,     /* the same or null */
    V_WP_ID_LIST,     /* array of those */
    V_FEATURE_SLUG,   /* ^\d{3}-[a-z0-9-]+$ */
    V_FEATURE_NUMBER, /* a string ^\d{3}$ */
    V_MISSION_SLUG,   /* a feature slug, or a kebab slug ending in '-' and 8 ULID characters */
    V_SCHEMA_3,       /* "3" or "3.<anything>" */
    V_UUID_NULL       /* a UUID (hyphenated or bare) or null */
} value_kind;

typedef struct field_rule {
    const char *name;
    value_kind kind;
    int required;
    const char *const *values; /* V_ONE_OF: NULL-terminated */
} field_rule;

#define REQ(name, kind) {name, kind, 1, NULL}
#define OPT(name, kind) {name, kind, 0, NULL}
#define REQ_ONE_OF(name, values) {name, V_ONE_OF, 1, values}

static const char *const classic_statuses[] = {"planned", "doing", "for_review", "done", NULL};
static const char *const phases[] = {"implementation", "review", NULL};
static const char *const entry_types[] = {"note", "review", "error", "comment", NULL};
static const char *const error_types[] = {"validation", "runtime", "network", "auth",
                                          "unknown",    NULL};
static const char *const resolution_types[] = {"completed", "skipped", "merged", NULL};
static const char *const lanes[] = {"planned",  "claimed",   "in_progress", "for_review", "in_review",
                                    "approved", "done",      "blocked",     "canceled",   NULL};
static const char *const from_lanes[] = {"genesis",    "planned",   "claimed",  "in_progress",
                                         "for_review", "in_review", "approved", "done",
                                         "blocked",    "canceled",  NULL};
static const char *const execution_modes[] = {"worktree", "direct_repo", NULL};
static const char *const actor_keys[] = {"role", "tool", "profile", "model", NULL};

static int one_of(const char *s, const char *const *values)
{
    for (; s && *values; values++) {
        if (strcmp(s, *values) == 0)
            return 1;
    }
    return 0;
}

/* [a-z0-9-]+ over the whole rest of s. */
static int slug_chars(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++) {
        if (!(islower((unsigned char)*s) || isdigit((unsigned char)*s) || *s == '-'))
            return 0;
    }
    return 1;
}

static int wp_id_ok(const char *s)
{
    return s && strlen(s) == 4 && s[0] == 'W' && s[1] == 'P' && all_of(s + 2, 2, isdigit);
}

static int feature_slug_ok(const char *s)
{
    return s && strlen(s) > 4 && all_of(s, 3, isdigit) && s[3] == '-' && slug_chars(s + 4);
}

/* "my-mission-01J6XW2Z": kebab words, then '-' and 8 ULID characters. */
static int ulid_suffixed_slug_ok(const char *s)
{
    size_t len = s ? strlen(s) : 0;
    if (len < 11 || s[len - 9] != '-' || (!islower((unsigned char)s[0]) && !isdigit((unsigned char)s[0])))
        return 0;
    for (size_t i = len - 8; i < len; i++) {
        if (!strchr(crockford, toupper((unsigned char)s[i])))
            return 0;
    }
    for (size_t i = 0; i < len - 9; i++) {
        int word = islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]);
        if (!word && !(s[i] == '-' && s[i + 1] != '-'))
            return 0;
    }
    return 1;
}

/* Two digits in [lo, hi] at s. */
static int in_range2(const char *s, int lo, int hi)
{
    if (!all_of(s, 2, isdigit))
        return 0;
    int v = (s[0] - '0') * 10 + (s[1] - '0');
    return v >= lo && v <= hi;
}

/* YYYY-MM-DD[T ]HH:MM[:SS[.fraction]][Z|±HH:MM]: what Python's fromisoformat
 * and the server's parser take. */
static int datetime_ok(const char *s)
{
    if (!s || strlen(s) < 16 || !all_of(s, 4, isdigit) || s[4] != '-' || !in_range2(s + 5, 1, 12) ||
        s[7] != '-' || !in_range2(s + 8, 1, 31) || (s[10] != 'T' && s[10] != ' ') ||
        !in_range2(s + 11, 0, 23) || s[13] != ':' || !in_range2(s + 14, 0, 59))
        return 0;
    const char *p = s + 16;
    if (*p == ':') {
        if (!in_range2(p + 1, 0, 60))
            return 0;
        p += 3;
        if (*p == '.' || *p == ',') {
            size_t n = strspn(p + 1, "0123456789");
            if (n == 0)
                return 0;
            p += 1 + n;
        }
    }
    if (*p == 'Z')
        return p[1] == '\0';
    if (*p == '+' || *p == '-')
        return in_range2(p + 1, 0, 23) && p[3] == ':' && in_range2(p + 4, 0, 59) && p[6] == '\0';
    return *p == '\0';
}

static int actor_ok(const json_t *v)
{
    if (json_is_string(v))
        return json_string_length(v) > 0;
    if (!json_is_object(v) || json_object_size(v) == 0)
        return 0;
    const char *key;
    const json_t *item;
    json_object_foreach((json_t *)v, key, item)
    {
        if (!one_of(key, actor_keys) || !(json_is_string(item) || json_is_null(item)))
            return 0;
    }
    return 1;
}

static int wp_id_list_ok(const json_t *v)
{
    size_t i;
    const json_t *item;
    if (!json_is_array(v))
        return 0;
    json_array_foreach((json_t *)v, i, item)
    {
        if (!wp_id_ok(json_string_value(item)))
            return 0;
    }
    return 1;
}

/* What the error says a value should have been. */
static const char *expectation(value_kind kind)
{
    switch (kind) {
    case V_STRING:
        return "a string";
    case V_NONEMPTY:
        return "a non-empty string";
    case V_STRING_NULL:
        return "a string or null";
    case V_NONEMPTY_NULL:
        return "a non-empty string or null";
    case V_COUNT:
        return "an integer >= 0";
    case V_COUNT_NULL:
        return "an integer >= 0 or null";
    case V_AMOUNT:
        return "a number >= 0";
    case V_BOOL:
        return "true or false";
    case V_ARRAY:
        return "an array";
    case V_OBJECT_NULL:
        return "an object or null";
    case V_PRESENT:
        return "a value";
    case V_DATETIME:
        return "an ISO-8601 date-time";
    case V_ONE_OF:
        return "a string";
    case V_ACTOR:
        return "a non-empty string or an object of role/tool/profile/model";
    case V_WP_ID:
        return "a work package id like WP01";
    case V_WP_ID_NULL:
        return "a work package id like WP01, or null";
    case V_WP_ID_LIST:
        return "a list of work package ids like WP01";
    case V_FEATURE_SLUG:
        return "a slug like 001-my-feature";
    case V_FEATURE_NUMBER:
        return "three digits as a string, like \"001\"";
    case V_MISSION_SLUG:
        return "a slug like 001-my-mission or my-mission-01J6XW2Z";
    case V_SCHEMA_3:
        return "\"3.x\"";
    case V_UUID_NULL:
        return "a UUID or null";
    }
    return "?";
}

static int value_ok(const json_t *v, const field_rule *r)
{
    const char *s = json_string_value(v);
    int count = json_is_integer(v) && json_integer_value(v) >= 0;
    char norm[SK__EVENT_ID_MAX];
    switch (r->kind) {
    case V_STRING:
        return s != NULL;
    case V_NONEMPTY:
        return s && *s;
    case V_STRING_NULL:
        return s || json_is_null(v);
    case V_NONEMPTY_NULL:
        return (s && *s) || json_is_null(v);
    case V_COUNT:
        return count;
    case V_COUNT_NULL:
        return count || json_is_null(v);
    case V_AMOUNT:
        return json_is_number(v) && json_number_value(v) >= 0;
    case V_BOOL:
        return json_is_boolean(v);
    case V_ARRAY:
        return json_is_array(v);
    case V_OBJECT_NULL:
        return json_is_object(v) || json_is_null(v);
    case V_PRESENT:
        return !json_is_null(v);
    case V_DATETIME:
        return datetime_ok(s);
    case V_ONE_OF:
        return one_of(s, r->values);
    case V_ACTOR:
        return actor_ok(v);
    case V_WP_ID:
        return wp_id_ok(s);
    case V_WP_ID_NULL:
        return wp_id_ok(s) || json_is_null(v);
    case V_WP_ID_LIST:
        return wp_id_list_ok(v);
    case V_FEATURE_SLUG:
        return feature_slug_ok(s);
    case V_FEATURE_NUMBER:
        return s && strlen(s) == 3 && all_of(s, 3, isdigit);
    case V_MISSION_SLUG:
        return feature_slug_ok(s) || ulid_suffixed_slug_ok(s);
    case V_SCHEMA_3:
        return s && s[0] == '3' && (s[1] == '\0' || s[1] == '.');
    case V_UUID_NULL:
        return json_is_null(v) || (s && sk__event_id_normalize(s, norm) == SK__ID_UUID);
    }
    return 0;
}

/* "a, b or c" of a V_ONE_OF rule's values. */
static void list_values(const char *const *values, char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; values[i] && used < cap; i++) {
        const char *sep = i == 0 ? "" : values[i + 1] ? ", " : " or ";
        int n = snprintf(buf + used, cap - used, "%s%s", sep, values[i]);
        used += n > 0 ? (size_t)n : 0;
    }
}

/* How many bytes of s, at most max, end on a UTF-8 character boundary: a
 * message quotes that much, so it stays valid UTF-8 (JSON) wherever it goes. */
static int quoted_len(const char *s, size_t max)
{
    size_t n = strnlen(s, max);
    if (n == max) {
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--; /* s[n] continues a character begun before: cut before that one */
    }
    return (int)n;
}

/* Kinds that are a pattern over strings: their message quotes the string. */
static int shows_value(value_kind kind)
{
    switch (kind) {
    case V_DATETIME:
    case V_WP_ID:
    case V_WP_ID_NULL:
    case V_FEATURE_SLUG:
    case V_FEATURE_NUMBER:
    case V_MISSION_SLUG:
    case V_SCHEMA_3:
    case V_UUID_NULL:
        return 1;
    default:
        return 0;
    }
}

/* The message for a value that breaks its rule. */
static sk_status value_error(const json_t *v, const field_rule *r, const char *prefix,
                             sk__err *err)
{
    const char *s = json_string_value(v);
    if (r->kind == V_ONE_OF && s) {
        char values[256];
        list_values(r->values, values, sizeof values);
        return sk__fail(err, SK_ERR_INVALID_EVENT, "%s%s: unknown value \"%.*s\" (expected %s)",
                        prefix, r->name, quoted_len(s, 64), s, values);
    }
    if (s && shows_value(r->kind))
        return sk__fail(err, SK_ERR_INVALID_EVENT, "%s%s: \"%.*s\" is not %s", prefix, r->name,
                        quoted_len(s, 64), s, expectation(r->kind));
    return sk__fail(err, SK_ERR_INVALID_EVENT, "%s%s: expected %s", prefix, r->name,
                    expectation(r->kind));
}

/* Checks the fields of obj against rules; prefix names obj in messages ("payload."). */
static sk_status check_fields(const json_t *obj, const field_rule *rules, size_t n,
                              const char *prefix, sk__err *err)
{
    for (size_t i = 0; i < n; i++) {
        const field_rule *r = &rules[i];
        const json_t *v = json_object_get(obj, r->name);
        if (!v && !r->required)
            continue;
        if (!v)
            return sk__fail(err, SK_ERR_INVALID_EVENT, "%s%s: missing", prefix, r->name);
        if (!value_ok(v, r))
            return value_error(v, r, prefix, err);
    }
    return SK_OK;
}

/* ------------------------------------------------------ the vocabularies -- */

typedef struct type_rules {
    const char *event_type;
    const field_rule *fields;
    size_t n;
} type_rules;

#define TYPE(name, fields) {name, fields, SK__ARRAY_LEN(fields)}

/* §1: the eight classic types, with the optional fields their schema types. */
static const field_rule c_wp_status_changed[] = {
    REQ("wp_id", V_WP_ID), REQ_ONE_OF("previous_status", classic_statuses),
    REQ_ONE_OF("new_status", classic_statuses), OPT("changed_by", V_STRING),
    OPT("feature_slug", V_STRING_NULL)};
static const field_rule c_wp_created[] = {REQ("wp_id", V_WP_ID), REQ("title", V_NONEMPTY),
                                          REQ("feature_slug", V_NONEMPTY),
                                          OPT("dependencies", V_WP_ID_LIST)};
static const field_rule c_wp_assigned[] = {REQ("wp_id", V_WP_ID), REQ("agent_id", V_NONEMPTY),
                                           REQ_ONE_OF("phase", phases),
                                           OPT("retry_count", V_COUNT)};
static const field_rule c_feature_created[] = {
    REQ("feature_slug", V_FEATURE_SLUG), REQ("feature_number", V_FEATURE_NUMBER),
    REQ("target_branch", V_NONEMPTY), REQ("wp_count", V_COUNT), OPT("created_at", V_DATETIME)};
static const field_rule c_feature_completed[] = {
    REQ("feature_slug", V_NONEMPTY), REQ("total_wps", V_COUNT), OPT("completed_at", V_DATETIME),
    OPT("total_duration", V_STRING_NULL)};
static const field_rule c_history_added[] = {
    REQ("wp_id", V_WP_ID), REQ_ONE_OF("entry_type", entry_types),
    REQ("entry_content", V_NONEMPTY), OPT("author", V_STRING)};
static const field_rule c_error_logged[] = {
    REQ_ONE_OF("error_type", error_types), REQ("error_message", V_NONEMPTY),
    OPT("wp_id", V_WP_ID_NULL), OPT("stack_trace", V_STRING_NULL), OPT("agent_id", V_STRING_NULL)};
static const field_rule c_dependency_resolved[] = {
    REQ("wp_id", V_WP_ID), REQ("dependency_wp_id", V_WP_ID),
    REQ_ONE_OF("resolution_type", resolution_types)};

static const type_rules classic_types[] = {
    TYPE("WPStatusChanged", c_wp_status_changed),
    TYPE("WPCreated", c_wp_created),
    TYPE("WPAssigned", c_wp_assigned),
    TYPE("FeatureCreated", c_feature_created),
    TYPE("FeatureCompleted", c_feature_completed),
    TYPE("HistoryAdded", c_history_added),
    TYPE("ErrorLogged", c_error_logged),
    TYPE("DependencyResolved", c_dependency_resolved),
};

/* §1b: the current types. */
static const field_rule n_build[] = {REQ("build_id", V_NONEMPTY)};
static const field_rule n_wp_status_changed[] = {
    REQ("mission_slug", V_NONEMPTY),    REQ("wp_id", V_WP_ID),
    REQ_ONE_OF("from_lane", from_lanes), REQ_ONE_OF("to_lane", lanes),
    REQ("actor", V_ACTOR),              REQ_ONE_OF("execution_mode", execution_modes),
    OPT("force", V_BOOL),               OPT("reason", V_STRING_NULL),
    OPT("review_ref", V_STRING_NULL),   OPT("evidence", V_OBJECT_NULL)};
static const field_rule n_wp_created[] = {REQ("wp_id", V_WP_ID), REQ("wp_title", V_NONEMPTY),
                                          REQ("mission_slug", V_NONEMPTY), REQ("actor", V_ACTOR),
                                          OPT("depends_on", V_WP_ID_LIST)};
static const field_rule n_wp_assigned[] = {REQ("wp_id", V_WP_ID), REQ("agent_id", V_NONEMPTY),
                                           REQ_ONE_OF("phase", phases)};
static const field_rule n_mission_created[] = {
    REQ("mission_slug", V_MISSION_SLUG), REQ("mission_number", V_COUNT_NULL),
    REQ("mission_type", V_NONEMPTY),     REQ("target_branch", V_NONEMPTY),
    REQ("wp_count", V_COUNT),            REQ("friendly_name", V_NONEMPTY),
    REQ("purpose_tldr", V_STRING),       REQ("purpose_context", V_STRING)};
static const field_rule n_mission_closed[] = {REQ("mission_slug", V_NONEMPTY),
                                              REQ("mission_number", V_COUNT_NULL),
                                              REQ("mission_type", V_NONEMPTY)};
static const field_rule n_mission_started[] = {
    REQ("mission_id", V_NONEMPTY), REQ("mission_type", V_NONEMPTY),
    REQ("initial_phase", V_NONEMPTY), REQ("actor", V_ACTOR)};
static const field_rule n_mission_completed[] = {
    REQ("mission_id", V_NONEMPTY), REQ("mission_type", V_NONEMPTY),
    REQ("final_phase", V_NONEMPTY), REQ("actor", V_ACTOR)};
static const field_rule n_phase_entered[] = {REQ("mission_id", V_NONEMPTY),
                                             REQ("phase_name", V_NONEMPTY), REQ("actor", V_ACTOR)};
static const field_rule n_mission_run[] = {REQ("run_id", V_NONEMPTY),
                                           REQ("mission_type", V_NONEMPTY), REQ("actor", V_ACTOR)};
static const field_rule n_next_step_issued[] = {REQ("run_id", V_NONEMPTY),
                                                REQ("step_id", V_NONEMPTY),
                                                REQ("agent_id", V_NONEMPTY), REQ("actor", V_ACTOR)};
static const field_rule n_next_step_auto_completed[] = {
    REQ("run_id", V_NONEMPTY), REQ("step_id", V_NONEMPTY), REQ("agent_id", V_NONEMPTY),
    REQ("result", V_NONEMPTY), REQ("actor", V_ACTOR)};
static const field_rule n_decision_requested[] = {
    REQ("run_id", V_NONEMPTY), REQ("decision_id", V_NONEMPTY), REQ("step_id", V_NONEMPTY),
    REQ("question", V_NONEMPTY), REQ("actor", V_ACTOR)};
static const field_rule n_decision_answered[] = {REQ("run_id", V_NONEMPTY),
                                                 REQ("decision_id", V_NONEMPTY),
                                                 REQ("answer", V_STRING), REQ("actor", V_ACTOR)};
static const field_rule n_token_usage[] = {
    REQ("mission_id", V_NONEMPTY),  REQ("input_tokens", V_COUNT),
    REQ("output_tokens", V_COUNT),  REQ("total_tokens", V_COUNT),
    REQ("estimated_cost_usd", V_AMOUNT), REQ("source", V_NONEMPTY)};
static const field_rule n_diff_summary[] = {
    REQ("mission_id", V_NONEMPTY), REQ("base_ref", V_NONEMPTY),   REQ("head_ref", V_NONEMPTY),
    REQ("files_changed", V_COUNT), REQ("lines_added", V_COUNT), REQ("lines_deleted", V_COUNT),
    REQ("source", V_NONEMPTY)};
static const field_rule n_history_added[] = {REQ("wp_id", V_WP_ID), REQ("entry_type", V_NONEMPTY),
                                             REQ("entry_content", V_NONEMPTY)};
static const field_rule n_error_logged[] = {REQ("error_type", V_NONEMPTY),
                                            REQ("error_message", V_NONEMPTY)};
static const field_rule n_dependency_resolved[] = {
    REQ("wp_id", V_WP_ID), REQ("dependency_wp_id", V_WP_ID), REQ("resolution_type", V_NONEMPTY)};
static const field_rule n_artifact_indexed[] = {
    REQ("namespace", V_PRESENT), REQ("artifact_id", V_NONEMPTY), REQ("content_ref", V_PRESENT),
    REQ("indexed_at", V_DATETIME)};
static const field_rule n_artifact_missing[] = {
    REQ("namespace", V_PRESENT), REQ("expected_identity", V_PRESENT),
    REQ("manifest_step", V_NONEMPTY), REQ("checked_at", V_DATETIME)};
static const field_rule n_snapshot_computed[] = {
    REQ("namespace", V_PRESENT),    REQ("snapshot_hash", V_NONEMPTY),
    REQ("artifact_count", V_COUNT), REQ("anomaly_count", V_COUNT),
    REQ("computed_at", V_DATETIME)};
static const field_rule n_parity_drift[] = {
    REQ("namespace", V_PRESENT),     REQ("expected_hash", V_NONEMPTY),
    REQ("actual_hash", V_NONEMPTY),  REQ("drift_kind", V_NONEMPTY),
    REQ("detected_at", V_DATETIME)};
static const field_rule n_origin_bound[] = {
    REQ("mission_slug", V_NONEMPTY),       REQ("provider", V_NONEMPTY),
    REQ("external_issue_id", V_NONEMPTY),  REQ("external_issue_key", V_NONEMPTY),
    REQ("external_issue_url", V_NONEMPTY), REQ("title", V_NONEMPTY)};

static const type_rules current_types[] = {
    TYPE("BuildRegistered", n_build),
    TYPE("BuildHeartbeat", n_build),
    TYPE("WPStatusChanged", n_wp_status_changed),
    TYPE("WPCreated", n_wp_created),
    TYPE("WPAssigned", n_wp_assigned),
    TYPE("MissionCreated", n_mission_created),
    TYPE("MissionClosed", n_mission_closed),
    TYPE("MissionStarted", n_mission_started),
    TYPE("MissionCompleted", n_mission_completed),
    TYPE("PhaseEntered", n_phase_entered),
    TYPE("MissionRunStarted", n_mission_run),
    TYPE("MissionRunCompleted", n_mission_run),
    TYPE("NextStepIssued", n_next_step_issued),
    TYPE("NextStepAutoCompleted", n_next_step_auto_completed),
    TYPE("DecisionInputRequested", n_decision_requested),
    TYPE("DecisionInputAnswered", n_decision_answered),
    TYPE("TokenUsageRecorded", n_token_usage),
    TYPE("DiffSummaryRecorded", n_diff_summary),
    TYPE("HistoryAdded", n_history_added),
    TYPE("ErrorLogged", n_error_logged),
    TYPE("DependencyResolved", n_dependency_resolved),
    TYPE("MissionDossierArtifactIndexed", n_artifact_indexed),
    TYPE("MissionDossierArtifactMissing", n_artifact_missing),
    TYPE("MissionDossierSnapshotComputed", n_snapshot_computed),
    TYPE("MissionDossierParityDriftDetected", n_parity_drift),
    TYPE("MissionOriginBound", n_origin_bound),
};

/* Envelope fields besides the ids, the type names and the payload. */
static const field_rule classic_envelope[] = {
    REQ("aggregate_id", V_NONEMPTY),   REQ("node_id", V_NONEMPTY),
    REQ("lamport_clock", V_COUNT),     REQ("timestamp", V_DATETIME),
    REQ("team_slug", V_NONEMPTY),      OPT("project_uuid", V_STRING_NULL),
    OPT("project_slug", V_STRING_NULL), OPT("build_id", V_STRING)};
static const field_rule current_envelope[] = {
    REQ("schema_version", V_SCHEMA_3), /* first: validation checks it before the rest */
    REQ("aggregate_id", V_NONEMPTY),
    REQ("node_id", V_NONEMPTY),        REQ("lamport_clock", V_COUNT),
    REQ("timestamp", V_DATETIME),      REQ("build_id", V_STRING),
    OPT("team_slug", V_NONEMPTY_NULL), OPT("project_uuid", V_UUID_NULL),
    OPT("project_slug", V_STRING_NULL), OPT("git_branch", V_STRING_NULL),
    OPT("head_commit_sha", V_STRING_NULL), OPT("repo_slug", V_STRING_NULL)};

/* Classic envelopes of the eight types name one of two aggregates; others (and
 * classic envelopes of types the classic schema did not know) any of five. */
typedef struct aggregate_set {
    const char *const *names; /* NULL-terminated */
    const char *text;         /* for messages */
} aggregate_set;

static const char *const classic_aggregate_names[] = {"WorkPackage", "Feature", NULL};
static const char *const any_aggregate_names[] = {"WorkPackage", "Feature", "Mission", "Build",
                                                  "MissionDossier", NULL};
static const char *const current_aggregate_names[] = {"Build", "WorkPackage", "Mission",
                                                      "MissionDossier", NULL};
static const aggregate_set classic_aggregates = {classic_aggregate_names, "WorkPackage or Feature"};
static const aggregate_set any_aggregates = {any_aggregate_names,
                                             "WorkPackage, Feature, Mission, Build or MissionDossier"};
static const aggregate_set current_aggregates = {current_aggregate_names,
                                                 "Build, WorkPackage, Mission or MissionDossier"};

typedef struct vocabulary {
    const type_rules *types;
    size_t n_types;
    const field_rule *envelope;
    size_t n_envelope;
    const aggregate_set *known_type_aggregates; /* aggregate_type of a known type */
    const aggregate_set *other_aggregates;      /* of a type this vocabulary does not know */
    int current; /* §1b: ids may be UUIDs, correlation_id is required */
} vocabulary;

static const vocabulary CLASSIC = {classic_types,      SK__ARRAY_LEN(classic_types),
                                   classic_envelope,   SK__ARRAY_LEN(classic_envelope),
                                   &classic_aggregates, &any_aggregates,
                                   0};
/* Its envelope rules start after schema_version, which validation checks first. */
static const vocabulary CURRENT = {current_types,        SK__ARRAY_LEN(current_types),
                                   current_envelope + 1, SK__ARRAY_LEN(current_envelope) - 1,
                                   &current_aggregates,  &current_aggregates,
                                   1};

static const type_rules *find_type(const vocabulary *v, const char *event_type)
{
    for (size_t i = 0; event_type && i < v->n_types; i++) {
        if (strcmp(event_type, v->types[i].event_type) == 0)
            return &v->types[i];
    }
    return NULL;
}

/* ----------------------------------------------------------- validation -- */

/* Event types look like identifiers: a letter, then letters, digits, '_' or
 * '.' (for namespaced types of newer servers), at most 128 characters. */
static int type_name_valid(const char *s)
{
    size_t len = s ? strlen(s) : 0;
    if (len == 0 || len > 128 || !isalpha((unsigned char)*s))
        return 0;
    for (; *s; s++) {
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '.')
            return 0;
    }
    return 1;
}

/* One id field: what the vocabulary accepts, in any case spec-kitty normalises. */
static sk_status check_id(const json_t *env, const char *name, int required, int may_be_null,
                          const vocabulary *v, sk__err *err)
{
    const json_t *id = json_object_get(env, name);
    if (!id && !required)
        return SK_OK;
    if (!id)
        return sk__fail(err, SK_ERR_INVALID_EVENT, "%s: missing", name);
    if (may_be_null && json_is_null(id))
        return SK_OK;
    char norm[SK__EVENT_ID_MAX];
    sk__id_form form = sk__event_id_normalize(json_string_value(id), norm);
    if (form == SK__ID_ULID || (form == SK__ID_UUID && v->current))
        return SK_OK;
    return sk__fail(err, SK_ERR_INVALID_EVENT, "%s: expected %s%s", name,
                    v->current ? "a ULID or a UUID" : "a ULID",
                    may_be_null ? " or null" : v->current ? "" : " (26 Crockford base32 characters)");
}

static sk_status check_ids(const json_t *env, const vocabulary *v, sk__err *err)
{
    sk_status s = check_id(env, "event_id", 1, 0, v, err);
    if (s == SK_OK)
        s = check_id(env, "causation_id", 0, 1, v, err);
    if (s == SK_OK)
        s = check_id(env, "correlation_id", v->current, !v->current, v,
                     err);
    return s;
}

/* event_type a name; aggregate_type one the vocabulary allows for it. */
static sk_status check_names(const json_t *env, const vocabulary *v, const type_rules *known,
                             sk__err *err)
{
    const json_t *type = json_object_get(env, "event_type");
    if (!type)
        return sk__fail(err, SK_ERR_INVALID_EVENT, "event_type: missing");
    if (!type_name_valid(json_string_value(type)))
        return sk__fail(err, SK_ERR_INVALID_EVENT,
                        "event_type: expected a name (a letter, then letters, digits, '_' or '.')");
    const json_t *agg = json_object_get(env, "aggregate_type");
    if (!agg)
        return sk__fail(err, SK_ERR_INVALID_EVENT, "aggregate_type: missing");
    if (!json_is_string(agg))
        return sk__fail(err, SK_ERR_INVALID_EVENT, "aggregate_type: expected a string");
    const char *a = json_string_value(agg);
    const aggregate_set *allowed = known ? v->known_type_aggregates : v->other_aggregates;
    if (!one_of(a, allowed->names))
        return sk__fail(err, SK_ERR_INVALID_EVENT, "aggregate_type: \"%.*s\" is not %s",
                        quoted_len(a, 64), a, allowed->text);
    return SK_OK;
}

static sk_status check_payload(const json_t *env, const type_rules *known, sk__err *err)
{
    const json_t *payload = json_object_get(env, "payload");
    if (!payload)
        return sk__fail(err, SK_ERR_INVALID_EVENT, "payload: missing");
    if (!json_is_object(payload))
        return sk__fail(err, SK_ERR_INVALID_EVENT, "payload: expected an object");
    return known ? check_fields(payload, known->fields, known->n, "payload.", err) : SK_OK;
}

/* A current envelope carries schema_version. */
static int is_current(const json_t *envelope)
{
    return json_object_get(envelope, "schema_version") != NULL;
}

sk_status sk__event_validate(const json_t *envelope, sk__err *err)
{
    if (!json_is_object(envelope))
        return sk__fail(err, SK_ERR_INVALID_EVENT, "event: expected a JSON object");
    const vocabulary *v = is_current(envelope) ? &CURRENT : &CLASSIC;
    const type_rules *known =
        find_type(v, json_string_value(json_object_get(envelope, "event_type")));
    /* The schema version chose the rules: it is checked before them. */
    sk_status s = v == &CURRENT ? check_fields(envelope, current_envelope, 1, "", err) : SK_OK;
    if (s == SK_OK)
        s = check_ids(envelope, v, err);
    if (s == SK_OK)
        s = check_names(envelope, v, known, err);
    if (s == SK_OK)
        s = check_fields(envelope, v->envelope, v->n_envelope, "", err);
    if (s == SK_OK)
        s = check_payload(envelope, known, err);
    return s;
}

sk_status sk__event_accept(json_t *envelope, sk__err *err)
{
    sk_status s = json_is_object(envelope) ? sk__event_normalize_ids(envelope, err) : SK_OK;
    return s == SK_OK ? sk__event_validate(envelope, err) : s;
}
