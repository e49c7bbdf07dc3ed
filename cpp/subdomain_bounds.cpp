#include "lipcert/subdomain_bounds.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <stdexcept>

#include "lipcert/linear_ops.hpp"
#include "lipcert/rounding.hpp"

namespace lipcert {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

Eigen::VectorXd round_up_all(const Eigen::VectorXd& x) { return x.unaryExpr([](double v) { return round_up(v); }); }

// Certified interval image of [lo, hi] under the affine layer, in midpoint-radius form: the exact
// image lies in [c' - r', c' + r'] with c' = A c + b, r' = |A| r, widened by the rounding error bound
// gamma_k (|A| |c| + |b| + |A| r) of the computed products.
void affine_interval(const Layer& l, Eigen::VectorXd& lo, Eigen::VectorXd& hi) {
  const Eigen::VectorXd c = lo / 2 + hi / 2;  // halving is exact (barring underflow)
  const Eigen::VectorXd r = round_up_all((hi - c).cwiseMax(c - lo));
  const Eigen::VectorXd center = apply_linear(l, c, true).col(0);
  const Eigen::VectorXd radius = apply_linear(l, r, false, true).col(0);
  const double g = gamma(l.inner_length() + 4);
  const Eigen::VectorXd err = (apply_linear(l, c.cwiseAbs(), false, true).col(0) + bias_magnitude(l) + radius) * g;
  const Eigen::VectorXd width = round_up_all((radius + err) * (1 + 4 * kUnitRoundoff));
  lo = (center - width).unaryExpr([](double v) { return round_down(v); });
  hi = (center + width).unaryExpr([](double v) { return round_up(v); });
}

// The map x -> (current vector) as long as it is affine (no free neuron so far): a x + c, with
// elementwise bounds ea, ec on the rounding errors of a and c.
struct AffinePrefix {
  Eigen::MatrixXd a, ea;
  Eigen::VectorXd c, ec;
  bool exact = true;
  std::vector<Eigen::VectorXd> g_rows, g_error_rows;
  std::vector<double> h, h_error;

  explicit AffinePrefix(Eigen::Index n)
      : a(Eigen::MatrixXd::Identity(n, n)), ea(Eigen::MatrixXd::Zero(n, n)), c(Eigen::VectorXd::Zero(n)),
        ec(Eigen::VectorXd::Zero(n)) {}

  void affine(const Layer& l) {
    const double g = gamma(l.inner_length() + 4);
    ea = (apply_linear(l, ea, false, true) + apply_linear(l, a.cwiseAbs(), false, true) * g) * (1 + g);
    ec = (apply_linear(l, ec, false, true) + (apply_linear(l, c.cwiseAbs(), false, true).col(0) + bias_magnitude(l)) * g) * (1 + g);
    a = apply_linear(l, a, false);
    c = apply_linear(l, c, true).col(0);
  }

  // s (a_i x + c_i) >= 0 as the row (-s a_i) x <= s c_i.
  void constrain(Eigen::Index i, int s) { constrain(*this, i, s); }

  // The same for entry i of another map over the same input (pair_differences's).
  void constrain(const AffinePrefix& map, Eigen::Index i, int s) {
    g_rows.push_back(-s * map.a.row(i).transpose());
    g_error_rows.push_back(map.ea.row(i).transpose());
    h.push_back(s * map.c(i));
    h_error.push_back(map.ec(i));
  }

  // The map x -> (current)_i - (current)_{i + k/2} for i < k/2: MaxMin's pair differences.
  AffinePrefix pair_differences() const {
    const Eigen::Index half = a.rows() / 2;
    AffinePrefix d(a.cols());
    d.a = a.topRows(half) - a.bottomRows(half);
    d.c = c.head(half) - c.tail(half);
    // |fl(u - v) - (u* - v*)| <= u |u - v| + e_u + e_v, the sum rounded up by its factor
    d.ea = ((ea.topRows(half) + ea.bottomRows(half)) + d.a.cwiseAbs() * (2 * kUnitRoundoff)) * (1 + 4 * kUnitRoundoff);
    d.ec = ((ec.head(half) + ec.tail(half)) + d.c.cwiseAbs() * (2 * kUnitRoundoff)) * (1 + 4 * kUnitRoundoff);
    return d;
  }

