#include "lipcert/seqlip.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>
#include <queue>
#include <vector>

#include <Eigen/Dense>

#include "lipcert/rounding.hpp"
#include "lipcert/spectral_norm.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace lipcert {

namespace {

using Clock = std::chrono::steady_clock;

// W ~ left * right from W's SVD, with left = U S^power and right = S^(1-power) V'; `error` bounds
// ||W(true) - left * right||_2 (the SVD's residual, its rounding, and the weight's own error).
struct Split {
  Eigen::MatrixXd left, right;
  double left_norm = 0.0, right_norm = 0.0;  // certified spectral norms
  double error = 0.0;
};

Split split_weight(const Eigen::MatrixXd& w, double weight_error, double power) {
  Eigen::BDCSVD<Eigen::MatrixXd> svd(w, Eigen::ComputeThinU | Eigen::ComputeThinV);
  const Eigen::VectorXd s = svd.singularValues();
  // Directions with (numerically) zero singular values only widen the pairs; their part of W stays in
  // the residual.
  const double cutoff = s(0) * 1e-14;
  Eigen::Index rank = 1;
  while (rank < s.size() && s(rank) > cutoff) ++rank;
  Split split;
  const Eigen::ArrayXd s_left = s.head(rank).array().pow(power), s_right = s.head(rank).array().pow(1 - power);
  split.left = svd.matrixU().leftCols(rank) * s_left.matrix().asDiagonal();
  split.right = s_right.matrix().asDiagonal() * svd.matrixV().leftCols(rank).transpose();
  split.left_norm = certified_spectral_norm(split.left, std::pow(s(0), power));
  split.right_norm = certified_spectral_norm(split.right, std::pow(s(0), 1 - power));
  // fl(left right) is within gamma_{rank} |left||right| of the product, and the subtraction within u.
  const Eigen::MatrixXd residual = w - split.left * split.right;
  const double product_error = mul_up(gamma(static_cast<double>(rank) + 1),
                                      mul_up(frobenius_norm_upper(split.left), frobenius_norm_upper(split.right)));
  split.error = add_up(add_up(weight_error, mul_up(frobenius_norm_upper(residual), 1 + 2 * kUnitRoundoff)), product_error);
  return split;
}

// max ||A diag(sigma) B||_2 over sigma in [alpha, beta]^n, by branch and bound over the neurons in a
// fixed order (largest ||a_i|| ||b_i|| first): a node fixes the first `depth` of them to alpha or beta.
class PairSearch {
 public:
  PairSearch(const Eigen::MatrixXd& a, const Eigen::MatrixXd& b, double alpha, double beta)
      : a_(a), b_(b), alpha_(alpha), beta_(beta), n_(a.cols()) {
    const double mid = 0.5 * (alpha + beta);
    center_ = mid;
    radius_ = round_up(std::max(beta - mid, mid - alpha));
    weight_.resize(n_);
    for (Eigen::Index i = 0; i < n_; ++i)
      weight_[i] = mul_up(frobenius_norm_upper(a.col(i)), frobenius_norm_upper(b.row(i)));
    order_.resize(n_);
    std::iota(order_.begin(), order_.end(), Eigen::Index{0});
    std::stable_sort(order_.begin(), order_.end(), [&](Eigen::Index i, Eigen::Index j) { return weight_[i] > weight_[j]; });
    free_norms_.assign(n_ + 1, -1.0);
  }

  // known_upper: a certified bound on the maximum from elsewhere; the search stops once it or the
  // search's own bound is within tol of the best vertex.
  SeqLipPair run(double tol, Clock::time_point deadline, long max_nodes, double known_upper) {
    SeqLipPair result;
    double pruned_max = 0.0;
    std::priority_queue<Node> open;
    open.push(evaluate({}, &result.attained));
    result.nodes = 1;
    greedy_ascent(Eigen::VectorXd::Constant(n_, beta_), &result.attained);
    while (true) {
      const Node& top = open.top();
      const double upper = std::min(top.upper, known_upper);
      const bool done = top.fixed.size() == static_cast<size_t>(n_) || upper - result.attained <= tol * upper;
      if (done || result.nodes >= max_nodes || Clock::now() >= deadline) break;
      Node parent = top;
      open.pop();
      for (unsigned char high : {0, 1}) {
        std::vector<unsigned char> fixed = parent.fixed;
        fixed.push_back(high);
        Node child = evaluate(std::move(fixed), &result.attained);
        // A child's vertices are its parent's: the parent's bound holds for it too.
        child.upper = std::min(child.upper, parent.upper);
        ++result.nodes;
        if (child.upper <= result.attained) pruned_max = std::max(pruned_max, child.upper);
        else open.push(std::move(child));
      }
      if (open.empty()) break;
    }
    const double searched = std::max(pruned_max, open.empty() ? 0.0 : open.top().upper);
    result.by_lipsdp = known_upper < searched;
    result.upper = std::min(searched, known_upper);
    result.solved = result.upper - result.attained <= tol * result.upper;
    return result;
  }

