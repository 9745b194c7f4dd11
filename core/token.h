/* Unsubscribe tokens: the subscription they name, signed with HMAC-SHA256,
 * so they cannot be forged from an email address. A token is
 * base64url(variant "\n" channel "\n" email) "." base64url(mac). */
#ifndef RESTOCKD_TOKEN_H
#define RESTOCKD_TOKEN_H

#include <stddef.h>

#define TOKEN_KEY_LEN 32

/* A new token for the subscription (`channel` "" when unscoped). */
char *token_make(const unsigned char key[TOKEN_KEY_LEN], const char *variant,
                 const char *channel, const char *email);
/* Verifies `token` in constant time and splits it into new strings. Returns
 * 0, or -1 (outputs untouched) for a token that is malformed or does not
 * verify. */
int token_parse(const unsigned char key[TOKEN_KEY_LEN], const char *token,
                char **variant, char **channel, char **email);
/* Frees the MAC context kept between calls (at exit). */
void token_cleanup(void);
/* Derives the key from a secret of any length (RESTOCK_SECRET or the
 * generated one). */
void token_key(const char *secret, unsigned char key[TOKEN_KEY_LEN]);

#endif