  // MaxMin with every pair decided: pair i's entries change places where mode(i) < 0 (exact).
  void swap_pairs(const Eigen::VectorXd& mode) {
    const Eigen::Index half = a.rows() / 2;
    for (Eigen::Index i = 0; i < half; ++i)
      if (mode(i) < 0) {
        a.row(i).swap(a.row(i + half));
        ea.row(i).swap(ea.row(i + half));
        std::swap(c(i), c(i + half));
        std::swap(ec(i), ec(i + half));
      }
  }

  void scale(const Eigen::VectorXd& d) {
    a = d.asDiagonal() * a;
    c = d.asDiagonal() * c;
    ea = d.cwiseAbs().asDiagonal() * ea + a.cwiseAbs() * (2 * kUnitRoundoff);
    ec = d.cwiseAbs().asDiagonal() * ec + c.cwiseAbs() * (2 * kUnitRoundoff);
  }

  // Intersects [lo, hi] with the certified range of a x + c over the box [box_lo, box_hi].
  void tighten(const Eigen::VectorXd& box_lo, const Eigen::VectorXd& box_hi, Eigen::VectorXd& lo,
               Eigen::VectorXd& hi) const {
    const Eigen::VectorXd xc = box_lo / 2 + box_hi / 2;
    const Eigen::VectorXd xr = round_up_all((box_hi - xc).cwiseMax(xc - box_lo));
    const Eigen::VectorXd center = a * xc + c;
    const Eigen::VectorXd radius = a.cwiseAbs() * xr;
    const double g = gamma(static_cast<double>(a.cols()) + 4);
    // the sum ea (|xc| + xr) has rounding errors of its own: (1 + g) covers them
    const Eigen::VectorXd err = (a.cwiseAbs() * xc.cwiseAbs() + radius + c.cwiseAbs()) * g + ea * (xc.cwiseAbs() + xr) * (1 + g) + ec;
    const Eigen::VectorXd width = round_up_all((radius + err) * (1 + 4 * kUnitRoundoff));
    lo = lo.cwiseMax((center - width).unaryExpr([](double v) { return round_down(v); }));
    hi = hi.cwiseMin((center + width).unaryExpr([](double v) { return round_up(v); }));
  }

  void write_region(SubdomainBound& b) const {
    const Eigen::Index n = a.cols(), m = static_cast<Eigen::Index>(g_rows.size());
    b.region_g.resize(m, n);
    b.region_g_error.resize(m, n);
    b.region_h.resize(m);
    b.region_h_error.resize(m);
    for (Eigen::Index i = 0; i < m; ++i) {
      b.region_g.row(i) = g_rows[i];
      b.region_g_error.row(i) = g_error_rows[i];
      b.region_h(i) = h[i];
      b.region_h_error(i) = h_error[i];
    }
  }
};

// Linear bounds on the activation layers' inputs by backward propagation of linear relaxations
// (CROWN, Zhang et al. 2018): after free neurons the interval bounds wrap with every layer, while
// one linear function of the input over the whole subdomain does not. Every floating-point
// product's error is folded into the constant through the interval bound on the vector it
// multiplies, so each stage restarts from coefficients that are exact as numbers.
class LinearRelaxation {
 public:
  LinearRelaxation(const Network& net, const Eigen::VectorXd& box_lo, const Eigen::VectorXd& box_hi)
      : layers_(net.layers()), box_lo_(box_lo), box_hi_(box_hi), magnitude_(layers_.size()), relaxed_(layers_.size()) {}

  /// Records max |v| of the vector entering the non-activation layer `index`.
  void enter(size_t index, const Eigen::VectorXd& lo, const Eigen::VectorXd& hi) {
    magnitude_[index] = lo.cwiseAbs().cwiseMax(hi.cwiseAbs());
  }

