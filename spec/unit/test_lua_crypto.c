/* restock.crypto against published test vectors: SHA-256 (FIPS 180-2),
 * HMAC-SHA256 (RFC 4231), base64 (RFC 4648), and what base64_decode must
 * refuse. */
#include <lauxlib.h>
#include <lualib.h>

#include "lua_connect.h"
#include "unit.h"

/* Runs `code` with `crypto` bound to restock.crypto; a failed assert in it
 * fails the test with its message. */
static void run(const char *code) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  lua_newtable(L);
  lua_crypto_open(L);
  lua_getfield(L, -1, "crypto");
  lua_setglobal(L, "crypto");
  lua_pop(L, 1);
  if (luaL_dostring(L, code) != LUA_OK) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", lua_tostring(L, -1));
    unit_fail(__FILE__, __LINE__, msg);
  }
  lua_close(L);
}

TEST(crypto_sha256_vectors) {
  run("local h = crypto.hex\n"
      "assert(#crypto.sha256('abc') == 32)\n"
      "assert(h(crypto.sha256('abc')) == "
      "'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')\n"
      "assert(h(crypto.sha256('')) == "
      "'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855')\n"
      "assert(h(crypto.sha256('a\\0b')) ~= h(crypto.sha256('a')))\n");
}

TEST(crypto_hmac_sha256_rfc4231) {
  run("local h = crypto.hex\n"
      "local mac = crypto.hmac_sha256(string.rep('\\x0b', 20), 'Hi There')\n"
      "assert(#mac == 32)\n"
      "assert(h(mac) == "
      "'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7')\n"
      "assert(h(crypto.hmac_sha256('Jefe', 'what do ya want for nothing?'))"
      " == "
      "'5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843')\n"
      /* Test case 6: a key longer than the block is hashed first. */
      "assert(h(crypto.hmac_sha256(string.rep('\\xaa', 131),"
      " 'Test Using Larger Than Block-Size Key - Hash Key First')) == "
      "'60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54')\n");
}

TEST(crypto_hex_and_equal) {
  run("assert(crypto.hex('') == '')\n"
      "assert(crypto.hex('\\0\\255\\16a') == '00ff1061')\n"
      "assert(crypto.equal('abc', 'abc') == true)\n"
      "assert(crypto.equal('abc', 'abd') == false)\n"
      "assert(crypto.equal('abc', 'ab') == false)\n"
      "assert(crypto.equal('', '') == true)\n"
      "assert(crypto.equal('a\\0b', 'a\\0c') == false)\n"
      "assert(not pcall(crypto.equal, 'a'))\n");
}

TEST(crypto_base64_rfc4648) {
  run("local v = { [''] = '', f = 'Zg==', fo = 'Zm8=', foo = 'Zm9v',\n"
      "  foob = 'Zm9vYg==', fooba = 'Zm9vYmE=', foobar = 'Zm9vYmFy' }\n"
      "for plain, enc in pairs(v) do\n"
      "  assert(crypto.base64_encode(plain) == enc, plain)\n"
      "  assert(crypto.base64_decode(enc) == plain, enc)\n"
      "end\n"
      "local bytes = {}\n"
      "for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end\n"
      "local all = table.concat(bytes)\n"
      "assert(crypto.base64_decode(crypto.base64_encode(all)) == all)\n"
      "assert(not crypto.base64_encode(string.rep('x', 100)):find('\\n'))\n");
}

TEST(crypto_base64_decode_refuses_garbled_input) {
  run("for _, bad in ipairs { 'Zg=', 'Zm9v!', 'Zh==', 'Zm8', 'Zm 9v',\n"
      "  'Zm-v', 'Zm_v', '=Zm9', 'Zg==Zg==', 'Z===', '====', 'Zm9v\\n',\n"
      "  'Zm9vYmFy\\0' } do\n"
      "  local out, err = crypto.base64_decode(bad)\n"
      "  assert(out == nil, 'accepted ' .. bad)\n"
      "  assert(type(err) == 'string' and err:find('^not base64'), err)\n"
      "end\n");
}
