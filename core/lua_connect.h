/* The parts of the `restock` module that connect a shop to restockd:
 * restock.crypto (lua_crypto.c). lua_api_open registers them. */
#ifndef RESTOCKD_LUA_CONNECT_H
#define RESTOCKD_LUA_CONNECT_H

#include <lua.h>

/* Sets restock.crypto on the module table on top of the stack. */
void lua_crypto_open(lua_State *L);

#endif