  /// Relaxes the activation at `index` on its final input bounds [lo, hi] (and records them): per neuron, lines with
  /// a_lo z + b_lo <= s(z) <= a_up z + b_up there, with s(z) = z (z >= 0), slope z (z < 0).
  void relax(size_t index, const Eigen::VectorXd& lo, const Eigen::VectorXd& hi, double slope) {
    magnitude_[index] = lo.cwiseAbs().cwiseMax(hi.cwiseAbs());
    Relaxed& r = relaxed_[index];
    const Eigen::Index n = lo.size();
    r.a_up.resize(n), r.b_up.resize(n), r.a_lo.resize(n), r.b_lo.resize(n);
    for (Eigen::Index i = 0; i < n; ++i) {
      const double l = lo(i), u = hi(i);
      r.b_up(i) = r.b_lo(i) = 0.0;
      if (l >= 0) {
        r.a_up(i) = r.a_lo(i) = 1.0;
      } else if (u <= 0) {
        r.a_up(i) = r.a_lo(i) = slope;
      } else {
        // s is convex for slope <= 1 (the chord is above it, any line through 0 with a slope in
        // [slope, 1] below it) and concave otherwise (the other way round). The chord's rounded
        // slope keeps the line above (below) s at both ends, hence on [l, u], by its offset
        // computed from the ends with directed rounding.
        const double chord = (u - slope * l) / (u - l);
        const double tangent = u >= -l ? 1.0 : slope;
        if (slope <= 1.0) {
          r.a_up(i) = chord;
          r.b_up(i) = std::max(round_up(u - mul_down(chord, u)), round_up(mul_up(slope, l) - mul_down(chord, l)));
          r.a_lo(i) = tangent;
        } else {
          r.a_lo(i) = chord;
          r.b_lo(i) = std::min(round_down(u - mul_up(chord, u)), round_down(mul_down(slope, l) - mul_up(chord, l)));
          r.a_up(i) = tangent;
        }
      }
    }
  }

  /// Certified upper bounds of s^T v for each column s of `directions`, v the vector entering layer
  /// `index`, over the subdomain.
  Eigen::VectorXd upper(size_t index, const Eigen::MatrixXd& directions) const {
    Eigen::MatrixXd lam = directions;
    const Eigen::Index k = lam.cols();
    Eigen::VectorXd constant = Eigen::VectorXd::Zero(k), magnitude = Eigen::VectorXd::Zero(k),
                    folded = Eigen::VectorXd::Zero(k);
    double terms = 0;  // length of the longest chain of additions into constant
    for (size_t j = index; j-- > 0;) {
      const Layer& l = layers_[j];
      if (l.is_affine()) {
        // s^T (A v + b) = (A^T s)^T v + s^T b; |A^T s - fl(A^T s)| <= g |A|^T |s|
        const double g = gamma(l.out_shape.size() + 2);
        const Eigen::MatrixXd abs_lam = lam.cwiseAbs();
        const Eigen::VectorXd b = bias_vector(l);
        constant += lam.transpose() * b;
        magnitude += abs_lam.transpose() * b.cwiseAbs();
        folded += (apply_linear_transpose(l, abs_lam, true) * (2 * g)).transpose() * magnitude_[j];
        lam = apply_linear_transpose(l, lam);
        terms += l.out_shape.size() + 1;
      } else if (l.is_activation()) {
        const Relaxed& r = relaxed_[j];
        for (Eigen::Index c = 0; c < k; ++c)
          for (Eigen::Index i = 0; i < lam.rows(); ++i) {
            const double s = lam(i, c);
            const double a = s >= 0 ? r.a_up(i) : r.a_lo(i), b = s >= 0 ? r.b_up(i) : r.b_lo(i);
            constant(c) += s * b;
            magnitude(c) += std::abs(s * b);
            lam(i, c) = s * a;
            folded(c) += 2 * kUnitRoundoff * std::abs(lam(i, c)) * magnitude_[j](i);
          }
        terms += lam.rows() + 1;
      }
    }
    // the input box: s^T x <= s^T xc + |s|^T xr
    const Eigen::VectorXd xc = box_lo_ / 2 + box_hi_ / 2;
    const Eigen::VectorXd xr = (box_hi_ - xc).cwiseMax(xc - box_lo_).unaryExpr([](double v) { return round_up(v); });
    const Eigen::MatrixXd abs_lam = lam.cwiseAbs();
    const Eigen::VectorXd radius = abs_lam.transpose() * xr;
    const Eigen::VectorXd value = constant + lam.transpose() * xc + radius;
    magnitude += abs_lam.transpose() * xc.cwiseAbs() + radius;
    terms += lam.rows() + 4;
    const double g = gamma(2 * terms + 8);
    Eigen::VectorXd result(k);
    for (Eigen::Index c = 0; c < k; ++c)
      result(c) = round_up(value(c) + (magnitude(c) * g + folded(c)) * (1 + g) + std::abs(value(c)) * (2 * kUnitRoundoff));
    return result;
  }

