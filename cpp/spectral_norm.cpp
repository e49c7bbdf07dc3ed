#include "lipcert/spectral_norm.hpp"

#include <algorithm>
#include <cmath>
#include <complex>
#include <limits>
#include <vector>

#include "lipcert/linear_ops.hpp"
#include "lipcert/rounding.hpp"

namespace lipcert {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
// Relative gaps tried above an estimate before giving up on it.
constexpr double kGaps[] = {1e-12, 1e-9, 1e-6, 1e-4, 1e-3, 1e-2, 5e-2};

// Everything the Cholesky proof needs from a (real or complex) Gram matrix G = B^H B.
template <typename Scalar>
struct GramProof {
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  Matrix gram;
  double gram_error = 0.0;  // ||fl(G) - G||_2 bound
  double max_diagonal = 0.0;
  double complex_factor = 1.0;

  // Certified bound on ||B||_2 from s, or +inf when s^2 I - G is not proved positive definite.
  double bound(double s) const {
    const Eigen::Index d = gram.rows();
    const double s2 = s * s;
    Matrix m = -gram;
    m.diagonal().array() += Scalar(s2);
    Eigen::LLT<Matrix, Eigen::Lower> llt(m);
    if (llt.info() != Eigen::Success || !llt.matrixLLT().allFinite()) return kInf;
    double trace = 0.0;
    for (Eigen::Index i = 0; i < d; ++i) {
      const double mii = std::real(m(i, i));
      if (!(mii > 0)) return kInf;
      trace += mii;
    }
    trace = round_up(trace * (1 + gamma(static_cast<double>(d) + 2)));
    // Demmel: a completed Cholesky of M gives R^H R = M + dM, ||dM||_2 <= gamma_{d+1} tr(M) / (1 - gamma_{d+1}).
    const double g = gamma(complex_factor * (static_cast<double>(d) + 1));
    const double chol_error = round_up(g * trace / (1 - g));
    const double shift_error = round_up(2 * kUnitRoundoff * (s2 + max_diagonal));
    double total = add_up(add_up(add_up(s2, gram_error), shift_error), chol_error);
    return sqrt_up(add_up(total, 1e-300));
  }
};

template <typename Derived>
GramProof<typename Derived::Scalar> make_gram(const Eigen::MatrixBase<Derived>& b, double complex_factor) {
  using Scalar = typename Derived::Scalar;
  GramProof<Scalar> proof;
  proof.complex_factor = complex_factor;
  const Eigen::Index m = b.rows(), n = b.cols();
  // Gram matrix of the smaller side; the inner products have length k.
  const bool wide = m < n;
  const Eigen::Index d = wide ? m : n, k = wide ? n : m;
  proof.gram.setZero(d, d);
  if (wide) proof.gram.template selfadjointView<Eigen::Lower>().rankUpdate(b);
  else proof.gram.template selfadjointView<Eigen::Lower>().rankUpdate(b.adjoint());
  proof.gram.template triangularView<Eigen::StrictlyUpper>() = proof.gram.adjoint();
  // |fl(G) - G| <= gamma_k |B|^H |B| elementwise, and || |B|^H |B| ||_2 <= ||B||_F^2.
  const double fro2 = round_up(b.squaredNorm() * (1 + gamma(complex_factor * static_cast<double>(m * n + 2))));
  proof.gram_error = round_up(gamma(complex_factor * (static_cast<double>(k) + 2)) * fro2);
  proof.max_diagonal = proof.gram.diagonal().real().maxCoeff();
  return proof;
}

template <typename Scalar>
double prove_from_estimate(const GramProof<Scalar>& proof, double estimate) {
  if (!(estimate > 0) || !std::isfinite(estimate)) return kInf;
  // First try a gap just above the proof's own error margins, then the fixed ladder.
  const double s2 = estimate * estimate;
  const double d = static_cast<double>(proof.gram.rows());
  const double margins = proof.gram_error + gamma(proof.complex_factor * (d + 1)) * d * s2 + 4 * kUnitRoundoff * s2;
  const double first = std::min(kGaps[0], 2 * margins / s2);
  for (double gap : {first, kGaps[0], kGaps[1], kGaps[2], kGaps[3], kGaps[4], kGaps[5], kGaps[6]}) {
    if (gap < first) continue;
    const double b = proof.bound(estimate * (1 + gap));
    if (std::isfinite(b)) return b;
  }
  return kInf;
}

double cheap_spectral_bound(const Eigen::Ref<const Eigen::MatrixXd>& a) {
  const double m = static_cast<double>(a.rows()), n = static_cast<double>(a.cols());
  const double fro = frobenius_norm_upper(a);
  const double one = round_up(a.colwise().lpNorm<1>().maxCoeff() * (1 + gamma(m + 2)));
  const double inf = round_up(a.rowwise().lpNorm<1>().maxCoeff() * (1 + gamma(n + 2)));
  return std::min(fro, sqrt_up(mul_up(one, inf)));
}

}  // namespace

double prove_spectral_bound(const Eigen::Ref<const Eigen::MatrixXd>& a, double s) {
  if (a.size() == 0) return 0.0;
  return make_gram(a, 1.0).bound(s);
}

double frobenius_norm_upper(const Eigen::Ref<const Eigen::MatrixXd>& a) {
  return sqrt_up(round_up(a.squaredNorm() * (1 + gamma(static_cast<double>(a.size()) + 2))));
}

double svd_spectral_norm(const Eigen::Ref<const Eigen::MatrixXd>& a) {
  if (a.size() == 0) return 0.0;
  Eigen::BDCSVD<Eigen::MatrixXd> svd(a);
  return svd.singularValues()(0);
}

