/*
 * The two event vocabularies (CONTRACT.md §1 classic, §1b current) and the id
 * forms spec-kitty accepts: golden envelopes of every current type, each
 * required field missing in turn, the value rules, id normalisation, and the
 * current envelopes that sk_emit_event builds.
 */
#include "testutil.h"

#include "config.h"
#include "engine.h"
#include "event.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The required payload fields of every current type, as CONTRACT.md §1b lists them. */
static const struct {
    const char *type;
    const char *required[9];
} current_required[] = {
    {"BuildRegistered", {"build_id"}},
    {"BuildHeartbeat", {"build_id"}},
    {"WPStatusChanged",
     {"mission_slug", "wp_id", "from_lane", "to_lane", "actor", "execution_mode"}},
    {"WPCreated", {"wp_id", "wp_title", "mission_slug", "actor"}},
    {"WPAssigned", {"wp_id", "agent_id", "phase"}},
    {"MissionCreated",
     {"mission_slug", "mission_number", "mission_type", "target_branch", "wp_count",
      "friendly_name", "purpose_tldr", "purpose_context"}},
    {"MissionClosed", {"mission_slug", "mission_number", "mission_type"}},
    {"MissionStarted", {"mission_id", "mission_type", "initial_phase", "actor"}},
    {"MissionCompleted", {"mission_id", "mission_type", "final_phase", "actor"}},
    {"PhaseEntered", {"mission_id", "phase_name", "actor"}},
    {"MissionRunStarted", {"run_id", "mission_type", "actor"}},
    {"MissionRunCompleted", {"run_id", "mission_type", "actor"}},
    {"NextStepIssued", {"run_id", "step_id", "agent_id", "actor"}},
    {"NextStepAutoCompleted", {"run_id", "step_id", "agent_id", "result", "actor"}},
    {"DecisionInputRequested", {"run_id", "decision_id", "step_id", "question", "actor"}},
    {"DecisionInputAnswered", {"run_id", "decision_id", "answer", "actor"}},
    {"TokenUsageRecorded",
     {"mission_id", "input_tokens", "output_tokens", "total_tokens", "estimated_cost_usd",
      "source"}},
    {"DiffSummaryRecorded",
     {"mission_id", "base_ref", "head_ref", "files_changed", "lines_added", "lines_deleted",
      "source"}},
    {"HistoryAdded", {"wp_id", "entry_type", "entry_content"}},
    {"ErrorLogged", {"error_type", "error_message"}},
    {"DependencyResolved", {"wp_id", "dependency_wp_id", "resolution_type"}},
    {"MissionDossierArtifactIndexed", {"namespace", "artifact_id", "content_ref", "indexed_at"}},
    {"MissionDossierArtifactMissing",
     {"namespace", "expected_identity", "manifest_step", "checked_at"}},
    {"MissionDossierSnapshotComputed",
     {"namespace", "snapshot_hash", "artifact_count", "anomaly_count", "computed_at"}},
    {"MissionDossierParityDriftDetected",
     {"namespace", "expected_hash", "actual_hash", "drift_kind", "detected_at"}},
    {"MissionOriginBound",
     {"mission_slug", "provider", "external_issue_id", "external_issue_key",
      "external_issue_url", "title"}},
};

/* A current envelope around one golden line (event_type, aggregate_type, payload). */
static json_t *current_envelope(const json_t *golden)
{
    json_t *env = json_pack(
        "{s:s, s:s, s:s, s:I, s:n, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "event_id",
        "01HZX3V5Q8C6M0T7J4K2N9R1S0", "aggregate_id", "WP01", "node_id", "0123456789ab",
        "lamport_clock", (json_int_t)7, "causation_id", "timestamp", "2026-11-30T10:00:00.123Z",
        "team_slug", "acme", "schema_version", "3.0.0", "build_id", "",
        "correlation_id", "01HZX3V5Q8C6M0T7J4K2N9R1S0", "project_uuid",
        "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f", "project_slug", "acme-app");
    assert_non_null(env);
    json_t *copy = json_deep_copy(golden); /* the callers change the payload */
    json_object_update(env, copy);
    json_decref(copy);
    return env;
}

