#pragma once
#include <gnutls/gnutls.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>
#include <gnutls/abstract.h>

/* gnutls_free is a global function pointer; Swift 6 rejects reading mutable globals. */
static inline void swift_gnutls_free(void *p) { gnutls_free(p); }

/* The session flags are enum constants and macros at once: give them plain names. */
static inline unsigned int swift_gnutls_client_flags(void) {
  return GNUTLS_CLIENT | GNUTLS_ENABLE_EARLY_DATA | GNUTLS_NO_END_OF_EARLY_DATA;
}
static inline unsigned int swift_gnutls_client_flags_no_early_data(void) {
  return GNUTLS_CLIENT | GNUTLS_NO_END_OF_EARLY_DATA;
}
static inline unsigned int swift_gnutls_server_flags(void) {
  return GNUTLS_SERVER | GNUTLS_ENABLE_EARLY_DATA | GNUTLS_NO_END_OF_EARLY_DATA;
}
