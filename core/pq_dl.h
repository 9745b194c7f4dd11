/* libpq, loaded with dlopen when a PostgreSQL database is first opened.
 *
 * Like libcurl (curl_dl.h), libpq brings two dozen shared libraries
 * (Kerberos, LDAP, GnuTLS...) into the process, megabytes of resident
 * pages, that a server on a SQLite file never uses. So the binary is not
 * linked against it: store_pg.c loads it on the first postgresql:// URI and
 * resolves the functions below. The header comes from Debian's libpq-dev, so
 * the types are checked at compile time as for a linked library. */
#ifndef RESTOCKD_PQ_DL_H
#define RESTOCKD_PQ_DL_H

#include <libpq-fe.h>
#include <stddef.h>

typedef struct {
  __typeof__(PQconnectdbParams) *connectdbParams;
  __typeof__(PQstatus) *status;
  __typeof__(PQerrorMessage) *errorMessage;
  __typeof__(PQfinish) *finish;
  __typeof__(PQsetnonblocking) *setnonblocking;
  __typeof__(PQsocket) *socket;
  __typeof__(PQsendPrepare) *sendPrepare;
  __typeof__(PQsendQueryPrepared) *sendQueryPrepared;
  __typeof__(PQsendQuery) *sendQuery;
  __typeof__(PQsendQueryParams) *sendQueryParams;
  __typeof__(PQflush) *flush;
  __typeof__(PQconsumeInput) *consumeInput;
  __typeof__(PQisBusy) *isBusy;
  __typeof__(PQgetResult) *getResult;
  __typeof__(PQresultStatus) *resultStatus;
  __typeof__(PQresultErrorMessage) *resultErrorMessage;
  __typeof__(PQresultErrorField) *resultErrorField;
  __typeof__(PQclear) *clear;
  __typeof__(PQntuples) *ntuples;
  __typeof__(PQgetvalue) *getvalue;
  __typeof__(PQgetisnull) *getisnull;
  __typeof__(PQcmdTuples) *cmdTuples;
  __typeof__(PQtransactionStatus) *transactionStatus;
  __typeof__(PQnotifies) *notifies;
  __typeof__(PQfreemem) *freemem;
  __typeof__(PQsetNoticeProcessor) *setNoticeProcessor;
  __typeof__(PQconninfoParse) *conninfoParse;
  __typeof__(PQconninfoFree) *conninfoFree;
  __typeof__(PQenterPipelineMode) *enterPipelineMode;
  __typeof__(PQexitPipelineMode) *exitPipelineMode;
  __typeof__(PQpipelineSync) *pipelineSync;
  __typeof__(PQisthreadsafe) *isthreadsafe;
} PqApi;

/* The functions, once pq_dl_load has succeeded. */
extern PqApi pq_dl;

/* Loads libpq (the soname of Debian's libpq5) and resolves every function.
 * Returns 0, also when already loaded, or -1 with why in err. Call it
 * before any thread uses pq_dl (store_open does, on the opening thread). */
int pq_dl_load(char *err, size_t err_len);

#endif
