#!/usr/bin/env bash
# h2-stream against the real receiver behind nghttpx: over TLS (ALPN h2, the test CA)
# and over h2c to loopback, `sync now` delivers every event once; the probe of
# `sync status --check` goes through the same connection.
. "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/h2_lib.sh"

rx_start rx
h2_config "$RX_TLS"
login
emit_many 2500
sk sync now --json
expect_rc 0 "sync now over TLS"
expect_eq "$(jq -r .synced <<<"$OUT")" 2500 "synced over TLS"
stored_once 2500
sk sync status --check
expect_rc 0 "status --check over TLS"; expect_out "Connected"

h2_config "$RX_H2C"
login # the session belongs to one server_url
emit_many 700
sk sync now --json
expect_rc 0 "sync now over h2c"
expect_eq "$(jq -r .synced <<<"$OUT")" 700 "synced over h2c"
stored_once 3200

sk sync plugins --json
expect_rc 0 "sync plugins"
expect_eq "$(jq -c '.[] | select(.name == "h2-stream") | .capabilities' <<<"$OUT")" \
  '["sync","async","probe","streaming"]' "h2-stream capabilities"
