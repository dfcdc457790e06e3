// tcp.hpp: TcpStream and TcpListener.
//
// Every wait (accept, connect, read, write) suspends only the calling fiber,
// is a cancellation point and obeys with_timeout / with_deadline; the fiber
// stays free to migrate between workers. One reader and one writer fiber may
// use a stream at once (full duplex); a second fiber waiting in the same
// direction gets std::system_error(std::errc::operation_in_progress). As for
// any C++ object, close(), the destructor and moves must not run while
// another fiber is inside a call on the same object: to stop a fiber blocked
// in an operation, cancel it (its wait is a cancellation point). Errors:
// std::system_error comparable to
// std::errc (error.hpp); writes never raise SIGPIPE (broken_pipe instead).
// Sockets must be closed (or destroyed) before their runtime ends.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include <spindle/io/endpoint.hpp>
#include <spindle/io/error.hpp>
#include <spindle/runtime/detail/macros.hpp>

namespace spindle::io {

namespace detail {
struct Descriptor;
}

class TcpStream {
 public:
  TcpStream() noexcept = default;
  TcpStream(TcpStream&& o) noexcept : d_(o.d_) { o.d_ = nullptr; }
  TcpStream& operator=(TcpStream&& o) noexcept;
  ~TcpStream() { close(); }

  // connect: resolves host (resolve()), then tries each address in turn
  // until one accepts; throws the last address's error if none does. A
  // cancelled or timed-out connect closes its socket.
  SPINDLE_MAY_SUSPEND static TcpStream connect(std::string_view host, std::uint16_t port);
  SPINDLE_MAY_SUSPEND static TcpStream connect(const Endpoint& ep);

  // read_some: at least one byte, waiting if none is available; 0 only at
  // end of stream (or when n == 0).
  SPINDLE_MAY_SUSPEND std::size_t read_some(void* p, std::size_t n);
  // read_exact: exactly n bytes; io::error::eof if the stream ends first
  // (the bytes read so far are in p).
  SPINDLE_MAY_SUSPEND void read_exact(void* p, std::size_t n);
  // write_some: at least one byte (waits while the socket buffer is full).
  SPINDLE_MAY_SUSPEND std::size_t write_some(const void* p, std::size_t n);
  // write_all: all n bytes, waiting while the peer is slower than us.
  SPINDLE_MAY_SUSPEND void write_all(const void* p, std::size_t n);
  SPINDLE_MAY_SUSPEND void write_all(std::string_view s) { write_all(s.data(), s.size()); }

  // shutdown: ends the write side (the peer reads end of stream).
  void shutdown();
  // close: idempotent.
  void close() noexcept;
  bool is_open() const noexcept { return d_ != nullptr; }

  void set_nodelay(bool on);
  Endpoint local_endpoint() const;
  Endpoint remote_endpoint() const;
  int native_handle() const noexcept;

 private:
  friend class TcpListener;
  explicit TcpStream(detail::Descriptor* d) noexcept : d_(d) {}
  detail::Descriptor* d_ = nullptr;
};

struct ListenOptions {
  int backlog = 1024;
  bool reuse_address = true;
};

class TcpListener {
 public:
  TcpListener() noexcept = default;
  TcpListener(TcpListener&& o) noexcept : d_(o.d_) { o.d_ = nullptr; }
  TcpListener& operator=(TcpListener&& o) noexcept;
  ~TcpListener() { close(); }

  // bind: a listening socket on host:port (a numeric host, or a name that
  // resolve() turns into addresses: the first that binds). Port 0 picks a
  // free port; local_endpoint() tells which.
  SPINDLE_MAY_SUSPEND static TcpListener bind(std::string_view host, std::uint16_t port,
                                              ListenOptions o = {});
  static TcpListener bind(const Endpoint& ep, ListenOptions o = {});

  // accept: the next connection (nonblocking, close-on-exec). `peer`, when
  // given, receives its address.
  SPINDLE_MAY_SUSPEND TcpStream accept(Endpoint* peer = nullptr);
  Endpoint local_endpoint() const;
  void close() noexcept;
  bool is_open() const noexcept { return d_ != nullptr; }

 private:
  detail::Descriptor* d_ = nullptr;
};

}  // namespace spindle::io