/* The golden lines of tests/fixtures/events/current.ndjson, one JSON array. */
static json_t *golden_lines(void)
{
    FILE *f = fopen(SK_TEST_FIXTURES "/events/current.ndjson", "r");
    assert_non_null(f);
    json_t *all = json_array();
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        json_t *v = json_loads(line, 0, NULL);
        assert_non_null(v);
        json_array_append_new(all, v);
    }
    fclose(f);
    return all;
}

static const json_t *golden_of(const json_t *all, const char *type)
{
    size_t i;
    json_t *g;
    json_array_foreach(all, i, g)
    {
        if (strcmp(json_string_value(json_object_get(g, "event_type")), type) == 0)
            return g;
    }
    fail_msg("no golden envelope of %s", type);
    return NULL;
}

static void expect_invalid(json_t *env, const char *want)
{
    sk__err err = {{0}};
    if (sk__event_validate(env, &err) != SK_ERR_INVALID_EVENT)
        fail_msg("accepted, expected: %s", want);
    assert_string_equal(err.msg, want);
    json_decref(env);
}

static void expect_valid(json_t *env)
{
    sk__err err = {{0}};
    if (sk__event_validate(env, &err) != SK_OK)
        fail_msg("refused: %s", err.msg);
    json_decref(env);
}

static void every_current_type_validates_and_names_each_missing_required_field(void **state)
{
    (void)state;
    json_t *all = golden_lines();
    assert_int_equal(json_array_size(all), SK__ARRAY_LEN(current_required));
    for (size_t t = 0; t < SK__ARRAY_LEN(current_required); t++) {
        const json_t *g = golden_of(all, current_required[t].type);
        expect_valid(current_envelope(g));
        for (size_t f = 0; f < 9 && current_required[t].required[f]; f++) {
            json_t *env = current_envelope(g);
            json_object_del(json_object_get(env, "payload"), current_required[t].required[f]);
            char want[128];
            snprintf(want, sizeof want, "payload.%s: missing", current_required[t].required[f]);
            expect_invalid(env, want);
        }
    }
    json_decref(all);
}

/* The golden envelope of type with payload field set to value (JSON text). */
static json_t *with_payload(const json_t *all, const char *type, const char *field,
                            const char *value)
{
    json_t *env = current_envelope(golden_of(all, type));
    json_t *v = json_loads(value, JSON_DECODE_ANY, NULL);
    assert_non_null(v);
    json_object_set_new(json_object_get(env, "payload"), field, v);
    return env;
}

