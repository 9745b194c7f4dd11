/* libcurl, loaded with dlopen on first use.
 *
 * Linked the usual way, libcurl brings some 30 shared libraries (GnuTLS,
 * Kerberos, LDAP, SSH, nghttp2...) into every process at start, about 4 MB of
 * resident pages, though most servers never call out: only a handler that
 * calls restock.http.request needs it. So the binary is not linked against
 * it; the first request loads it and resolves the functions below. The
 * header still comes from libcurl4-openssl-dev, so the types are checked at
 * compile time as they would be for a linked library. */
#ifndef RESTOCKD_CURL_DL_H
#define RESTOCKD_CURL_DL_H

#include <curl/curl.h>

typedef struct {
  __typeof__(curl_global_init) *global_init;
  __typeof__(curl_global_cleanup) *global_cleanup;
  __typeof__(curl_easy_init) *easy_init;
  __typeof__(curl_easy_cleanup) *easy_cleanup;
  __typeof__(curl_easy_setopt) *easy_setopt;
  __typeof__(curl_easy_getinfo) *easy_getinfo;
  __typeof__(curl_easy_strerror) *easy_strerror;
  __typeof__(curl_multi_init) *multi_init;
  __typeof__(curl_multi_cleanup) *multi_cleanup;
  __typeof__(curl_multi_setopt) *multi_setopt;
  __typeof__(curl_multi_assign) *multi_assign;
  __typeof__(curl_multi_add_handle) *multi_add_handle;
  __typeof__(curl_multi_remove_handle) *multi_remove_handle;
  __typeof__(curl_multi_socket_action) *multi_socket_action;
  __typeof__(curl_multi_info_read) *multi_info_read;
  __typeof__(curl_slist_append) *slist_append;
  __typeof__(curl_slist_free_all) *slist_free_all;
} CurlApi;

/* The functions, once curl_dl_load has succeeded. */
extern CurlApi curl_dl;

/* Loads libcurl (the soname of Debian's libcurl4) and resolves every
 * function. Returns 0, also when already loaded, or RESTOCK_EUNAVAIL with why
 * in err. */
int curl_dl_load(char *err, size_t err_len);

#endif
