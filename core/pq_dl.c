#include "pq_dl.h"

#include <dlfcn.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

PqApi pq_dl;

#define PQ_SONAME "libpq.so.5"

/* libpq and libcurl both depend on libldap, which depends on GnuTLS, and
 * GnuTLS's constructor starts the whole library as it is loaded (its
 * algorithms, its system priority file): 0.6-0.7 MB more of resident memory
 * in every node, for a library restockd never calls. GnuTLS lets a program
 * skip that implicit start by defining this function (gnutls.h's
 * GNUTLS_SKIP_GLOBAL_INIT, written out here since restockd does not build
 * against GnuTLS); the Makefile exports it, so that the library, loaded later
 * by dlopen, finds it. libldap calls gnutls_global_init() itself before it
 * uses TLS, so nothing that needs the library goes without. */
int _gnutls_global_init_skip(void);
int _gnutls_global_init_skip(void) { return 1; }

int pq_dl_load(char *err, size_t err_len) {
  static bool loaded;
  if (loaded) return 0;
  /* Never closed: connections may live until exit. */
  void *lib = dlopen(PQ_SONAME, RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    snprintf(err, err_len,
             "cannot load %s (Debian's libpq5 package) for a PostgreSQL "
             "database: %s",
             PQ_SONAME, dlerror());
    return -1;
  }
  static const struct {
    const char *name;
    size_t offset;
  } fns[] = {
#define FN(field, symbol) {#symbol, offsetof(PqApi, field)}
      FN(connectdbParams, PQconnectdbParams),
      FN(status, PQstatus),
      FN(errorMessage, PQerrorMessage),
      FN(finish, PQfinish),
      FN(setnonblocking, PQsetnonblocking),
      FN(socket, PQsocket),
      FN(sendPrepare, PQsendPrepare),
      FN(sendQueryPrepared, PQsendQueryPrepared),
      FN(sendQuery, PQsendQuery),
      FN(sendQueryParams, PQsendQueryParams),
      FN(flush, PQflush),
      FN(consumeInput, PQconsumeInput),
      FN(isBusy, PQisBusy),
      FN(getResult, PQgetResult),
      FN(resultStatus, PQresultStatus),
      FN(resultErrorMessage, PQresultErrorMessage),
      FN(resultErrorField, PQresultErrorField),
      FN(clear, PQclear),
      FN(ntuples, PQntuples),
      FN(getvalue, PQgetvalue),
      FN(getisnull, PQgetisnull),
      FN(cmdTuples, PQcmdTuples),
      FN(transactionStatus, PQtransactionStatus),
      FN(notifies, PQnotifies),
      FN(freemem, PQfreemem),
      FN(setNoticeProcessor, PQsetNoticeProcessor),
      FN(conninfoParse, PQconninfoParse),
      FN(conninfoFree, PQconninfoFree),
      FN(enterPipelineMode, PQenterPipelineMode),
      FN(exitPipelineMode, PQexitPipelineMode),
      FN(pipelineSync, PQpipelineSync),
      FN(isthreadsafe, PQisthreadsafe),
#undef FN
  };
  PqApi api;
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    void *sym = dlsym(lib, fns[i].name);
    if (!sym) {
      snprintf(err, err_len, "%s has no %s (libpq 14 or later is needed)",
               PQ_SONAME, fns[i].name);
      dlclose(lib);
      return -1;
    }
    /* POSIX guarantees a function pointer survives this round trip. */
    memcpy((char *)&api + fns[i].offset, &sym, sizeof sym);
  }
  if (!api.isthreadsafe()) {
    snprintf(err, err_len, "%s was built without thread safety", PQ_SONAME);
    dlclose(lib);
    return -1;
  }
  pq_dl = api;
  loaded = true;
  return 0;
}
