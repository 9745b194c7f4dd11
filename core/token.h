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
 * the server's secret. */
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
/* Derives the key from a secret of any length (RESTOCK_SECRET or the
 * generated one). */
void token_key(const char *secret, unsigned char key[TOKEN_KEY_LEN]);

#endif
