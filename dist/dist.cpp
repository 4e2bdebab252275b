// tg::dist: the world from the MPI environment, and the collectives on tensors. Every
// collective is MPI's non-blocking one waited for with a timeout (detail::wait), so a rank
// that died or skipped a collective ends the others' wait with a DistError.

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <thread>
#include <vector>

#include "dist/dist.hpp"
#include "dist/mpi_util.hpp"

namespace tg::dist {

namespace {

static_assert(sizeof(bool) == 1, "bool tensors travel as MPI_C_BOOL");

struct World {
  bool initialized = false;
  bool launched = false;
  bool finalized = false;
  int rank = 0;
  int size = 1;
  int local_rank = 0;
  int local_size = 1;
  double timeout = 1800.0;
  MPI_Comm comm = MPI_COMM_NULL;
  MPI_Op nan_max = MPI_OP_NULL;
  // Open MPI's choice of non-blocking all-reduce algorithm (Note [All-reduce algorithm]):
  // the control variable, when it exists and the user left it at "let libnbc decide".
  bool mpit = false;
  MPI_T_cvar_handle iallreduce_alg = MPI_T_CVAR_HANDLE_NULL;
  // More ranks on this machine than it has hardware threads.
  bool oversubscribed = false;
};

World& world() {
  static World w;
  return w;
}

// Launched by mpirun (Open MPI) or by a PMI / PMIx launcher (srun, hydra).
bool launched_by_env() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"})
    if (std::getenv(v)) return true;
  return false;
}

// MPI_MAX on floats is whatever the implementation's comparison does with NaN; this keeps
// NaN (NaN in gives NaN out).
template <class T>
void nan_max_into(const T* in, T* inout, int n) {
  for (int i = 0; i < n; ++i)
    if (in[i] != in[i] || in[i] > inout[i]) inout[i] = in[i];
}
void nan_max(void* in, void* inout, int* len, MPI_Datatype* type) {
  if (*type == MPI_FLOAT)
    nan_max_into(static_cast<const float*>(in), static_cast<float*>(inout), *len);
  else
    nan_max_into(static_cast<const double*>(in), static_cast<double*>(inout), *len);
}

void on_terminate() {
  const World& w = world();
  std::string what = "unknown exception";
  if (std::exception_ptr e = std::current_exception()) {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      what = ex.what();
    } catch (...) {
    }
  } else {
    what = "std::terminate called";
  }
  std::fprintf(stderr, "tapegrad dist: rank %d of %d: uncaught exception: %s; aborting the job\n",
               w.rank, w.size, what.c_str());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 1);
  std::abort();
}

void finalize_at_exit() { destroy_process_group(); }

// Note [All-reduce algorithm]
// Open MPI runs non-blocking collectives in its libnbc component, whose all-reduce picks
// the binomial tree (reduce to rank 0, then broadcast from it) whenever the buffer is
// in place or there are fewer than 4 ranks. For a large buffer that is the slow choice:
// rank 0 receives and adds every byte while the others wait, then sends every byte back.
// The bandwidth-optimal algorithms split the buffer so that every rank reduces its share:
// the ring (2 (p - 1) steps of 1/p of the buffer) and Rabenseifner's reduce-scatter +
// all-gather (log2 p steps of halving, then doubling sizes), which libnbc itself picks for
// large out-of-place buffers from 4 ranks on. So for buffers of at least 64 KiB (libnbc's
// own threshold) the collectives here select them through libnbc's control variable
// (MPI_T, settable at run time; the value is read when the collective is started): the
// ring below 4 ranks (Rabenseifner needs a power of two and gains nothing over the ring
// at 2), Rabenseifner from 4 on. Measured on 2 ranks sharing memory, 0.94 MB of f32: 0.11
// ms binomial, 0.05 to 0.08 ms ring. Every rank takes the same decision (from the size
// and the world size), as MPI requires. A user who set the variable
// (`--mca coll_libnbc_iallreduce_algorithm N`) keeps their choice; with another MPI, or
// an Open MPI without the variable, nothing is changed.
constexpr int64_t kLargeAllReduceBytes = 64 * 1024;

