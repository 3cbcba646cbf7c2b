/*
 * File-drop bundles on the connected machine: list the complete bundles of an
 * outbox in delivery order, and read one, verifying all of it against its
 * manifest before a single event is handed out. The format's names are in
 * <spec-kitty/bundle_format.h>, shared with the file-drop plugin.
 *
 * Status codes of sk__bundle_read:
 *   SK_ERR_NOT_FOUND      the bundle folder, its manifest or its data file is missing
 *   SK_ERR_IO             a file cannot be read (the OS error is in the message)
 *   SK_ERR_INVALID_EVENT  the bundle is corrupt: malformed manifest, size or sha256
 *                         mismatch, truncated or damaged gzip, wrong event count,
 *                         first/last id mismatch, a line that is not an envelope
 *                         or holds a NUL byte
 *   SK_ERR_PROTOCOL       format_version newer than this reader
 *   SK_ERR_PERMISSION     the bundle folder or one of its files is a symbolic link,
 *                         or a file is not a regular file (neither is ever followed)
 *   SK_ERR_NOMEM
 * The message names the file and what is wrong, in one line.
 */
#ifndef SK_HOST_BUNDLE_H
#define SK_HOST_BUNDLE_H

#include "common.h"

#include <jansson.h>

#include <spec-kitty/bundle_format.h>
/* Refuse to inflate more than this (a manifest could claim anything). */
#define SK__BUNDLE_MAX_UNCOMPRESSED ((int64_t)1 << 30)
/* Refuse a manifest.json larger than this: the writer's fit in 4 KiB. */
#define SK__BUNDLE_MANIFEST_MAX (64 * 1024)

/* What the manifest says (filled in as soon as the manifest parsed). */
typedef struct sk__bundle_info {
    int format_version;
    char bundle_id[64];
    char node_id[65]; /* "" when the producer did not know it; at most 64 chars */
    char created_at[40];
    char producer[64]; /* "" when absent */
    int64_t event_count;
    char first_event_id[129]; /* at most 128 chars, as the plugin enforces */
    char last_event_id[129];
    int64_t data_bytes;
    int64_t uncompressed_bytes;
    char data_sha256[65]; /* lowercase hex */
} sk__bundle_info;

/*
 * Called once per event, in file (delivery) order, and only after the whole
 * bundle verified. json is one envelope, NUL-terminated, without the newline;
 * envelope is that line parsed (borrowed: take a reference to keep it);
 * event_id is its "event_id". Returning anything but SK_OK stops the reading;
 * sk__bundle_read then returns that status.
 */
typedef sk_status (*sk__bundle_event_fn)(void *ctx, const char *event_id, json_t *envelope,
                                         const char *json, size_t len);

/*
 * Reads the bundle folder bundle_path (".../<id>.skb"): checks the manifest
 * (format, version, fields), the data file's size and sha256, inflates it
 * (gzip CRC and length), checks every line is a JSON object with a string
 * event_id, the line count and the first/last ids — then calls fn per event.
 * fn may be NULL (verify only). info (optional) gets the manifest. On a
 * verification failure fn is never called.
 */
sk_status sk__bundle_read(const char *bundle_path, sk__bundle_event_fn fn, void *ctx,
                          sk__bundle_info *info, sk__err *err);

/*
 * Lists the bundles of an outbox: entries named "*.skb" that are folders,
 * not starting with '.', sorted by name (= delivery order). Temp folders
 * (".tmp-*") and anything else are ignored. *names is a malloc'd array of
 * *count malloc'd names (not paths); free with sk__bundle_list_free.
 * SK_ERR_NOT_FOUND when the outbox does not exist.
 */
sk_status sk__bundle_list(const char *outbox, char ***names, size_t *count, sk__err *err);
void sk__bundle_list_free(char **names, size_t count);

#endif
