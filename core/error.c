#include "error.h"

const char *restock_strerror(int code) {
  switch (code) {
    case 0:
      return "success";
    case RESTOCK_ENOTFOUND:
      return "not found";
    case RESTOCK_EINVAL:
      return "invalid input";
    case RESTOCK_ENOTALLOWED:
      return "not allowed";
    case RESTOCK_ESTORE:
      return "the database failed";
    case RESTOCK_ECOMMIT:
      return "the write could not be committed";
    case RESTOCK_EUNAVAIL:
      return "the database is unavailable";
    case RESTOCK_EBUSY:
      return "the database is in use by another process";
    case RESTOCK_ETIMEDOUT:
      return "timed out";
    case RESTOCK_ECANCELED:
      return "canceled";
    case RESTOCK_ERANGE:
      return "a number is out of range";
    default:
      return "unknown error";
  }
}
