// all.hpp: every public io header.
#pragma once

#include <spindle/io/endpoint.hpp>
#include <spindle/io/error.hpp>
#include <spindle/io/fd_stream.hpp>
#include <spindle/io/file.hpp>
#include <spindle/io/fs.hpp>
#include <spindle/io/process.hpp>
#include <spindle/io/signal.hpp>
#include <spindle/io/tcp.hpp>
#include <spindle/io/tls.hpp>
#include <spindle/io/udp.hpp>