 private:
  struct Node {
    double upper;
    std::vector<unsigned char> fixed;  // 1: beta, 0: alpha, for order_[0 .. fixed.size())
    bool operator<(const Node& other) const { return upper < other.upper; }
  };

  // Certified bound on the node: ||A diag(sigma_hat) B|| (sigma_hat: fixed values, the midpoint on free
  // neurons) plus radius * ||A_F|| ||B_F||; raises *attained with the vertex that rounds the center.
  Node evaluate(std::vector<unsigned char> fixed, double* attained) {
    const size_t depth = fixed.size();
    Eigen::VectorXd sigma = Eigen::VectorXd::Constant(n_, center_);
    for (size_t t = 0; t < depth; ++t) sigma[order_[t]] = fixed[t] ? beta_ : alpha_;
    const Eigen::MatrixXd c = (a_ * sigma.asDiagonal()) * b_;
    Eigen::BDCSVD<Eigen::MatrixXd> svd(c, Eigen::ComputeThinU | Eigen::ComputeThinV);
    // |fl(A diag(sigma) B) - A diag(sigma) B| <= gamma_{n+1} sum_i |sigma_i| |a_i| |b_i|' elementwise.
    double product_error = 0.0;
    for (Eigen::Index i = 0; i < n_; ++i) product_error = add_up(product_error, mul_up(std::abs(sigma[i]), weight_[i]));
    product_error = mul_up(product_error, gamma(static_cast<double>(n_) + 1));
    double upper = add_up(certified_spectral_norm(c, svd.singularValues()(0)), product_error);
    if (depth < static_cast<size_t>(n_) && radius_ > 0) upper = add_up(upper, mul_up(radius_, free_norms(depth)));

    // Round the free neurons to the vertex that best aligns with the center's top singular pair.
    if (depth < static_cast<size_t>(n_)) {
      const Eigen::VectorXd gain = alignment(svd);
      for (Eigen::Index t = depth; t < n_; ++t) sigma[order_[t]] = gain[order_[t]] > 0 ? beta_ : alpha_;
      *attained = std::max(*attained, svd_spectral_norm((a_ * sigma.asDiagonal()) * b_));
    } else {
      *attained = std::max(*attained, svd.singularValues()(0));
    }
    return Node{upper, std::move(fixed)};
  }

  // SeqLip's greedy ascent over all neurons: alternate the top singular pair and the best vertex for it.
  void greedy_ascent(Eigen::VectorXd sigma, double* attained) {
    for (int iteration = 0; iteration < 50; ++iteration) {
      Eigen::BDCSVD<Eigen::MatrixXd> svd((a_ * sigma.asDiagonal()) * b_, Eigen::ComputeThinU | Eigen::ComputeThinV);
      *attained = std::max(*attained, svd.singularValues()(0));
      const Eigen::VectorXd gain = alignment(svd);
      Eigen::VectorXd next = sigma;
      for (Eigen::Index i = 0; i < n_; ++i) next[i] = gain[i] > 0 ? beta_ : alpha_;
      if (next == sigma) break;
      sigma = next;
    }
  }

  // u' a_i b_i' v for the top singular pair (u, v) of A diag(sigma) B: raising sigma_i raises u' M v
  // exactly where it is positive, so the best vertex for that pair takes beta there.
  Eigen::VectorXd alignment(const Eigen::BDCSVD<Eigen::MatrixXd>& svd) const {
    return (a_.transpose() * svd.matrixU().col(0)).cwiseProduct(b_ * svd.matrixV().col(0));
  }

  // Certified bound on max ||A_F diag(delta) B_F|| over |delta| <= 1 for the free neurons F of a node at
  // `depth` (F depends on the depth only).
  double free_norms(size_t depth) {
    if (free_norms_[depth] < 0) {
      const Eigen::Index free = n_ - static_cast<Eigen::Index>(depth);
      Eigen::MatrixXd a_free(a_.rows(), free), b_free(free, b_.cols());
      for (Eigen::Index t = 0; t < free; ++t) {
        a_free.col(t) = a_.col(order_[depth + t]);
        b_free.row(t) = b_.row(order_[depth + t]);
      }
      // ||sum_F delta_i a_i b_i'|| is also at most sum_F |delta_i| ||a_i|| ||b_i||: tighter once few are free.
      double tail = 0.0;
      for (Eigen::Index t = 0; t < free; ++t) tail = add_up(tail, weight_[order_[depth + t]]);
      free_norms_[depth] = std::min(tail, mul_up(certified_spectral_norm(a_free, svd_spectral_norm(a_free)),
                                                 certified_spectral_norm(b_free, svd_spectral_norm(b_free))));
    }
    return free_norms_[depth];
  }