 private:
  struct Relaxed {
    Eigen::VectorXd a_up, b_up, a_lo, b_lo;
  };
  const std::vector<Layer>& layers_;
  const Eigen::VectorXd &box_lo_, &box_hi_;
  std::vector<Eigen::VectorXd> magnitude_;
  std::vector<Relaxed> relaxed_;
};

// One MaxMin layer over a subdomain: pair i is element a = i with b = i + n/2, and its state
// (*states)[i] (the second half of the states is unused) is +1 for kept (a >= b: max a, min b),
// -1 for swapped (a <= b), 0 free. [lo, hi] goes in as the pairs' bounds and comes out as the
// layer's output bounds (max and min are exact in floating point); the bounds of a - b over the box
// come from the exact affine map where there is one. Per pair, mode(i) is +1 kept, -1 swapped or
// 0 free, and for a free pair the Jacobian block's entries lie in [0, 1]: radius(i) = 1/2 and
// difference_width(i) the width of the bounds of a - b (its branching score).
void bound_maxmin(const NeuronStates* states, const Subdomain& sub, bool bounded, AffinePrefix& prefix,
                  Eigen::VectorXd& lo, Eigen::VectorXd& hi, SubdomainBound& result, Eigen::VectorXd& mode,
                  Eigen::VectorXd& radius, Eigen::VectorXd& difference_width) {
  const Eigen::Index n = lo.size(), half = n / 2;
  Eigen::VectorXd dl(half), du(half);
  for (Eigen::Index i = 0; i < half; ++i) {
    dl(i) = round_down(lo(i) - hi(i + half));
    du(i) = round_up(hi(i) - lo(i + half));
  }
  std::optional<AffinePrefix> differences;
  if (prefix.exact) {
    differences = prefix.pair_differences();
    if (bounded) differences->tighten(sub.lower, sub.upper, dl, du);
  }
  mode = Eigen::VectorXd::Zero(n);
  radius = Eigen::VectorXd::Zero(n);
  difference_width = Eigen::VectorXd::Zero(n);
  for (Eigen::Index i = 0; i < half; ++i) {
    const Eigen::Index j = i + half;
    const int s = states ? (*states)[i] : 0;
    if (states && (*states)[j] != 0)
      throw std::invalid_argument("bound_subdomain: a MaxMin layer's states are one per pair (its first half)");
    if (s > 0) dl(i) = std::max(dl(i), 0.0);
    if (s < 0) du(i) = std::min(du(i), 0.0);
    const bool kept = s > 0 || dl(i) > 0, swapped = s < 0 || du(i) < 0;
    if (dl(i) > du(i) || (kept && swapped)) result.feasible = false;
    if (kept) lo(i) = std::max(lo(i), lo(j)), hi(j) = std::min(hi(j), hi(i));
    if (swapped) lo(j) = std::max(lo(j), lo(i)), hi(i) = std::min(hi(i), hi(j));
    if (lo(i) > hi(i) || lo(j) > hi(j)) result.feasible = false;
    mode(i) = kept ? 1.0 : swapped ? -1.0 : 0.0;
    if (mode(i) == 0.0) radius(i) = 0.5, difference_width(i) = std::isfinite(du(i) - dl(i)) ? du(i) - dl(i) : 1.0;
  }
  result.pre_lower.push_back(lo);
  result.pre_upper.push_back(hi);
  for (Eigen::Index i = 0; i < half; ++i) {
    const Eigen::Index j = i + half;
    const double li = lo(i), hi_i = hi(i), lj = lo(j), hj = hi(j);
    if (mode(i) < 0) {
      lo(i) = lj, hi(i) = hj, lo(j) = li, hi(j) = hi_i;
    } else if (mode(i) == 0) {
      lo(i) = std::max(li, lj), hi(i) = std::max(hi_i, hj), lo(j) = std::min(li, lj), hi(j) = std::min(hi_i, hj);
    }
  }
  if (prefix.exact) {
    if (states)
      for (Eigen::Index i = 0; i < half; ++i)
        if ((*states)[i] != 0) prefix.constrain(*differences, i, (*states)[i]);
    if (radius.maxCoeff() == 0.0) prefix.swap_pairs(mode);
    else prefix.exact = false;
  }
}

// (c +- r) times a derivative in (dm +- dr), enclosed again in midpoint-radius form. A fixed
// derivative scales exactly: c dm +- (r |dm| + |c dm| 2u). A free one takes the hull of the four
// endpoint products: midpoint-radius multiplication, c dm +- (|c| dr + r (|dm| + dr)), is looser and
// its excess compounds layer after layer ([0, 1] times [c - r, c + r] with c > r is [0, c + r],
// where that formula gives [-r, c + r]).
void multiply_interval(double& c, double& r, double dm, double dr) {
  if (dr == 0.0) {
    r = (r * std::abs(dm) + std::abs(c * dm) * (2 * kUnitRoundoff)) * (1 + 4 * kUnitRoundoff);
    c *= dm;
    return;
  }
  const double lo = round_down(c - r), hi = round_up(c + r), d_lo = round_down(dm - dr), d_hi = round_up(dm + dr);
  if (!std::isfinite(lo) || !std::isfinite(hi)) {  // an overflow: 0 times it would be NaN
    c = 0.0;
    r = std::numeric_limits<double>::infinity();
    return;
  }
  const double low = std::min(std::min(mul_down(lo, d_lo), mul_down(lo, d_hi)), std::min(mul_down(hi, d_lo), mul_down(hi, d_hi)));
  const double high = std::max(std::max(mul_up(lo, d_lo), mul_up(lo, d_hi)), std::max(mul_up(hi, d_lo), mul_up(hi, d_hi)));
  c = low / 2 + high / 2;
  r = std::max(round_up(high - c), round_up(c - low));
}

}  // namespace

