// router.cpp: http::Router (server.hpp). Linear search over the routes in
// the order added: routers hold tens of routes, and a segment compare per
// route costs less than the request's parse.
#include <string>
#include <vector>

#include <spindle/io/http/server.hpp>

namespace spindle::http {

namespace {

std::vector<std::string_view> split_path(std::string_view p) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < p.size()) {
    if (p[i] == '/') {
      ++i;
      continue;
    }
    const std::size_t j = p.find('/', i);
    const std::size_t end = j == std::string_view::npos ? p.size() : j;
    out.push_back(p.substr(i, end - i));
    i = end;
  }
  return out;
}

// match: true when `path` fits the pattern; fills `params` then.
bool match(const std::vector<std::string>& pat, const std::vector<std::string_view>& path,
           std::vector<std::pair<std::string, std::string>>& params) {
  params.clear();
  for (std::size_t i = 0; i < pat.size(); ++i) {
    if (pat[i] == "*" && i + 1 == pat.size()) {
      std::string rest;
      for (std::size_t k = i; k < path.size(); ++k) {
        if (k > i) rest += '/';
        rest += path[k];
      }
      params.emplace_back("*", std::move(rest));
      return true;
    }
    if (i >= path.size()) return false;
    if (!pat[i].empty() && pat[i][0] == ':') {
      params.emplace_back(pat[i].substr(1), std::string(path[i]));
    } else if (pat[i] != path[i]) {
      return false;
    }
  }
  return pat.size() == path.size();
}

}  // namespace

Router& Router::add(std::string_view method, std::string_view pattern, Handler h, Body body) {
  Route r;
  r.body = body;
  r.method = std::string(method);
  for (auto s : split_path(pattern)) r.segments.emplace_back(s);
  r.handler = std::move(h);
  routes_.push_back(std::move(r));
  return *this;
}

Response Router::operator()(Request& req) const {
  const auto path = split_path(req.path());
  std::vector<std::pair<std::string, std::string>> params;
  std::string allow;
  const Route* head_fallback = nullptr;
  std::vector<std::pair<std::string, std::string>> head_params;
  for (const Route& r : routes_) {
    if (!match(r.segments, path, params)) continue;
    if (r.method == req.method) {
      req.params = std::move(params);
      if (r.body == Body::whole) req.load_body();
      return r.handler(req);
    }
    if (req.method == "HEAD" && r.method == "GET" && head_fallback == nullptr) {
      head_fallback = &r;
      head_params = params;
    }
    if (allow.find(r.method) == std::string::npos) {
      if (!allow.empty()) allow += ", ";
      allow += r.method;
    }
  }
  if (head_fallback != nullptr) {
    req.params = std::move(head_params);
    if (head_fallback->body == Body::whole) req.load_body();
    return head_fallback->handler(req);
  }
  if (allow.empty()) return Response::text_body(404, "not found\n");
  Response res = Response::text_body(405, "method not allowed\n");
  res.headers.set("Allow", allow);
  return res;
}

}  // namespace spindle::http