static void current_value_rules_refuse_what_the_server_refuses(void **state)
{
    (void)state;
    json_t *all = golden_lines();
    static const struct {
        const char *type, *field, *value, *want;
    } bad[] = {
        {"WPStatusChanged", "to_lane", "\"doing\"",
         "payload.to_lane: unknown value \"doing\" (expected planned, claimed, in_progress, "
         "for_review, in_review, approved, done, blocked or canceled)"},
        {"WPStatusChanged", "to_lane", "\"genesis\"",
         "payload.to_lane: unknown value \"genesis\" (expected planned, claimed, in_progress, "
         "for_review, in_review, approved, done, blocked or canceled)"},
        {"WPStatusChanged", "from_lane", "\"started\"",
         "payload.from_lane: unknown value \"started\" (expected genesis, planned, claimed, "
         "in_progress, for_review, in_review, approved, done, blocked or canceled)"},
        {"WPStatusChanged", "execution_mode", "\"container\"",
         "payload.execution_mode: unknown value \"container\" (expected worktree or direct_repo)"},
        {"WPStatusChanged", "wp_id", "\"WP1\"",
         "payload.wp_id: \"WP1\" is not a work package id like WP01"},
        {"WPStatusChanged", "actor", "\"\"",
         "payload.actor: expected a non-empty string or an object of role/tool/profile/model"},
        {"WPStatusChanged", "actor", "{\"name\": \"x\"}",
         "payload.actor: expected a non-empty string or an object of role/tool/profile/model"},
        {"WPStatusChanged", "actor", "{}",
         "payload.actor: expected a non-empty string or an object of role/tool/profile/model"},
        {"WPStatusChanged", "force", "\"yes\"", "payload.force: expected true or false"},
        {"WPStatusChanged", "evidence", "[]", "payload.evidence: expected an object or null"},
        {"WPCreated", "depends_on", "[\"WP01\", \"X\"]",
         "payload.depends_on: expected a list of work package ids like WP01"},
        {"WPAssigned", "phase", "\"planning\"",
         "payload.phase: unknown value \"planning\" (expected implementation or review)"},
        {"MissionCreated", "mission_slug", "\"Offline Sync\"",
         "payload.mission_slug: \"Offline Sync\" is not a slug like 001-my-mission or "
         "my-mission-01J6XW2Z"},
        {"MissionCreated", "mission_slug", "\"offline-sync-01J6XW2\"",
         "payload.mission_slug: \"offline-sync-01J6XW2\" is not a slug like 001-my-mission or "
         "my-mission-01J6XW2Z"},
        {"MissionCreated", "mission_number", "\"42\"",
         "payload.mission_number: expected an integer >= 0 or null"},
        {"MissionCreated", "wp_count", "-1", "payload.wp_count: expected an integer >= 0"},
        {"TokenUsageRecorded", "estimated_cost_usd", "-0.5",
         "payload.estimated_cost_usd: expected a number >= 0"},
        {"TokenUsageRecorded", "total_tokens", "1.5",
         "payload.total_tokens: expected an integer >= 0"},
        {"MissionDossierSnapshotComputed", "computed_at", "\"today\"",
         "payload.computed_at: \"today\" is not an ISO-8601 date-time"},
        {"MissionDossierArtifactIndexed", "namespace", "null",
         "payload.namespace: expected a value"},
    };
    for (size_t i = 0; i < SK__ARRAY_LEN(bad); i++)
        expect_invalid(with_payload(all, bad[i].type, bad[i].field, bad[i].value), bad[i].want);
    /* What the rules allow besides the golden values. */
    expect_valid(with_payload(all, "WPStatusChanged", "from_lane", "\"genesis\""));
    expect_valid(with_payload(all, "WPStatusChanged", "execution_mode", "\"direct_repo\""));
    expect_valid(with_payload(all, "WPStatusChanged", "actor", "{\"role\": \"reviewer\"}"));
    expect_valid(with_payload(all, "MissionCreated", "mission_slug", "\"042-offline-sync\""));
    expect_valid(with_payload(all, "MissionCreated", "mission_number", "42"));
    expect_valid(with_payload(all, "TokenUsageRecorded", "estimated_cost_usd", "0"));
    json_decref(all);
}

