#pragma once
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>

/* NGTCP2_CRYPTO_MAX_RETRY_TOKENLEN is built from sizeof(): not importable. */
static inline size_t swift_ngtcp2_crypto_max_retry_tokenlen(void) {
  return NGTCP2_CRYPTO_MAX_RETRY_TOKENLEN;
}

/* NGTCP2_CRYPTO_MAX_REGULAR_TOKENLEN is built from sizeof(): not importable. */
static inline size_t swift_ngtcp2_crypto_max_regular_tokenlen(void) {
  return NGTCP2_CRYPTO_MAX_REGULAR_TOKENLEN;
}
