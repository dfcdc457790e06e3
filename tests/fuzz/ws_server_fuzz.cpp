// ws_server_fuzz.cpp: bytes from the fuzzer, read as the script of a
// WebSocket client talking to spindle's http::Server over loopback, to a
// route whose session echoes every message (websocket_handler; issue #45's
// hostile-input template applied to WebSocket). The input's first byte
// picks the handshake (the right one, or one a server must refuse); then
// each byte an operation, its arguments from the bytes after it:
//  - messages, text (ASCII and multi-byte UTF-8) or binary, whole or in
//    up to three fragments, sometimes with a ping between fragments, some
//    over max_message_size (1 KiB here);
//  - pings, pongs nobody asked for, a close with a code and a reason;
//  - flaws in about one operation in 32: text that is not UTF-8, an
//    unmasked frame, RSV bits, reserved opcodes, a continuation with
//    nothing to continue, a data frame inside a fragmented message, a
//    control frame over 125 bytes or fragmented, bad close codes and
//    payloads, raw bytes; and pauses.
// Then (unless it closed) the client half-closes and reads until the
// server closes, and checks what came back:
//  - the server answered within 10 s (no hang); a good handshake got 101
//    with the right Sec-WebSocket-Accept, a bad one anything but 101;
//  - after the 101: whole frames only, unmasked, no RSV bits, known
//    opcodes, control frames whole and at most 125 bytes, continuations
//    only inside a message, nothing after the server's close frame, whose
//    code is one a peer may send and whose reason is UTF-8;
//  - the echoes: the messages sent before anything that may end the
//    session (a flaw, a message over the limit, a close) come back first,
//    in order, exactly; every pong carries a ping's payload;
//  - a script without flaws or messages over the limit is not closed with
//    1002, 1007 or 1009.
// Every 64 inputs and at the end a fresh connection's message must be
// echoed: the server keeps serving.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <spindle/io/http/server.hpp>
#include <spindle/io/http/websocket.hpp>
#include <spindle/spindle.hpp>

#include "fuzz_input.hpp"
#include "loopback_client.hpp"
#include "server_fixture.hpp"

namespace {

namespace sp = spindle;
namespace http = spindle::http;
using fuzz_support::hex;
using fuzz_support::Input;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kMaxMessage = 1024;
constexpr std::string_view kKey = "dGhlIHNhbXBsZSBub25jZQ==";  // RFC 6455's sample
constexpr std::string_view kAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
constexpr unsigned kCont = 0, kText = 1, kBinary = 2, kClose = 8, kPing = 9, kPong = 10;

fuzz_support::CurrentInput g_input;

[[noreturn]] void fail(const std::string& what, const std::string& sent, const std::string& got) {
  std::fprintf(stderr, "ws_server_fuzz: %s\n--- sent (%zu bytes) ---\n%s\n--- got (%zu bytes) ---\n%s\n",
               what.c_str(), sent.size(), hex(sent).c_str(), got.size(), hex(got).c_str());
  g_input.save("ws_server_fuzz_failure.bin");
  std::abort();
}

// The server (server_fixture.hpp): /ws echoes (messages over 1 KiB are
// refused with 1009; a close is answered within 300 ms), /plain is not a
// WebSocket route.
void echo(http::WebSocket ws, const http::Request&) {
  try {
    for (;;) {
      auto m = ws.receive();
      if (m.is_close()) return;
      if (m.is_text()) {
        ws.send_text(m.data);
      } else {
        ws.send_binary(m.data);
      }
    }
  } catch (const http::WsError&) {
  }
}

fuzz_support::ServerFixture& fixture() {
  static fuzz_support::ServerFixture f = [] {
    http::WsOptions wo;
    wo.max_message_size = kMaxMessage;
    wo.close_timeout = std::chrono::milliseconds(300);
    http::Router r;
    r.get("/ws", http::websocket_handler(echo, wo));
    r.get("/plain", [](http::Request&) { return http::Response::text_body(200, "plain"); });
    http::ServerOptions o;
    o.read_timeout = std::chrono::milliseconds(1000);
    return fuzz_support::ServerFixture(std::move(r), std::move(o));
  }();
  return f;
}

// ---- frames ---------------------------------------------------------------------

// frame: a client frame. Masked unless `unmasked` (a flaw); `first` is the
// byte with FIN, RSV and the opcode.
std::string frame(std::uint8_t first, std::string_view payload, bool unmasked = false) {
  std::string f(1, static_cast<char>(first));
  const std::size_t n = payload.size();
  const char m = unmasked ? 0 : static_cast<char>(0x80);
  if (n < 126) {
    f += static_cast<char>(m | static_cast<char>(n));
  } else if (n < 65536) {
    f += static_cast<char>(m | 126);
    f += static_cast<char>(n >> 8);
    f += static_cast<char>(n & 0xff);
  } else {
    f += static_cast<char>(m | 127);
    for (int i = 7; i >= 0; --i) f += static_cast<char>((static_cast<std::uint64_t>(n) >> (8 * i)) & 0xff);
  }
  if (unmasked) return f + std::string(payload);
  const char mask[4] = {0x37, 0x5a, 0x11, 0x4c};
  f.append(mask, 4);
  for (std::size_t i = 0; i < n; ++i) f += static_cast<char>(payload[i] ^ mask[i % 4]);
  return f;
}

// valid_utf8: RFC 3629 (no overlongs, no surrogates, at most U+10FFFF).
bool valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = 0;
    std::uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      n = 1, cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      n = 2, cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      n = 3, cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;  // cut short
    for (std::size_t k = 1; k <= n; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3f);
    }
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff)) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

