// wait_queue.hpp: not for user code; the header is detail/wait_queue.hpp. This
// forwarding header stays only while queue.hpp includes this path.
#pragma once

#include <spindle/sync/detail/wait_queue.hpp>
