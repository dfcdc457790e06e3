// tls.cpp: TlsStream and TlsContext (tls.hpp) on OpenSSL 3 with memory BIOs.
//
// OpenSSL sees two memory BIOs: `in` (ciphertext from the peer, which we
// append after reading the socket) and `out` (ciphertext OpenSSL produced,
// which we send). Every OpenSSL call runs under State::mu and never
// suspends; every socket wait runs outside it. So:
//  - a reader fiber and a writer fiber may use the stream at once: each
//    OpenSSL call is atomic with respect to the other, and the socket has
//    one reader (the reader fiber) and one writer at a time (below);
//  - the error queue (ERR_*, thread-local in OpenSSL) is cleared, filled and
//    read within one critical section, on one thread.
// Ordering of outgoing bytes: records enter `out` in the order OpenSSL made
// them; `out` is drained only under send_mu (a fiber mutex held across the
// socket write), so the bytes reach the socket in that order whichever
// fiber (reader answering a key update, writer) drains them.
//
// Memory (docs/decisions/0010-tls.md "Memory per stream"): an idle stream
// holds no buffer of ours and, with SSL_MODE_RELEASE_BUFFERS and SSL_free_buffers
// (shed()), none of OpenSSL's record buffers; what stays is the SSL
// object, two small memory BIOs and the TcpStream. Each buffer is taken
// when data arrives and given back when that data is gone:
//  - send_buf: for one flush (under send_mu), sized to what `out` holds;
//    freed when the flush has emptied `out`. One allocation per write_some
//    (up to 64 KiB of plaintext, four records), not per record.
//  - recv_buf: only for reads smaller than a record (a large read_some
//    reads the ciphertext into the caller's buffer, then decrypts it in
//    place); freed when a socket read came back short (the socket is
//    drained: the next read most likely waits), kept while reads come back
//    full (bulk data).
//  - the BIOs' memory never shrinks (OpenSSL keeps a BUF_MEM's largest
//    size), so an empty BIO grown past kKeepBio is replaced by a new one at
//    the same points: `out` at the end of a flush; `in` when a read has
//    decrypted all of a short socket read, or before the socket read that
//    follows a short one.
//  - write_iov's gather buffer lives for one call.
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <new>
#include <string>

#include <spindle/io/tls.hpp>
#include <spindle/sync/mutex.hpp>

#include "idle_wait.hpp"
#include "stream_ops.hpp"

namespace spindle::io {

namespace {

class TlsCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "spindle.tls"; }
  std::string message(int c) const override {
    switch (static_cast<tls_error>(c)) {
      case tls_error::handshake: return "TLS handshake failed";
      case tls_error::verify: return "TLS certificate verification failed";
      case tls_error::truncated: return "TLS stream truncated (closed without close_notify)";
      case tls_error::protocol: return "TLS protocol error";
      case tls_error::config: return "TLS configuration error";
    }
    return "unknown TLS error";
  }
};

// Plaintext accepted by one write_some: bounds the ciphertext buffered in
// `out` (a little over this) while it is sent.
constexpr std::size_t kMaxWrite = 64 * 1024;
// One socket read: a full TLS record (16 KiB of plaintext plus overhead).
constexpr std::size_t kReadChunk = 17 * 1024;
// write_iov gathers small buffers up to one record's worth.
constexpr std::size_t kGather = 16 * 1024;
// One flush sends at most this much per socket write: the ciphertext of a
// full write_some (64 KiB of plaintext in four records, 22 to 29 bytes of
// overhead each) in one write.
constexpr std::size_t kSendChunk = kMaxWrite + 512;
// What may wait in `out` while a reader leaves it to a writer that holds
// the socket (read_plain): a writer's own ciphertext (one write_some's,
// kSendChunk at most) and this much made by reads.
constexpr std::size_t kReaderBacklog = kSendChunk + 16 * 1024;
// An empty memory BIO whose buffer has grown past this is replaced (the
// file comment); below it, a small message's BIO is kept as it is.
constexpr std::size_t kKeepBio = 4 * 1024;

// free_buffers_safe: SSL_free_buffers may be called. Before these releases
// it could free a read buffer still holding part of a record
// (CVE-2024-4741); a distribution's patched older build just does without
// it (an idle client then keeps up to 16 KiB, see shed()).
bool free_buffers_safe() {
  static const bool ok = [] {
    const unsigned long v = OpenSSL_version_num();  // 0xMNN00PP0
    const unsigned long mm = v >> 20, patch = (v >> 4) & 0xff;
    if (mm == 0x300) return patch >= 14;  // 3.0.14
    if (mm == 0x301) return patch >= 6;   // 3.1.6
    if (mm == 0x302) return patch >= 2;   // 3.2.2
    if (mm == 0x303) return patch >= 1;   // 3.3.1
    return mm > 0x303;
  }();
  return ok;
}

