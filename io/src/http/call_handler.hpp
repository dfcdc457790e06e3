// call_handler.hpp: a handler's call for one request, as both servers make
// it (server.cpp for HTTP/1.1, h2_server.cpp for a stream).
#pragma once

#include <cxxabi.h>

#include <exception>

#include <spindle/io/http/error.hpp>
#include <spindle/io/http/server.hpp>
#include <spindle/runtime/errors.hpp>
#include <spindle/runtime/this_fiber.hpp>

namespace spindle::http::detail {

// call_handler: the handler's response, or 500 for anything it threw
// (`thrown` keeps it, for the caller to report unless the request's body
// failed first). Only the fiber's own cancellation (the drain, a reset
// stream: Cancelled with cancellation_requested()) and a thread's forced
// unwind pass: any other type escaping a connection's or stream's fiber
// would fail its TaskGroup and so cancel the acceptor and every connection
// (HTTP/1.1), or every stream of the connection (HTTP/2). A Cancelled the
// handler raised without being cancelled (a cancelled Task's join, a plain
// throw) is its failure like any other: it used to pass too, and the
// request got no answer (an HTTP/2 stream held its slot until the
// connection ended). A deadline scope around it still raises TimedOut when
// it is left (cancel.hpp). Each return is a prvalue: the handler's Response
// is built where the caller's result lives.
// The cap errors of the request's own parses (detail::own_refusal: the
// very exception its query_params() or form_params() raised,
// errc::too_many_params, or its json(), errc::too_many_json_values,
// under opt.max_json_values, set here) are the client's fault, not the
// handler's: 400 and 413, not reported (a client could fill the error log
// with them), as Django answers its TooManyFieldsSent and Go's ParseForm
// error is answered. The same errc from any other parse (a URL the
// handler built, a backend's response, QueryParams::parse of its own) is
// the server's fault: 500 and reported, as any other throw. The
// connection goes on as after any response (a body left unread is
// drained, or closes it).
inline Response call_handler(const Handler& handler, Request& req, const ServerOptions& opt,
                             std::exception_ptr& thrown) {
  detail::set_max_json_values(req, opt.max_json_values);
  try {
    return handler(req);
  } catch (const Cancelled&) {
    if (cancellation_requested()) throw;
    thrown = std::current_exception();
  } catch (abi::__forced_unwind&) {
    throw;
  } catch (const Error& e) {
    if (own_refusal(req)) {
      if (e.kind() == errc::too_many_params) return Response::text_body(400, "too many query or form parameters\n");
      if (e.kind() == errc::too_many_json_values) return Response::text_body(413, "too many JSON values\n");
    }
    thrown = std::current_exception();
  } catch (...) {
    thrown = std::current_exception();
  }
  return Response::text_body(500, "internal server error\n");
}

}  // namespace spindle::http::detail