static void current_envelope_fields_are_checked(void **state)
{
    (void)state;
    json_t *all = golden_lines();
    const json_t *g = golden_of(all, "WPAssigned");
    static const struct {
        const char *field, *value, *want;
    } bad[] = {
        {"aggregate_type", "\"Feature\"",
         "aggregate_type: \"Feature\" is not Build, WorkPackage, Mission or MissionDossier"},
        {"schema_version", "\"4.0.0\"", "schema_version: \"4.0.0\" is not \"3.x\""},
        {"build_id", "null", "build_id: expected a string"},
        {"correlation_id", "null", "correlation_id: expected a ULID or a UUID"},
        {"project_uuid", "\"acme\"", "project_uuid: \"acme\" is not a UUID or null"},
        {"team_slug", "\"\"", "team_slug: expected a non-empty string or null"},
        {"event_id", "\"01HZX3V5Q8C6M0T7J4K2N9R1SL\"", "event_id: expected a ULID or a UUID"},
        {"causation_id", "\"6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5\"",
         "causation_id: expected a ULID or a UUID or null"},
        {"timestamp", "\"2026-11-30\"", "timestamp: \"2026-11-30\" is not an ISO-8601 date-time"},
    };
    for (size_t i = 0; i < SK__ARRAY_LEN(bad); i++) {
        json_t *env = current_envelope(g);
        json_object_set_new(env, bad[i].field, json_loads(bad[i].value, JSON_DECODE_ANY, NULL));
        expect_invalid(env, bad[i].want);
    }
    json_t *env = current_envelope(g);
    json_object_del(env, "correlation_id");
    expect_invalid(env, "correlation_id: missing");
    env = current_envelope(g);
    json_object_del(env, "build_id");
    expect_invalid(env, "build_id: missing");
    /* Optional ones may be null or absent; a type the server knows and we do not passes. */
    env = current_envelope(g);
    json_object_set_new(env, "team_slug", json_null());
    json_object_set_new(env, "project_uuid", json_null());
    json_object_set_new(env, "git_branch", json_string("main"));
    json_object_del(env, "project_slug");
    expect_valid(env);
    env = current_envelope(g);
    json_object_set_new(env, "event_type", json_string("GlossaryTermAdded"));
    json_object_set_new(env, "aggregate_type", json_string("Mission"));
    json_object_set_new(env, "payload", json_pack("{s:i}", "anything", 1));
    expect_valid(env);
    /* The classic payload of a type is not what the current rules ask for. */
    env = current_envelope(g);
    json_object_set_new(env, "event_type", json_string("WPStatusChanged"));
    json_object_set_new(env, "payload",
                        json_pack("{s:s, s:s, s:s}", "wp_id", "WP01", "previous_status", "planned",
                                  "new_status", "doing"));
    expect_invalid(env, "payload.mission_slug: missing");
    json_decref(all);
}

static void a_quoted_value_is_cut_on_a_character_boundary(void **state)
{
    (void)state;
    json_t *all = golden_lines();
    /* 63 ASCII bytes, then a 4-byte character that a cut at 64 bytes would split. */
    char value[80];
    memset(value, 'x', 63);
    memcpy(value + 63, "\xF0\x9F\x98\x80", 5);
    json_t *env = current_envelope(golden_of(all, "WPStatusChanged"));
    json_object_set_new(json_object_get(env, "payload"), "to_lane", json_string(value));
    sk__err err = {{0}};
    assert_int_equal(sk__event_validate(env, &err), SK_ERR_INVALID_EVENT);
    json_t *as_json = json_string(err.msg); /* NULL when the message is not valid UTF-8 */
    assert_non_null(as_json);
    assert_non_null(strstr(err.msg, "unknown value \"xxx"));
    assert_null(strstr(err.msg, "\xF0"));
    json_decref(as_json);
    json_decref(env);
    json_decref(all);
}

static void ids_are_normalised_as_spec_kitty_does(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
        sk__id_form form;
    } cases[] = {
        {"01hzx3v5q8c6m0t7j4k2n9r1s0", "01HZX3V5Q8C6M0T7J4K2N9R1S0", SK__ID_ULID},
        {"01HZX3V5Q8C6M0T7J4K2N9R1S0", "01HZX3V5Q8C6M0T7J4K2N9R1S0", SK__ID_ULID},
        {"6F1C2D3E-4A5B-4C6D-8E9F-0A1B2C3D4E5F", "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f",
         SK__ID_UUID},
        {"6f1c2d3e4a5b4c6d8e9f0a1b2c3d4e5f", "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f", SK__ID_UUID},
        {"6F1C2D3E4A5B4C6D8E9F0A1B2C3D4E5F", "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f", SK__ID_UUID},
        {"01HZX3V5Q8C6M0T7J4K2N9R1SI", "", SK__ID_INVALID}, /* I, L, O, U are not Crockford */
        {"01HZX3V5Q8C6M0T7J4K2N9R1SL", "", SK__ID_INVALID},
        {"01HZX3V5Q8C6M0T7J4K2N9R1SO", "", SK__ID_INVALID},
        {"01HZX3V5Q8C6M0T7J4K2N9R1SU", "", SK__ID_INVALID},
        {"01HZX3V5Q8C6M0T7J4K2N9R1S", "", SK__ID_INVALID},
        {"6f1c2d3e-4a5b-4c6d-8e9f0a1b2c3d4e5f", "", SK__ID_INVALID},
        {"6f1c2d3e4a5b4c6d8e9f0a1b2c3d4e5g", "", SK__ID_INVALID},
        {"6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f0", "", SK__ID_INVALID},
        {"", "", SK__ID_INVALID},
        {NULL, "", SK__ID_INVALID},
    };
    for (size_t i = 0; i < SK__ARRAY_LEN(cases); i++) {
        char out[SK__EVENT_ID_MAX];
        assert_int_equal(sk__event_id_normalize(cases[i].in, out), cases[i].form);
        assert_string_equal(out, cases[i].out);
    }
    /* In an envelope: all three ids, before the queue's dedup sees them. */
    json_t *env = json_pack("{s:s, s:s, s:s}", "event_id", "01hzx3v5q8c6m0t7j4k2n9r1s0",
                            "causation_id", "6F1C2D3E4A5B4C6D8E9F0A1B2C3D4E5F", "correlation_id",
                            "not an id");
    assert_int_equal(sk__event_normalize_ids(env, NULL), SK_OK);
    assert_string_equal(json_string_value(json_object_get(env, "event_id")),
                        "01HZX3V5Q8C6M0T7J4K2N9R1S0");
    assert_string_equal(json_string_value(json_object_get(env, "causation_id")),
                        "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f");
    assert_string_equal(json_string_value(json_object_get(env, "correlation_id")), "not an id");
    json_decref(env);
}

