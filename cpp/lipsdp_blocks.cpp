#include "lipsdp_blocks.hpp"

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>

namespace lipcert {

int SlopeRestrictedNetwork::neurons() const {
  int n = 0;
  for (int k = 1; k <= hidden_layers(); ++k) n += width(k);
  return n;
}

void SlopeRestrictedNetwork::validate() const {
  if (weights.size() < 2) throw std::invalid_argument("LipSDP needs at least one hidden layer (two weight matrices)");
  const int l = hidden_layers();
  if (static_cast<int>(alpha.size()) != l || static_cast<int>(beta.size()) != l)
    throw std::invalid_argument("LipSDP: alpha and beta need one entry per hidden layer (" + std::to_string(l) + ")");
  if (!weight_error.empty() && weight_error.size() != weights.size())
    throw std::invalid_argument("LipSDP: weight_error needs one entry per weight matrix, or none");
  for (size_t k = 0; k < weights.size(); ++k) {
    if (weights[k].size() == 0) throw std::invalid_argument("LipSDP: weight " + std::to_string(k) + " is empty");
    if (!weights[k].allFinite()) throw std::invalid_argument("LipSDP: weight " + std::to_string(k) + " has NaN/inf entries");
    if (k > 0 && weights[k].cols() != weights[k - 1].rows())
      throw std::invalid_argument("LipSDP: weight " + std::to_string(k) + " has " + std::to_string(weights[k].cols()) +
                                  " columns but layer " + std::to_string(k) + " has " +
                                  std::to_string(weights[k - 1].rows()) + " neurons");
    if (!weight_error.empty() && !(weight_error[k] >= 0 && std::isfinite(weight_error[k])))
      throw std::invalid_argument("LipSDP: weight_error entries must be finite and >= 0");
  }
  for (int k = 0; k < l; ++k)
    if (!(std::isfinite(alpha[k]) && std::isfinite(beta[k]) && alpha[k] <= beta[k]))
      throw std::invalid_argument("LipSDP: hidden layer " + std::to_string(k + 1) + " needs finite slopes alpha <= beta");
}

namespace lipsdp {

std::vector<LayerSlopes> layer_slopes(const SlopeRestrictedNetwork& net) {
  std::vector<LayerSlopes> slopes;
  for (int k = 0; k < net.hidden_layers(); ++k)
    slopes.push_back({0.5 * (net.alpha[k] + net.beta[k]), net.alpha[k] * net.beta[k]});
  return slopes;
}

std::vector<int> multiplier_offsets(const std::vector<Eigen::MatrixXd>& weights) {
  const int l = static_cast<int>(weights.size()) - 1;
  std::vector<int> offsets(l + 2, 0);
  for (int k = 1; k <= l; ++k) offsets[k + 1] = offsets[k] + static_cast<int>(weights[k - 1].rows());
  return offsets;
}

Eigen::VectorXd group_values(const std::vector<int>& group, const Eigen::Ref<const Eigen::VectorXd>& shared) {
  Eigen::VectorXd values(group.size());
  for (size_t i = 0; i < group.size(); ++i) values(i) = shared(group[i]);
  return values;
}

BlockTridiagonal assemble(const std::vector<Eigen::MatrixXd>& w, const std::vector<LayerSlopes>& slopes,
                          const Eigen::VectorXd& lambda, double rho) {
  const int l = static_cast<int>(w.size()) - 1;
  const std::vector<int> offsets = multiplier_offsets(w);
  auto t = [&](int k) { return lambda.segment(offsets[k], offsets[k + 1] - offsets[k]); };
  BlockTridiagonal m;
  m.diag.resize(l + 1);
  m.sub.resize(l + 1);
  for (int k = 0; k <= l; ++k) {
    const Eigen::Index n = w[k].cols();
    if (k == 0) m.diag[0] = Eigen::MatrixXd::Identity(n, n) * rho;
    else m.diag[k] = t(k).asDiagonal();
    if (k < l) {
      if (slopes[k].a != 0.0) {
        const Eigen::VectorXd s = slopes[k].a * t(k + 1);
        m.diag[k].noalias() += w[k].transpose() * s.asDiagonal() * w[k];
      }
    } else {
      m.diag[l].noalias() -= w[l].transpose() * w[l];
    }
    if (k >= 1) m.sub[k] = (-slopes[k - 1].c * t(k)).asDiagonal() * w[k - 1];
  }
  return m;
}

Elimination eliminate(const BlockTridiagonal& m, EliminationOutput output) {
  const int l = static_cast<int>(m.diag.size()) - 1;
  Elimination e;
  e.sigma.resize(l + 1);
  e.lower.resize(l + 1);
  // Only the lower triangle of each Sigma_k is formed and read.
  auto schur = [&](int k) {
    Eigen::MatrixXd sigma = m.diag[k];
    if (k < l) lower_rank_update<double>(sigma, e.lower[k + 1].transpose(), -1.0);
    return sigma;
  };
  for (int k = l; k >= 1; --k) {
    e.sigma[k].matrix() = schur(k);
    if (!e.sigma[k].factorize()) return e;
    e.logdet += 2 * e.sigma[k].factor().diagonal().array().log().sum();
    e.lower[k] = m.sub[k];
    e.sigma[k].solve_lower_in_place(e.lower[k]);  // Sigma_{k-1} = M_{k-1,k-1} - lower_k' lower_k
  }
  e.input_schur = schur(0);
  e.input_schur.triangularView<Eigen::StrictlyUpper>() = e.input_schur.transpose();
  e.ok = std::isfinite(e.logdet);
  if (output == EliminationOutput::InputSchur) return e;
  return finished(std::move(e), 0.0, output);
}

namespace {
// Sigma_0 + shift I factorised into `sigma`; the log det it adds, or -inf where it is not definite.
double factor_shifted_input(const Elimination& hidden, double shift, ParallelCholesky& sigma) {
  sigma.matrix() = hidden.input_schur;
  sigma.matrix().diagonal().array() += shift;
  if (!sigma.factorize()) return -std::numeric_limits<double>::infinity();
  return 2 * sigma.factor().diagonal().array().log().sum();
}
}  // namespace

double shifted_logdet(const Elimination& hidden, double shift) {
  if (!hidden.ok) return -std::numeric_limits<double>::infinity();
  ParallelCholesky sigma;
  return hidden.logdet + factor_shifted_input(hidden, shift, sigma);
}

Elimination finished(Elimination e, double shift, EliminationOutput output) {
  if (!e.ok) return e;
  e.logdet += factor_shifted_input(e, shift, e.sigma[0]);
  e.ok = std::isfinite(e.logdet);
  if (!e.ok) return e;
  if (output == EliminationOutput::InverseMaps) {
    e.f.resize(e.lower.size());
    for (size_t k = 1; k < e.lower.size(); ++k) {
      e.f[k] = -e.lower[k];
      e.sigma[k].solve_upper_in_place(e.f[k]);
    }
  }
  return e;
}

}  // namespace lipsdp
}  // namespace lipcert