// ---- the script -------------------------------------------------------------------

struct Message {
  unsigned opcode;
  std::string data;
};

struct Script {
  bool upgraded_ok = true;           // the handshake was a good one
  bool disrupted = false;            // something that may end the session was sent
  bool flawed = false;               // a flaw or an oversized message was sent
  std::vector<Message> echoes;       // messages sent before any disruption
  std::set<std::string> pings;       // ping payloads sent
  bool closed = false;               // the client sent a close frame
  int sent_code = -1;                // its code, if it had one
};

constexpr const char* kTexts[] = {"", "hello", "h\xc3\xa9llo \xe2\x9c\x93", "\xf0\x9f\x98\x80 emoji",
                                  "a longer line of plain text to be echoed back"};

// text: a payload for a text message; flawed, one that is not UTF-8.
std::string text(Input& in, bool flaw) {
  if (flaw) {
    static constexpr const char* kBad[] = {"\xff", "a\xc3", "\xed\xa0\x80", "\xc0\xaf", "\xf4\x90\x80\x80"};
    return std::string("x") + kBad[in.byte() % 5];
  }
  std::string t = kTexts[in.byte() % 5];
  const std::size_t repeat = in.byte() % 24;  // up to ~1.1 KiB: a few over the 1 KiB limit
  std::string out;
  for (std::size_t k = 0; k <= repeat; ++k) out += t;
  return out;
}

