// oscillator.cpp: a small stand-alone simulator, the kind of program that
// `cos sweep` runs over a grid of parameters (see `make demo`).
//
// It integrates a driven, damped oscillator
//
//     m x'' + c x' + k x = sin(omega t),   x(0) = 1, x'(0) = 0
//
// with fourth-order Runge-Kutta, which takes a few milliseconds, and prints
// its result as one JSON line, the last line of its output, which becomes
// the columns of the sweep's results:
//
//     {"peak": 2.04, "energy": 1.97, "zeta": 0.05}
//
// peak is the largest |x| over the second half of the run (the steady-state
// amplitude: it grows as omega nears the resonance sqrt(k/m)), energy the
// mechanical energy at the end, zeta the damping ratio c / (2 sqrt(k m)).
//
// Usage: oscillator [--k K] [--c C] [--m M] [--omega W] [--t T] [--dt DT]
// Bad arguments get a message on stderr and exit status 2.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

struct Model {
  double k = 1, c = 0.1, m = 1, omega = 1;
};

struct State {
  double x, v;
};

// derivative() is (x', v') of the model at time t.
State derivative(const Model& p, double t, State s) {
  return {s.v, (std::sin(p.omega * t) - p.c * s.v - p.k * s.x) / p.m};
}

State rk4_step(const Model& p, double t, State s, double h) {
  State k1 = derivative(p, t, s);
  State k2 = derivative(p, t + h / 2, {s.x + h / 2 * k1.x, s.v + h / 2 * k1.v});
  State k3 = derivative(p, t + h / 2, {s.x + h / 2 * k2.x, s.v + h / 2 * k2.v});
  State k4 = derivative(p, t + h, {s.x + h * k3.x, s.v + h * k3.v});
  return {s.x + h / 6 * (k1.x + 2 * k2.x + 2 * k3.x + k4.x),
          s.v + h / 6 * (k1.v + 2 * k2.v + 2 * k3.v + k4.v)};
}

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "oscillator: %s\nusage: oscillator [--k K] [--c C] [--m M] [--omega W] [--t T] [--dt DT]\n",
               why.c_str());
  std::exit(2);
}

double number(const char* option, const char* text) {
  char* end = nullptr;
  double v = std::strtod(text, &end);
  if (end == text || *end != '\0' || !std::isfinite(v))
    usage(std::string(option) + ": '" + text + "' is not a number");
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  Model p;
  double duration = 40, dt = 1e-3;
  for (int i = 1; i < argc; ++i) {
    const char* opt = argv[i];
    if (i + 1 >= argc) usage(std::string(opt) + " needs a value");
    const char* value = argv[++i];
    if (!std::strcmp(opt, "--k"))
      p.k = number(opt, value);
    else if (!std::strcmp(opt, "--c"))
      p.c = number(opt, value);
    else if (!std::strcmp(opt, "--m"))
      p.m = number(opt, value);
    else if (!std::strcmp(opt, "--omega"))
      p.omega = number(opt, value);
    else if (!std::strcmp(opt, "--t"))
      duration = number(opt, value);
    else if (!std::strcmp(opt, "--dt"))
      dt = number(opt, value);
    else
      usage(std::string("unknown option ") + opt);
  }
  if (p.m <= 0) usage("the mass --m must be positive");
  if (p.k < 0 || p.c < 0) usage("--k and --c must not be negative");
  if (dt <= 0 || duration <= 0 || duration / dt > 1e8)
    usage("--t and --dt must be positive, with at most 1e8 steps");

  State s{1, 0};
  double peak = 0;
  long steps = std::lround(duration / dt);
  for (long i = 0; i < steps; ++i) {
    double t = static_cast<double>(i) * dt;
    s = rk4_step(p, t, s, dt);
    if (t >= duration / 2) peak = std::fmax(peak, std::fabs(s.x));
  }
  double energy = 0.5 * p.m * s.v * s.v + 0.5 * p.k * s.x * s.x;
  double zeta = p.k > 0 ? p.c / (2 * std::sqrt(p.k * p.m)) : INFINITY;
  std::printf("{\"peak\": %.6g, \"energy\": %.6g, \"zeta\": %.4g}\n", peak, energy,
              std::isfinite(zeta) ? zeta : -1);
  return 0;
}
