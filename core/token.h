/* Tokens in links sent to shoppers (unsubscribe, and later confirm and
 * manage). A token names one row by its id and says what it may be used
 * for; it is opaque (nothing of the email, the variant or the id can be
 * read from it), bound to the row it was made for (ids are never given
 * twice), and canonical: exactly one string verifies for a row and purpose.
 *
 * The 16-byte block (purpose, seven zero bytes, the id big-endian) is
 * encrypted with AES-256 as one block, and followed by the first 11 bytes
 * of an HMAC-SHA256 of the encrypted block: 27 bytes, 36 characters of
 * base64url with no padding and no unused bits. Both keys are derived from
 * the server's secret. Manage tokens (below) carry an encrypted email
 * instead of an id. */
#ifndef RESTOCKD_TOKEN_H
#define RESTOCKD_TOKEN_H

#include <stddef.h>

#define TOKEN_KEY_LEN 32
/* A token's length in characters. */
#define TOKEN_LEN 36

typedef enum {
  TOKEN_UNSUBSCRIBE = 1,
  TOKEN_CONFIRM = 2,
  TOKEN_MANAGE = 3,
} TokenPurpose;

/* Writes the token of row `id` (positive) for `purpose` into `out`,
 * NUL-terminated. Safe from any thread. */
void token_make(const unsigned char key[TOKEN_KEY_LEN], TokenPurpose purpose,
                long long id, char out[TOKEN_LEN + 1]);
/* Verifies `token` in constant time for `purpose`. Returns 0 with *id, or
 * RESTOCK_EINVAL for a token that is malformed, does not verify, or was
 * made for another purpose. */
int token_parse(const unsigned char key[TOKEN_KEY_LEN], const char *token,
                TokenPurpose purpose, long long *id);
/* The longest manage token: one for a 254-byte email. */
#define TOKEN_MANAGE_MAX 400

/* A manage token names an email, not a row: the email itself, encrypted
 * and authenticated with AES-256-GCM under a nonce derived from it (so an
 * email always gets the same token), as base64url with no padding and
 * its unused bits zero. Writes it into `out` (TOKEN_MANAGE_MAX bytes).
 * Safe from any thread. */
void token_make_manage(const unsigned char key[TOKEN_KEY_LEN],
                       const char *email, char out[TOKEN_MANAGE_MAX]);
/* Verifies a manage token and writes its email into `email` (at least 255
 * bytes). Returns 0, or RESTOCK_EINVAL for anything else (another
 * purpose's token, one character changed, cut short). */
int token_parse_manage(const unsigned char key[TOKEN_KEY_LEN],
                       const char *token, char *email, size_t len);

/* Derives the key from a secret of any length (RESTOCK_SECRET or the
 * generated one). */
void token_key(const char *secret, unsigned char key[TOKEN_KEY_LEN]);

#endif
