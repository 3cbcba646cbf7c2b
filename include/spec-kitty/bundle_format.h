/*
 * spec-kitty sync — the file-drop bundle format, shared by its writer (the
 * file-drop plugin) and its reader (`spec-kitty sync import`).
 * plugins/file-drop/README.md is the format's spec.
 *
 * A bundle is a folder <outbox>/<bundle-id>.skb holding the envelopes, one per
 * line, gzip'd (events.ndjson.gz), and a manifest (manifest.json) naming the
 * format, its version, the count, the first and last ids, and the data file's
 * size and sha256. It is written as .tmp-<...> and renamed when complete.
 */
#ifndef SPEC_KITTY_BUNDLE_FORMAT_H
#define SPEC_KITTY_BUNDLE_FORMAT_H

#define SK_BUNDLE_FORMAT "spec-kitty-bundle" /* the manifest's "format" */
#define SK_BUNDLE_FORMAT_VERSION 1           /* newer ones are refused by older readers */
#define SK_BUNDLE_SUFFIX ".skb"
#define SK_BUNDLE_TMP_PREFIX ".tmp-" /* a bundle being written: never read */
#define SK_BUNDLE_DATA_FILE "events.ndjson.gz"
#define SK_BUNDLE_MANIFEST_FILE "manifest.json"

#include <string.h>

/* True for the name of a finished bundle folder: <bundle-id>.skb, not hidden
 * (a .tmp- folder is one being written). What a reader lists and imports. */
static inline int sk_bundle_is_name(const char *name)
{
    size_t n = strlen(name), k = strlen(SK_BUNDLE_SUFFIX);
    return name[0] != '.' && n > k && strcmp(name + n - k, SK_BUNDLE_SUFFIX) == 0;
}

#endif /* SPEC_KITTY_BUNDLE_FORMAT_H */
