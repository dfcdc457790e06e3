// router.cpp: http::Router (server.hpp). Linear search over the routes in
// the order added: routers hold tens of routes, and a segment compare per
// route costs less than the request's parse.
//
// Segments: the path without its leading '/', split at every '/', empty
// segments kept ("/a//b/" is "a", "", "b", ""), each percent-decoded after
// the split (so "%2F" is a byte of a segment, never a separator). A
// pattern's segments are decoded the same way (url_decode), so a literal
// "/café" and a request for "/caf%C3%A9" compare equal.
#include <string>
#include <vector>

#include <spindle/io/http/server.hpp>

#include "url.hpp"

namespace spindle::http {

namespace {

// split_path: p's segments, raw (the file comment). A target that does not
// start with '/' (OPTIONS *) is one or more segments from its start.
std::vector<std::string_view> split_path(std::string_view p) {
  if (p.starts_with('/')) p.remove_prefix(1);
  std::vector<std::string_view> out;
  for (;;) {
    const std::size_t j = p.find('/');
    out.push_back(p.substr(0, j));
    if (j == std::string_view::npos) return out;
    p.remove_prefix(j + 1);
  }
}

// decode_path: the request path's segments, decoded; false when a '%' is
// not followed by two hex digits (the Router answers 400).
bool decode_path(std::string_view path, std::vector<std::string>& out) {
  for (std::string_view s : split_path(path)) {
    out.emplace_back();
    if (!detail::decode_strict(s, out.back())) return false;
  }
  return true;
}

// match: true when `path` fits the pattern (segments and their kinds);
// fills `params` then. A parameter segment matches one non-empty segment;
// a last "*" the rest, possibly empty, its segments joined by '/'.
bool match(const std::vector<std::string>& pat, const std::vector<detail::RouteSegment>& kinds,
           const std::vector<std::string>& path, std::vector<std::pair<std::string, std::string>>& params) {
  using Kind = detail::RouteSegment;
  params.clear();
  for (std::size_t i = 0; i < pat.size(); ++i) {
    if (kinds[i] == Kind::rest) {
      std::string rest;
      for (std::size_t k = i; k < path.size(); ++k) {
        if (k > i) rest += '/';
        rest += path[k];
      }
      params.emplace_back("*", std::move(rest));
      return true;
    }
    if (i >= path.size()) return false;
    if (kinds[i] == Kind::param) {
      if (path[i].empty()) return false;
      params.emplace_back(pat[i], path[i]);
    } else if (pat[i] != path[i]) {
      return false;
    }
  }
  return pat.size() == path.size();
}

// listed: whether `method` is one of the comma-separated names in `allow`
// (whole names: PATCH is not in "PROPPATCH").
bool listed(std::string_view allow, std::string_view method) {
  for (;;) {
    const std::size_t j = allow.find(", ");
    if (allow.substr(0, j) == method) return true;
    if (j == std::string_view::npos) return false;
    allow.remove_prefix(j + 2);
  }
}

// release: the decoded path's memory, given back before a body is read
// and the handler runs (both may take minutes: body_timeout). A path of
// 16,000 slashes within a 16 KiB head decodes to 16,000 empty segments,
// ~512 KiB of std::string, which would be held all that time.
void release(std::vector<std::string>& path) noexcept { std::vector<std::string>().swap(path); }

}  // namespace

Router& Router::add(std::string_view method, std::string_view pattern, Handler h, Body body) {
  Route r;
  r.body = body;
  r.method = std::string(method);
  const auto raw = split_path(pattern);
  for (std::size_t i = 0; i < raw.size(); ++i) {
    // Kinds come from the pattern as written, before decoding: "%3Aid" and
    // "%2A" are the literal segments ":id" and "*".
    const std::string_view s = raw[i];
    if (s.size() > 1 && s[0] == ':') {
      r.kinds.push_back(detail::RouteSegment::param);
      r.segments.emplace_back(s.substr(1));
    } else if (s == "*" && i + 1 == raw.size()) {
      r.kinds.push_back(detail::RouteSegment::rest);
      r.segments.emplace_back("*");
    } else {
      r.kinds.push_back(detail::RouteSegment::literal);
      r.segments.push_back(url_decode(s));
    }
  }
  r.handler = std::move(h);
  routes_.push_back(std::move(r));
  return *this;
}

Response Router::operator()(Request& req) const {
  std::vector<std::string> path;
  if (!decode_path(req.path(), path)) return Response::text_body(400, "bad percent-escape in the path\n");
  std::vector<std::pair<std::string, std::string>> params;
  std::string allow;
  const Route* head_fallback = nullptr;
  std::vector<std::pair<std::string, std::string>> head_params;
  for (const Route& r : routes_) {
    if (!match(r.segments, r.kinds, path, params)) continue;
    if (r.method == req.method) {
      req.params = std::move(params);
      release(path);
      if (r.body == Body::whole) detail::load_body_first(req);  // before the route acts: unprocessed if refused
      return r.handler(req);
    }
    if (req.method == "HEAD" && r.method == "GET" && head_fallback == nullptr) {
      head_fallback = &r;
      head_params = params;
    }
    if (!listed(allow, r.method)) {
      if (!allow.empty()) allow += ", ";
      allow += r.method;
    }
  }
  if (head_fallback != nullptr) {
    req.params = std::move(head_params);
    release(path);
    if (head_fallback->body == Body::whole) detail::load_body_first(req);
    return head_fallback->handler(req);
  }
  if (allow.empty()) return Response::text_body(404, "not found\n");
  // A GET route answers HEAD too (the fallback above): Allow says so (RFC
  // 9110 10.2.1; Go's ServeMux lists it the same way).
  if (listed(allow, "GET") && !listed(allow, "HEAD")) allow += ", HEAD";
  Response res = Response::text_body(405, "method not allowed\n");
  res.headers.set("Allow", allow);
  return res;
}

}  // namespace spindle::http
