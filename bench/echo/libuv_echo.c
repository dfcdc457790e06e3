/* libuv_echo.c: the reference server of BENCHMARKS.md echo64, raw
 * single-threaded libuv C, written from the protocol:
 *   - every byte read is echoed back on the same connection (no framing);
 *   - end of stream: close; any error: close silently;
 *   - stop reading while more than 1 MiB of output is queued on the
 *     connection, start again when the queue drains below it.
 * Reads land in one loop-wide 64 KiB buffer (uv_read_start); each chunk is
 * sent with uv_try_write, and only what the socket did not take is copied
 * into a uv_write request (so the common case allocates nothing).
 */
#include "libuv_echo.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#define ECHO_READ_BUF (64 * 1024)
#define ECHO_HIGH_WATER (1024 * 1024)

typedef struct {
  uv_tcp_t tcp;
  int reading; /* 1 while uv_read_start is in effect */
} conn_t;

typedef struct {
  uv_write_t req;
  uv_buf_t buf; /* owns buf.base */
} pending_t;

static char g_buf[ECHO_READ_BUF];
static int g_buf_busy;

static void on_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* out) {
  (void)h;
  (void)suggested;
  /* Single-threaded and every chunk is consumed inside on_read, so one
   * buffer serves every connection. */
  if (g_buf_busy) {
    out->base = NULL;
    out->len = 0;
    return;
  }
  g_buf_busy = 1;
  out->base = g_buf;
  out->len = sizeof g_buf;
}

static void on_close(uv_handle_t* h) { free(h); }

static void close_conn(conn_t* c) {
  if (!uv_is_closing((uv_handle_t*)&c->tcp)) uv_close((uv_handle_t*)&c->tcp, on_close);
}

static void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf);

static void on_write(uv_write_t* req, int status) {
  pending_t* p = (pending_t*)req;
  conn_t* c = (conn_t*)req->handle;
  free(p->buf.base);
  free(p);
  if (status < 0) {
    close_conn(c);
    return;
  }
  if (!c->reading && !uv_is_closing((uv_handle_t*)&c->tcp) &&
      uv_stream_get_write_queue_size((uv_stream_t*)&c->tcp) <= ECHO_HIGH_WATER) {
    if (uv_read_start((uv_stream_t*)&c->tcp, on_alloc, on_read) == 0) c->reading = 1;
  }
}

static void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
  conn_t* c = (conn_t*)s;
  if (buf->base == g_buf) g_buf_busy = 0; /* consumed below, before returning */
  if (n == 0) return;                    /* EAGAIN */
  if (n < 0) {                           /* UV_EOF or an error */
    close_conn(c);
    return;
  }
  uv_buf_t out = uv_buf_init(buf->base, (unsigned)n);
  int sent = 0;
  /* Only try the fast path when nothing is queued (keeps byte order). */
  if (uv_stream_get_write_queue_size(s) == 0) {
    sent = uv_try_write(s, &out, 1);
    if (sent == UV_EAGAIN) sent = 0;
    if (sent < 0) {
      close_conn(c);
      return;
    }
  }
  if ((size_t)sent < (size_t)n) {
    pending_t* p = malloc(sizeof *p);
    char* copy = malloc((size_t)n - (size_t)sent);
    if (p == NULL || copy == NULL) {
      free(p);
      free(copy);
      close_conn(c);
      return;
    }
    memcpy(copy, buf->base + sent, (size_t)n - (size_t)sent);
    p->buf = uv_buf_init(copy, (unsigned)((size_t)n - (size_t)sent));
    if (uv_write(&p->req, s, &p->buf, 1, on_write) != 0) {
      free(copy);
      free(p);
      close_conn(c);
      return;
    }
    if (uv_stream_get_write_queue_size(s) > ECHO_HIGH_WATER) {
      uv_read_stop(s);
      c->reading = 0;
    }
  }
}

static void on_connection(uv_stream_t* server, int status) {
  if (status < 0) return;
  conn_t* c = calloc(1, sizeof *c);
  if (c == NULL) return;
  uv_tcp_init(server->loop, &c->tcp);
  if (uv_accept(server, (uv_stream_t*)&c->tcp) != 0) {
    close_conn(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  if (uv_read_start((uv_stream_t*)&c->tcp, on_alloc, on_read) == 0) c->reading = 1;
}

int libuv_echo_serve(int port, void (*on_listening)(int port, void* arg), void* arg) {
  uv_loop_t loop;
  uv_tcp_t server;
  struct sockaddr_in addr;
  int r;
  /* libuv writes with write(2): a peer that reset would raise SIGPIPE. */
  signal(SIGPIPE, SIG_IGN);
  if ((r = uv_loop_init(&loop)) != 0) goto fail;
  uv_tcp_init(&loop, &server);
  uv_ip4_addr("127.0.0.1", port, &addr);
  if ((r = uv_tcp_bind(&server, (const struct sockaddr*)&addr, 0)) != 0) goto fail;
  if ((r = uv_listen((uv_stream_t*)&server, 1024, on_connection)) != 0) goto fail;
  {
    struct sockaddr_storage ss;
    int len = sizeof ss;
    uv_tcp_getsockname(&server, (struct sockaddr*)&ss, &len);
    on_listening(ntohs(((struct sockaddr_in*)&ss)->sin_port), arg);
  }
  return uv_run(&loop, UV_RUN_DEFAULT);
fail:
  fprintf(stderr, "libuv_echo: %s\n", uv_strerror(r));
  return 1;
}
