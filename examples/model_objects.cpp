// model_objects.cpp: two stateful models as remote objects (OMUSE's code
// instances): one stepped forward in order while the other is queried.
//
//   model_objects            on worker processes (ProcessVM, 2 slots)
//   model_objects --threads  on worker threads of this process (ThreadVM)
//   model_objects --local    kept in this process (no VM): the same code
//
// Each Oscillator integrates m x'' + c x' + k x = 0 and keeps its state (time,
// position, velocity) on its slot between calls: nothing is sent back and
// forth but the calls' arguments and results. Calls on one object run one at
// a time in the order made, so the twenty step() calls on `fast` are made at
// once and come back in order, while the other object on the other slot
// answers queries meanwhile. The total is near the longer of the two
// objects' work, not the sum.
#include <cos/cos.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace {

struct Params {
  double k = 1, c = 0.1, m = 1;
  template <class Archive> void serialize(Archive& ar) { ar(k, c, m); }
};

// Oscillator is the model: its state lives wherever the object lives.
class Oscillator {
 public:
  explicit Oscillator(Params p) : p_(p) {
    if (p.m <= 0) throw std::invalid_argument("the mass must be positive");
  }
  // step(dt, n) advances n explicit steps of dt and returns the time reached.
  double step(double dt, int n) {
    for (int i = 0; i < n; ++i) {
      double a = (-p_.k * x_ - p_.c * v_) / p_.m;
      v_ += a * dt;
      x_ += v_ * dt;
      t_ += dt;
    }
    return t_;
  }
  double position() const { return x_; }
  double energy() const { return 0.5 * p_.m * v_ * v_ + 0.5 * p_.k * x_ * x_; }

 private:
  Params p_;
  double t_ = 0, x_ = 1, v_ = 0;
};

COS_REMOTE_CLASS(Oscillator, Params);
COS_REMOTE_METHOD(Oscillator, step);
COS_REMOTE_METHOD(Oscillator, position);
COS_REMOTE_METHOD(Oscillator, energy);

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  coop::init(argc, argv);  // in a worker process this serves tasks and never returns
  std::string mode = argc > 1 ? argv[1] : "";
  coop::Options options;
  if (mode == "--threads") {
    options.vm = std::make_shared<coop::ThreadVM>(2);
  } else if (mode.empty()) {
    options.vm = std::make_shared<coop::ProcessVM>(2);
  } else if (mode != "--local") {
    std::fprintf(stderr, "usage: model_objects [--threads | --local]\n");
    return 2;
  }
  coop::run(
      [] {
        auto fast = coop::make_remote<Oscillator>({.remote = true}, Params{.k = 4, .c = 0.2, .m = 1});
        auto slow = coop::make_remote<Oscillator>({.remote = true}, Params{.k = 1, .c = 0.05, .m = 1});
        auto where = [](const auto& o) { return o.host() ? o.host()->name() : std::string("this process"); };
        std::printf("fast model on %s, slow model on %s\n", where(fast).c_str(), where(slow).c_str());

        auto t0 = std::chrono::steady_clock::now();
        // Twenty steps of the fast model, made at once: they run in order.
        std::vector<coop::Task<double>> steps;
        for (int i = 0; i < 20; ++i) steps.push_back(fast.call(&Oscillator::step, 1e-6, 100'000));
        // Meanwhile the slow model advances and is queried, synchronously.
        for (int i = 0; i < 5; ++i) {
          slow.sync(&Oscillator::step, 1e-6, 400'000);
          std::printf("slow model: energy %.4f\n", slow.sync(&Oscillator::energy));
        }
        double previous = 0;
        bool in_order = true;
        for (auto& s : steps) {
          double t = s.join();
          in_order = in_order && t > previous;
          previous = t;
        }
        double x = fast.sync(&Oscillator::position);  // after every step
        std::printf("fast model: 20 steps %s, t = %.2f, x = %.4f\n", in_order ? "in order" : "OUT OF ORDER",
                    previous, x);
        std::printf("both models: wall %.2f s\n", seconds_since(t0));

        // Closing an object frees its slot (the destructor would too); a
        // constructor that throws makes make_remote throw.
        fast.close();
        try {
          coop::make_remote<Oscillator>({.remote = true}, Params{.m = 0});
        } catch (const std::exception& e) {
          std::printf("a bad model is refused: %s\n", e.what());
        }
      },
      std::move(options));
}
