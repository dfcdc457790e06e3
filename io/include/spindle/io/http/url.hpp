// url.hpp: URLs and query strings: http::URL (parse, accessors, RFC 3986
// reference resolution), http::QueryParams (form-encoded key/value lists)
// and url_encode / url_decode. Plain string work: nothing here suspends,
// touches the network or needs a fiber; every function may be called from
// any thread (the types are values, not shared).
//
//   sp::http::URL base("http://example.com/docs/guide/index.html?x=1");
//   base.join("../api/").str();           // "http://example.com/docs/api/"
//   base.with_params({{"q", "a b"}}).str();  // "...index.html?x=1&q=a+b"
//   auto q = sp::http::QueryParams::parse("tag=a&tag=b&name=J%C3%B6hn+Doe");
//   q.get("name");                        // "Jöhn Doe"
//   q.get_all("tag");                     // {"a", "b"}
//
// The same rules as the Client's URLs (docs/http.md "URLs and query
// strings"): the Client parses its URLs, and resolves a redirect's
// Location, with this parser.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace spindle::http {

// url_encode: s with every byte but RFC 3986's unreserved characters
// (A-Z a-z 0-9 - . _ ~) written as %XX (uppercase hex), as Python's
// urllib.parse.quote(s, safe=''). A space is %20 (QueryParams::encode
// writes '+').
std::string url_encode(std::string_view s);

// url_decode: s with each %XX (either case of hex) replaced by its byte,
// and '+' by a space when plus_as_space (form encoding). A '%' not followed
// by two hex digits is kept as it is ("%zz", "100%"), as Python's
// urllib.parse.unquote does: decoding never fails and never reads past the
// end of s. The result is bytes: no UTF-8 check (a handler that needs text
// checks it).
std::string url_decode(std::string_view s, bool plus_as_space = false);

// QueryParams: an ordered list of (key, value) pairs, repeated keys kept in
// the order given (a query string, or an application/x-www-form-urlencoded
// body). Keys and values are decoded text here; encode() writes the wire
// form.
class QueryParams {
 public:
  using Item = std::pair<std::string, std::string>;

  QueryParams() = default;
  QueryParams(std::initializer_list<Item> items) : items_(items) {}

  // parse: raw split at '&'; each piece at its first '=' into key and value
  // (no '=': the value is ""), both url_decode'd with '+' as space. Empty
  // pieces ("a=1&&b=2") are skipped. As Python's parse_qsl(raw,
  // keep_blank_values=True): "a&b=" gives [("a", ""), ("b", "")]. A leading
  // '?' is part of the first key, as in Python (Request::query() and
  // URL::query() have none).
  // max_items: more items than this (empty pieces do not count) is
  // http::Error(errc::too_many_params), raised when the next item is found,
  // before it is decoded or stored: an item costs ~70 bytes beside its
  // text (two strings and the list's slot), so an input of "a&a&..." took
  // ~35x its size (1 MiB of body: 524,287 items, +35 MB). The default,
  // kDefaultMaxItems (1,000), is Django's DATA_UPLOAD_MAX_NUMBER_FIELDS,
  // PHP's max_input_vars and Node's querystring maxKeys: far above any
  // form a person fills in, and ~70 KB at most beside the text. Raise it
  // for a form that needs more (SIZE_MAX: no cap). A handler that lets the
  // error pass gets 400 from the server (docs/http.md "URLs and query
  // strings").
  static constexpr std::size_t kDefaultMaxItems = 1000;
  static QueryParams parse(std::string_view raw, std::size_t max_items = kDefaultMaxItems);

  // add: appends (key, value), keeping pairs of the same key.
  void add(std::string_view key, std::string_view value);
  // set: replaces every pair of `key` by one (key, value), at the first's
  // place (appended when there was none).
  void set(std::string_view key, std::string_view value);
  // erase: removes every pair of `key`; returns how many.
  std::size_t erase(std::string_view key);
  // get: the first value of `key`, or nothing.
  std::optional<std::string_view> get(std::string_view key) const;
  // get_all: every value of `key`, in order (empty when none).
  std::vector<std::string_view> get_all(std::string_view key) const;
  bool contains(std::string_view key) const { return get(key).has_value(); }

  // encode: "k=v&k2=v2" with keys and values url_encode'd but spaces as
  // '+', as Python's urlencode(items) (application/x-www-form-urlencoded).
  // Empty for no items.
  std::string encode() const;

  std::size_t size() const noexcept { return items_.size(); }
  bool empty() const noexcept { return items_.empty(); }
  auto begin() const noexcept { return items_.begin(); }
  auto end() const noexcept { return items_.end(); }
  friend bool operator==(const QueryParams&, const QueryParams&) = default;