// drain_errors: OpenSSL's error queue as text ("; "-joined reasons), and
// empties it. Call in the critical section of the failing call.
std::string drain_errors() {
  std::string out;
  while (const unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out;
}

[[noreturn]] void throw_config(const std::string& what) {
  throw std::system_error(make_error_code(tls_error::config), "spindle::io: TLS: " + what + ": " + drain_errors());
}

// has_read_ahead: s holds bytes a read_line or read_until read past its
// delimiter (tcp.hpp). Read by the stream's one reader.
bool has_read_ahead(TcpStream& s) noexcept {
  const detail::StreamTurns* t = detail::StreamAccess::turns(s);
  return t != nullptr && t->buffered() != 0;
}

// ip_literal: host as an IP address for verification, or "" when it is a
// DNS name. An IPv6 address's zone ("fe80::1%eth0", or "%25eth0" as a
// URL writes it) is dropped: a certificate names the address only, and
// with the zone the name went out as SNI and was checked as a DNS name,
// which never matches.
// An IPv6 address in brackets ("[::1]", as a URL and Endpoint::parse write
// it; TCP's connect takes it so) is the address too: verified as a DNS
// name, it never matched, and it went out as SNI, which RFC 6066 3 bars.
std::string ip_literal(std::string_view host) {
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    std::string inner = ip_literal(host.substr(1, host.size() - 2));
    if (inner.find(':') != std::string::npos) return inner;  // IPv6 only, as in a URL
    return {};
  }
  unsigned char buf[16];
  const std::string h(host);
  if (::inet_pton(AF_INET, h.c_str(), buf) == 1 || ::inet_pton(AF_INET6, h.c_str(), buf) == 1) return h;
  const std::string addr(host.substr(0, host.find('%')));
  if (addr.size() < host.size() && ::inet_pton(AF_INET6, addr.c_str(), buf) == 1) return addr;
  return {};
}

}  // namespace

const std::error_category& tls_category() noexcept {
  static const TlsCategory c;
  return c;
}

struct detail::TlsContextImpl {
  SSL_CTX* ctx = nullptr;
  bool server = false;
  bool allow_no_name = false;  // TlsClientOptions::allow_no_name
  // The ALPN protocols offered (client) or accepted (server), in the wire
  // format: each name prefixed by its length.
  std::vector<unsigned char> alpn;
  ~TlsContextImpl() { SSL_CTX_free(ctx); }
};

namespace {

std::shared_ptr<detail::TlsContextImpl> new_ctx(const SSL_METHOD* m, bool server) {
  ERR_clear_error();
  auto impl = std::make_shared<detail::TlsContextImpl>();
  impl->server = server;
  impl->ctx = SSL_CTX_new(m);
  if (impl->ctx == nullptr) throw_config("SSL_CTX_new");
  SSL_CTX_set_min_proto_version(impl->ctx, TLS1_2_VERSION);
  // TLS 1.2 suites: forward secrecy only (ECDHE: a key stolen later must
  // not decrypt recorded traffic), AEAD for a server (Mozilla's
  // "intermediate" list: no CBC, which RFC 9113 9.2.2 also bars from h2).
  // A client also takes ECDHE with AES-CBC-SHA1 after those, as Go's
  // default does, for older servers. OpenSSL's default took static RSA
  // and CBC from any client that asked (an attacker's review, 2026-11-29).
  // TLS 1.3's suites are all AEAD with forward secrecy: left as they are.
  // Each client picks among these (no server preference: all are strong).
  const char* tls12 = server ? "ECDHE+AESGCM:ECDHE+CHACHA20" : "ECDHE+AESGCM:ECDHE+CHACHA20:ECDHE+AES+SHA1";
  if (SSL_CTX_set_cipher_list(impl->ctx, tls12) != 1) throw_config("cipher list");
  // Key exchange: elliptic curves only, as Go's crypto/tls. OpenSSL 3.0's
  // default list also has the finite-field groups (ffdhe2048..8192), and
  // takes one from a peer that offers only that: one replayed ClientHello
  // offering ffdhe8192 cost our server ~180 ms of CPU inside a handshake
  // step that cannot yield, for ~0.1 ms of the attacker's (a review's probe,
  // 2026-12-01); a server can ask our client for it the same way.
  if (SSL_CTX_set1_groups_list(impl->ctx, "X25519:P-256:P-384:P-521") != 1) throw_config("groups list");
  // No renegotiation (TLS 1.2): then a write never needs to read, so the
  // writer fiber never touches the socket's read side.
  SSL_CTX_set_options(impl->ctx, SSL_OP_NO_RENEGOTIATION);
  // OpenSSL frees its record buffers (~34 KiB a stream) whenever they are
  // empty, so an idle stream does not hold them (file comment).
  SSL_CTX_set_mode(impl->ctx, SSL_MODE_RELEASE_BUFFERS);
  return impl;
}

// alpn_wire: names as ALPN's protocol list (RFC 7301 3.1): each 1..255
// bytes, prefixed by its length. A name outside that: tls_error::config.
std::vector<unsigned char> alpn_wire(const std::vector<std::string>& names) {
  std::vector<unsigned char> w;
  for (const std::string& n : names) {
    if (n.empty() || n.size() > 255) throw_config("ALPN protocol name of " + std::to_string(n.size()) + " bytes");
    w.push_back(static_cast<unsigned char>(n.size()));
    w.insert(w.end(), n.begin(), n.end());
  }
  return w;
}

// select_alpn: the server's pick, in the server's order of preference
// (the first of its names the client also offers). None in common: the
// handshake fails with no_application_protocol (RFC 7301 3.2), as Go
// (1.17 on) does: a client that offered only another protocol ("ftp",
// "imap") was served HTTP, the way in of cross-protocol attacks on a
// certificate shared by several services (ALPACA). Go's one exception is
// kept: a client that offered http/1.1 to a server that speaks h2 but not
// http/1.1 by name goes on without ALPN.
int select_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in, unsigned inlen,
                void* arg) {
  const auto* impl = static_cast<const detail::TlsContextImpl*>(arg);
  const std::vector<unsigned char>& ours = impl->alpn;
  const auto is = [](const unsigned char* name, unsigned len, std::string_view what) {
    return len == what.size() && std::memcmp(name, what.data(), len) == 0;
  };
  bool http11_fallback = false;
  for (std::size_t i = 0; i < ours.size(); i += 1 + ours[i]) {
    for (unsigned j = 0; j < inlen; j += 1u + in[j]) {
      if (j + 1u + in[j] > inlen) break;  // a malformed list: stop reading it
      if (in[j] == ours[i] && std::memcmp(in + j + 1, ours.data() + i + 1, ours[i]) == 0) {
        *out = in + j + 1;
        *outlen = in[j];
        return SSL_TLSEXT_ERR_OK;
      }
      if (is(ours.data() + i + 1, ours[i], "h2") && is(in + j + 1, in[j], "http/1.1")) http11_fallback = true;
    }
  }
  return http11_fallback ? SSL_TLSEXT_ERR_NOACK : SSL_TLSEXT_ERR_ALERT_FATAL;
}

}  // namespace

