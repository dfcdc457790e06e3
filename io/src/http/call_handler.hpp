// call_handler.hpp: a handler's call for one request, as both servers make
// it (server.cpp for HTTP/1.1, h2_server.cpp for a stream).
#pragma once

#include <cxxabi.h>

#include <exception>

#include <spindle/io/http/server.hpp>
#include <spindle/runtime/errors.hpp>

namespace spindle::http::detail {

// call_handler: the handler's response, or 500 for anything it threw
// (`thrown` keeps it, for the caller to report unless the request's body
// failed first). Only Cancelled (and a thread's forced unwind) passes: any
// other type escaping a connection's or stream's fiber would fail its
// TaskGroup and so cancel the acceptor and every connection (HTTP/1.1), or
// every stream of the connection (HTTP/2). Each return is a prvalue: the
// handler's Response is built where the caller's result lives.
inline Response call_handler(const Handler& handler, Request& req, std::exception_ptr& thrown) {
  try {
    return handler(req);
  } catch (const Cancelled&) {
    throw;
  } catch (abi::__forced_unwind&) {
    throw;
  } catch (...) {
    thrown = std::current_exception();
    return Response::text_body(500, "internal server error\n");
  }
}

}  // namespace spindle::http::detail
