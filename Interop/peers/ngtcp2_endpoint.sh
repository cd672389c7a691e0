#!/usr/bin/env bash
# A quic-interop-runner endpoint made of Debian's ngtcp2 examples (gtlsserver / gtlsclient,
# ngtcp2 0.12 with GnuTLS), for Interop/run-matrix.
#
# The examples speak h3 only, so every transfer here is HTTP/3 whatever TESTCASE says; the
# runner pairs this endpoint only with peers that can speak h3 for the case (see
# Interop/README.md) and labels those cells "(h3)".
# Environment: ROLE, TESTCASE, REQUESTS, SSLKEYLOGFILE (GnuTLS writes it itself), QLOGDIR,
# WWW, DOWNLOADS, CERTS, PORT, BIND_ADDRESS. Exit 0 success, 1 failure, 127 unsupported.
set -u
log() { echo "ngtcp2_endpoint: $*" >&2; }

case "${TESTCASE:-}" in
  handshake|transfer|longrtt|chacha20|multiplexing|retry|resumption|zerortt|http3|keyupdate|\
  multiconnect|ecn|blackhole|transferloss|handshakeloss|transfercorruption|handshakecorruption|\
  amplificationlimit|rebind-port|rebind-addr|ipv6|goodput) ;;
  *) log "unsupported test case '${TESTCASE:-}'"; exit 127 ;;
esac

chacha=(--ciphers='NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+CHACHA20-POLY1305')
qlog=()
[ -n "${QLOGDIR:-}" ] && { mkdir -p "$QLOGDIR"; qlog=(--qlog-dir="$QLOGDIR"); }

if [ "${ROLE:-}" = server ]; then
  options=(-q --timeout=30s "${qlog[@]}" -d "${WWW:-/www}")
  [ "$TESTCASE" = retry ] && options+=(-V)
  [ "$TESTCASE" = chacha20 ] && options+=("${chacha[@]}")
  certs=${CERTS:-/certs}
  exec gtlsserver "${options[@]}" "${BIND_ADDRESS:-*}" "${PORT:-443}" "$certs/priv.key" "$certs/cert.pem"
fi
[ "${ROLE:-}" = client ] || { log "unknown ROLE '${ROLE:-}'"; exit 1; }

read -r -a urls <<< "${REQUESTS:-}"
[ ${#urls[@]} -gt 0 ] || { log "REQUESTS is empty"; exit 1; }
downloads=${DOWNLOADS:-/downloads}
mkdir -p "$downloads"
# host and port of the first URL: https://HOST:PORT/... or https://[V6]:PORT/...
authority=${urls[0]#https://}; authority=${authority%%/*}
if [[ $authority == \[* ]]; then host=${authority%%]*}; host=${host#[}; port=${authority##*]:}
else host=${authority%%:*}; port=${authority##*:}; fi

options=(-q --timeout=30s --exit-on-all-streams-close --download="$downloads" "${qlog[@]}")
[ "$TESTCASE" = chacha20 ] && options+=("${chacha[@]}")
[ "$TESTCASE" = keyupdate ] && options+=(--key-update=10ms)

client() { gtlsclient "${options[@]}" "$@" "$host" "$port" "${extra_urls[@]}" >/dev/null; }

case "$TESTCASE" in
  multiconnect|handshakeloss|handshakecorruption)
    for url in "${urls[@]}"; do extra_urls=("$url"); client || exit 1; done ;;
  resumption|zerortt)
    state=$(mktemp -d)
    trap 'rm -rf "$state"' EXIT
    session=(--session-file="$state/session" --tp-file="$state/tp")
    extra_urls=("${urls[0]}"); client "${session[@]}" --disable-early-data || exit 1
    [ -s "$state/session" ] || { log "no session ticket received"; exit 1; }
    if [ ${#urls[@]} -gt 1 ]; then
      extra_urls=("${urls[@]:1}")
      if [ "$TESTCASE" = resumption ]; then client "${session[@]}" --disable-early-data || exit 1
      else client "${session[@]}" || exit 1; fi
    fi ;;
  *) extra_urls=("${urls[@]}"); client || exit 1 ;;
esac
exit 0