TlsContext TlsContext::client(const TlsClientOptions& o) {
  TlsContext c;
  c.impl_ = new_ctx(TLS_client_method(), false);
  SSL_CTX* ctx = c.impl_->ctx;
  c.impl_->allow_no_name = o.allow_no_name;
  if (o.verify) {
    if (o.ca_file.empty()) {
      if (SSL_CTX_set_default_verify_paths(ctx) != 1) throw_config("the system trust store");
    } else if (SSL_CTX_load_verify_locations(ctx, o.ca_file.c_str(), nullptr) != 1) {
      throw_config("CA file " + o.ca_file);
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  }
  if (!o.alpn.empty()) {
    c.impl_->alpn = alpn_wire(o.alpn);
    // Unlike most of OpenSSL, 0 is success here.
    if (SSL_CTX_set_alpn_protos(ctx, c.impl_->alpn.data(), static_cast<unsigned>(c.impl_->alpn.size())) != 0)
      throw_config("ALPN protocols");
  }
  return c;
}

TlsContext TlsContext::server(const TlsServerOptions& o) {
  TlsContext c;
  c.impl_ = new_ctx(TLS_server_method(), true);
  SSL_CTX* ctx = c.impl_->ctx;
  if (SSL_CTX_use_certificate_chain_file(ctx, o.cert_file.c_str()) != 1)
    throw_config("certificate file " + o.cert_file);
  if (SSL_CTX_use_PrivateKey_file(ctx, o.key_file.c_str(), SSL_FILETYPE_PEM) != 1)
    throw_config("key file " + o.key_file);
  if (SSL_CTX_check_private_key(ctx) != 1) throw_config("key does not match the certificate");
  if (!o.alpn.empty()) {
    c.impl_->alpn = alpn_wire(o.alpn);
    // The callback reads impl's list: the SSL_CTX never outlives impl.
    SSL_CTX_set_alpn_select_cb(ctx, select_alpn, c.impl_.get());
  }
  return c;
}

bool TlsContext::is_server() const noexcept { return impl_ && impl_->server; }

struct detail::TlsState {
  TcpStream tcp;
  std::shared_ptr<TlsContextImpl> ctx;  // keeps the SSL_CTX alive
  SSL* ssl = nullptr;
  BIO* in = nullptr;   // owned by ssl
  BIO* out = nullptr;  // owned by ssl

  std::mutex mu;  // guards ssl, in, out, error_text; never held across a wait
  std::string error_text;
  Mutex send_mu;                     // orders draining `out` and the socket write
  std::unique_ptr<char[]> recv_buf;  // the reader's (one reader at a time); see the file comment
  bool read_short = false;           // reader's: the latest socket read did not fill its buffer
  bool tcp_eof = false;              // reader's: the socket read end of stream
  bool got_close_notify = false;     // reader's
  std::atomic<bool> write_broken{false};
  std::atomic<bool> flush_wanted{false};  // see flush()
  // The reader's and writer's turns and read_line's read-ahead (tcp.hpp):
  // taken by every public read and write, outside mu and send_mu (lock
  // order: a turn, then send_mu, then mu).
  StreamTurns turns;

  ~TlsState() { SSL_free(ssl); }

  // shed: at a point where the stream may go idle (the places
  // replace_if_grown is called), OpenSSL's record buffers go too when they
  // are empty. SSL_MODE_RELEASE_BUFFERS alone misses one case: a client
  // that reads the server's TLS 1.3 session tickets after its last write
  // keeps a 16 KiB write buffer until it writes again. Under mu.
  void shed() {
    if (SSL_is_init_finished(ssl) && free_buffers_safe()) SSL_free_buffers(ssl);  // 0: in use, kept
  }

  // replace_if_grown: if `b` (in or out) is empty and its buffer has grown
  // past kKeepBio, a new empty memory BIO takes its place (SSL_set0_*
  // frees the old one) and is returned; else `b`. Under mu. Only after the
  // handshake: during it OpenSSL may hold a buffering BIO in front of
  // `out`. Out of memory: `b` stays.
  BIO* replace_if_grown(BIO* b, bool is_in) {
    if (BIO_ctrl_pending(b) != 0 || !SSL_is_init_finished(ssl)) return b;
    BUF_MEM* bm = nullptr;
    BIO_get_mem_ptr(b, &bm);
    if (bm == nullptr || bm->max <= kKeepBio) return b;
    BIO* nb = BIO_new(BIO_s_mem());
    if (nb == nullptr) return b;
    if (is_in) {
      BIO_set_mem_eof_return(nb, -1);  // as new_state
      SSL_set0_rbio(ssl, nb);
    } else {
      SSL_set0_wbio(ssl, nb);
    }
    return nb;
  }

  // flush: sends what is in `out`, under send_mu. wait = false (a reader
  // sending the few bytes its SSL_read produced: a key-update answer, an
  // alert): only when no other fiber is sending, because that one may be
  // blocked on a peer that waits for us to read, and it sends these bytes
  // too. flush_wanted closes the gap between a holder's last drain and its
  // unlock: whoever finds the lock taken has set it first, and the holder
  // looks at it after unlocking. A cancellation or error while sending
  // cuts the write side (records were lost or half sent). The TcpStream's
  // own mark (a write_all cut short: write_interrupted) then fails every
  // later send, a writer's whose records waited behind the cut one or a
  // reader's answer: nothing follows the gap (a probe had a writer wait
  // behind a reader's cut send: it got write_interrupted, 2026-12-01).
  void flush(bool wait = true) {
    flush_wanted.store(true, std::memory_order_seq_cst);
    for (;;) {
      if (wait) {
        send_mu.lock();
      } else if (!send_mu.try_lock()) {
        return;
      }
      std::unique_lock g(send_mu, std::adopt_lock);
      flush_wanted.store(false, std::memory_order_seq_cst);
      // For this flush only (file comment): sized to what `out` holds, and
      // grown when more came in behind (a writer's 64 KiB queued while a
      // reader's small answer waited on the socket; sent in answer-sized
      // pieces, that was ~2,400 sends, at a peer's asking).
      std::unique_ptr<char[]> send_buf;
      std::size_t cap = 0;
      for (;;) {
        int k = 0;
        {
          std::lock_guard lk(mu);
          const std::size_t pending = BIO_ctrl_pending(out);
          if (pending == 0) {
            out = replace_if_grown(out, false);  // `out` is empty: give its memory back
            shed();
          } else {
            if (!send_buf || (cap < pending && cap < kSendChunk)) {
              cap = std::min(pending, kSendChunk);
              send_buf.reset(new (std::nothrow) char[cap]);
              if (!send_buf) {
                write_broken.store(true, std::memory_order_relaxed);
                throw std::bad_alloc();
              }
            }
            k = BIO_read(out, send_buf.get(), static_cast<int>(cap));
          }
        }
        if (k <= 0) break;
        try {
          tcp.write_all(send_buf.get(), static_cast<std::size_t>(k));
        } catch (...) {
          write_broken.store(true, std::memory_order_relaxed);
          throw;
        }
      }
      send_buf.reset();
      g.unlock();
      if (!flush_wanted.load(std::memory_order_seq_cst)) return;
      wait = false;
    }
  }

  std::size_t out_pending() {
    std::lock_guard lk(mu);
    return BIO_ctrl_pending(out);
  }

  // feed: reads the socket once into `in`. False at TCP end of stream.
  // The ciphertext is read into `direct` (the caller's plaintext buffer,
  // which SSL_read then overwrites) when that holds a whole record, else
  // into recv_buf (file comment).
  bool feed(std::error_code& ec, void* direct = nullptr, std::size_t direct_n = 0) {
    if (read_short) {
      // The socket was drained last time: this read most likely waits, so
      // nothing of ours stays allocated across that wait (recv_buf went
      // with that short read, below).
      std::lock_guard lk(mu);
      in = replace_if_grown(in, true);
      shed();
    }
    char* dst = static_cast<char*>(direct);
    std::size_t n = 0;
    if (has_read_ahead(tcp)) {
      // Bytes the TcpStream read ahead before TLS took it over (a
      // read_line of "STARTTLS" that took the ClientHello with it): only
      // its read_some returns those; the socket alone would wait for ever
      // or hand the ciphertext over out of order.
      if (direct_n < kReadChunk) {
        if (!recv_buf) recv_buf = std::make_unique_for_overwrite<char[]>(kReadChunk);
        dst = recv_buf.get();
      }
      n = tcp.read_some(dst, kReadChunk, ec);
    } else {
      // From the socket itself (idle_read: the socket has one reader, this
      // stream's, which never uses read_line), into the caller's buffer
      // when that holds a whole record, else into recv_buf. Not through
      // TcpStream::read_some: a flush cut short marks the TcpStream
      // write_interrupted, which fails its reads too, while a TLS stream's
      // reads go on after a cut write (tls.hpp). Before 2026-11-30 reads
      // of kReadChunk or more went that way and failed, smaller ones not.
      // recv_buf is not held across the wait for bytes: taken, the socket
      // read without waiting, and if nothing was there, given back before
      // the wait. Before, every idle stream (a keep-alive HTTPS connection
      // between requests) held 17 KiB.
      const bool into_caller = direct_n >= kReadChunk;
      for (;;) {
        // Not zeroed: taken again after every short read, and overwritten.
        if (!into_caller && !recv_buf) recv_buf = std::make_unique_for_overwrite<char[]>(kReadChunk);
        if (!into_caller) dst = recv_buf.get();
        const std::ptrdiff_t got = detail::idle_read(tcp, dst, kReadChunk, ec);
        if (got >= 0) {
          n = static_cast<std::size_t>(got);
          break;
        }
        recv_buf.reset();  // also one a full small read left
        detail::idle_wait(tcp, "tls read");  // never nudged: only the server's plain connections are
      }
    }
    if (ec) return false;
    if (n == 0) {
      tcp_eof = true;
      return false;
    }
    read_short = n < kReadChunk;
    {
      std::lock_guard lk(mu);
      BIO_write(in, dst, static_cast<int>(n));
    }
    if (read_short) recv_buf.reset();
    return true;
  }

  void handshake();
};

void detail::TlsState::handshake() {
  for (;;) {
    int r, err;
    long verify = X509_V_OK;
    std::string text;
    {
      std::lock_guard lk(mu);
      ERR_clear_error();
      r = SSL_do_handshake(ssl);
      err = r == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl, r);
      if (r != 1 && err != SSL_ERROR_WANT_READ) {
        text = drain_errors();
        // Without SSL_VERIFY_PEER the result is recorded but did not end
        // the handshake: then the failure is something else.
        if (SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER) verify = SSL_get_verify_result(ssl);
      }
    }
    if (r == 1) {
      flush();
      recv_buf.reset();  // the stream's first read takes what it needs
      return;
    }
    if (err == SSL_ERROR_WANT_READ) {
      flush();
      std::error_code ec;
      if (feed(ec)) continue;
      if (ec) throw std::system_error(ec, "spindle::io: TLS handshake");
      throw std::system_error(make_error_code(tls_error::truncated),
                              "spindle::io: TLS handshake: the peer closed the connection");
    }
    // Failed: send the alert OpenSSL queued, if the peer still listens.
    try {
      flush();
    } catch (const std::system_error&) {
    }
    if (verify != X509_V_OK) {
      throw std::system_error(make_error_code(tls_error::verify),
                              std::string("spindle::io: TLS certificate verification failed: ") +
                                  X509_verify_cert_error_string(verify) + " (" + text + ")");
    }
    throw std::system_error(make_error_code(tls_error::handshake), "spindle::io: TLS handshake: " + text);
  }
}

