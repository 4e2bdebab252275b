#pragma once

/// Everything a user of tapegrad needs.

#include "data/dataset.hpp"
#include "graph/dot.hpp"
#include "graph/gradcheck.hpp"
#include "parallel/parallel.hpp"
#include "graph/rng.hpp"
#include "graph/tensor.hpp"
#include "graph/var.hpp"
#include "graph/xtensor_interop.hpp"
#include "models/models.hpp"
#include "ops/activation.hpp"
#include "ops/arith.hpp"
#include "ops/loss.hpp"
#include "ops/math.hpp"
#include "ops/matmul.hpp"
#include "ops/reduce.hpp"
#include "ops/shape_ops.hpp"
#include "optim/optim.hpp"