void find_iallreduce_algorithm(World& w) {
  int provided = 0;
  if (MPI_T_init_thread(MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) return;
  w.mpit = true;
  int index = -1, count = 0, value = -1;
  MPI_T_cvar_handle h = MPI_T_CVAR_HANDLE_NULL;
  if (MPI_T_cvar_get_index("coll_libnbc_iallreduce_algorithm", &index) != MPI_SUCCESS ||
      MPI_T_cvar_handle_alloc(index, nullptr, &h, &count) != MPI_SUCCESS)
    return;
  if (count == 1 && MPI_T_cvar_read(h, &value) == MPI_SUCCESS && value == 0)
    w.iallreduce_alg = h;
  else
    MPI_T_cvar_handle_free(&h);
}

// Sets libnbc's all-reduce algorithm for one collective and puts "decide" back after it.
class AlgorithmChoice {
 public:
  AlgorithmChoice(int64_t bytes, MPI_Op op) : h_(world().iallreduce_alg) {
    const World& w = world();
    if (h_ == MPI_T_CVAR_HANDLE_NULL || w.size < 2 || bytes < kLargeAllReduceBytes) return;
    int commutative = 0;
    MPI_Op_commutative(op, &commutative);
    if (!commutative) return;
    const int alg = w.size < 4 ? 1 : 3;  // ring; reduce-scatter + all-gather
    set_ = MPI_T_cvar_write(h_, &alg) == MPI_SUCCESS;
  }
  ~AlgorithmChoice() {
    const int decide = 0;
    if (set_) MPI_T_cvar_write(h_, &decide);
  }
  AlgorithmChoice(const AlgorithmChoice&) = delete;
  AlgorithmChoice& operator=(const AlgorithmChoice&) = delete;

 private:
  MPI_T_cvar_handle h_;
  bool set_ = false;
};

}  // namespace

namespace detail {

MPI_Comm comm() { return world().comm; }

MPI_Datatype mpi_type(Dtype d) {
  switch (d) {
    case Dtype::f32:
      return MPI_FLOAT;
    case Dtype::f64:
      return MPI_DOUBLE;
    case Dtype::i64:
      return MPI_INT64_T;
    case Dtype::boolean:
      break;
  }
  return MPI_C_BOOL;
}

std::string where() {
  return "rank " + std::to_string(world().rank) + " of " + std::to_string(world().size);
}

void check(int rc, const char* op) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  throw DistError(std::string(op) + ": MPI error on " + where() + ": " + std::string(text, len));
}

void start_all_reduce(void* data, int64_t numel, Dtype d, MPI_Op op, MPI_Request& req,
                      const char* name) {
  if (numel > INT32_MAX)
    throw DistError(std::string(name) + ": " + std::to_string(numel) +
                    " elements is more than one MPI message holds (2^31 - 1)");
  const AlgorithmChoice choice(numel * static_cast<int64_t>(itemsize(d)), op);
  check(MPI_Iallreduce(MPI_IN_PLACE, data, static_cast<int>(numel), mpi_type(d), op, world().comm,
                       &req),
        name);
}

bool test(MPI_Request& req, const char* op) {
  int done = 0;
  check(MPI_Test(&req, &done, MPI_STATUS_IGNORE), op);
  return done != 0;
}

namespace {
std::string seconds_text(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", s);
  return buf;
}
}  // namespace