void run(Input& in, fuzz_support::LoopbackClient& c, Script& s, std::uint16_t port) {
  const std::uint8_t start = in.byte();
  std::string head = "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
                     "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + std::string(kKey) +
                     "\r\nSec-WebSocket-Version: 13\r\n\r\n";
  if (start % 16 == 0) {
    // A handshake a server must refuse: a wrong version, no key, a route
    // that is not a WebSocket one, a POST.
    static constexpr std::pair<std::string_view, std::string_view> kBreak[] = {
        {"Version: 13", "Version: 8"}, {"Sec-WebSocket-Key: ", "X-No-Key: "}, {"GET /ws", "GET /plain"},
        {"GET /ws", "POST /ws"}};
    const auto& [from, to] = kBreak[(start >> 4) % 4];
    head.replace(head.find(from), from.size(), to);
    s.upgraded_ok = false;
  }
  c.send(head);
  for (int k = 0; k < 2000 && !c.closed && c.got.find("\r\n\r\n") == std::string::npos; ++k) c.wait(1);
  if (!s.upgraded_ok || c.got.rfind("HTTP/1.1 101", 0) != 0) return;
  bool in_message = false;  // the client is inside a fragmented message (after a flaw: as sent)
  for (int ops = 0; ops < 100 && !in.empty() && !c.closed && !s.closed; ++ops) {
    const std::uint8_t op = in.byte() % 32;
    const std::uint8_t fl = in.byte();
    const bool flaw = (fl & 0x1f) == 0;
    if (flaw) s.disrupted = s.flawed = true;
    if (op < 12) {  // a message
      const bool is_text = (fl & 0x20) != 0;
      std::string data = is_text ? text(in, flaw && (fl & 0x40) != 0) : in.bytes(in.byte() * 4u % 1100);
      if (!is_text && (fl & 0xc0) == 0xc0) data.append(900, 'b');  // past the limit sooner
      if (data.size() > kMaxMessage) s.disrupted = s.flawed = true;  // closed with 1009
      const unsigned parts = 1 + in.byte() % 3;
      const std::size_t step = data.size() / parts + 1;
      std::string out;
      for (unsigned k = 0; k < parts; ++k) {
        const std::string_view piece = std::string_view(data).substr(std::min(data.size(), step * k), step);
        const bool fin = k == parts - 1;
        std::uint8_t first = static_cast<std::uint8_t>((fin ? 0x80 : 0) | (k == 0 ? (is_text ? kText : kBinary) : kCont));
        bool unmasked = false;
        if (flaw) {
          switch (in.byte() % 5) {
            case 0: unmasked = true; break;
            case 1: first |= 0x40; break;                                   // RSV1 with no extension
            case 2: first = static_cast<std::uint8_t>((first & 0xf0) | 3); break;  // a reserved opcode
            case 3: if (k == 0 && !in_message) first = static_cast<std::uint8_t>(first & 0xf0); break;  // continues nothing
            default: break;  // the text's own flaw, or none
          }
        }
        out += frame(first, piece, unmasked);
        if (!fin && (fl & 0x80) != 0) {
          const std::string p = "mid" + std::to_string(k);
          s.pings.insert(p);
          out += frame(0x80 | kPing, p);  // a control frame between fragments: allowed
        }
      }
      if (!s.disrupted) s.echoes.push_back({is_text ? kText : kBinary, data});
      c.send(out);
    } else if (op < 14) {  // a ping; flawed: over 125 bytes, or not final
      std::string p = in.bytes(in.byte() % 126);
      if (flaw && (fl & 0x40) != 0) p.append(126, 'p');
      s.pings.insert(p);
      c.send(frame(flaw && (fl & 0x40) == 0 ? kPing : 0x80 | kPing, p));
    } else if (op < 15) {  // a pong nobody asked for
      c.send(frame(0x80 | kPong, in.bytes(in.byte() % 126)));
    } else if (op < 16) {  // a fragmented message's start left open, then more data: flawed only
      if (!flaw) continue;
      in_message = true;
      c.send(frame(kText, "open") + frame(0x80 | kBinary, "inside"));
    } else if (op < 18) {  // close
      static constexpr std::uint16_t kGood[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4999};
      static constexpr std::uint16_t kBad[] = {0, 999, 1004, 1005, 1006, 1015, 5000};
      std::string p;
      if ((fl & 0x20) == 0 || flaw) {
        const std::uint16_t code = flaw ? kBad[in.byte() % 7] : kGood[in.byte() % 11];
        p.push_back(static_cast<char>(code >> 8));
        p.push_back(static_cast<char>(code & 0xff));
        s.sent_code = code;
        p += flaw && (fl & 0x40) != 0 ? std::string("\xff\xfe") : std::string("bye");
        if (flaw && (fl & 0x80) != 0) p = p.substr(0, 1);  // one byte: no code
      }
      s.disrupted = s.closed = true;
      c.send(frame(0x80 | kClose, p));
    } else if (op < 19 && flaw) {  // raw bytes
      c.send(in.bytes(1 + in.byte() % 16));
    } else {  // a pause: only read
      c.wait(fl % 4);
    }
  }
}

// ---- the checks -----------------------------------------------------------------

long g_inputs = 0, g_upgraded = 0, g_echoes = 0;
long g_close[5000] = {};  // the server's close codes