namespace {

std::unique_ptr<detail::TlsState> new_state(TcpStream s, const TlsContext& ctx,
                                            const std::shared_ptr<detail::TlsContextImpl>& impl) {
  if (!ctx) throw std::invalid_argument("spindle::io: TlsStream with an empty TlsContext");
  auto st = std::make_unique<detail::TlsState>();
  st->tcp = std::move(s);
  st->ctx = impl;
  ERR_clear_error();
  st->ssl = SSL_new(impl->ctx);
  st->in = BIO_new(BIO_s_mem());
  st->out = BIO_new(BIO_s_mem());
  if (st->ssl == nullptr || st->in == nullptr || st->out == nullptr) {
    BIO_free(st->in);
    BIO_free(st->out);
    throw std::bad_alloc();
  }
  // An empty `in` is "retry later" (WANT_READ), never end of file: the
  // socket's end of stream is judged by the stream (tcp_eof).
  BIO_set_mem_eof_return(st->in, -1);
  SSL_set_bio(st->ssl, st->in, st->out);
  return st;
}

}  // namespace

TlsStream::TlsStream() noexcept = default;
TlsStream::TlsStream(std::unique_ptr<detail::TlsState> st) noexcept : st_(std::move(st)) {}
TlsStream::TlsStream(TlsStream&& o) noexcept = default;
TlsStream& TlsStream::operator=(TlsStream&& o) noexcept = default;
TlsStream::~TlsStream() = default;

