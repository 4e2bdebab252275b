#pragma once

/// Optimizers, learning-rate schedulers and gradient clipping.

#include "optim/adagrad.hpp"
#include "optim/adam.hpp"
#include "optim/adamw.hpp"
#include "optim/clip.hpp"
#include "optim/optimizer.hpp"
#include "optim/rmsprop.hpp"
#include "optim/scheduler.hpp"
#include "optim/sgd.hpp"