 private:
  std::vector<Item> items_;
};

// URL: a URI reference (RFC 3986): absolute ("https://user@host:8443/p?q#f",
// "mailto:x@y") or relative ("../a?b", "//host/p", "#frag"), split into its
// parts. Any scheme parses; the Client takes http:// and https:// only.
//
// Parsing (the constructor; failures are http::Error(errc::invalid_url)
// whose text never shows the userinfo):
//  - control bytes (0x00-0x1f, 0x7f) anywhere are refused;
//  - the scheme is lowercased; the host, when there is an authority, must
//    be a DNS name or IP literal (letters, digits, '-', '.', '_'; IPv6 in
//    brackets) and is lowercased; a host whose last label is a number
//    must be a dotted-quad IPv4 address ("127.1", "0x7f000001" refused:
//    the resolver reads them as addresses); a port is 1-65535;
//  - userinfo (user:password@) is percent-decoded (a bad escape there is an
//    error) and kept for user()/password(), never shown by str();
//  - in path, query and fragment, spaces, non-ASCII bytes and " < > \ ^ `
//    { | } are percent-encoded; '%' and everything else is kept as given
//    (already encoded). path(), query() and fragment() are this encoded
//    text.
class URL {
 public:
  // An empty relative reference ("").
  URL() = default;
  // Parses `s` as above.
  explicit URL(std::string_view s);

  // scheme: lowercase, "" for a relative reference.
  const std::string& scheme() const noexcept { return scheme_; }
  // has_authority: "//" was given (even with an empty host, as "file:///x").
  bool has_authority() const noexcept { return has_authority_; }
  // host: lowercase, without an IPv6 literal's brackets; "" without one.
  const std::string& host() const noexcept { return host_; }
  // port: the port given, else the scheme's default (http and ws 80, https
  // and wss 443), else 0. explicit_port: the port given, if any.
  std::uint16_t port() const noexcept;
  std::optional<std::uint16_t> explicit_port() const noexcept { return port_; }
  // user / password: the userinfo, decoded ("" when absent).
  const std::string& user() const noexcept { return user_; }
  const std::string& password() const noexcept { return password_; }
  bool has_userinfo() const noexcept { return has_userinfo_; }
  // path: encoded, as given ("" is possible: "http://h", "?q").
  const std::string& path() const noexcept { return path_; }
  // query: encoded, without '?'. has_query: a '?' was given ("x?" has an
  // empty one). query_params: query() parsed (QueryParams::parse, with
  // its cap on items).
  const std::string& query() const noexcept { return query_; }
  bool has_query() const noexcept { return has_query_; }
  QueryParams query_params(std::size_t max_items = QueryParams::kDefaultMaxItems) const {
    return QueryParams::parse(query_, max_items);
  }
  // fragment: encoded, without '#'; has_fragment: a '#' was given.
  const std::string& fragment() const noexcept { return fragment_; }
  bool has_fragment() const noexcept { return has_fragment_; }
  // is_absolute: has a scheme.
  bool is_absolute() const noexcept { return !scheme_.empty(); }
  // target: path and query as an HTTP request target ("/" for an empty
  // path; the fragment is never sent).
  std::string target() const;

  // join: the reference `ref` resolved against this URL as its base, by
  // RFC 3986 5.2 (strict: a ref with a scheme is absolute even when the
  // scheme is the base's), dot segments ("." and "..") removed from the
  // path (5.2.4), as aiohttp's URL.join and Go's URL.ResolveReference. The
  // userinfo follows the authority: kept from the base when `ref` has none
  // of its own. The string form parses `ref` first (errors as above).
  URL join(const URL& ref) const;
  URL join(std::string_view ref) const { return join(URL(ref)); }

  // with_query: this URL with its query replaced by params.encode() (no
  // query at all when params is empty). with_params: params appended to
  // the query, after a '&' when there is one already (as
  // RequestOptions::params and yarl's extend_query).
  URL with_query(const QueryParams& params) const;
  URL with_params(const QueryParams& params) const;
  // with_fragment: this URL with the fragment replaced (nullopt: none).
  URL with_fragment(std::optional<std::string_view> fragment) const;

  // str: the URL recomposed (RFC 3986 5.3) without the userinfo, so a
  // password never reaches a log or an error text.
  std::string str() const;

  friend bool operator==(const URL&, const URL&) = default;

 private:
  std::string scheme_;
  bool has_authority_ = false;
  bool has_userinfo_ = false;
  std::string user_, password_;
  std::string host_;
  std::optional<std::uint16_t> port_;
  std::string path_;
  bool has_query_ = false;
  std::string query_;
  bool has_fragment_ = false;
  std::string fragment_;
};

}  // namespace spindle::http
