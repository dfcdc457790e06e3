// all.hpp: every public header of the runtime module.
#pragma once

#include <spindle/runtime/cancel.hpp>
#include <spindle/runtime/defer.hpp>
#include <spindle/runtime/errors.hpp>
#include <spindle/runtime/fiber_local.hpp>
#include <spindle/runtime/gather.hpp>
#include <spindle/runtime/offload.hpp>
#include <spindle/runtime/options.hpp>
#include <spindle/runtime/runtime.hpp>
#include <spindle/runtime/spawn.hpp>
#include <spindle/runtime/stats.hpp>
#include <spindle/runtime/task_group.hpp>
#include <spindle/runtime/task.hpp>
#include <spindle/runtime/this_fiber.hpp>
#include <spindle/runtime/ticker.hpp>
#include <spindle/runtime/wait_for.hpp>
