// all.hpp: every public http header. Not part of <spindle/io/all.hpp>:
// these need nlohmann-json's headers at the user's compile (json_fwd.hpp),
// which the rest of spindle does not (docs/http.md "Layout").
#pragma once

#include <spindle/io/http/client.hpp>
#include <spindle/io/http/error.hpp>
#include <spindle/io/http/message.hpp>
#include <spindle/io/http/server.hpp>
#include <spindle/io/http/static_files.hpp>
#include <spindle/io/http/url.hpp>
#include <spindle/io/http/websocket.hpp>