SubdomainBound bound_subdomain(const Network& net, const Subdomain& sub, Norm p, Norm q, bool linear_relaxation) {
  const int n = net.input_size();
  if (sub.lower.size() != n || sub.upper.size() != n)
    throw std::invalid_argument("bound_subdomain: the box must have the network's input size");
  SubdomainBound result;
  const bool bounded = sub.lower.allFinite() && sub.upper.allFinite();
  Eigen::VectorXd lo = bounded ? sub.lower : Eigen::VectorXd::Constant(n, -kInf);
  Eigen::VectorXd hi = bounded ? sub.upper : Eigen::VectorXd::Constant(n, kInf);
  if ((lo.array() > hi.array()).any()) {
    result.feasible = false;
    return result;
  }
  // Forward: interval bounds and the derivative interval [d_mid - d_rad, d_mid + d_rad] per neuron.
  std::vector<Eigen::VectorXd> d_mid, d_rad;
  std::vector<Eigen::VectorXd> difference_width;  // per activation layer; MaxMin layers' only
  AffinePrefix prefix(n);
  // The linear relaxation is of elementwise activations only: with MaxMin, interval bounds.
  const bool has_maxmin = std::any_of(net.layers().begin(), net.layers().end(),
                                      [](const Layer& l) { return l.kind == LayerKind::MaxMin; });
  const bool relaxing = linear_relaxation && bounded && !has_maxmin;
  LinearRelaxation relaxation(net, sub.lower, sub.upper);
  int act = 0;
  for (size_t index = 0; index < net.layers().size(); ++index) {
    const Layer& l = net.layers()[index];
    if (relaxing && !l.is_activation()) relaxation.enter(index, lo, hi);
    if (l.is_affine()) {
      if (bounded) affine_interval(l, lo, hi);
      else lo = Eigen::VectorXd::Constant(l.out_shape.size(), -kInf), hi = Eigen::VectorXd::Constant(l.out_shape.size(), kInf);
      if (prefix.exact) {
        prefix.affine(l);
        if (bounded) prefix.tighten(sub.lower, sub.upper, lo, hi);
      }
    } else if (l.is_activation()) {
      if (!l.is_piecewise_linear_activation() && l.kind != LayerKind::MaxMin)
        throw std::invalid_argument(std::string("bound_subdomain: ") + layer_kind_name(l.kind) +
                                    " is not a piecewise-linear activation; branch and bound "
                                    "needs ReLU, LeakyReLU or MaxMin");
      const double slope = l.kind == LayerKind::ReLU ? 0.0 : l.negative_slope;
      const NeuronStates* states = act < static_cast<int>(sub.states.size()) && !sub.states[act].empty()
                                       ? &sub.states[act] : nullptr;
      if (states && static_cast<int>(states->size()) != lo.size())
        throw std::invalid_argument("bound_subdomain: activation layer " + std::to_string(act) + " has " +
                                    std::to_string(lo.size()) + " neurons but the assignment has " +
                                    std::to_string(states->size()));
      if (l.kind == LayerKind::MaxMin) {
        Eigen::VectorXd mode, radius, width;
        bound_maxmin(states, sub, bounded, prefix, lo, hi, result, mode, radius, width);
        d_mid.push_back(mode);
        d_rad.push_back(radius);
        difference_width.push_back(width);
        ++act;
        continue;
      }
      difference_width.emplace_back();
      if (relaxing && !prefix.exact) {
        const Eigen::Index k = lo.size();
        Eigen::MatrixXd directions(k, 2 * k);
        directions << Eigen::MatrixXd::Identity(k, k), -Eigen::MatrixXd::Identity(k, k);
        const Eigen::VectorXd bounds = relaxation.upper(index, directions);
        hi = hi.cwiseMin(bounds.head(k));
        lo = lo.cwiseMax(-bounds.tail(k));
      }
      Eigen::VectorXd dm(lo.size()), dr(lo.size());
      for (Eigen::Index i = 0; i < lo.size(); ++i) {
        const int s = states ? (*states)[i] : 0;
        if (s > 0) lo(i) = std::max(lo(i), 0.0);
        if (s < 0) hi(i) = std::min(hi(i), 0.0);
        if (lo(i) > hi(i)) result.feasible = false;
        const DerivativeInterval d = derivative_interval(lo(i), hi(i), s, slope);
        dm(i) = d.mid;
        dr(i) = d.radius;
      }
      result.pre_lower.push_back(lo);
      result.pre_upper.push_back(hi);
      if (relaxing) relaxation.relax(index, lo, hi, slope);
      if (prefix.exact) {
        if (states)
          for (Eigen::Index i = 0; i < lo.size(); ++i)
            if ((*states)[i] != 0) prefix.constrain(i, (*states)[i]);
        if (dr.maxCoeff() == 0.0) prefix.scale(dm);
        else prefix.exact = false;
      }
      d_mid.push_back(dm);
      d_rad.push_back(dr);
      // Image of [lo, hi] under s(z) = z (z >= 0), slope * z (z < 0): the extremes of s over the
      // endpoints and 0 (s need not be monotone: the slope may be negative), rounded outward.
      for (Eigen::Index i = 0; i < lo.size(); ++i) {
        auto s_down = [slope](double z) { return z >= 0 ? z : round_down(slope * z); };
        auto s_up = [slope](double z) { return z >= 0 ? z : round_up(slope * z); };
        double new_lo = std::min(s_down(lo(i)), s_down(hi(i)));
        double new_hi = std::max(s_up(lo(i)), s_up(hi(i)));
        if (lo(i) < 0 && hi(i) > 0) new_lo = std::min(new_lo, 0.0), new_hi = std::max(new_hi, 0.0);
        lo(i) = new_lo;
        hi(i) = new_hi;
      }
      ++act;
    }
  }
  if (!result.feasible) return result;
  prefix.write_region(result);

  // Backward: the transposed Jacobian set {G : |G - C| <= R} (input_size x output_size), starting
  // from the identity at the output.
  const Eigen::Index m = net.output_size();
  Eigen::MatrixXd c = Eigen::MatrixXd::Identity(m, m), r = Eigen::MatrixXd::Zero(m, m);
  for (auto it = net.layers().rbegin(); it != net.layers().rend(); ++it) {
    const Layer& l = *it;
    if (l.is_affine()) {
      const double g = gamma(l.out_shape.size() + 2);  // any transposed inner product has at most this many terms
      const Eigen::MatrixXd abs_r = apply_linear_transpose(l, r, true);
      const Eigen::MatrixXd err = (apply_linear_transpose(l, c.cwiseAbs(), true) + abs_r) * g;
      c = apply_linear_transpose(l, c);
      r = (abs_r + err) * (1 + 4 * kUnitRoundoff);
    } else if (l.kind == LayerKind::MaxMin) {
      // Input row a of the transposed Jacobian is output row max or min (b the other): a free pair's
      // two rows both lie in [(c_max + c_min) / 2 +- (|c_max - c_min| / 2 + max(r_max, r_min))].
      --act;
      const Eigen::VectorXd& mode = d_mid[act];
      const Eigen::Index half = c.rows() / 2;
      for (Eigen::Index i = 0; i < half; ++i) {
        const Eigen::Index j = i + half;
        if (mode(i) < 0) {
          c.row(i).swap(c.row(j));
          r.row(i).swap(r.row(j));
        } else if (mode(i) == 0) {
          const Eigen::RowVectorXd mid = c.row(i) / 2 + c.row(j) / 2;
          const Eigen::RowVectorXd spread =
              (((c.row(i) - c.row(j)).cwiseAbs() / 2 + r.row(i).cwiseMax(r.row(j))) + mid.cwiseAbs() * (2 * kUnitRoundoff)) *
              (1 + 4 * kUnitRoundoff);
          c.row(i) = mid, c.row(j) = mid;
          r.row(i) = spread, r.row(j) = spread;
        }
      }
    } else if (l.is_activation()) {
      --act;
      const Eigen::VectorXd& dm = d_mid[act];
      const Eigen::VectorXd& dr = d_rad[act];
      for (Eigen::Index i = 0; i < c.rows(); ++i)
        for (Eigen::Index j = 0; j < c.cols(); ++j) multiply_interval(c(i, j), r(i, j), dm(i), dr(i));
    }
  }
  result.jacobian_center = c.transpose();
  result.jacobian_radius = r.transpose().unaryExpr([](double v) { return round_up(v); });

  result.norm_upper = jacobian_set_norm_upper(result.jacobian_center, result.jacobian_radius, p, q);
  for (size_t k = 0; k < d_rad.size(); ++k)
    for (Eigen::Index i = 0; i < d_rad[k].size(); ++i)
      if (d_rad[k](i) != 0.0)
        result.unstable.push_back(difference_width[k].size() > 0
                                      ? SubdomainBound::Unstable{static_cast<int>(k), static_cast<int>(i), 0.5 * difference_width[k](i)}
                                      : unstable_neuron(result, static_cast<int>(k), static_cast<int>(i), d_rad[k](i)));
  return result;
}

