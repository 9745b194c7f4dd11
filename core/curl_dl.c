#include "curl_dl.h"

#include "error.h"

#include <dlfcn.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

CurlApi curl_dl;

#define CURL_SONAME "libcurl.so.4"

int curl_dl_load(char *err, size_t err_len) {
  static bool loaded;
  if (loaded) return 0;
  /* Never closed: its global state lives until curl_global_cleanup at
   * exit, and a library is not unloaded from under its own threads. */
  void *lib = dlopen(CURL_SONAME, RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    snprintf(err, err_len, "cannot load %s: %s", CURL_SONAME, dlerror());
    return RESTOCK_EUNAVAIL;
  }
  static const struct {
    const char *name;
    size_t offset;
  } fns[] = {
#define FN(field, symbol) {#symbol, offsetof(CurlApi, field)}
      FN(global_init, curl_global_init),
      FN(global_cleanup, curl_global_cleanup),
      FN(easy_init, curl_easy_init),
      FN(easy_cleanup, curl_easy_cleanup),
      FN(easy_setopt, curl_easy_setopt),
      FN(easy_getinfo, curl_easy_getinfo),
      FN(easy_strerror, curl_easy_strerror),
      FN(multi_init, curl_multi_init),
      FN(multi_cleanup, curl_multi_cleanup),
      FN(multi_setopt, curl_multi_setopt),
      FN(multi_assign, curl_multi_assign),
      FN(multi_add_handle, curl_multi_add_handle),
      FN(multi_remove_handle, curl_multi_remove_handle),
      FN(multi_socket_action, curl_multi_socket_action),
      FN(multi_info_read, curl_multi_info_read),
      FN(slist_append, curl_slist_append),
      FN(slist_free_all, curl_slist_free_all),
#undef FN
  };
  CurlApi api;
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    void *sym = dlsym(lib, fns[i].name);
    if (!sym) {
      snprintf(err, err_len, "%s has no %s", CURL_SONAME, fns[i].name);
      dlclose(lib);
      return RESTOCK_EUNAVAIL;
    }
    /* POSIX guarantees a function pointer survives this round trip. */
    memcpy((char *)&api + fns[i].offset, &sym, sizeof sym);
  }
  curl_dl = api;
  loaded = true;
  return 0;
}
