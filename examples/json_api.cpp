// json_api.cpp: a small JSON API server (a to-do list) with http::Router
// and nlohmann-json, and a client session against it.
//
//   GET    /todos        all items
//   POST   /todos        {"title": "..."}  -> 201 and the new item
//   GET    /todos/:id    one item, or 404
//   PATCH  /todos/:id    {"done": true}
//   DELETE /todos/:id    204
//
// Handlers run on the connection fibers, on every worker at once, so the
// store is guarded by a spindle::Mutex (a fiber that waits for it yields
// its worker instead of blocking it).
#include <iostream>
#include <map>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

#include <spindle/io/http/all.hpp>
#include <spindle/spindle.hpp>

namespace sp = spindle;
namespace http = spindle::http;
using json = nlohmann::json;

namespace {

class TodoStore {
 public:
  void add_routes(http::Router& r) {
    r.get("/todos", [this](http::Request&) {
      std::lock_guard lk(mu_);
      json all = json::array();
      for (const auto& [id, item] : items_) all.push_back(item);
      return http::Response::json_body(200, all);
    });
    r.post("/todos", [this](http::Request& q) {
      json in;
      try {
        in = q.json();
      } catch (const json::exception&) {
        return http::Response::json_body(400, {{"error", "body is not JSON"}});
      }
      if (!in.contains("title") || !in["title"].is_string())
        return http::Response::json_body(400, {{"error", "title missing"}});
      std::lock_guard lk(mu_);
      const int id = next_++;
      items_[id] = {{"id", id}, {"title", in["title"]}, {"done", false}};
      return http::Response::json_body(201, items_[id]);
    });
    r.get("/todos/:id", [this](http::Request& q) { return with_item(q, [](json& item) { return item; }); });
    r.add("PATCH", "/todos/:id", [this](http::Request& q) {
      const json in = json::parse(q.body, nullptr, false);
      return with_item(q, [&](json& item) {
        if (in.is_object() && in.contains("done")) item["done"] = in["done"];
        return item;
      });
    });
    r.del("/todos/:id", [this](http::Request& q) {
      std::lock_guard lk(mu_);
      if (items_.erase(std::atoi(std::string(q.param("id")).c_str())) == 0) return not_found();
      http::Response res;
      res.status = 204;
      return res;
    });
  }

 private:
  static http::Response not_found() { return http::Response::json_body(404, {{"error", "no such todo"}}); }
  template <class F>
  http::Response with_item(http::Request& q, F f) {
    std::lock_guard lk(mu_);
    auto it = items_.find(std::atoi(std::string(q.param("id")).c_str()));
    if (it == items_.end()) return not_found();
    return http::Response::json_body(200, f(it->second));
  }

  sp::Mutex mu_;
  std::map<int, json> items_;  // guarded by mu_
  int next_ = 1;               // guarded by mu_
};

}  // namespace

int main() {
  return sp::run([] {
    TodoStore store;
    http::Router routes;
    store.add_routes(routes);
    http::Server server(routes);
    server.listen("127.0.0.1", 0);
    auto serving = sp::spawn([&] { server.serve(); });
    const std::string base = "http://127.0.0.1:" + std::to_string(server.local_endpoint().port());

    http::Client client;
    auto show = [](const char* what, const http::Response& r) {
      std::cout << what << " -> " << r.status << ' ' << r.text() << '\n';
    };
    show("POST /todos", client.post_json(base + "/todos", {{"title", "write docs"}}));
    show("POST /todos", client.post_json(base + "/todos", {{"title", "run benchmarks"}}));
    show("POST /todos (bad)", client.post(base + "/todos", "not json"));
    http::RequestOptions done;
    done.body = R"({"done":true})";
    show("PATCH /todos/1", client.request("PATCH", base + "/todos/1", done));
    show("GET /todos/2", client.get(base + "/todos/2"));
    show("DELETE /todos/2", client.request("DELETE", base + "/todos/2"));
    show("GET /todos/2", client.get(base + "/todos/2"));
    const auto all = client.get(base + "/todos");
    show("GET /todos", all);
    const bool ok = all.json().size() == 1 && all.json()[0]["done"] == true;
    server.shutdown();
    serving.join();
    std::cout << (ok ? "ok" : "unexpected") << '\n';
    return ok ? 0 : 1;
  });
}
