/* libuv_echo.h: the raw single-threaded libuv C echo server of BENCHMARKS.md
 * echo64 (libuv_echo.c). */
#ifndef SPINDLE_BENCH_LIBUV_ECHO_H
#define SPINDLE_BENCH_LIBUV_ECHO_H

#ifdef __cplusplus
extern "C" {
#endif

/* libuv_echo_serve: listens on 127.0.0.1:port (0: any free port), calls
 * on_listening(actual_port, arg) once, then serves on the calling thread
 * until the process is killed. Returns non-zero (after a message on
 * stderr) if the socket cannot be set up. */
int libuv_echo_serve(int port, void (*on_listening)(int port, void* arg), void* arg);

#ifdef __cplusplus
}
#endif

#endif
