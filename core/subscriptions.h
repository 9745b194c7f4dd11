/* The subscriptions use-cases: subscribe, unsubscribe, forget an email, and
 * the listings. Each operation is one unit of work (domain.h): the caller
 * fills a call struct's inputs, calls the operation, and gets the call back
 * in its `done` on the loop, with the outputs set and a status that is 0 or
 * a RESTOCK_E* code (with `message` saying why for ENOTFOUND, EINVAL and
 * ENOTALLOWED). The call struct is the caller's until `done` runs. */
#ifndef RESTOCKD_SUBSCRIPTIONS_H
#define RESTOCKD_SUBSCRIPTIONS_H

#include <stdbool.h>

#include "domain.h"
#include "email.h"

typedef struct SubscribeCall SubscribeCall;
struct SubscribeCall {
  Unit unit; /* private */
  /* In. The email is already normalized (email_normalize). */
  char variant_id[256];
  char email[EMAIL_MAX + 1];
  char *sales_channel_id; /* NULL: none asked for */
  char *publishable_key;  /* NULL: none sent */
  void (*done)(SubscribeCall *c, int status);
  /* Out. */
  char message[512];
  char created_at[ISOTIME_LEN];
  char *channel; /* the subscription's scope, NULL when unscoped */
  bool created;  /* false when it was there already */
};

/* Subscribes `email` to a sold-out variant (contract section 4): resolves
 * the channel from the key or the body, refuses a variant in stock in that
 * scope, and writes restock-notification.subscribed for a new
 * subscription. */
void subscriptions_subscribe(Domain *d, SubscribeCall *c);
/* Frees what the call owns (not the call). */
void subscribe_call_clear(SubscribeCall *c);

typedef struct UnsubscribeCall UnsubscribeCall;
struct UnsubscribeCall {
  Unit unit;
  long long subscription_id; /* in: from a verified token */
  void (*done)(UnsubscribeCall *c, int status);
  bool removed; /* out */
};
void subscriptions_unsubscribe(Domain *d, UnsubscribeCall *c);

typedef struct EraseCall EraseCall;
struct EraseCall {
  Unit unit;
  char email[EMAIL_MAX + 1];
  char *variant_id; /* NULL: every variant */
  void (*done)(EraseCall *c, int status);
  long long deleted;  /* subscriptions and history rows */
  long long scrubbed; /* events changed or deleted */
};
/* A person's right to be forgotten: erases the email's subscriptions and
 * history, and the email from the outbox (its subscribed events go, it
 * leaves the emails of restocked events, and, when the whole email is
 * forgotten, the data of events a plugin emitted). */
void subscriptions_erase(Domain *d, EraseCall *c);

#endif
