#pragma once

/// Modules, layers, initializers, checkpoints and diagnostics.

#include "models/activations.hpp"
#include "models/attention.hpp"
#include "models/checkpoint.hpp"
#include "models/cnn_layers.hpp"
#include "models/diagnostics.hpp"
#include "models/func.hpp"
#include "models/grad_checkpoint.hpp"
#include "models/init.hpp"
#include "models/layers.hpp"
#include "models/module.hpp"
#include "models/npz.hpp"
#include "models/rnn.hpp"
#include "models/sequential.hpp"
#include "models/warning.hpp"
