#include "lipcert/certified_jvp.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <utility>
#include <vector>

#include "double_word.hpp"
#include "lipcert/activation.hpp"
#include "lipcert/linear_ops.hpp"
#include "lipcert/rounding.hpp"

#ifdef LIPCERT_HAVE_QUADMATH
extern "C" {
#include <quadmath.h>
}
#endif

namespace lipcert {

namespace {

template <typename T>
struct Arithmetic;

template <>
struct Arithmetic<long double> {
  static constexpr int bits = std::numeric_limits<long double>::digits;
  static constexpr bool transcendental = true;
  static long double tanh(long double z) { return std::tanh(z); }
  static long double exp(long double z) { return std::exp(z); }
};

#ifdef LIPCERT_HAVE_QUADMATH
template <>
struct Arithmetic<__float128> {
  static constexpr int bits = 113;
  static constexpr bool transcendental = true;
  static __float128 tanh(__float128 z) { return tanhq(z); }
  static __float128 exp(__float128 z) { return expq(z); }
};
#endif

// Double-word arithmetic has no tanh or exp here: it serves piecewise-linear networks only.
template <>
struct Arithmetic<DoubleWord> {
  static constexpr int bits = kDoubleWordBits;
  static constexpr bool transcendental = false;
};

template <typename T>
using Vec = std::vector<T>;

template <typename T>
Eigen::VectorXd to_double(const Vec<T>& x) {
  Eigen::VectorXd d(x.size());
  for (size_t i = 0; i < x.size(); ++i) d(i) = static_cast<double>(x[i]);
  return d;
}

// Above 64 bits, layers above this many multiply-adds share their output elements among threads (each
// element's sum is the same either way): on GLipSDP's MNIST CNN C17-CH32, where long double cannot
// prove the pattern, one evaluation in software quad precision took 15 s on one thread and 8.2 s on
// two. Long double's loops got slower shared (C9-CH16: 0.12 s on one thread, 0.18 s on two).
constexpr double kParallelMultiplyAdds = 1e5;

// y = A x (+ b), the layer's affine map evaluated in T by direct loops.
template <typename T>
Vec<T> affine(const Layer& l, const Vec<T>& x, bool with_bias) {
  const TensorShape& in = l.in_shape;
  const TensorShape& out = l.out_shape;
  Vec<T> y(out.size(), T(0));
  const bool parallel = Arithmetic<T>::bits > 64 && l.multiply_adds() > kParallelMultiplyAdds;
  if (l.kind == LayerKind::Dense) {
#pragma omp parallel for if (parallel) schedule(static)
    for (Eigen::Index i = 0; i < l.weight.rows(); ++i) {
      T s = with_bias ? T(l.bias(i)) : T(0);
      for (Eigen::Index j = 0; j < l.weight.cols(); ++j) s += l.weight(i, j) * x[j];
      y[i] = s;
    }
  } else if (l.kind == LayerKind::Conv2d) {
    const bool full_bias = l.bias.size() == out.size();
#pragma omp parallel for if (parallel) schedule(static)
    for (int o = 0; o < out.channels; ++o)
      for (int i = 0; i < out.height; ++i)
        for (int j = 0; j < out.width; ++j) {
          const int idx = (o * out.height + i) * out.width + j;
          T s = with_bias ? T(full_bias ? l.bias(idx) : l.bias(o)) : T(0);
          for (int c = 0; c < l.in_channels; ++c)
            for (int a = 0; a < l.kernel_h; ++a) {
              const int r = i * l.stride_h + a - l.pad_h;
              if (r < 0 || r >= in.height) continue;
              for (int b = 0; b < l.kernel_w; ++b) {
                const int col = j * l.stride_w + b - l.pad_w;
                if (col < 0 || col >= in.width) continue;
                s += l.weight(o, (c * l.kernel_h + a) * l.kernel_w + b) * x[(c * in.height + r) * in.width + col];
              }
            }
          y[idx] = s;
        }
  } else {  // AvgPool2d
    const double count = l.kernel_h * l.kernel_w;
    for (int c = 0; c < out.channels; ++c)
      for (int i = 0; i < out.height; ++i)
        for (int j = 0; j < out.width; ++j) {
          T s(0.0);
          for (int a = 0; a < l.kernel_h; ++a)
            for (int b = 0; b < l.kernel_w; ++b) s += x[(c * in.height + i * l.stride_h + a) * in.width + j * l.stride_w + b];
          y[(c * out.height + i) * out.width + j] = s / count;
        }
  }
  return y;
}

Eigen::VectorXd abs_apply(const Layer& l, const Eigen::VectorXd& x) {
  return apply_linear(l, x.cwiseAbs(), false, true).col(0);
}

// A double vector of error bounds, inflated so that the double arithmetic that formed it is covered.
Eigen::VectorXd inflate(const Eigen::VectorXd& e, double terms) {
  return (e * (1 + gamma(terms + 8))).array() + 1e-300;
}

template <typename T>
CertifiedDirectional run(const Network& net, const Eigen::Ref<const Eigen::VectorXd>& x,
                         const Eigen::Ref<const Eigen::VectorXd>& v, Norm p, Norm q) {
  const double u = std::ldexp(1.0, -Arithmetic<T>::bits);  // unit roundoff of T
  auto gamma_t = [u](double n) { return n * u / (1 - 2 * n * u); };
  CertifiedDirectional r;
  r.precision_bits = Arithmetic<T>::bits;
  r.pattern_verified = true;
  r.min_margin = std::numeric_limits<double>::infinity();

  Vec<T> z(x.data(), x.data() + x.size()), t(v.data(), v.data() + v.size());
  Eigen::VectorXd ez = Eigen::VectorXd::Zero(x.size()), et = Eigen::VectorXd::Zero(v.size());
  for (const Layer& l : net.layers()) {
    if (l.is_affine()) {
      const double k = l.inner_length() + 1;
      const Eigen::VectorXd zd = to_double(z), td = to_double(t);
      const Eigen::VectorXd mag_z = abs_apply(l, zd) + bias_magnitude(l), mag_t = abs_apply(l, td);
      ez = inflate(mag_z * (2 * gamma_t(k)) + abs_apply(l, ez), k);
      et = inflate(mag_t * (2 * gamma_t(k)) + abs_apply(l, et), k);
      z = affine(l, z, true);
      t = affine(l, t, false);
    } else if (l.kind == LayerKind::MaxMin) {
      // Each pair is kept or swapped: exact in any precision, so only which one needs a proof.
      const size_t half = z.size() / 2;
      for (size_t i = 0; i < half; ++i) {
        const size_t j = i + half;
        const double margin = std::abs(static_cast<double>(z[i] - z[j])) * (1 - 4 * kUnitRoundoff) - (ez(i) + ez(j));
        r.min_margin = std::min(r.min_margin, margin);
        if (!(margin > 0)) r.pattern_verified = false;
        if (z[i] < z[j]) {
          std::swap(z[i], z[j]);
          std::swap(t[i], t[j]);
          std::swap(ez(i), ez(j));
          std::swap(et(i), et(j));
        }
      }
    } else if (l.is_activation()) {
      const double lip = l.activation_lipschitz();
      for (size_t i = 0; i < z.size(); ++i) {
        T d;
        double dd_error = 0.0;  // bound on |computed derivative - exact derivative at the exact z|
        if (l.is_piecewise_linear_activation()) {
          const double margin = std::abs(static_cast<double>(z[i])) * (1 - 4 * kUnitRoundoff) - ez(i);
          r.min_margin = std::min(r.min_margin, margin);
          if (!(margin > 0)) r.pattern_verified = false;
          d = z[i] > 0 ? T(1) : T(l.kind == LayerKind::ReLU ? 0.0 : l.negative_slope);
          z[i] = z[i] * d;
        } else if constexpr (Arithmetic<T>::transcendental) {
          const double bound2 = activation_second_derivative_bound(l);
          T s;
          if (l.kind == LayerKind::Tanh) {
            s = Arithmetic<T>::tanh(z[i]);
            d = T(1) - s * s;
          } else {
            s = z[i] >= 0 ? T(1) / (T(1) + Arithmetic<T>::exp(-z[i])) : Arithmetic<T>::exp(z[i]) / (T(1) + Arithmetic<T>::exp(z[i]));
            d = s * (T(1) - s);
          }
          z[i] = s;
          dd_error = bound2 * ez(i) + 32 * u;
        } else {
          throw std::logic_error("certified_directional_lower: this arithmetic has no tanh or sigmoid");
        }
        const double td_before = std::abs(static_cast<double>(t[i]));
        t[i] = t[i] * d;
        const double dabs = std::abs(static_cast<double>(d));
        et(i) = (dabs + dd_error) * et(i) + dd_error * td_before + 4 * u * std::abs(static_cast<double>(t[i]));
        ez(i) = lip * ez(i) + 32 * u * std::abs(static_cast<double>(z[i]));
      }
      ez = inflate(ez, 4);
      et = inflate(et, 4);
    }
    if (!r.pattern_verified) return r;  // the layers after it cannot help: the caller tries more bits
  }
  // t holds J v in T; its rounding to double adds u_double |t|.
  const Eigen::VectorXd w = to_double(t);
  const Eigen::VectorXd err = inflate(et + w.cwiseAbs() * (2 * kUnitRoundoff), 2);
  const double m = static_cast<double>(w.size()), n = static_cast<double>(v.size());
  const double wq = vector_norm(w, q) * (1 - gamma(m + 4));
  const double eq = vector_norm(err, q) * (1 + gamma(m + 4));
  const double vp = round_up(vector_norm(v, p) * (1 + gamma(n + 4)));
  if (vp > 0) r.lower = std::max(0.0, div_down(sub_down(wq, eq), vp));
  r.error_share = wq > 0 ? eq / wq : 0.0;  // a zero value has nothing to lose
  return r;
}

// A precision is enough when it proves the pattern and its error bound costs the lower bound at most
// this share. Deep tanh/sigmoid networks need the second test: they have no pattern to prove, but
// long double's error bound took 21% of the value at 20 layers of 16 and all of it at 40.
constexpr double kLooseErrorShare = 1e-6;

bool settled(const CertifiedDirectional& r) { return r.pattern_verified && r.error_share <= kLooseErrorShare; }

// The better of two attempts: a proved one over an unproved one, else the larger bound; the later
// attempt where neither is proved (its margin is at the higher precision).
void keep_better(CertifiedDirectional& best, CertifiedDirectional next) {
  if (!best.pattern_verified || (next.pattern_verified && next.lower > best.lower)) best = std::move(next);
}

}  // namespace

CertifiedDirectional certified_directional_lower(const Network& net, const Eigen::Ref<const Eigen::VectorXd>& x,
                                                 const Eigen::Ref<const Eigen::VectorXd>& v, Norm p, Norm q) {
  if (x.size() != net.input_size() || v.size() != net.input_size())
    throw std::invalid_argument("certified_directional_lower: x and v must have the network's input size");
  CertifiedDirectional r = run<long double>(net, x, v, p, q);
  // Double words are 5 times as fast as software binary128 (C17-CH32: 1.5 s against 8.2 s), with 10
  // bits fewer.
  if (!settled(r) && net.is_piecewise_linear()) keep_better(r, run<DoubleWord>(net, x, v, p, q));
#ifdef LIPCERT_HAVE_QUADMATH
  if (!settled(r)) keep_better(r, run<__float128>(net, x, v, p, q));
#endif
  return r;
}

}  // namespace lipcert