ExactPreActivations first_free_layer(const Network& net, const Subdomain& sub, const SubdomainBound& b) {
  ExactPreActivations out;
  AffinePrefix prefix(net.input_size());
  int act = 0;
  for (const Layer& l : net.layers()) {
    if (l.is_affine()) {
      prefix.affine(l);
      continue;
    }
    if (!l.is_activation()) continue;
    if (l.kind == LayerKind::MaxMin || act >= static_cast<int>(b.pre_lower.size())) return out;
    const double slope = l.kind == LayerKind::ReLU ? 0.0 : l.negative_slope;
    const NeuronStates* states = act < static_cast<int>(sub.states.size()) && !sub.states[act].empty()
                                     ? &sub.states[act] : nullptr;
    const Eigen::VectorXd& lo = b.pre_lower[act];
    Eigen::VectorXd dm(lo.size());
    bool free = false;
    for (Eigen::Index i = 0; i < lo.size(); ++i) {
      const DerivativeInterval d = derivative_interval(lo(i), b.pre_upper[act](i), states ? (*states)[i] : 0, slope);
      free = free || d.radius != 0.0;
      dm(i) = d.mid;
    }
    if (free) {
      out.layer = act;
      out.a = std::move(prefix.a);
      out.a_error = std::move(prefix.ea);
      out.c = std::move(prefix.c);
      out.c_error = std::move(prefix.ec);
      return out;
    }
    prefix.scale(dm);
    ++act;
  }
  return out;
}

