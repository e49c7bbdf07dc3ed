#include "lipcert/operator_norm.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "lipcert/rounding.hpp"
#include "lipcert/spectral_norm.hpp"

namespace lipcert {

namespace {

constexpr int kMaxSignEnumeration = 14;  // 2^14 sign vectors: exact mixed norms stay cheap
// Spectral norms of matrices with a side this short are estimated from the eigenvectors of the Gram
// matrix of that side: a fraction of an SVD's cost on the small Jacobian sets of branch and bound.
constexpr Eigen::Index kMaxGramEigenSide = 32;

double dual_norm(const Eigen::Ref<const Eigen::VectorXd>& x, Norm p) {
  return vector_norm(x, p == Norm::One ? Norm::Inf : p == Norm::Inf ? Norm::One : Norm::Two);
}

Eigen::VectorXd signs(const Eigen::VectorXd& x) {
  return x.unaryExpr([](double v) { return v >= 0.0 ? 1.0 : -1.0; });
}

Eigen::VectorXd sign_vector(unsigned long code, Eigen::Index n) {
  Eigen::VectorXd s(n);
  for (Eigen::Index i = 0; i < n; ++i) s(i) = (code >> i) & 1UL ? -1.0 : 1.0;
  return s;
}

// Max of value(s) over the sign vectors s in {-1, 1}^n (s and -s give the same value here):
// returns the best value and its s.
template <typename Value>
std::pair<double, Eigen::VectorXd> max_over_signs(Eigen::Index n, Value value) {
  double best = -1.0;
  Eigen::VectorXd best_s;
  for (unsigned long code = 0; code < (1UL << (n - 1)); ++code) {
    Eigen::VectorXd s = sign_vector(code, n);
    const double v = value(s);
    if (v > best) best = v, best_s = std::move(s);
  }
  return {best, best_s};
}

// The largest singular value of A (an estimate) and its right singular vector, from the Gram matrix
// of A's shorter side. The value comes out to a few ulps of relative error, as from an SVD; the
// certified bound is proved from it all the same, and the vector only has to attain the lower bound.
double top_right_singular_pair(const Eigen::Ref<const Eigen::MatrixXd>& a, Eigen::VectorXd* v) {
  const bool wide = a.rows() < a.cols();
  const Eigen::MatrixXd gram = wide ? Eigen::MatrixXd(a * a.transpose()) : Eigen::MatrixXd(a.transpose() * a);
  const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(gram);
  const Eigen::Index top = gram.rows() - 1;
  *v = eig.eigenvectors().col(top);
  if (wide) *v = a.transpose() * *v;
  const double length = v->norm();
  if (length > 0) *v /= length;
  else *v = Eigen::VectorXd::Unit(a.cols(), 0);
  return std::sqrt(std::max(0.0, eig.eigenvalues()(top)));
}

// Inflates a computed norm of an inner-product-like quantity of length n to a certified upper bound.
double inflate(double value, double n) { return round_up(value * (1.0 + gamma(n + 4))); }

// Dual-vector maximiser of v -> (a . v) / ||v||_p.
Eigen::VectorXd dual_vector(const Eigen::VectorXd& row, Norm p) {
  Eigen::VectorXd v = Eigen::VectorXd::Zero(row.size());
  if (p == Norm::One) {
    Eigen::Index j;
    row.cwiseAbs().maxCoeff(&j);
    v(j) = row(j) >= 0 ? 1.0 : -1.0;
  } else if (p == Norm::Two) {
    const double n = row.norm();
    if (n > 0) v = row / n;
    else v(0) = 1.0;
  } else {
    v = signs(row);
  }
  return v;
}

// Alternating maximisation of ||A v||_q over ||v||_p = 1 (Boyd / Higham's p-norm power method),
// for the pairs with no cheap exact formula. Returns the best vector seen.
Eigen::VectorXd alternating_maximiser(const Eigen::Ref<const Eigen::MatrixXd>& a, Norm p, Norm q, Eigen::VectorXd v) {
  Eigen::VectorXd best = v;
  double best_ratio = -1.0;
  for (int it = 0; it < 50; ++it) {
    const Eigen::VectorXd w = a * v;
    const double ratio = vector_norm(w, q) / std::max(vector_norm(v, p), 1e-300);
    if (ratio <= best_ratio * (1 + 1e-12)) break;
    best_ratio = ratio;
    best = v;
    // Subgradient of ||w||_q, pulled back, then the dual maximiser for the p-ball.
    Eigen::VectorXd g = q == Norm::One ? signs(w) : (w.norm() > 0 ? Eigen::VectorXd(w / w.norm()) : w);
    v = dual_vector(a.transpose() * g, p);
  }
  return best;
}

}  // namespace

Norm norm_from_double(double p) {
  if (p == 1.0) return Norm::One;
  if (p == 2.0) return Norm::Two;
  if (std::isinf(p) && p > 0) return Norm::Inf;
  throw std::invalid_argument("norm must be 1, 2 or inf");
}

double norm_to_double(Norm p) {
  return p == Norm::One ? 1.0 : p == Norm::Two ? 2.0 : std::numeric_limits<double>::infinity();
}

double vector_norm(const Eigen::Ref<const Eigen::VectorXd>& x, Norm p) {
  if (x.size() == 0) return 0.0;
  switch (p) {
    case Norm::One: return x.lpNorm<1>();
    case Norm::Two: return x.norm();
    case Norm::Inf: return x.lpNorm<Eigen::Infinity>();
  }
  return 0.0;
}

double certified_ratio_lower(const Eigen::Ref<const Eigen::MatrixXd>& a, const Eigen::Ref<const Eigen::VectorXd>& v,
                             Norm p, Norm q) {
  const double n = static_cast<double>(a.cols());
  const Eigen::VectorXd w = a * v;
  // |fl(A v) - A v| <= gamma_n |A| |v|, elementwise.
  const Eigen::VectorXd err = (a.cwiseAbs() * v.cwiseAbs()) * (gamma(n) * (1 + gamma(n + 2)));
  const double wq = vector_norm(w, q) * (1.0 - gamma(static_cast<double>(a.rows()) + 4));
  const double eq = inflate(vector_norm(err, q), static_cast<double>(a.rows()));
  const double vp = inflate(vector_norm(v, p), n);
  if (!(vp > 0)) return 0.0;
  return std::max(0.0, div_down(sub_down(wq, eq), vp));
}

double norm_conversion_factor(int n, Norm p, Norm q) {
  // ||x||_q <= n^{max(0, 1/q - 1/p)} ||x||_p
  const double inv_p = p == Norm::One ? 1.0 : p == Norm::Two ? 0.5 : 0.0;
  const double inv_q = q == Norm::One ? 1.0 : q == Norm::Two ? 0.5 : 0.0;
  const double e = std::max(0.0, inv_q - inv_p);
  if (e == 0.0) return 1.0;
  if (e == 0.5) return sqrt_up(n);
  return static_cast<double>(n);  // e == 1 (inf -> 1)
}

NormBounds operator_norm(const Eigen::Ref<const Eigen::MatrixXd>& a, Norm p, Norm q) {
  NormBounds r;
  const Eigen::Index m = a.rows(), n = a.cols();
  if (m == 0 || n == 0) {
    r.exact = true;
    r.argmax = Eigen::VectorXd::Zero(n);
    return r;
  }
  if (!a.allFinite()) throw std::invalid_argument("operator_norm: matrix has NaN or inf entries");

  if (p == Norm::One) {  // max over columns of ||a_j||_q
    double best = -1.0;
    Eigen::Index jbest = 0;
    for (Eigen::Index j = 0; j < n; ++j) {
      const double c = vector_norm(a.col(j), q);
      if (c > best) best = c, jbest = j;
    }
    r.argmax = Eigen::VectorXd::Unit(n, jbest);
    r.upper = inflate(best, static_cast<double>(m));
    r.exact = true;
  } else if (q == Norm::Inf) {  // max over rows of the dual norm
    double best = -1.0;
    Eigen::Index ibest = 0;
    for (Eigen::Index i = 0; i < m; ++i) {
      const double c = dual_norm(a.row(i).transpose(), p);
      if (c > best) best = c, ibest = i;
    }
    r.argmax = dual_vector(a.row(ibest).transpose(), p);
    r.upper = inflate(best, static_cast<double>(n));
    r.exact = true;
  } else if (p == Norm::Two && q == Norm::Two) {
    double estimate;
    if (std::min(m, n) <= kMaxGramEigenSide) {
      estimate = top_right_singular_pair(a, &r.argmax);
    } else {
      Eigen::BDCSVD<Eigen::MatrixXd> svd(a, Eigen::ComputeThinV);
      r.argmax = svd.matrixV().col(0);
      estimate = svd.singularValues()(0);
    }
    r.upper = certified_spectral_norm(a, estimate);
    r.exact = true;
  } else if (p == Norm::Two && q == Norm::One) {
    // ||A||_{2->1} = max over sign vectors s of ||A^T s||_2.
    if (m <= kMaxSignEnumeration) {
      const auto [best, s] = max_over_signs(m, [&](const Eigen::VectorXd& s) { return (a.transpose() * s).norm(); });
      r.argmax = best > 0 ? Eigen::VectorXd(a.transpose() * s / best) : Eigen::VectorXd::Unit(n, 0);
      r.upper = inflate(best, static_cast<double>(m + n));
      r.exact = true;
    } else {
      r.argmax = alternating_maximiser(a, p, q, dual_vector(a.transpose() * signs(a.col(0)), p));
      double rows = 0.0;
      for (Eigen::Index i = 0; i < m; ++i) rows += a.row(i).norm();
      const double via_spectral = mul_up(sqrt_up(static_cast<double>(m)),
                                         certified_spectral_norm(a, svd_spectral_norm(a)));
      r.upper = std::min(inflate(rows, static_cast<double>(m + n)), via_spectral);
    }
  } else if (p == Norm::Inf && q == Norm::One) {
    // ||A||_{inf->1} = max over sign vectors t of ||A t||_1; enumerate on the smaller side.
    if (std::min(m, n) <= kMaxSignEnumeration) {
      if (n <= m) {
        const auto [best, s] = max_over_signs(n, [&](const Eigen::VectorXd& s) { return (a * s).lpNorm<1>(); });
        r.argmax = s;
        r.upper = inflate(best, static_cast<double>(m + n));
      } else {
        const auto [best, s] = max_over_signs(m, [&](const Eigen::VectorXd& s) { return (a.transpose() * s).lpNorm<1>(); });
        r.argmax = signs(a.transpose() * s);
        r.upper = inflate(best, static_cast<double>(m + n));
      }
      r.exact = true;
    } else {
      r.argmax = alternating_maximiser(a, p, q, signs(a.row(0).transpose()));
      double rows = 0.0;
      for (Eigen::Index i = 0; i < m; ++i) rows += a.row(i).lpNorm<1>();
      r.upper = inflate(rows, static_cast<double>(m * n));
    }
  } else {  // p = inf, q = 2: max over sign vectors t of ||A t||_2
    if (n <= kMaxSignEnumeration) {
      const auto [best, s] = max_over_signs(n, [&](const Eigen::VectorXd& s) { return (a * s).norm(); });
      r.argmax = s;
      r.upper = inflate(best, static_cast<double>(m + n));
      r.exact = true;
    } else {
      r.argmax = alternating_maximiser(a, p, q, signs(a.row(0).transpose()));
      double rows = 0.0;
      for (Eigen::Index i = 0; i < m; ++i) rows += a.row(i).lpNorm<1>() * a.row(i).lpNorm<1>();
      const double via_spectral = mul_up(sqrt_up(static_cast<double>(n)),
                                         certified_spectral_norm(a, svd_spectral_norm(a)));
      r.upper = std::min(sqrt_up(inflate(rows, static_cast<double>(m * n))), via_spectral);
    }
  }
  r.lower = std::min(certified_ratio_lower(a, r.argmax, p, q), r.upper);
  return r;
}

}  // namespace lipcert