TlsStream TlsStream::connect(std::string_view host, std::uint16_t port, const TlsContext& ctx) {
  return client(TcpStream::connect(host, port), ctx, host);
}

TlsStream TlsStream::client(TcpStream s, const TlsContext& ctx, std::string_view server_name) {
  // A fully qualified name's trailing dot ("example.com.") names the same
  // host, but no certificate carries it, and SNI must not (RFC 6066 3):
  // one is dropped for both, as Go and curl do. Before, such a URL failed
  // with "hostname mismatch".
  if (server_name.size() > 1 && server_name.back() == '.') server_name.remove_suffix(1);
  const std::string name(server_name);
  // Verification with no name checks the chain only: anyone holding a
  // certificate from a trusted CA passes. Refused unless asked for (Go
  // refuses it outright: "either ServerName or InsecureSkipVerify").
  // Checked before new_state so nothing is set up for a refused call; the
  // socket closes with `s`.
  if (name.empty() && ctx && !ctx.impl_->server && !ctx.impl_->allow_no_name &&
      (SSL_CTX_get_verify_mode(ctx.impl_->ctx) & SSL_VERIFY_PEER))
    throw std::system_error(make_error_code(tls_error::config),
                            "spindle::io: TLS: verification needs a server name (empty name given; "
                            "TlsClientOptions::allow_no_name checks the chain only)");
  auto st = new_state(std::move(s), ctx, ctx.impl_);
  if (!name.empty()) {
    const std::string ip_name = ip_literal(name);
    const bool ip = !ip_name.empty();
    // SNI holds 1..255 bytes: a longer name failed here silently (sent
    // without SNI, an error left on this thread's OpenSSL queue).
    if (!ip && SSL_set_tlsext_host_name(st->ssl, name.c_str()) != 1) {
      ERR_clear_error();
      throw std::system_error(make_error_code(tls_error::config),
                              "spindle::io: TLS: server name of " + std::to_string(name.size()) +
                                  " bytes does not fit SNI (255 at most)");
    }
    if (SSL_get_verify_mode(st->ssl) & SSL_VERIFY_PEER) {
      X509_VERIFY_PARAM* p = SSL_get0_param(st->ssl);
      // No subject CN in place of a DNS name: a certificate without a
      // subjectAltName is refused, as by Go and browsers (RFC 6125 6.4.4's
      // fallback is deprecated, RFC 9525).
      X509_VERIFY_PARAM_set_hostflags(p, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS | X509_CHECK_FLAG_NEVER_CHECK_SUBJECT);
      const int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(p, ip_name.c_str())
                        : X509_VERIFY_PARAM_set1_host(p, name.c_str(), name.size());
      if (ok != 1) {
        ERR_clear_error();
        throw std::system_error(make_error_code(tls_error::config), "spindle::io: TLS: bad server name " + name);
      }
    }
  }
  SSL_set_connect_state(st->ssl);
  st->handshake();
  return TlsStream(std::move(st));
}

