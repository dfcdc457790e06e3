/* libuv_hello.c: the reference server of BENCHMARKS.md http_hello, raw
 * single-threaded libuv C, written from the protocol:
 *   - HTTP/1.1 keep-alive; every request, i.e. everything up to a blank
 *     line ("\r\n\r\n"), gets the fixed 200 response (Content-Length 13,
 *     Content-Type text/plain, body "Hello, World!");
 *   - pipelined requests are answered in order (the answers to the heads
 *     found in one read go out in one write);
 *   - a head over 16 KiB closes the connection; end of stream or any
 *     error closes it silently.
 * No parser beyond the terminator scan (the protocol asks for none: its
 * requests have no bodies). Reads land in one loop-wide 64 KiB buffer;
 * responses are sent with uv_try_write and only what the socket did not
 * take is copied into a uv_write request.
 *
 *   libuv_hello PORT      (127.0.0.1; 0 picks a port; printed on stdout)
 * SIGTERM/SIGINT: stops the loop, exits 0.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#define READ_BUF (64 * 1024)
#define MAX_HEAD (16 * 1024)

static const char kResponse[] =
    "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, World!";
#define RESPONSE_LEN (sizeof kResponse - 1)

typedef struct {
  uv_tcp_t tcp;
  size_t head_len; /* bytes of the current, unfinished head */
  int match;       /* how much of "\r\n\r\n" the last bytes matched */
} conn_t;

typedef struct {
  uv_write_t req;
  char* data;
} pending_t;

static char g_buf[READ_BUF];
static char* g_out;       /* responses of one read */
static size_t g_out_cap;
static uv_loop_t* g_loop;
static uv_tcp_t g_server;
static uv_signal_t g_sigterm, g_sigint;

static void on_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* out) {
  (void)h;
  (void)suggested;
  *out = uv_buf_init(g_buf, sizeof g_buf);
}

static void on_close(uv_handle_t* h) { free(h); }

static void close_conn(conn_t* c) {
  if (!uv_is_closing((uv_handle_t*)&c->tcp)) uv_close((uv_handle_t*)&c->tcp, on_close);
}

static void on_write(uv_write_t* req, int status) {
  pending_t* p = (pending_t*)req;
  if (status < 0) close_conn((conn_t*)req->handle);
  free(p->data);
  free(p);
}

static void send_out(conn_t* c, size_t n) {
  uv_buf_t b = uv_buf_init(g_out, (unsigned)n);
  int w = uv_try_write((uv_stream_t*)&c->tcp, &b, 1);
  if (w == UV_EAGAIN) w = 0;
  if (w < 0) {
    close_conn(c);
    return;
  }
  if ((size_t)w == n) return;
  pending_t* p = malloc(sizeof *p);
  p->data = malloc(n - (size_t)w);
  memcpy(p->data, g_out + w, n - (size_t)w);
  b = uv_buf_init(p->data, (unsigned)(n - (size_t)w));
  if (uv_write(&p->req, (uv_stream_t*)&c->tcp, &b, 1, on_write) != 0) {
    free(p->data);
    free(p);
    close_conn(c);
  }
}

static void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
  conn_t* c = (conn_t*)s;
  if (n < 0) {
    close_conn(c);
    return;
  }
  static const char term[] = "\r\n\r\n";
  size_t heads = 0;
  for (ssize_t i = 0; i < n; ++i) {
    const char ch = buf->base[i];
    c->match = ch == term[c->match] ? c->match + 1 : (ch == '\r' ? 1 : 0);
    if (c->match == 4) {
      ++heads;
      c->match = 0;
      c->head_len = 0;
    } else if (++c->head_len > MAX_HEAD) {
      close_conn(c);
      return;
    }
  }
  if (heads == 0) return;
  const size_t need = heads * RESPONSE_LEN;
  if (need > g_out_cap) {
    g_out = realloc(g_out, need);
    g_out_cap = need;
  }
  for (size_t i = 0; i < heads; ++i) memcpy(g_out + i * RESPONSE_LEN, kResponse, RESPONSE_LEN);
  send_out(c, need);
}

static void on_connection(uv_stream_t* server, int status) {
  if (status < 0) return;
  conn_t* c = calloc(1, sizeof *c);
  uv_tcp_init(g_loop, &c->tcp);
  if (uv_accept(server, (uv_stream_t*)&c->tcp) != 0) {
    close_conn(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  uv_read_start((uv_stream_t*)&c->tcp, on_alloc, on_read);
}

static void on_signal(uv_signal_t* h, int sig) {
  (void)h;
  (void)sig;
  uv_stop(g_loop);
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s PORT\n", argv[0]);
    return 2;
  }
  g_loop = uv_default_loop();
  struct sockaddr_in addr;
  uv_ip4_addr("127.0.0.1", atoi(argv[1]), &addr);
  uv_tcp_init(g_loop, &g_server);
  if (uv_tcp_bind(&g_server, (const struct sockaddr*)&addr, 0) != 0 ||
      uv_listen((uv_stream_t*)&g_server, 1024, on_connection) != 0) {
    fprintf(stderr, "libuv_hello: cannot listen\n");
    return 1;
  }
  struct sockaddr_in bound;
  int len = sizeof bound;
  uv_tcp_getsockname(&g_server, (struct sockaddr*)&bound, &len);
  printf("%d\n", ntohs(bound.sin_port));
  fflush(stdout);
  uv_signal_init(g_loop, &g_sigterm);
  uv_signal_start(&g_sigterm, on_signal, SIGTERM);
  uv_signal_init(g_loop, &g_sigint);
  uv_signal_start(&g_sigint, on_signal, SIGINT);
  uv_run(g_loop, UV_RUN_DEFAULT);
  printf("stopped\n");
  return 0;
}
