// world.cpp — process start-up (MPI or one rank), the world group, the timeout, finish().
#include "dist/world.h"

#include <mpi.h>

#include <cstdlib>
#include <cstring>
#include <mutex>

#include "dist/mpi_group.h"

namespace mox::dist {

namespace {

struct Runtime {
  std::shared_ptr<ProcessGroup> world;
  bool mpi = false;        // MPI_Init was called by us
  int local_rank = 0;
  double timeout = 600.0;
};

Runtime& runtime() {
  static Runtime r;
  return r;
}

double timeout_from_env() {
  const char* v = std::getenv("MOX_DIST_TIMEOUT");
  if (!v || !*v) return 600.0;
  char* end = nullptr;
  const double s = std::strtod(v, &end);
  MOX_CHECK(end && *end == '\0' && s > 0 && s < 1e9, "MOX_DIST_TIMEOUT='", v,
            "' must be a positive number of seconds (the collective timeout)");
  return s;
}

}  // namespace

bool launched_by_mpirun() {
  return std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr || std::getenv("PMIX_RANK") != nullptr ||
         std::getenv("PMI_RANK") != nullptr;
}

ProcessGroup& init() {
  Runtime& r = runtime();
  if (r.world) return *r.world;
  r.timeout = timeout_from_env();
  if (!launched_by_mpirun()) {
    r.world = make_self_group("world");
    return *r.world;
  }
  int already = 0;
  MPI_Initialized(&already);
  if (!already) {
    int provided = 0;
    MOX_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided) == MPI_SUCCESS,
              "dist::init: MPI_Init_thread failed");
    r.mpi = true;
  }
  MPI_Comm node;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
  MPI_Comm_rank(node, &r.local_rank);
  MPI_Comm_free(&node);
  r.world = make_mpi_world();
  return *r.world;
}

bool initialized() { return runtime().world != nullptr; }

ProcessGroup& world() { return *world_ptr(); }

std::shared_ptr<ProcessGroup> world_ptr() {
  MOX_CHECK(runtime().world != nullptr, "dist: the distributed runtime is not started; call mox::dist::init() first");
  return runtime().world;
}

int local_rank() { return runtime().local_rank; }

double timeout_seconds() { return runtime().timeout; }

void set_timeout_seconds(double seconds) {
  MOX_CHECK(seconds > 0, "dist: the collective timeout must be positive, got ", seconds, " s");
  runtime().timeout = seconds;
}

int finish(int code) {
  Runtime& r = runtime();
  if (!r.mpi) return code;
  if (code != 0 && r.world && r.world->size() > 1) MPI_Abort(MPI_COMM_WORLD, code);
  r.world.reset();
  MPI_Finalize();
  r.mpi = false;
  return code;
}

}  // namespace mox::dist
