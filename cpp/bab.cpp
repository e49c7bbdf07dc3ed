#include "lipcert/bab.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <queue>
#include <vector>

#include "lipcert/certified_jvp.hpp"
#include "lipcert/lp.hpp"
#include "lipcert/subdomain_bounds.hpp"

namespace lipcert {

namespace {

struct Node {
  Subdomain subdomain;
  SubdomainBound bound;
  double upper;
};

struct ByUpper {
  bool operator()(const Node& a, const Node& b) const { return a.upper < b.upper; }
};

// Splits the most promising unstable neuron of the first layer that has any.
std::pair<int, int> branching_neuron(const SubdomainBound& b) {
  int layer = std::numeric_limits<int>::max(), neuron = -1;
  double score = -1.0;
  for (const auto& u : b.unstable) {
    if (u.layer < layer || (u.layer == layer && u.score > score)) layer = u.layer, neuron = u.neuron, score = u.score;
  }
  return {layer, neuron};
}

}  // namespace

BabResult lipschitz_bab(const Network& net, const Eigen::VectorXd& lower, const Eigen::VectorXd& upper, Norm p, Norm q,
                        const BabOptions& options, double initial_lower, const Eigen::VectorXd& initial_witness,
                        const std::function<bool(const BabProgress&)>& progress) {
  if (!lower.allFinite() || !upper.allFinite())
    throw std::invalid_argument("lipschitz_bab: the input box must be bounded");
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(Clock::now() - start).count(); };
  double next_report = options.progress_interval;

  BabResult result;
  result.lower = initial_lower;
  result.witness = initial_witness;
  std::priority_queue<Node, std::vector<Node>, ByUpper> open;
  double closed_upper = 0.0;  // max over leaves taken off the queue

  const std::shared_ptr<SubdomainBounder> bounder =
      options.bounder ? options.bounder : std::make_shared<CpuSubdomainBounder>(net);
  const int batch = options.batch > 0 ? options.batch : std::max(1, bounder->preferred_batch() / 2);
  Subdomain root;
  root.lower = lower;
  root.upper = upper;
  {
    SubdomainBound b = std::move(bounder->bound({root}, p, q).front());
    const double u = b.norm_upper;
    open.push(Node{root, std::move(b), u});
  }
  result.nodes = 1;
  LpSolver lp;  // this run's HiGHS instance: the search itself runs on one thread
  auto global_upper = [&] { return std::max(closed_upper, open.empty() ? 0.0 : open.top().upper); };

  // Bounds the two children of each parent and drops those proved empty (interval contradiction or a
  // Farkas-verified LP); a child's Jacobians are among its parent's, so the parent's bound holds too.
  auto split = [&](const std::vector<Node>& parents) {
    std::vector<Subdomain> children;
    std::vector<double> parent_upper;
    for (const Node& parent : parents) {
      const auto [layer, neuron] = branching_neuron(parent.bound);
      for (int s : {1, -1}) {
        Subdomain child = parent.subdomain;
        child.states.resize(parent.bound.pre_lower.size());
        for (size_t k = 0; k < child.states.size(); ++k)
          if (child.states[k].empty()) child.states[k].assign(parent.bound.pre_lower[k].size(), 0);
        child.states[layer][neuron] = static_cast<int8_t>(s);
        children.push_back(std::move(child));
        parent_upper.push_back(parent.upper);
      }
    }
    std::vector<SubdomainBound> bounds = bounder->bound(children, p, q);
    result.nodes += static_cast<long>(children.size());
    std::vector<Node> kept;
    for (size_t i = 0; i < children.size(); ++i) {
      if (!bounds[i].feasible) {
        ++result.pruned_by_bounds;
        continue;
      }
      const SubdomainBound& b = bounds[i];
      if (lp.prove_infeasible(b.region_g, b.region_h, b.region_g_error, b.region_h_error, lower, upper)) {
        ++result.pruned_by_lp;
        continue;
      }
      const double u = std::min(parent_upper[i], bounds[i].norm_upper);
      kept.push_back(Node{std::move(children[i]), std::move(bounds[i]), u});
    }
    return kept;
  };
  // A leaf has one Jacobian: certify it at an interior point of its region (the Chebyshev centre).
  // Returns false when no interior point could be certified.
  auto certify_leaf = [&](const Node& leaf) {
    ++result.leaves;
    Eigen::VectorXd center;
    if (!(lp.chebyshev_radius(leaf.bound.region_g, leaf.bound.region_h, lower, upper, &center) > 0)) return false;
    center = center.cwiseMax(lower).cwiseMin(upper);
    const Eigen::VectorXd v = operator_norm(leaf.bound.jacobian_center, p, q).argmax;
    const CertifiedDirectional cd = certified_directional_lower(net, center, v, p, q);
    if (cd.pattern_verified && cd.lower > result.lower) result.lower = cd.lower, result.witness = center;
    return cd.pattern_verified;
  };
  // A depth-first dive from the best open node, keeping the larger child and queueing the other,
  // so that leaves (and certified witnesses) are reached early.
  auto dive = [&]() {
    if (open.empty() || open.top().bound.unstable.empty()) return;
    Node node = open.top();
    open.pop();
    while (!node.bound.unstable.empty()) {
      std::vector<Node> children = split({node});
      if (children.empty()) return;
      std::sort(children.begin(), children.end(), [](const Node& a, const Node& b) { return a.upper > b.upper; });
      for (size_t i = 1; i < children.size(); ++i) open.push(std::move(children[i]));
      node = std::move(children[0]);
    }
    closed_upper = std::max(closed_upper, node.upper);
    certify_leaf(node);
  };

  for (long iteration = 0;; ++iteration) {
    const double ub = global_upper();
    if (ub - result.lower <= options.tol * ub) {
      result.status = "converged";
      break;
    }
    if (open.empty() || open.top().upper <= result.lower * (1 + options.tol)) {
      result.status = "stalled";  // what keeps the gap open are leaves without a certified witness
      break;
    }
    if (elapsed() > options.time_limit) {
      result.status = "time_limit";
      break;
    }
    if (result.nodes >= options.max_nodes) {
      result.status = "node_limit";
      break;
    }
    if (progress && elapsed() >= next_report) {
      next_report = elapsed() + options.progress_interval;
      if (!progress(BabProgress{result.lower, ub, elapsed(), result.nodes, static_cast<long>(open.size())})) {
        result.status = "stopped";
        break;
      }
    }
    if (open.top().bound.unstable.empty()) {
      Node leaf = open.top();
      open.pop();
      closed_upper = std::max(closed_upper, leaf.upper);
      if (!certify_leaf(leaf) && closed_upper == leaf.upper && closed_upper > result.lower * (1 + options.tol)) {
        result.status = "stalled";  // the largest leaf has no interior point we can certify
        break;
      }
      continue;
    }
    if (iteration % 8 == 0) {
      dive();
      continue;
    }
    std::vector<Node> parents;
    while (!open.empty() && static_cast<int>(parents.size()) < batch && !open.top().bound.unstable.empty() &&
           open.top().upper > result.lower * (1 + options.tol)) {
      parents.push_back(open.top());
      open.pop();
    }
    for (Node& child : split(parents)) open.push(std::move(child));
  }
  result.upper = global_upper();
  result.open = static_cast<long>(open.size());
  result.exact = result.upper - result.lower <= options.tol * result.upper;
  return result;
}

}  // namespace lipcert
