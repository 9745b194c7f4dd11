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
  long long quantity;     /* units wanted, 1 to 1000000; 0: none */
  char locale[64];        /* a BCP 47 tag; "": none */
  /* For the plugin's restock.on_subscribe hook (subscriptions_hooked). */
  char remote_addr[64];
  json_t *headers; /* owned; NULL: none given */
  void (*done)(SubscribeCall *c, int status);
  /* Out. */
  char message[512];
  char created_at[ISOTIME_LEN];
  char *channel; /* the subscription's scope, NULL when unscoped */
  bool created;  /* false when it was there already */
  bool pending;  /* it waits for its confirmation (double opt-in) */
};

/* The most units a subscription may want. */
#define SUBSCRIPTION_MAX_QUANTITY 1000000
/* True when `tag` is a plausible BCP 47 language tag of at most 35
 * characters: a language of 2 to 8 letters, then subtags of 1 to 8 letters
 * or digits, separated by '-'. */
bool subscriptions_valid_locale(const char *tag);

/* True when the running script set restock.on_subscribe: a caller then
 * gives the request's headers to subscribe (and gathers them only then). */
bool subscriptions_hooked(const Domain *d);

/* Subscribes `email` to a sold-out variant (contract section 4): asks the
 * plugin's hook first when there is one (a refusal is RESTOCK_ENOTALLOWED
 * with its message, its failure RESTOCK_EUNAVAIL); resolves
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
  /* In, optional (""): the shopper's email (from a manage token), to learn
   * whether anything of it is left once this one goes. */
  char email[EMAIL_MAX + 1];
  void (*done)(UnsubscribeCall *c, int status);
  bool removed;     /* out */
  bool email_known; /* out: the email still has a subscription or history */
};
void subscriptions_unsubscribe(Domain *d, UnsubscribeCall *c);

typedef struct ConfirmCall ConfirmCall;
struct ConfirmCall {
  Unit unit;
  long long subscription_id; /* in: from a verified confirm token */
  void (*done)(ConfirmCall *c, int status);
  bool was_active; /* out: it had been confirmed already */
  char email[256]; /* out: the subscription's */
};
/* Makes a pending subscription active and writes its subscribed event;
 * RESTOCK_ENOTFOUND when it is gone (dropped, unsubscribed, notified). */
void subscriptions_confirm(Domain *d, ConfirmCall *c);

/* Drops pending subscriptions past confirm_ttl and expires active ones
 * past subscription_ttl, in small units on a timer. */
typedef struct Housekeeping Housekeeping;
Housekeeping *subscriptions_housekeeping(Domain *d);
void subscriptions_housekeeping_close(Housekeeping *h);

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