TlsStream TlsStream::server(TcpStream s, const TlsContext& ctx) {
  if (!ctx) throw std::invalid_argument("spindle::io: TlsStream with an empty TlsContext");
  // Nothing of OpenSSL's before the client's first bytes: the first
  // SSL_do_handshake takes ~55 KiB of record buffers, and a client that
  // connects and sends nothing held them (with our receive buffer, ~73 KiB
  // a connection) for the whole handshake deadline.
  if (!has_read_ahead(s)) detail::wait_readable(s, "tls handshake");
  auto st = new_state(std::move(s), ctx, ctx.impl_);
  SSL_set_accept_state(st->ssl);
  st->handshake();
  return TlsStream(std::move(st));
}

std::size_t TlsStream::read_plain(void* p, std::size_t n, std::error_code& ec) {
  ec.clear();
  if (!st_) {
    ec = make_error_code(error::closed);
    return 0;
  }
  if (n == 0) return 0;
  detail::TlsState& s = *st_;
  const int want = static_cast<int>(std::min<std::size_t>(n, 1u << 30));
  for (;;) {
    if (s.got_close_notify) return 0;
    int r, err;
    bool output;
    {
      std::lock_guard lk(s.mu);
      const std::size_t before = BIO_ctrl_pending(s.out);
      ERR_clear_error();
      r = SSL_read(s.ssl, p, want);
      err = r > 0 ? SSL_ERROR_NONE : SSL_get_error(s.ssl, r);
      if (r <= 0 && err != SSL_ERROR_WANT_READ && err != SSL_ERROR_ZERO_RETURN) s.error_text = drain_errors();
      // Bytes the writer queued are the writer's to send; only what this
      // read produced (a TLS 1.3 key-update answer, an alert) is ours.
      output = BIO_ctrl_pending(s.out) > before;
      // All the socket had is decrypted: the caller may not read again for
      // a long time, so `in` gives back what a burst grew it to now.
      if (r > 0 && s.read_short) {
        s.in = s.replace_if_grown(s.in, true);
        s.shed();
      }
    }
    if (output) {
      try {
        s.flush(false);
        // A writer holds the socket (blocked, it may be, on a peer that
        // reads nothing) and will send these bytes. A peer can make every
        // read produce some: TLS 1.3 KeyUpdate requests, each answered,
        // whose limit in OpenSSL (32) any application data resets. Past
        // kReaderBacklog waiting in `out`, the reader waits its turn to
        // send them (Go's reader always does), so such a peer stalls
        // instead of growing `out` for as long as the writer waits: one
        // HTTP/2 connection grew by ~1.7 MB a second before.
        if (s.out_pending() > kReaderBacklog) s.flush(true);
      } catch (const std::system_error&) {
        // The write side is cut (write_broken): writers see it; the
        // plaintext or error of this read is still the reader's answer.
      } catch (...) {
        // Cancelled or TimedOut while sending (flush cut the write side).
        // Plaintext this read took out of OpenSSL is the caller's: thrown
        // away, a read_line or read_until would roll back and the next
        // read go on past it, the stream silently short. The cancel is
        // not lost by returning it: a Task::cancel's mark stays, and the
        // caller's next wait raises it (docs/runtime.md "Cancellation");
        // a deadline scope's expiry raises TimedOut when the scope ends,
        // the plaintext then lost with the rest of what the scope did.
        if (r <= 0) throw;
      }
    }
    if (r > 0) return static_cast<std::size_t>(r);
    if (err == SSL_ERROR_ZERO_RETURN) {
      s.got_close_notify = true;
      return 0;
    }
    if (err == SSL_ERROR_WANT_READ) {
      if (s.tcp_eof || !s.feed(ec, p, n)) {
        if (!ec) {
          ec = make_error_code(tls_error::truncated);
          std::lock_guard lk(s.mu);
          s.error_text = "the peer closed the connection without close_notify";
        }
        return 0;
      }
      continue;
    }
    ec = make_error_code(tls_error::protocol);
    return 0;
  }
}

