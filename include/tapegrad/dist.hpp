#pragma once

/// tg::dist (docs/distributed.md): collectives over MPI and DistributedDataParallel. Part of
/// the library tapegrad::dist, built only where CMake finds MPI.

#include "dist/ddp.hpp"
#include "dist/dist.hpp"
#include "dist/zero.hpp"