void wait(MPI_Request& req, const char* op) {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  const auto limit = std::chrono::duration<double>(world().timeout);
  // Poll without sleeping for the first 20 ms: a non-blocking collective moves one step
  // per MPI_Test on each side, so a rank that sleeps between polls slows every rank's
  // collective (a 2.6 MB all-reduce took 7 ms instead of 0.25 with 50 us naps from the
  // first poll). When this machine has more ranks than cores, each poll yields, leaving
  // the core to an oversubscribed rank; when every rank has a core of its own it polls
  // back to back (a yield is a system call per poll: it made a 0.94 MB all-reduce on 2
  // ranks 8% slower), Open MPI's own rule for mpi_yield_when_idle. After that, a long
  // wait (a rank busy elsewhere) naps between polls instead of burning its core.
  const auto spin = std::chrono::milliseconds(20);
  const bool yield = world().oversubscribed;
  for (;;) {
    if (test(req, op)) return;
    const auto waited = Clock::now() - start;
    if (waited > limit)
      throw DistError(std::string(op) + ": timed out on " + where() + " after " +
                      seconds_text(world().timeout) +
                      " s waiting for the other ranks (one may have died or skipped this "
                      "collective); the job cannot continue");
    if (waited < spin) {
      if (yield) std::this_thread::yield();
    } else
      std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

}  // namespace detail

void init_process_group() {
  World& w = world();
  if (w.initialized) return;
  if (const char* t = std::getenv("TG_DIST_TIMEOUT")) {
    const double s = std::atof(t);
    if (s > 0) w.timeout = s;
  }
  w.launched = launched_by_env();
  if (w.launched) {
    int already = 0;
    MPI_Initialized(&already);
    int provided = 0;
    if (!already) {
      // SERIALIZED, not FUNNELED: the MPI calls run on whichever thread runs backward (its
      // hooks), one thread at a time, which need not be the thread that initialized MPI.
      MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided);
      std::atexit(finalize_at_exit);
    } else {
      MPI_Query_thread(&provided);
    }
    if (provided < MPI_THREAD_SERIALIZED)
      throw DistError("init_process_group: MPI provides thread level " + std::to_string(provided) +
                      ", below MPI_THREAD_SERIALIZED (" + std::to_string(MPI_THREAD_SERIALIZED) +
                      "), which tapegrad needs: MPI is called from the thread that runs "
                      "backward, one thread at a time");
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    detail::check(MPI_Comm_dup(MPI_COMM_WORLD, &w.comm), "init_process_group");
    MPI_Comm_set_errhandler(w.comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(w.comm, &w.rank);
    MPI_Comm_size(w.comm, &w.size);
    MPI_Comm node;
    detail::check(MPI_Comm_split_type(w.comm, MPI_COMM_TYPE_SHARED, w.rank, MPI_INFO_NULL, &node),
                  "init_process_group");
    MPI_Comm_rank(node, &w.local_rank);
    MPI_Comm_size(node, &w.local_size);
    const unsigned cores = std::thread::hardware_concurrency();
    w.oversubscribed = cores == 0 || static_cast<unsigned>(w.local_size) > cores;
    MPI_Comm_free(&node);
    MPI_Op_create(nan_max, 1, &w.nan_max);
    find_iallreduce_algorithm(w);
    std::set_terminate(on_terminate);
  }
  w.initialized = true;
}

namespace {
// The world, joined first.
const World& joined() {
  init_process_group();
  return world();
}
}  // namespace

bool is_initialized() { return world().initialized; }
bool is_launched() { return joined().launched; }
int get_rank() { return joined().rank; }
int get_world_size() { return joined().size; }
int get_local_rank() { return joined().local_rank; }
int get_local_world_size() { return joined().local_size; }

void set_timeout(double seconds) {
  if (!(seconds > 0))
    throw Error("set_timeout: the timeout must be positive, got " + std::to_string(seconds));
  world().timeout = seconds;
}
double get_timeout() { return world().timeout; }

namespace {

// A launched world that is still usable, or a DistError naming `op`.
bool use_mpi(const char* op) {
  init_process_group();
  const World& w = world();
  if (w.finalized) throw DistError(std::string(op) + ": called after destroy_process_group");
  return w.launched;
}

int count_of(const Tensor& t, const char* op) {
  if (t.numel() > INT32_MAX)
    throw DistError(std::string(op) + ": " + std::to_string(t.numel()) +
                    " elements is more than one MPI message holds (2^31 - 1)");
  return static_cast<int>(t.numel());
}

}  // namespace

void all_reduce(Tensor& t, ReduceOp op) {
  const Dtype d = t.dtype();
  if (op == ReduceOp::mean && !is_floating(d))
    throw DtypeError("all_reduce: mean needs a floating tensor, got " + std::string(dtype_name(d)));
  if (!use_mpi("all_reduce")) return;  // a world of one: the reduction of one tensor is itself
  MPI_Op mop = MPI_SUM;
  if (d == Dtype::boolean)
    mop = MPI_LOR;
  else if (op == ReduceOp::max)
    mop = is_floating(d) ? world().nan_max : MPI_MAX;
  MPI_Request req;
  detail::start_all_reduce(t.raw_data(), t.numel(), d, mop, req, "all_reduce");
  detail::wait(req, "all_reduce");
  if (op == ReduceOp::mean) {
    const double s = 1.0 / world().size;
    dispatch(d, "all_reduce", [&]<class T>() {
      T* p = t.data<T>();
      for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<T>(p[i] * s);
    });
  }
  t.bump_version();
}

void broadcast(Tensor& t, int src) {
  init_process_group();
  if (src < 0 || src >= world().size)
    throw IndexError("broadcast: src " + std::to_string(src) + " is not a rank of a world of " +
                     std::to_string(world().size));
  if (!use_mpi("broadcast")) return;
  MPI_Request req;
  void* buf = t.numel() ? t.raw_data() : nullptr;
  detail::check(MPI_Ibcast(buf, count_of(t, "broadcast"), detail::mpi_type(t.dtype()), src,
                           world().comm, &req),
                "broadcast");
  detail::wait(req, "broadcast");
  if (world().rank != src) t.bump_version();
}

std::vector<Tensor> all_gather(const Tensor& t) {
  std::vector<Tensor> out;
  if (!use_mpi("all_gather")) {
    out.push_back(t.clone());
    return out;
  }
  const int n = count_of(t, "all_gather");
  const size_t bytes = t.nbytes();
  std::vector<unsigned char> all(bytes * world().size + 1);
  MPI_Request req;
  detail::check(MPI_Iallgather(t.raw_data(), n, detail::mpi_type(t.dtype()), all.data(), n,
                               detail::mpi_type(t.dtype()), world().comm, &req),
                "all_gather");
  detail::wait(req, "all_gather");
  for (int r = 0; r < world().size; ++r) {
    Tensor piece = Tensor::empty(t.shape(), t.dtype());
    if (bytes) std::memcpy(piece.raw_data(), all.data() + bytes * r, bytes);
    out.push_back(std::move(piece));
  }
  return out;
}

void barrier() {
  if (!use_mpi("barrier")) return;
  MPI_Request req;
  detail::check(MPI_Ibarrier(world().comm, &req), "barrier");
  detail::wait(req, "barrier");
}

void abort(int code) {
  init_process_group();
  std::fflush(stdout);
  std::fflush(stderr);
  if (world().launched && !world().finalized) MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

void destroy_process_group() {
  World& w = world();
  if (!w.initialized || !w.launched || w.finalized) return;
  w.finalized = true;
  int already = 0;
  MPI_Finalized(&already);
  if (already) return;
  if (w.nan_max != MPI_OP_NULL) MPI_Op_free(&w.nan_max);
  if (w.iallreduce_alg != MPI_T_CVAR_HANDLE_NULL) MPI_T_cvar_handle_free(&w.iallreduce_alg);
  if (w.mpit) MPI_T_finalize();
  MPI_Comm_free(&w.comm);
  MPI_Finalize();
}

namespace {

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

std::string join(const std::vector<std::string>& lines) {
  std::string s;
  for (const auto& l : lines) s += l + "\n";
  return s;
}

}  // namespace

namespace detail {

std::vector<std::string> split_lines(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  for (size_t i = 0; i < s.size(); ++i)
    if (s[i] == '\n') {
      out.push_back(s.substr(start, i - start));
      start = i + 1;
    }
  return out;
}

std::vector<std::string> gather_strings(const std::string& mine, const char* op) {
  Tensor len = Tensor::empty({1}, i64);
  len.data<int64_t>()[0] = static_cast<int64_t>(mine.size());
  std::vector<Tensor> lens = all_gather(len);
  const int p = get_world_size();
  std::vector<int> counts(p), displs(p);
  int total = 0;
  for (int r = 0; r < p; ++r) {
    counts[r] = static_cast<int>(lens[r].data<int64_t>()[0]);
    displs[r] = total;
    total += counts[r];
  }
  std::vector<char> all(total + 1);
  MPI_Request req;
  check(MPI_Iallgatherv(mine.data(), static_cast<int>(mine.size()), MPI_CHAR, all.data(),
                        counts.data(), displs.data(), MPI_CHAR, comm(), &req),
        op);
  detail::wait(req, op);
  std::vector<std::string> out;
  for (int r = 0; r < p; ++r) out.emplace_back(all.data() + displs[r], counts[r]);
  return out;
}

}  // namespace detail

void check_same_across_ranks(const std::string& who, const std::string& what,
                             const std::vector<std::string>& lines) {
  if (!is_launched() || get_world_size() == 1) return;
  const std::string text = join(lines);
  Tensor h = Tensor::empty({1}, i64);
  h.data<int64_t>()[0] = static_cast<int64_t>(fnv1a(text));
  std::vector<Tensor> hashes = all_gather(h);
  int other = -1;
  for (int r = 1; r < static_cast<int>(hashes.size()) && other < 0; ++r)
    if (hashes[r].data<int64_t>()[0] != hashes[0].data<int64_t>()[0]) other = r;
  if (other < 0) return;
  // Every rank saw the same hashes, so every rank takes this branch and the same gather.
  std::vector<std::string> texts = detail::gather_strings(text, "check_same_across_ranks");
  const auto a = detail::split_lines(texts[0]);
  const auto b = detail::split_lines(texts[other]);
  size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  auto line = [](const std::vector<std::string>& v, size_t k) {
    return k < v.size() ? "'" + v[k] + "'" : std::string("nothing more");
  };
  throw MismatchError(who + ": the ranks' " + what + " differ (seen on " + detail::where() +
                      "): entry " + std::to_string(i) + " is " + line(a, i) + " on rank 0 but " +
                      line(b, i) + " on rank " + std::to_string(other) + " (" +
                      std::to_string(a.size()) + " entries on rank 0, " + std::to_string(b.size()) +
                      " on rank " + std::to_string(other) + ")");
}

}  // namespace tg::dist