std::string TlsStream::describe(std::error_code ec, const char* what) const {
  std::string text = what;
  if (ec.category() == tls_category()) text += ": " + last_error();
  return text;
}

std::size_t TlsStream::read_some(void* p, std::size_t n, std::error_code& ec) {
  const iovec v{p, n};
  return read_iov(&v, 1, ec);
}

std::size_t TlsStream::read_some(void* p, std::size_t n) {
  std::error_code ec;
  const std::size_t got = read_some(p, n, ec);
  if (ec) throw std::system_error(ec, describe(ec, "spindle::io: TLS read"));
  return got;
}

std::size_t TlsStream::read_iov_held(const iovec* iov, std::size_t cnt, std::error_code& ec) {
  for (std::size_t i = 0; i < cnt; ++i) {
    if (iov[i].iov_len != 0) return read_plain(iov[i].iov_base, iov[i].iov_len, ec);
  }
  ec.clear();
  return 0;
}

std::size_t TlsStream::read_iov(const iovec* iov, std::size_t cnt, std::error_code& ec) {
  return detail::stream_read_iov(*this, iov, cnt, ec);
}

void TlsStream::read_exact(void* p, std::size_t n) { detail::stream_read_exact(*this, p, n); }

std::size_t TlsStream::read_until(std::string& buf, std::string_view delim, std::size_t max_size) {
  return detail::stream_read_until(*this, buf, delim, max_size);
}

std::size_t TlsStream::read_to_end(std::string& out, std::size_t max_size) {
  return detail::stream_read_to_end(*this, out, max_size);
}

std::string TlsStream::read_line(std::size_t max_line) { return detail::stream_read_line(*this, max_line); }

std::size_t TlsStream::write_plain(const void* p, std::size_t n, std::error_code& ec) {
  ec.clear();
  if (!st_) {
    ec = make_error_code(error::closed);
    return 0;
  }
  detail::TlsState& s = *st_;
  if (s.write_broken.load(std::memory_order_relaxed)) {
    ec = make_error_code(error::write_interrupted);
    return 0;
  }
  if (n == 0) return 0;
  n = std::min(n, kMaxWrite);
  int r;
  {
    std::lock_guard lk(s.mu);
    ERR_clear_error();
    r = SSL_write(s.ssl, p, static_cast<int>(n));
    if (r <= 0) s.error_text = drain_errors();
  }
  if (r <= 0) {
    // With a memory BIO that grows and renegotiation off, SSL_write wants
    // neither read nor write: any failure is the connection's end (an
    // alert received, close_notify already sent).
    ec = make_error_code(tls_error::protocol);
    return 0;
  }
  try {
    s.flush();
  } catch (const std::system_error& e) {
    ec = e.code();
    return 0;
  } catch (...) {
    // Cancelled or TimedOut, even while waiting for the send turn before a
    // byte reached the socket: SSL_write already made the records, which
    // the next flush would send. The caller, told the write failed, could
    // send the data again: the write side is cut instead (tls.hpp,
    // write_interrupted).
    s.write_broken.store(true, std::memory_order_relaxed);
    throw;
  }
  return static_cast<std::size_t>(r);
}

