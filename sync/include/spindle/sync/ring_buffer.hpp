// ring_buffer.hpp: not for user code; the header is detail/ring_buffer.hpp. This
// forwarding header stays only while queue.hpp includes this path.
#pragma once

#include <spindle/sync/detail/ring_buffer.hpp>
