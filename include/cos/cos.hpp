// cos.hpp: the whole public API of cos (namespace coop).
#pragma once

#include <cos/dispatch.hpp>
#include <cos/errors.hpp>
#include <cos/ids.hpp>
#include <cos/init.hpp>
#include <cos/job.hpp>
#include <cos/object.hpp>
#include <cos/join.hpp>
#include <cos/mpi_vm.hpp>
#include <cos/outcome.hpp>
#include <cos/process_vm.hpp>
#include <cos/progress.hpp>
#include <cos/remote.hpp>
#include <cos/scheduler.hpp>
#include <cos/spawner.hpp>
#include <cos/spawn.hpp>
#include <cos/spawn_options.hpp>
#include <cos/storage.hpp>
#include <cos/stream.hpp>
#include <cos/task.hpp>
#include <cos/thread_vm.hpp>
#include <cos/timing.hpp>
#include <cos/vm.hpp>
#include <cos/wait.hpp>
