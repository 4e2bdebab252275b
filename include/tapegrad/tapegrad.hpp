#pragma once

/// Everything a user of tapegrad needs. The xtensor interop (tg::from_xarray,
/// tg::to_xarray) is not included: it pulls xtensor into every file that includes this one
/// and nearly doubles its parse time; include "graph/xtensor_interop.hpp" where you use it.

#include "data/dataset.hpp"
#include "data/sampler.hpp"
#include "data/words.hpp"
#include "graph/dot.hpp"
#include "graph/forward_ad.hpp"
#include "graph/gradcheck.hpp"
#include "graph/rng.hpp"
#include "graph/tensor.hpp"
#include "graph/var.hpp"
#include "models/models.hpp"
#include "ops/activation.hpp"
#include "ops/arith.hpp"
#include "ops/attention.hpp"
#include "ops/compare.hpp"
#include "ops/conv.hpp"
#include "ops/dropout.hpp"
#include "ops/index.hpp"
#include "ops/linalg.hpp"
#include "ops/loss.hpp"
#include "ops/math.hpp"
#include "ops/matmul.hpp"
#include "ops/norm.hpp"
#include "ops/pool.hpp"
#include "ops/reduce.hpp"
#include "ops/resize.hpp"
#include "ops/shape_ops.hpp"
#include "optim/optim.hpp"
#include "parallel/parallel.hpp"
// tg::dist is built only where MPI is; linking tapegrad::dist defines TAPEGRAD_HAS_DIST.
#ifdef TAPEGRAD_HAS_DIST
#include "tapegrad/dist.hpp"
#endif