static void classic_envelopes_take_ulids_in_either_case_but_no_uuid(void **state)
{
    (void)state;
    json_t *env = json_pack("{s:s, s:s, s:s, s:s, s:{s:s, s:s}, s:s, s:I, s:s, s:s, s:s}",
                            "event_id", "01hzx3v5q8c6m0t7j4k2n9r1s0", "event_type",
                            "FeatureCompleted", "aggregate_id", "001-sync", "aggregate_type",
                            "Feature", "payload", "feature_slug", "001-sync", "total_duration",
                            "1h", "node_id", "0123456789ab", "lamport_clock", (json_int_t)1,
                            "causation_id", "01HZX3V5Q8C6M0T7J4K2N9R1S1", "timestamp",
                            "2026-02-01T00:00:00+00:00", "team_slug", "local");
    json_object_set_new(json_object_get(env, "payload"), "total_wps", json_integer(2));
    expect_valid(json_deep_copy(env));
    json_object_set_new(env, "causation_id", json_string("6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f"));
    expect_invalid(env, "causation_id: expected a ULID or null");
}

/* A state root with sync.json text; the handle is opened on it. */
static sk_sync *open_root(const char *config, char **root_out)
{
    char *root = sk_test_mkdtemp();
    char path[4096];
    snprintf(path, sizeof path, "%s/sync.json", root);
    sk_test_write_file(path, config);
    sk_sync *s = NULL;
    char err[256];
    if (sk_open(root, &s, err, sizeof err) != SK_OK)
        fail_msg("sk_open: %s", err);
    *root_out = root;
    return s;
}

/* The queued envelope of id. */
static json_t *queued(sk_sync *s, const char *id)
{
    sqlite3 *db = NULL;
    char path[4200];
    snprintf(path, sizeof path, "%s/queue.db", s->root);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT data FROM queue WHERE event_id = ?", -1, &st,
                                        NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    json_t *env = json_loads((const char *)sqlite3_column_text(st, 0), 0, NULL);
    sqlite3_finalize(st);
    sqlite3_close(db);
    assert_non_null(env);
    return env;
}

