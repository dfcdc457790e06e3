// json_api.cpp: a small JSON API server (a to-do list) with http::Router
// and nlohmann-json, and a client session against it. Its Python twin:
// examples/python/json_api.py.
//
//   GET    /todos        all items
//   POST   /todos        {"title": "..."}  -> 201 and the new item
//   GET    /todos/:id    one item, or 404
//   PATCH  /todos/:id    {"done": true}
//   DELETE /todos/:id    204
//
// Items are ordered_json, so their keys keep the order they were written
// in, as in Python. Handlers run on the connection fibers, on every worker
// at once, so the store is guarded by a spindle::Mutex (a fiber that waits
// for it yields its worker instead of blocking it); bodies are parsed
// before it is taken, so a slow parse holds up no one. The store is bounded
// (kMaxTodos items of kMaxTitle bytes at most): any peer may POST, and
// without a limit 60 POSTs of 1 MB grew it by 60 MB. The client session is
// the test: it lies between scaffold:begin and scaffold:end, left out of
// the guide's line counts (scripts/count_lines.py).
#include <charconv>
#include <iostream>
#include <map>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

#include <spindle/io/http/all.hpp>
#include <spindle/spindle.hpp>

namespace sp = spindle;
namespace http = spindle::http;
using json = nlohmann::ordered_json;

namespace {

constexpr std::size_t kMaxTodos = 1000;
constexpr std::size_t kMaxTitle = 200;  // bytes

struct Todos {
  sp::Mutex mu;
  std::map<int, json> items;  // guarded by mu
  int next = 1;               // guarded by mu
};

http::Response reply(int status, const json& value) { return http::Response::json_body(status, value); }
http::Response not_found() { return reply(404, {{"error", "no such todo"}}); }
// id_of: the :id segment as a number, or 0 (no item's id) unless the whole
// segment is one: atoi read /todos/1abc, and /todos/4294967297, as item 1.
int id_of(const http::Request& q) {
  const std::string_view p = q.param("id");
  int id = 0;
  const auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), id);
  return ec == std::errc{} && end == p.data() + p.size() ? id : 0;
}
// q.json() refuses text that is not JSON, or nests over 128 deep: a peer's
// deep nesting would overflow the fiber's stack in the copy and in dump().
// A body of more values than ServerOptions::max_json_values is refused too
// (http::Error, not caught here: the server answers it 413).
json body_of(const http::Request& q) {
  try {
    return q.json();
  } catch (const json::parse_error&) {
    return json(json::value_t::discarded);
  }
}
http::Response not_json() { return reply(400, {{"error", "body is not JSON"}}); }

void add_routes(http::Router& r, Todos& t) {
  r.get("/todos", [&t](http::Request&) {
    std::lock_guard lk(t.mu);
    json all = json::array();
    for (const auto& [id, item] : t.items) all.push_back(item);
    return reply(200, all);
  });
  r.post("/todos", [&t](http::Request& q) {
    const json in = body_of(q);
    if (in.is_discarded()) return not_json();
    if (!in.is_object() || !in.contains("title") || !in["title"].is_string())
      return reply(400, {{"error", "title missing"}});
    if (in["title"].get_ref<const std::string&>().size() > kMaxTitle)
      return reply(400, {{"error", "title over " + std::to_string(kMaxTitle) + " bytes"}});
    std::lock_guard lk(t.mu);
    if (t.items.size() >= kMaxTodos)
      return reply(507, {{"error", "the list is full (" + std::to_string(kMaxTodos) + " todos)"}});
    const int id = t.next++;
    return reply(201, t.items[id] = {{"id", id}, {"title", in["title"]}, {"done", false}});
  });
  r.get("/todos/:id", [&t](http::Request& q) {
    std::lock_guard lk(t.mu);
    const auto it = t.items.find(id_of(q));
    return it == t.items.end() ? not_found() : reply(200, it->second);
  });
  r.add("PATCH", "/todos/:id", [&t](http::Request& q) {
    const json in = body_of(q);
    if (in.is_discarded()) return not_json();
    if (!in.is_object() || !in.contains("done") || !in["done"].is_boolean())
      return reply(400, {{"error", "done must be true or false"}});
    std::lock_guard lk(t.mu);
    const auto it = t.items.find(id_of(q));
    if (it == t.items.end()) return not_found();
    it->second["done"] = in["done"];
    return reply(200, it->second);
  });
  r.del("/todos/:id", [&t](http::Request& q) {
    std::lock_guard lk(t.mu);
    return t.items.erase(id_of(q)) == 0 ? not_found() : http::Response::text_body(204, "");
  });
}

}  // namespace

int main() {
  return sp::run([] {
    Todos todos;
    http::Router routes;
    add_routes(routes, todos);
    http::Server server(routes);
    server.listen("127.0.0.1", 0);
    auto serving = sp::spawn([&] { server.serve(); });
    // scaffold:begin
    const std::string base = "http://127.0.0.1:" + std::to_string(server.local_endpoint().port());
    http::Client client;
    auto show = [](const char* what, const http::Response& r) {
      std::cout << what << " -> " << r.status << ' ' << r.text() << '\n';
    };
    show("POST /todos", client.post_json(base + "/todos", {{"title", "write docs"}}));
    show("POST /todos", client.post_json(base + "/todos", {{"title", "run benchmarks"}}));
    show("POST /todos (bad)", client.post(base + "/todos", "not json"));
    show("PATCH /todos/1", client.request("PATCH", base + "/todos/1", {.body = R"({"done":true})"}));
    const std::string deep = R"({"done":)" + std::string(100000, '[') + std::string(100000, ']') + "}";
    show("PATCH /todos/1 (deep)", client.request("PATCH", base + "/todos/1", {.body = deep}));
    show("PATCH /todos/1 (not a boolean)", client.request("PATCH", base + "/todos/1", {.body = R"({"done":"yes"})"}));
    show("GET /todos/1abc", client.get(base + "/todos/1abc"));
    show("GET /todos/4294967297", client.get(base + "/todos/4294967297"));
    show("POST /todos (long title)", client.post_json(base + "/todos", {{"title", std::string(kMaxTitle + 1, 'x')}}));
    show("GET /todos/2", client.get(base + "/todos/2"));
    show("DELETE /todos/2", client.request("DELETE", base + "/todos/2"));
    show("GET /todos/2", client.get(base + "/todos/2"));
    const auto all = client.get(base + "/todos");
    show("GET /todos", all);
    bool ok = all.json().size() == 1 && all.json()[0]["done"] == true;
    // Fill the list: the item after the last that fits is refused.
    for (std::size_t i = 1; i < kMaxTodos; ++i)
      ok = ok && client.post_json(base + "/todos", {{"title", "item"}}).status == 201;
    show("POST /todos (list full)", client.post_json(base + "/todos", {{"title", "one too many"}}));
    // scaffold:end
    server.shutdown();
    serving.join();
    // scaffold:begin
    std::cout << (ok ? "ok" : "unexpected") << '\n';
    return ok ? 0 : 1;
    // scaffold:end
  });
}