std::size_t TlsStream::write_some(const void* p, std::size_t n, std::error_code& ec) {
  const iovec v{const_cast<void*>(p), n};
  return write_iov(&v, 1, ec);
}

std::size_t TlsStream::write_some(const void* p, std::size_t n) {
  std::error_code ec;
  const std::size_t put = write_some(p, n, ec);
  if (ec) throw std::system_error(ec, describe(ec, "spindle::io: TLS write"));
  return put;
}

std::size_t TlsStream::write_iov(const iovec* iov, std::size_t cnt, std::error_code& ec) {
  return detail::stream_write_iov(*this, iov, cnt, ec);
}

std::size_t TlsStream::write_iov_held(const iovec* iov, std::size_t cnt, std::error_code& ec) {
  // A gather of small buffers (Beast's head, then its body) becomes one
  // record rather than one per buffer.
  std::size_t i = 0;
  while (i < cnt && iov[i].iov_len == 0) ++i;
  if (i == cnt) {
    ec.clear();
    return 0;
  }
  if (iov[i].iov_len >= kGather || i + 1 == cnt) return write_plain(iov[i].iov_base, iov[i].iov_len, ec);
  if (!st_) return write_plain(nullptr, 0, ec);  // closed
  // On the heap, not the stack: fibers' stacks are small (64 KiB by
  // default), and Beast's frames sit above this one. For this call only,
  // sized to what it gathers (an idle stream holds none).
  std::size_t total = 0;
  for (std::size_t j = i; j < cnt && total < kGather; ++j) total += iov[j].iov_len;
  total = std::min(total, kGather);
  auto buf = std::make_unique_for_overwrite<char[]>(total);
  std::size_t len = 0;
  for (; i < cnt && len < total; ++i) {
    const std::size_t k = std::min(iov[i].iov_len, total - len);
    std::memcpy(buf.get() + len, iov[i].iov_base, k);
    len += k;
  }
  return write_plain(buf.get(), len, ec);
}

void TlsStream::mark_write_broken() noexcept {
  if (st_) st_->write_broken.store(true, std::memory_order_relaxed);
}

detail::StreamTurns* TlsStream::turns() noexcept { return st_ ? &st_->turns : nullptr; }

void TlsStream::write_all_iov(iovec* iov, std::size_t cnt) { detail::stream_write_all_iov(*this, iov, cnt); }

void TlsStream::write_all(const void* p, std::size_t n) {
  iovec v{const_cast<void*>(p), n};
  write_all_iov(&v, 1);
}

void TlsStream::shutdown() {
  if (!st_) throw std::system_error(make_error_code(error::closed), "spindle::io: TLS shutdown");
  // close_notify goes after a write_all in progress, never inside it.
  detail::Turn g(&st_->turns.writing);
  if (st_->write_broken.load(std::memory_order_relaxed))
    throw std::system_error(make_error_code(error::write_interrupted), "spindle::io: TLS shutdown");
  {
    std::lock_guard lk(st_->mu);
    ERR_clear_error();
    SSL_shutdown(st_->ssl);  // queues close_notify (0: the peer's not yet seen)
    ERR_clear_error();
  }
  st_->flush();
  st_->tcp.shutdown();
}

void TlsStream::close() noexcept {
  if (st_) st_->tcp.close();
  st_.reset();
}

bool TlsStream::is_open() const noexcept { return st_ && st_->tcp.is_open(); }

TcpStream& TlsStream::next_layer() {
  if (!st_) throw std::system_error(make_error_code(error::closed), "spindle::io: TLS");
  return st_->tcp;
}

std::string_view TlsStream::version() const {
  if (!st_) return {};
  std::lock_guard lk(st_->mu);
  return SSL_get_version(st_->ssl);
}

std::string TlsStream::alpn() const {
  if (!st_) return {};
  std::lock_guard lk(st_->mu);
  const unsigned char* p = nullptr;
  unsigned n = 0;
  SSL_get0_alpn_selected(st_->ssl, &p, &n);
  return std::string(reinterpret_cast<const char*>(p), p == nullptr ? 0 : n);
}

std::string TlsStream::last_error() const {
  if (!st_) return {};
  std::lock_guard lk(st_->mu);
  return st_->error_text;
}

bool TlsStream::has_buffered_input() const noexcept {
  if (!st_) return false;
  // tcp_eof and got_close_notify are the reader's: the caller guarantees no
  // read runs now (header), and whatever handed it the stream ordered the
  // last read before this call.
  if (st_->tcp_eof || st_->got_close_notify || st_->turns.buffered() != 0) return true;
  std::lock_guard lk(st_->mu);
  return SSL_has_pending(st_->ssl) == 1 || BIO_ctrl_pending(st_->in) != 0;
}

}  // namespace spindle::io