double certified_spectral_norm(const Eigen::Ref<const Eigen::MatrixXd>& a, double estimate) {
  if (a.size() == 0 || a.cwiseAbs().maxCoeff() == 0.0) return 0.0;
  const auto proof = make_gram(a, 1.0);
  double b = prove_from_estimate(proof, estimate);
  if (std::isfinite(b)) return b;
  // The estimate was too low (e.g. an unconverged power iteration): fall back to an SVD estimate.
  b = prove_from_estimate(proof, svd_spectral_norm(a));
  if (std::isfinite(b)) return b;
  return cheap_spectral_bound(a);
}

CirculantEmbedding circulant_embedding(const Layer& conv) {
  CirculantEmbedding e;
  const int oc = conv.out_shape.channels, ic = conv.in_channels, kh = conv.kernel_h, kw = conv.kernel_w;
  e.nh = conv.in_shape.height + 2 * conv.pad_h + kh;
  e.nw = conv.in_shape.width + 2 * conv.pad_w + kw;
  e.twiddle_h.resize(e.nh);
  e.twiddle_w.resize(e.nw);
  for (int t = 0; t < e.nh; ++t) e.twiddle_h[t] = std::polar(1.0, 2 * M_PI * t / e.nh);
  for (int t = 0; t < e.nw; ++t) e.twiddle_w[t] = std::polar(1.0, 2 * M_PI * t / e.nw);
  // Twiddles (about 15 u each, 32 u allowed for a product) and the kh*kw-term sums, bounded in
  // Frobenius norm by the absolute kernel sums.
  Eigen::MatrixXd abs_sums = Eigen::MatrixXd::Zero(oc, ic);
  for (int c = 0; c < ic; ++c)
    for (int t = 0; t < kh * kw; ++t) abs_sums.col(c) += conv.weight.col(c * kh * kw + t).cwiseAbs();
  e.transfer_error = round_up((64 * kUnitRoundoff + gamma(4.0 * kh * kw + 8)) *
                              frobenius_norm_upper(abs_sums));
  return e;
}

double conv_circulant_spectral_bound(const Layer& conv) {
  using Complex = std::complex<double>;
  const int oc = conv.out_shape.channels, ic = conv.in_channels;
  const int kh = conv.kernel_h, kw = conv.kernel_w;
  const CirculantEmbedding embedding = circulant_embedding(conv);
  const int nh = embedding.nh, nw = embedding.nw;

  const int frequencies = nh * nw;
  std::vector<GramProof<Complex>> proofs(frequencies);
  std::vector<double> estimates(frequencies);
#pragma omp parallel for schedule(dynamic)
  for (int f = 0; f < frequencies; ++f) {
    const int u = f / nw, v = f % nw;
    Eigen::MatrixXcd transfer = Eigen::MatrixXcd::Zero(oc, ic);
    for (int a = 0; a < kh; ++a)
      for (int b = 0; b < kw; ++b) {
        const Complex phase = embedding.twiddle_h[(u * a) % nh] * embedding.twiddle_w[(v * b) % nw];
        for (int c = 0; c < ic; ++c) transfer.col(c) += conv.weight.col((c * kh + a) * kw + b) * phase;
      }
    proofs[f] = make_gram(transfer, 4.0);
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXcd> eig(proofs[f].gram, Eigen::EigenvaluesOnly);
    estimates[f] = std::sqrt(std::max(0.0, eig.eigenvalues().maxCoeff()));
  }
  const double estimate = *std::max_element(estimates.begin(), estimates.end());
  if (!(estimate > 0)) return 0.0;
  double certified = kInf;
  for (double gap : kGaps) {
    const double s = estimate * (1 + gap);
    double worst = 0.0;
    bool ok = true;
#pragma omp parallel for reduction(max : worst) reduction(&& : ok)
    for (int f = 0; f < frequencies; ++f) {
      const double b = proofs[f].bound(s);
      ok = ok && std::isfinite(b);
      worst = std::max(worst, b);
    }
    if (ok) {
      certified = worst;
      break;
    }
  }
  if (!std::isfinite(certified)) return kInf;
  return add_up(certified, embedding.transfer_error);
}

bool conv_is_unrollable(const Layer& conv) {
  const double n_in = conv.in_shape.size(), n_out = conv.out_shape.size();
  return std::min(n_in, n_out) <= 2048 && n_in * n_out <= 16e6;
}

double layer_abs_sum_norm(const Layer& layer, bool columns) {
  const int n_in = layer.in_shape.size(), n_out = layer.out_shape.size();
  const Eigen::VectorXd sums = columns ? apply_linear_transpose(layer, Eigen::VectorXd::Ones(n_out), true)
                                       : apply_linear(layer, Eigen::VectorXd::Ones(n_in), false, true);
  return round_up(sums.maxCoeff() * (1 + gamma(static_cast<double>(n_in) + n_out + layer.inner_length() + 4)));
}

LayerNormBound layer_spectral_upper(const Layer& layer, double estimate) {
  switch (layer.kind) {
    case LayerKind::Dense:
      return {certified_spectral_norm(layer.weight, estimate), "cholesky"};
    case LayerKind::Conv2d:
      if (conv_is_unrollable(layer)) return {certified_spectral_norm(dense_matrix(layer), estimate), "cholesky"};
      return {conv_circulant_spectral_bound(layer), "circulant"};
    case LayerKind::AvgPool2d:
      // ||P||_2 <= sqrt(||P||_1 ||P||_inf), exact for non-overlapping windows.
      return {sqrt_up(mul_up(layer_abs_sum_norm(layer, true), layer_abs_sum_norm(layer, false))), "closed-form"};
    default:
      return {1.0, "identity"};
  }
}

}  // namespace lipcert