  const Eigen::MatrixXd& a_;
  const Eigen::MatrixXd& b_;
  const double alpha_, beta_;
  const Eigen::Index n_;
  double center_ = 0.0, radius_ = 0.0;
  std::vector<double> weight_;  // certified ||a_i|| ||b_i||
  std::vector<Eigen::Index> order_;
  std::vector<double> free_norms_;
};

// LipSDP-Neuron of x -> A phi(B x) bounds ||A D B|| for every diagonal D with entries in [alpha, beta]
// (each such D satisfies the slope constraint), and is often within a percent of the vertex maximum
// where the search's midpoint-plus-radius bounds are far from it. Solved only where it fits half the
// pair's time: about 1.1e-7 n^3 seconds for n neurons on 2 cores (measured: 14 s at n = 512).
double pair_lipsdp_bound(const Eigen::MatrixXd& a, const Eigen::MatrixXd& b, double alpha, double beta, double seconds) {
  const double n = static_cast<double>(a.cols());
  if (1.1e-7 * n * n * n > 0.5 * seconds) return std::numeric_limits<double>::infinity();
  const SlopeRestrictedNetwork pair{{b, a}, {alpha}, {beta}, {}};
  return solve_lipsdp(pair).certified_upper;
}

double product_up(const std::vector<double>& factors) {
  double p = 1.0;
  for (double f : factors) p = mul_up(p, f);
  return p;
}

}  // namespace

SeqLipResult seqlip_bound(const SlopeRestrictedNetwork& net, const SeqLipOptions& options) {
  net.validate();
  const int l = net.hidden_layers();
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(options.time_limit_s));
  std::vector<Split> splits(l + 1);
  for (int k = 0; k <= l; ++k) {
    const double power = k == 0 ? 1.0 : (k == l ? 0.0 : 0.5);
    splits[k] = split_weight(net.weights[k], net.weight_error.empty() ? 0.0 : net.weight_error[k], power);
  }

  SeqLipResult result;
  result.pairs.resize(l);
  int threads = 1;
#ifdef _OPENMP
  threads = omp_get_max_threads();
#endif
  // Each pair may use its share of the time limit, more when there are fewer pairs than threads.
  const double share = options.time_limit_s * std::min(1.0, static_cast<double>(threads) / l);
#pragma omp parallel for schedule(dynamic)
  for (int j = 1; j <= l; ++j) {
    const auto pair_deadline = std::min(deadline, Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                                                    std::chrono::duration<double>(share)));
    const Eigen::MatrixXd &a = splits[j].right, &b = splits[j - 1].left;
    const double alpha = net.alpha[j - 1], beta = net.beta[j - 1];
    const double known = pair_lipsdp_bound(a, b, alpha, beta, share);
    PairSearch search(a, b, alpha, beta);
    result.pairs[j - 1] = search.run(options.tol, pair_deadline, options.max_nodes_per_pair, known);
  }

  // ||J|| <= ||L_l|| prod_j pair_j ||R_0|| for the split weights; each true W_k = L_k R_k + E_k adds at
  // most [prod_k (m_k + e_k) - prod_k m_k] prod_j max(|alpha_j|, |beta_j|), m_k >= ||L_k R_k||.
  std::vector<double> factors{splits[l].left_norm, splits[0].right_norm}, with_error, slopes;
  double estimate = 1.0;
  for (const SeqLipPair& pair : result.pairs) {
    factors.push_back(pair.upper);
    estimate *= pair.attained;
  }
  double lower_product = 1.0;
  for (const Split& split : splits) {
    const double m = mul_up(split.left_norm, split.right_norm);
    with_error.push_back(add_up(m, split.error));
    lower_product = mul_down(lower_product, m);
  }
  for (int j = 0; j < l; ++j) slopes.push_back(std::max(std::abs(net.alpha[j]), std::abs(net.beta[j])));
  result.split_error = mul_up(round_up(product_up(with_error) - lower_product), product_up(slopes));
  result.certified_upper = add_up(product_up(factors), result.split_error);
  result.estimate = estimate;
  return result;
}

}  // namespace lipcert
