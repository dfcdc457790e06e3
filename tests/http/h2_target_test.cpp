// h2_target_test.cpp: what an HTTP/2 request's pseudo-fields may say, as
// the HTTP/1.1 side checks its request line and Host (server.cpp's
// origin_form and host_field_ok): an :authority (or a host field) with a
// userinfo or characters no host has is malformed (RFC 9113 8.3.1), as is
// a :path that is not origin-form ("*" for OPTIONS only); a CONNECT's
// target is its authority (authority-form, as over HTTP/1.1), never "/".
// Malformed requests are reset (PROTOCOL_ERROR) before any handler runs,
// and the connection goes on.
#include <atomic>
#include <string>

#include "h2_test_client.hpp"
#include "http_test_support.hpp"
#include "io_test.hpp"

using namespace spindle_test;
using namespace h2_test;
namespace http = spindle::http;

namespace {

void expect(bool ok, const std::string& what) {
  if (!ok) fiber_failures().add(what);
}

// block: a request's header block with exactly the pseudo-fields given
// (plain_block always has all four).
std::string block(const Fields& fields) {
  std::string b;
  for (const auto& [n, v] : fields) hpack_literal(b, n, v);
  return b;
}

}  // namespace

TEST_CASE("h2 target: userinfo or bad characters in :authority or host, and paths not in origin-form, are reset") {
  run_checked(2, [] {
    std::atomic<int> calls{0};
    // A plain Handler: it sees every request the server lets through.
    http::Server srv([&](http::Request& q) {
      calls.fetch_add(1);
      return http::Response::text_body(200, q.method + " " + q.target + " " +
                                                std::string(q.headers.get("host").value_or("-")));
    });
    srv.listen("127.0.0.1", 0);
    auto serving = sp::spawn([&] { srv.serve(); });
    RawConn c(srv.local_endpoint().port());
    struct Case {
      const char* what;
      Fields fields;
      const char* answer;  // the handler's line, or nullptr: reset before it
    };
    const Case cases[] = {
        {"userinfo in :authority",
         {{":method", "GET"}, {":scheme", "http"}, {":authority", "user:pw@good.example"}, {":path", "/a"}}, nullptr},
        {"a space in :authority", {{":method", "GET"}, {":scheme", "http"}, {":authority", "a b"}, {":path", "/a"}}, nullptr},
        {"a slash in a host field with no :authority",
         {{":method", "GET"}, {":scheme", "http"}, {":path", "/a"}, {"host", "evil/x"}}, nullptr},
        {"userinfo in a host field with no :authority",
         {{":method", "GET"}, {":scheme", "http"}, {":path", "/a"}, {"host", "u@good.example"}}, nullptr},
        {"a path without its leading slash",
         {{":method", "GET"}, {":scheme", "http"}, {":authority", "good.example"}, {":path", "admin/keys"}}, nullptr},
        {"an asterisk for GET", {{":method", "GET"}, {":scheme", "http"}, {":authority", "good.example"}, {":path", "*"}},
         nullptr},
        // nghttp2 checks :path only for :scheme http and https: another
        // scheme let both of these through to the handler.
        {"a path without its leading slash, another :scheme",
         {{":method", "GET"}, {":scheme", "foo"}, {":authority", "good.example"}, {":path", "admin/keys"}}, nullptr},
        {"an asterisk for GET, another :scheme",
         {{":method", "GET"}, {":scheme", "foo"}, {":authority", "good.example"}, {":path", "*"}}, nullptr},
        // No fragment is ever sent: a '#' in :path is refused as over
        // HTTP/1.1 (nghttp2 lets it through).
        {"a fragment in the path",
         {{":method", "GET"}, {":scheme", "http"}, {":authority", "good.example"}, {":path", "/p/a#b?c=1"}}, nullptr},
        {"a fragment in the path, another :scheme",
         {{":method", "GET"}, {":scheme", "foo"}, {":authority", "good.example"}, {":path", "/a#"}}, nullptr},
        {"an empty path, another :scheme",
         {{":method", "GET"}, {":scheme", "foo"}, {":authority", "good.example"}, {":path", ""}}, nullptr},
        {"a plain request, another :scheme",
         {{":method", "GET"}, {":scheme", "foo"}, {":authority", "good.example"}, {":path", "/a"}},
         "GET /a good.example"},
        {"an asterisk for OPTIONS",
         {{":method", "OPTIONS"}, {":scheme", "http"}, {":authority", "good.example"}, {":path", "*"}},
         "OPTIONS * good.example"},
        {"CONNECT with its authority", {{":method", "CONNECT"}, {":authority", "good.example:443"}},
         "CONNECT good.example:443 good.example:443"},
        {"CONNECT with userinfo", {{":method", "CONNECT"}, {":authority", "u@good.example:443"}}, nullptr},
        {"a plain request", {{":method", "GET"}, {":scheme", "http"}, {":authority", "good.example"}, {":path", "/a?b"}},
         "GET /a?b good.example"},
    };
    std::uint32_t id = 1;
    int answered = 0;
    c.send(preface() + settings_ack());
    for (const Case& k : cases) {
      c.send(headers(id, block(k.fields), true));
      c.end_of(id, slack(10s));
      if (k.answer == nullptr) {
        const Frame* rst = find(c, RST_STREAM, id);
        expect(rst != nullptr && rst->code() == NGHTTP2_PROTOCOL_ERROR && c.status_of(id) == 0,
               std::string(k.what) + ": not reset:" + describe(c));
      } else {
        ++answered;
        expect(c.status_of(id) == 200 && c.body_of(id) == k.answer,
               std::string(k.what) + ": got \"" + c.body_of(id) + "\":" + describe(c));
      }
      id += 2;
    }
    FIBER_CHECK(calls.load() == answered);
    FIBER_CHECK(!has(c, GOAWAY));
    srv.shutdown();
    serving.join();
  });
}