DerivativeInterval derivative_interval(double lo, double hi, int state, double slope) {
  const bool active = state > 0 || lo > 0, inactive = state < 0 || hi < 0;
  const double d_lo = active ? 1.0 : inactive ? slope : std::min(slope, 1.0);
  const double d_hi = active ? 1.0 : inactive ? slope : std::max(slope, 1.0);
  const double mid = d_lo / 2 + d_hi / 2;
  return {mid, d_hi == d_lo ? 0.0 : round_up(std::max(d_hi - mid, mid - d_lo))};
}

double jacobian_set_norm_upper(const Eigen::MatrixXd& center, const Eigen::MatrixXd& radius, Norm p, Norm q) {
  const Eigen::MatrixXd majorant = (center.cwiseAbs() + radius).unaryExpr([](double v) { return round_up(v); });
  const double via_majorant = operator_norm(majorant, p, q).upper;
  const double via_midpoint = add_up(operator_norm(center, p, q).upper, operator_norm(radius, p, q).upper);
  return std::min(via_majorant, via_midpoint);
}

SubdomainBound::Unstable unstable_neuron(const SubdomainBound& b, int layer, int neuron, double derivative_radius) {
  // The score (a heuristic for branching): the derivative's uncertainty times the pre-activation width.
  const double width = b.pre_upper[layer](neuron) - b.pre_lower[layer](neuron);
  return {layer, neuron, derivative_radius * (std::isfinite(width) ? width : 1.0)};
}

std::vector<SubdomainBound> CpuSubdomainBounder::bound(const std::vector<Subdomain>& subdomains, Norm p, Norm q) {
  return bound_subdomains(net_, subdomains, p, q, linear_relaxation_);
}

std::vector<SubdomainBound> bound_subdomains(const Network& net, const std::vector<Subdomain>& subdomains, Norm p,
                                             Norm q, bool linear_relaxation) {
  std::vector<SubdomainBound> results(subdomains.size());
  std::vector<std::string> errors(subdomains.size());
#pragma omp parallel for schedule(dynamic)
  for (size_t i = 0; i < subdomains.size(); ++i) {
    try {
      results[i] = bound_subdomain(net, subdomains[i], p, q, linear_relaxation);
    } catch (const std::exception& e) {
      errors[i] = e.what();
    }
  }
  for (const auto& e : errors)
    if (!e.empty()) throw std::invalid_argument(e);
  return results;
}

}  // namespace lipcert
