// tapegrad::dist from an installed tapegrad, started without mpirun: a world of one.
#include <tapegrad/tapegrad.hpp>

int main() {
  tg::Rng rng(0);
  tg::Linear model(3, 2, rng);
  tg::dist::DistributedDataParallel ddp(model);
  tg::Tensor t = tg::ones({3});
  tg::dist::all_reduce(t, tg::dist::ReduceOp::mean);
  return tg::dist::get_world_size() == 1 && t.data<float>()[0] == 1.0f ? 0 : 1;
}
