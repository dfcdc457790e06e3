// all.hpp: every public header of the sync module.
#pragma once

#include <spindle/sync/barrier.hpp>
#include <spindle/sync/channel.hpp>
#include <spindle/sync/condition_variable.hpp>
#include <spindle/sync/event.hpp>
#include <spindle/sync/generator.hpp>
#include <spindle/sync/mutex.hpp>
#include <spindle/sync/queue.hpp>
#include <spindle/sync/select.hpp>
#include <spindle/sync/semaphore.hpp>
#include <spindle/sync/shared_mutex.hpp>
#include <spindle/sync/wait_group.hpp>
