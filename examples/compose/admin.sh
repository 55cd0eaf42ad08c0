#!/usr/bin/env bash
# Drive the running emulator over its admin API (JSON over HTTP, docs/admin.md) as a test in
# any language would: add a stub for one session, call the service with and without the
# session, verify (a wrong expectation shows the near-miss report), list the session's calls,
# reset the session. With the compose example's emulator up:
#
#   docker compose -f examples/compose/compose.yaml up -d --build emulator
#   examples/compose/admin.sh
#
# Needs curl and grpcurl. Settings: ADMIN_URL (http://127.0.0.1:8080/admin/v1), TARGET
# (127.0.0.1:50051), SESSION, ADMIN_TOKEN (when the emulator has EMULATOR_ADMIN_TOKEN), GRPCURL.
# Exits non-zero when an answer is not the one expected.
set -euo pipefail

ADMIN_URL=${ADMIN_URL:-http://127.0.0.1:8080/admin/v1}
TARGET=${TARGET:-127.0.0.1:50051}
SESSION=${SESSION:-admin-sh-$$}
GRPCURL=${GRPCURL:-grpcurl}
AUTH=()
if [ -n "${ADMIN_TOKEN:-}" ]; then AUTH=(-H "authorization: Bearer $ADMIN_TOKEN"); fi

# admin VERB PATH [JSON]: an admin call under the session (its header); fails on an HTTP error.
admin() {
    curl --silent --show-error --fail-with-body "${AUTH[@]}" -H "x-emulator-session: $SESSION" \
        -H 'content-type: application/json' -X "$1" "$ADMIN_URL$2" ${3:+--data-binary "$3"}
    echo
}

# get_product ID [SESSION]: acme.shop.v1.Catalog/GetProduct, tagged with the session if given.
get_product() {
    "$GRPCURL" -plaintext ${2:+-H "x-emulator-session: $2"} -d "{\"product_id\": \"$1\"}" \
        "$TARGET" acme.shop.v1.Catalog/GetProduct
}

# expect TEXT WHAT [show]: the standard input holds TEXT, or the script fails; show prints it.
expect() {
    local answer
    answer=$(cat)
    grep -qF -- "$1" <<<"$answer" || { printf 'admin.sh: %s: %s\n' "$2" "$answer" >&2; exit 1; }
    if [ "${3:-}" = show ]; then printf '%s\n' "$answer"; fi
}

echo "== add a stub for session $SESSION"
admin POST /stubs '{"stubs": [{"name": "p1-from-curl", "method": "acme.shop.v1.Catalog/GetProduct", "match": {"request": {"product_id": "p1"}}, "respond": {"message": {"name": "Stubbed over HTTP"}}}]}'

echo "== call with the session: the stub answers; without it: the default does"
get_product p1 "$SESSION" | expect '"name": "Stubbed over HTTP"' "the session's call"
if get_product p1 | grep -qF 'Stubbed over HTTP'; then
    echo "admin.sh: a call without the session got the session's stub" >&2
    exit 1
fi

echo "== verify: a wrong expectation reports the near misses; the right one passes"
admin POST /verify '{"method": "acme.shop.v1.Catalog/GetProduct", "request": {"product_id": "p2"}, "times": 1}' |
    expect '"ok": false' "verify p2" show
admin POST /verify '{"method": "acme.shop.v1.Catalog/GetProduct", "request": {"product_id": "p1"}, "times": 1}' |
    expect '"ok": true' "verify p1" show

echo "== the session's calls"
admin GET '/calls?method=acme.shop.v1.Catalog/GetProduct' | expect '"total": 1' "calls" show

echo "== reset the session: its stub and calls are gone"
admin POST /reset '{}' | expect '"parts"' "reset" show
get_product p1 "$SESSION" | expect '"productId": "p1"' "the call after reset"
if get_product p1 "$SESSION" | grep -qF 'Stubbed over HTTP'; then
    echo "admin.sh: the stub answered after the reset" >&2
    exit 1
fi
echo "admin.sh: ok"
