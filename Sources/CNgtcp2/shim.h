#pragma once
#include <ngtcp2/ngtcp2.h>

/* ngtcp2 0.12 exposes these as function-like macros over *_versioned
   functions; Swift imports no function-like macros, so wrap them. */
static inline int swift_ngtcp2_conn_client_new(
    ngtcp2_conn **pconn, const ngtcp2_cid *dcid, const ngtcp2_cid *scid,
    const ngtcp2_path *path, uint32_t version, const ngtcp2_callbacks *cb,
    const ngtcp2_settings *settings, const ngtcp2_transport_params *params,
    const ngtcp2_mem *mem, void *user_data) {
  return ngtcp2_conn_client_new(pconn, dcid, scid, path, version, cb, settings,
                                params, mem, user_data);
}
static inline int swift_ngtcp2_conn_server_new(
    ngtcp2_conn **pconn, const ngtcp2_cid *dcid, const ngtcp2_cid *scid,
    const ngtcp2_path *path, uint32_t version, const ngtcp2_callbacks *cb,
    const ngtcp2_settings *settings, const ngtcp2_transport_params *params,
    const ngtcp2_mem *mem, void *user_data) {
  return ngtcp2_conn_server_new(pconn, dcid, scid, path, version, cb, settings,
                                params, mem, user_data);
}
static inline void swift_ngtcp2_settings_default(ngtcp2_settings *s) {
  ngtcp2_settings_default(s);
}
static inline void swift_ngtcp2_transport_params_default(ngtcp2_transport_params *p) {
  ngtcp2_transport_params_default(p);
}
static inline int swift_ngtcp2_conn_read_pkt(ngtcp2_conn *conn, const ngtcp2_path *path,
    const ngtcp2_pkt_info *pi, const uint8_t *pkt, size_t pktlen, ngtcp2_tstamp ts) {
  return ngtcp2_conn_read_pkt(conn, path, pi, pkt, pktlen, ts);
}
static inline ngtcp2_ssize swift_ngtcp2_conn_write_pkt(ngtcp2_conn *conn, ngtcp2_path *path,
    ngtcp2_pkt_info *pi, uint8_t *dest, size_t destlen, ngtcp2_tstamp ts) {
  return ngtcp2_conn_write_pkt(conn, path, pi, dest, destlen, ts);
}
static inline ngtcp2_ssize swift_ngtcp2_conn_write_stream(ngtcp2_conn *conn, ngtcp2_path *path,
    ngtcp2_pkt_info *pi, uint8_t *dest, size_t destlen, ngtcp2_ssize *pdatalen,
    uint32_t flags, int64_t stream_id, const uint8_t *data, size_t datalen, ngtcp2_tstamp ts) {
  return ngtcp2_conn_write_stream(conn, path, pi, dest, destlen, pdatalen, flags,
                                  stream_id, data, datalen, ts);
}
static inline ngtcp2_ssize swift_ngtcp2_conn_writev_stream(ngtcp2_conn *conn, ngtcp2_path *path,
    ngtcp2_pkt_info *pi, uint8_t *dest, size_t destlen, ngtcp2_ssize *pdatalen,
    uint32_t flags, int64_t stream_id, const ngtcp2_vec *datav, size_t datavcnt, ngtcp2_tstamp ts) {
  return ngtcp2_conn_writev_stream(conn, path, pi, dest, destlen, pdatalen, flags,
                                   stream_id, datav, datavcnt, ts);
}
static inline ngtcp2_ssize swift_ngtcp2_conn_writev_datagram(ngtcp2_conn *conn, ngtcp2_path *path,
    ngtcp2_pkt_info *pi, uint8_t *dest, size_t destlen, int *paccepted, uint32_t flags,
    uint64_t dgram_id, const ngtcp2_vec *datav, size_t datavcnt, ngtcp2_tstamp ts) {
  return ngtcp2_conn_writev_datagram(conn, path, pi, dest, destlen, paccepted, flags,
                                     dgram_id, datav, datavcnt, ts);
}
static inline ngtcp2_ssize swift_ngtcp2_conn_write_connection_close(ngtcp2_conn *conn,
    ngtcp2_path *path, ngtcp2_pkt_info *pi, uint8_t *dest, size_t destlen,
    const ngtcp2_connection_close_error *ccerr, ngtcp2_tstamp ts) {
  return ngtcp2_conn_write_connection_close(conn, path, pi, dest, destlen, ccerr, ts);
}
static inline ngtcp2_ssize swift_ngtcp2_encode_transport_params(uint8_t *dest, size_t destlen,
    ngtcp2_transport_params_type exttype, const ngtcp2_transport_params *params) {
  return ngtcp2_encode_transport_params(dest, destlen, exttype, params);
}
static inline int swift_ngtcp2_decode_transport_params(ngtcp2_transport_params *params,
    ngtcp2_transport_params_type exttype, const uint8_t *data, size_t datalen) {
  return ngtcp2_decode_transport_params(params, exttype, data, datalen);
}
static inline void swift_ngtcp2_conn_set_early_remote_transport_params(ngtcp2_conn *conn,
    const ngtcp2_transport_params *params) {
  ngtcp2_conn_set_early_remote_transport_params(conn, params);
}
static inline int swift_ngtcp2_conn_set_local_transport_params(ngtcp2_conn *conn,
    const ngtcp2_transport_params *params) {
  return ngtcp2_conn_set_local_transport_params(conn, params);
}
static inline void swift_ngtcp2_conn_get_conn_stat(ngtcp2_conn *conn, ngtcp2_conn_stat *cstat) {
  ngtcp2_conn_get_conn_stat(conn, cstat);
}
/* Constants built from expressions Swift cannot import. */
static inline uint64_t swift_ngtcp2_seconds(void) { return NGTCP2_SECONDS; }
static inline uint64_t swift_ngtcp2_milliseconds(void) { return NGTCP2_MILLISECONDS; }
static inline uint64_t swift_ngtcp2_duration_max(void) { return UINT64_MAX; }
