// api_fanout.cpp: the asyncio seeds' API fan-out with aiohttp, in spindle:
// query several JSON endpoints at once, each with its own timeout, and merge
// what came back into one summary; an endpoint that fails is reported on
// its own while the others still merge (gather_settled, asyncio's
// return_exceptions=True).
//
// The example starts its own JSON API on 127.0.0.1 (port 0; http::Server
// and http::Router):
//   GET /users      [{"id", "name"}]
//   GET /orders     [{"id", "user", "sku", "qty"}]
//   GET /prices     {"sku": cents}
//   GET /inventory  slow: answers after the per-request timeout (1 s)
//   GET /reviews    fails: 500 {"error": "..."}
// The summary needs users, orders and prices (without one of them there is
// nothing to merge, and the program says so); inventory and reviews are
// extras, merged when they come.
#include <chrono>
#include <iostream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <spindle/io/http/all.hpp>
#include <spindle/spindle.hpp>

using namespace std::chrono_literals;
namespace sp = spindle;
namespace http = spindle::http;
using json = nlohmann::json;

namespace {

void add_api(http::Router& r, sp::Event& release_slow) {
  r.get("/users", [](http::Request&) {
    return http::Response::json_body(200, json::array({{{"id", 1}, {"name", "ada"}},
                                                       {{"id", 2}, {"name", "grace"}},
                                                       {{"id", 3}, {"name", "linus"}}}));
  });
  r.get("/orders", [](http::Request&) {
    return http::Response::json_body(200, json::array({{{"id", 101}, {"user", 1}, {"sku", "kbd"}, {"qty", 2}},
                                                       {{"id", 102}, {"user", 2}, {"sku", "mouse"}, {"qty", 1}},
                                                       {{"id", 103}, {"user", 1}, {"sku", "mouse"}, {"qty", 3}}}));
  });
  r.get("/prices", [](http::Request&) {
    return http::Response::json_body(200, {{"kbd", 4950}, {"mouse", 1925}});
  });
  r.get("/inventory", [&release_slow](http::Request&) {
    release_slow.wait_for(10s);  // far past the client's 1 s
    return http::Response::json_body(200, {{"kbd", 7}, {"mouse", 0}});
  });
  r.get("/reviews", [](http::Request&) {
    return http::Response::json_body(500, {{"error", "database unavailable"}});
  });
}

// fetch_json: one endpoint, bounded by its own timeout; a non-200 answer
// is an error carrying the API's message.
json fetch_json(http::Client& client, const std::string& url) {
  auto res = sp::with_timeout(1s, [&] { return client.get(url); });
  if (res.status != 200) {
    std::string why = "HTTP " + std::to_string(res.status);
    try {
      why += " (" + res.json().value("error", std::string("?")) + ")";
    } catch (const json::exception&) {
    }
    throw std::runtime_error(why);
  }
  return res.json();
}

// amount: a quantity or a price in cents, a whole number under a million;
// anything else in a reply raises (and cannot overflow the sums).
long long amount(const json& j) {
  if (!j.is_number_integer() || j.get<long long>() < 0 || j.get<long long>() >= 1'000'000)
    throw std::runtime_error("not an amount: " + j.dump());
  return j.get<long long>();
}

// merge: per user, the orders, items and spending (prices in cents). at()
// and get<>() raise json::exception on a reply of another shape (a key
// missing, a string for a number), where operator[] would read past it.
json merge(const json& users_in, const json& orders_in, const json& prices) {
  json users = json::array();
  for (const auto& u : users_in) {
    long long orders = 0, items = 0, cents = 0;
    for (const auto& o : orders_in) {
      if (o.at("user") != u.at("id")) continue;
      ++orders;
      items += amount(o.at("qty"));
      cents += amount(o.at("qty")) * amount(prices.value(o.at("sku").get<std::string>(), json(0)));
    }
    users.push_back({{"name", u.at("name")}, {"orders", orders}, {"items", items}, {"spent_cents", cents}});
  }
  return users;
}

}  // namespace

int main() {
  return sp::run([] {
    sp::Event release_slow;  // lets the slow handler end before shutdown
    http::Router routes;
    add_api(routes, release_slow);
    http::Server server(routes);
    server.listen("127.0.0.1", 0);
    auto serving = sp::spawn([&] { server.serve(); });
    const std::string base = "http://127.0.0.1:" + std::to_string(server.local_endpoint().port());

    // Fan out: one task per endpoint, all in flight at once.
    const std::vector<std::string> endpoints = {"users", "orders", "prices", "inventory", "reviews"};
    http::Client client;
    std::vector<sp::Task<json>> tasks;
    for (const auto& e : endpoints) tasks.push_back(sp::spawn([&client, url = base + "/" + e] { return fetch_json(client, url); }));
    // Waits for all five: the slow one costs its own timeout, while the
    // others are already done (not the sum of the waits).
    auto results = sp::gather_settled(tasks);

    std::map<std::string, json> got;
    json failures = json::object();
    for (std::size_t i = 0; i < endpoints.size(); ++i) {
      if (results[i].ok()) {
        got[endpoints[i]] = results[i].value();
        std::cout << endpoints[i] << ": ok, " << results[i].value().size() << " entries\n";
      } else {
        failures[endpoints[i]] = results[i].what();
        std::cout << endpoints[i] << ": failed: " << results[i].what() << '\n';
      }
    }

    int rc = 1;
    if (got.contains("users") && got.contains("orders") && got.contains("prices")) {
      try {
        json summary = {{"users", merge(got["users"], got["orders"], got["prices"])}, {"failed", failures}};
        if (got.contains("inventory")) summary["inventory"] = got["inventory"];
        std::cout << "summary: " << summary.dump() << '\n';
        rc = failures.size() == 2 ? 0 : 1;
      } catch (const std::exception& e) {  // a reply of another shape than the merge reads
        std::cout << "summary: cannot merge: " << e.what() << '\n';
      }
    } else {
      std::cout << "summary: cannot merge without users, orders and prices\n";
    }

    release_slow.set();
    server.shutdown();
    serving.join();
    return rc;
  });
}
