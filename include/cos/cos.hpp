// cos.hpp: the whole public API of cos (namespace coop).
#pragma once

#include <cos/errors.hpp>
#include <cos/ids.hpp>
#include <cos/join.hpp>
#include <cos/scheduler.hpp>
#include <cos/spawn.hpp>
#include <cos/task.hpp>
#include <cos/timing.hpp>