static void emit_event_builds_current_envelopes_from_options_and_config(void **state)
{
    (void)state;
    char *root;
    sk_sync *s = open_root("{\"emit\": {\"schema\": 3, \"project_uuid\": "
                           "\"6F1C2D3E4A5B4C6D8E9F0A1B2C3D4E5F\", \"project_slug\": \"acme-app\", "
                           "\"build_id\": \"b-9\"}}",
                           &root);
    char id[27];
    sk_event_spec spec = {
        .event_type = "WPStatusChanged",
        .aggregate_id = "WP01",
        .payload_json = "{\"mission_slug\": \"042-offline-sync\", \"wp_id\": \"WP01\", "
                        "\"from_lane\": \"planned\", \"to_lane\": \"claimed\", \"actor\": "
                        "\"alice\", \"execution_mode\": \"worktree\"}",
        .causation_id = "01hzx3v5q8c6m0t7j4k2n9r1s1"};
    assert_int_equal(sk_emit_event(s, &spec, id), SK_OK);
    json_t *env = queued(s, id);
    assert_string_equal(json_string_value(json_object_get(env, "schema_version")), "3.0.0");
    assert_string_equal(json_string_value(json_object_get(env, "build_id")), "b-9");
    assert_string_equal(json_string_value(json_object_get(env, "project_uuid")),
                        "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f");
    assert_string_equal(json_string_value(json_object_get(env, "project_slug")), "acme-app");
    /* correlation_id defaults to the causation id, normalised like it. */
    assert_string_equal(json_string_value(json_object_get(env, "causation_id")),
                        "01HZX3V5Q8C6M0T7J4K2N9R1S1");
    assert_string_equal(json_string_value(json_object_get(env, "correlation_id")),
                        "01HZX3V5Q8C6M0T7J4K2N9R1S1");
    json_decref(env);

    /* Without a causation: the event's own id; the options win over the config; a
     * type of features gets a mission aggregate. */
    sk_event_spec own = {.event_type = "MissionClosed",
                         .aggregate_id = "042-offline-sync",
                         .payload_json = "{\"mission_slug\": \"042-offline-sync\", "
                                         "\"mission_number\": 42, \"mission_type\": \"sw\"}",
                         .project_slug = "other"};
    assert_int_equal(sk_emit_event(s, &own, id), SK_OK);
    env = queued(s, id);
    assert_string_equal(json_string_value(json_object_get(env, "correlation_id")), id);
    assert_string_equal(json_string_value(json_object_get(env, "project_slug")), "other");
    assert_string_equal(json_string_value(json_object_get(env, "aggregate_type")), "Mission");
    json_decref(env);

    /* schema 1 on the call: a classic envelope, validated as one. */
    sk_event_spec classic = {.event_type = "WPStatusChanged",
                             .aggregate_id = "WP01",
                             .payload_json = spec.payload_json,
                             .schema = 1};
    assert_int_equal(sk_emit_event(s, &classic, id), SK_ERR_INVALID_EVENT);
    assert_string_equal(sk_last_error(s), "payload.previous_status: missing");
    classic.schema = 2;
    assert_int_equal(sk_emit_event(s, &classic, id), SK_ERR_USAGE);
    sk_close(s);
    sk_test_rmtree(root);
    free(root);
}

static void config_refuses_an_unknown_emit_schema(void **state)
{
    (void)state;
    sk__config *cfg = NULL;
    sk__err err = {{0}};
    assert_int_equal(sk__config_parse("sync.json", "{\"emit\": {\"schema\": 2}}", &cfg, &err),
                     SK_ERR_CONFIG);
    assert_string_equal(err.msg, "sync.json: emit.schema: expected 1 (classic) or 3 (current)");
    assert_int_equal(sk__config_parse("sync.json", "{\"emit\": {\"schema\": 4}}", &cfg, &err),
                     SK_ERR_CONFIG);
    assert_int_equal(sk__config_parse("sync.json", "{}", &cfg, &err), SK_OK);
    assert_int_equal(cfg->emit_schema, 1); /* classic until the config says otherwise */
    sk__config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_current_type_validates_and_names_each_missing_required_field),
        cmocka_unit_test(current_value_rules_refuse_what_the_server_refuses),
        cmocka_unit_test(current_envelope_fields_are_checked),
        cmocka_unit_test(a_quoted_value_is_cut_on_a_character_boundary),
        cmocka_unit_test(ids_are_normalised_as_spec_kitty_does),
        cmocka_unit_test(classic_envelopes_take_ulids_in_either_case_but_no_uuid),
        cmocka_unit_test(emit_event_builds_current_envelopes_from_options_and_config),
        cmocka_unit_test(config_refuses_an_unknown_emit_schema),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