void check(const Script& s, const fuzz_support::LoopbackClient& c) {
  const std::string& got = c.got;
  auto bad = [&](const std::string& what) { fail(what, c.sent, got); };
  const bool upgraded = got.rfind("HTTP/1.1 101", 0) == 0;
  if (!s.upgraded_ok) {
    if (upgraded) bad("a handshake a server must refuse got 101");
    return;
  }
  if (!upgraded) {
    if (got.empty() && c.closed) return;  // the server went (shutdown): the probe decides
    bad("a good handshake did not get 101");
  }
  const std::size_t end = got.find("\r\n\r\n");
  if (end == std::string::npos) bad("the 101 head never ended");
  if (got.substr(0, end).find(kAccept) == std::string::npos) bad("a 101 without the right Sec-WebSocket-Accept");
  ++g_upgraded;
  std::size_t off = end + 4;
  std::vector<Message> messages;
  std::string current;
  unsigned current_op = 0;
  bool open = false, closed = false;
  int close_code = -1;
  while (off < got.size()) {
    if (closed) bad("bytes after the server's close frame");
    if (got.size() - off < 2) bad("a cut frame header");
    const auto b0 = static_cast<unsigned char>(got[off]);
    const auto b1 = static_cast<unsigned char>(got[off + 1]);
    const bool fin = (b0 & 0x80) != 0;
    const unsigned opcode = b0 & 0x0f;
    if ((b0 & 0x70) != 0) bad("RSV bits from the server");
    if ((b1 & 0x80) != 0) bad("a masked frame from the server");
    std::size_t len = b1 & 0x7f, head = 2;
    if (len == 126) {
      if (got.size() - off < 4) bad("a cut frame header");
      len = (std::size_t{static_cast<unsigned char>(got[off + 2])} << 8) | static_cast<unsigned char>(got[off + 3]);
      head = 4;
    } else if (len == 127) {
      if (got.size() - off < 10) bad("a cut frame header");
      len = 0;
      for (int i = 0; i < 8; ++i) len = (len << 8) | static_cast<unsigned char>(got[off + 2 + i]);
      head = 10;
    }
    if (got.size() - off - head < len) bad("a cut frame");
    const std::string payload = got.substr(off + head, len);
    off += head + len;
    switch (opcode) {
      case kCont:
        if (!open) bad("a continuation with nothing to continue");
        current += payload;
        break;
      case kText:
      case kBinary:
        if (open) bad("a data frame inside a fragmented message");
        current = payload;
        current_op = opcode;
        open = true;
        break;
      case kClose:
      case kPing:
      case kPong:
        if (!fin || len > 125) bad("a control frame fragmented or over 125 bytes");
        if (opcode == kPong && s.pings.count(payload) == 0) bad("a pong for no ping");
        if (opcode == kClose) {
          closed = true;
          if (len == 1) bad("a close payload of one byte");
          if (len >= 2) {
            close_code = (static_cast<unsigned char>(payload[0]) << 8) | static_cast<unsigned char>(payload[1]);
            const bool ok = (close_code >= 1000 && close_code <= 1003) || (close_code >= 1007 && close_code <= 1011) ||
                            (close_code >= 3000 && close_code <= 4999);
            // Beast echoes the client's own code and takes 5000 and above
            // (RFC 6455 7.4 defines none; Autobahn 7.9 expects 1002): spindle
            // answers those with 1002, so no echo is excused (the input in
            // regressions/ws_server/close_code_58248 sent one in raw bytes).
            if (!ok) bad("a close code a peer may not send: " + std::to_string(close_code));
            if (!valid_utf8(std::string_view(payload).substr(2))) bad("a close reason that is not UTF-8");
            if (close_code < 5000) ++g_close[close_code];
          }
        }
        continue;
      default:
        bad("an opcode the server may not send: " + std::to_string(opcode));
    }
    if (fin && open) {
      if (current_op == kText && !valid_utf8(current)) bad("a text message that is not UTF-8");
      messages.push_back({current_op, current});
      open = false;
    }
  }
  for (std::size_t k = 0; k < s.echoes.size() && k < messages.size(); ++k) {
    if (messages[k].opcode != s.echoes[k].opcode || messages[k].data != s.echoes[k].data) {
      bad("echo " + std::to_string(k) + " differs from the message sent (" + std::to_string(messages[k].data.size()) +
          " bytes back, " + std::to_string(s.echoes[k].data.size()) + " sent)");
    }
    ++g_echoes;
  }
  if (messages.size() < s.echoes.size() && !s.flawed) {
    // Clean messages, then a close or the end of stream: the session
    // echoes each message before it receives the next thing, so every
    // echo is written before the session ends.
    bad("echoes missing: " + std::to_string(messages.size()) + " of " + std::to_string(s.echoes.size()));
  }
  if (!s.flawed && close_code != s.sent_code && (close_code == 1002 || close_code == 1007 || close_code == 1009)) {
    bad("a script without flaws closed with " + std::to_string(close_code));
  }
}

// check_alive: a fresh connection's message is echoed.
void check_alive(std::uint16_t port) {
  fuzz_support::LoopbackClient c(port, &fail);
  c.send("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " +
         std::string(kKey) + "\r\nSec-WebSocket-Version: 13\r\n\r\n" + frame(0x80 | kText, "alive"));
  const auto end = Clock::now() + std::chrono::seconds(10);
  while (!c.closed && c.got.find("alive") == std::string::npos && Clock::now() < end) c.wait(10);
  c.send(frame(0x80 | kClose, std::string("\x03\xe8", 2)));
  c.finish();
  if (c.got.rfind("HTTP/1.1 101", 0) != 0 || c.got.find("alive") == std::string::npos) {
    fail("the server stopped serving", c.sent, c.got);
  }
}

struct AtEnd {
  ~AtEnd() {
    if (g_inputs == 0) return;
    check_alive(fixture().port());
    std::printf("ws_server_fuzz: %ld inputs; %ld upgraded; %ld echoes checked; close codes:", g_inputs, g_upgraded,
                g_echoes);
    for (int k = 0; k < 5000; ++k) {
      if (g_close[k] != 0) std::printf(" %d x %ld", k, g_close[k]);
    }
    std::printf("\n");
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz_support::ServerFixture& f = fixture();
  static AtEnd at_end;  // constructed after the fixture: destroyed before it
  (void)at_end;
  if (size == 0) return 0;
  g_input = {data, size};
  Input in{data, size};
  Script s;
  {
    fuzz_support::LoopbackClient c(f.port(), &fail);
    run(in, c, s, f.port());
    c.finish();
    check(s, c);
  }
  if (++g_inputs % 64 == 0) check_alive(f.port());
  return 0;
}
