/* restock.smtp and restock.url, the parts of the `restock` module that the
 * shipped senders build on (scripts/smtp.lua, mailgun.lua, ...). */
#ifndef RESTOCKD_LUA_MAIL_H
#define RESTOCKD_LUA_MAIL_H

#include <lua.h>

/* Most recipients of one restock.smtp.send, and the largest message. */
#define LUA_MAIL_MAX_RCPT 100
#define LUA_MAIL_MAX_MESSAGE (10u << 20)

/* Sets `smtp` and `url` in the table on top of the stack (the module). */
void lua_mail_open(lua_State *L);

#endif
