/* One error namespace for the whole server, as libuv has one: every function
 * that can fail returns 0 (or a count) on success and one of these negative
 * codes on failure, never a value of its own. A richer message, when there
 * is one, travels in an out-parameter. */
#ifndef RESTOCKD_ERROR_H
#define RESTOCKD_ERROR_H

/* The values sit far below errno's range so that a libuv code (a negated
 * errno) passed through by mistake is never read as one of ours. */
enum {
  RESTOCK_ENOTFOUND = -4001,   /* the named row does not exist */
  RESTOCK_EINVAL = -4002,      /* the input is refused; a message says why */
  RESTOCK_ENOTALLOWED = -4003, /* valid input the rules refuse (in stock) */
  RESTOCK_ESTORE = -4004,      /* the database failed (logged where it did) */
  RESTOCK_ECOMMIT = -4005,     /* the group's commit failed: nothing kept */
  RESTOCK_EUNAVAIL = -4006,    /* the storage is stopping or unreachable */
  RESTOCK_EBUSY = -4007,       /* another process holds the database */
  RESTOCK_ETIMEDOUT = -4008,   /* a wait ran past its deadline */
  RESTOCK_ECANCELED = -4009,   /* the caller went away before the end */
  RESTOCK_ERANGE = -4010,      /* a number overflows what it is added to */
};

/* A short English sentence for `code` (static storage). */
const char *restock_strerror(int code);

#endif
