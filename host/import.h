/*
 * Import of file-drop bundles (sk_import): each bundle is read and verified
 * whole (bundle.c), its lines become envelopes as `emit --file` makes them
 * (event.c), and they are queued in one transaction, then the bundle is moved
 * into imported/ beside it.
 */
#ifndef SK_HOST_IMPORT_H
#define SK_HOST_IMPORT_H

#include "engine.h"

/* See sk_import in sync.h; a cancel on s stops between bundles and inside one. */
sk_status sk__sync_import(sk_sync *s, const char *path, unsigned flags, sk_bundle_fn fn, void *ctx);

#endif
