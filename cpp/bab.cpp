#include "lipcert/bab.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <queue>
#include <random>
#include <string>
#include <vector>

#include "lipcert/activation.hpp"
#include "lipcert/certified_jvp.hpp"
#include "lipcert/linear_ops.hpp"
#include "lipcert/lp.hpp"
#include "lipcert/rounding.hpp"
#include "lipcert/subdomain_bounds.hpp"

#include "bab_stop_rule.hpp"
#include "region_point.hpp"

namespace lipcert {

namespace {

// A final simplex basis of a region's emptiness LP, with the key of each row (row_keys), from
// which the LPs of the node's descendants start: theirs add a few rows to it.
struct RegionBasis {
  std::vector<int64_t> keys;
  LpBasis basis;
};

// A neuron whose sign an LP proved over a node's region.
struct SignFix {
  int layer, neuron, sign;
};

// Input bisection stops at boxes this narrow (relative to the root box) on every side.
constexpr double kMinRelativeWidth = 0x1.0p-12;

// deeper_region_point looks this many times min_depth around x (in the inf-norm): room to move past
// the kink beside x, or out of a corner of a few.
constexpr double kDeeperPointReach = 4.0;
// Its estimate of x's depth (16 random directions) clears x where it exceeds min_depth this many times.
constexpr double kDepthEstimateMargin = 4.0;
// ... and its LP keeps to about this many matrix entries (rows times the input size).
constexpr Eigen::Index kMaxLpEntries = 50000;
// Its exact rows: those of this many neurons per LP row, the nearest x by the estimates. All of a
// region's rows (bound_subdomain's) took 0.3-0.5 s for 784-1000-1000-1000-10 and 1.3 / 2.2 s for
// GLipSDP's MNIST CNNs with 3 / 5 convolutions of 8 channels.
constexpr size_t kCandidateRowsPerLpRow = 4;
// ... as far as their reverse products stay within this many multiply-adds (about 0.1 s here):
// the 252 rows nearest x took 0.8 s on GLipSDP's MNIST CNN with 9 convolutions of 16 channels.
constexpr double kMaxRowWork = 0x1.0p29;

struct Node {
  Subdomain subdomain;
  SubdomainBound bound;
  double upper;
  bool region_checked = false;  // no proof found that the region is empty
  // A point of the box that satisfies the region's rows in floating point, when one is known (the
  // box's centre at a root, HiGHS's point where an emptiness LP failed): a hint, never a proof. A
  // region that holds it needs no emptiness LP, so the child of a split that keeps it goes without.
  Eigen::VectorXd inside;
  std::shared_ptr<const RegionBasis> basis;  // of the nearest ancestor (or itself) whose LP ran
  // The activation layer whose free neurons LP sign fixing has tried on this node's region (its
  // parent's, when the node is the one child of a fixing): trying them again proves nothing new.
  int tightened_layer = -1;
};

// Whether x lies in the node's box and satisfies its region's rows, in floating point.
bool holds_point(const Subdomain& s, const SubdomainBound& b, const Eigen::VectorXd& x) {
  return x.size() == s.lower.size() && (x.array() >= s.lower.array()).all() && (x.array() <= s.upper.array()).all() &&
         (b.region_g.rows() == 0 || (b.region_g * x - b.region_h).maxCoeff() <= 0.0);
}

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

// A region {G x <= h} of a node's box, as the LPs see it. With an l1 ball, the LPs run over (x, t):
// the region's rows act on x, and x - t <= c, -x - t <= -c, sum t <= r (exact data) keep x in the ball.
class RegionLp {
 public:
  RegionLp(Eigen::Index n, const std::optional<L1Ball>& ball) : n_(n), ball_(ball) {
    if (ball_ && (ball_->center.size() != n_ || !ball_->center.allFinite() || !(ball_->radius >= 0) ||
                  !std::isfinite(ball_->radius)))
      throw std::invalid_argument("lipschitz_bab: the l1 ball needs a finite centre of the input size and a radius >= 0");
  }

  // Whether the node's region is proved empty. The LP starts from the basis of the node's nearest
  // checked ancestor; if it finds a point, that point and its basis become the node's.
  bool prove_empty(LpSolver& solver, Node& node) const {
    std::vector<int64_t> keys = row_keys(node);
    FeasibilityLp lp;
    const bool empty = prove_rows_empty(solver, node, node.bound, keys, lp);
    if (!empty && lp.point.size() > 0) {
      node.inside = nearby_point(node.subdomain, node.bound, lp.point.head(n_));
      if (node.inside.size() == 0) node.inside = lp.point.head(n_);
      node.basis = std::make_shared<const RegionBasis>(RegionBasis{std::move(keys), std::move(lp.basis)});
    }
    return empty;
  }

  // Whether the region is proved to hold no point where s z_i >= 0, for neuron i of the layer whose
  // pre-activations are z = map: then z_i has the sign -s throughout it. The proof is the emptiness
  // proof of the region with the row of the child that would take sign s.
  // When it is not, *point receives the LP's point (a hint, as Node::inside) where one was found.
  bool excludes_sign(LpSolver& solver, const Node& node, const ExactPreActivations& map, Eigen::Index i, int s,
                     Eigen::VectorXd* point) const {
    const SubdomainBound& b = node.bound;
    const Eigen::Index m = b.region_g.rows();
    std::vector<int64_t> keys = row_keys(node);
    const int64_t key = (static_cast<int64_t>(map.layer) << 32) | static_cast<int64_t>(i);
    const Eigen::Index at = std::lower_bound(keys.begin(), keys.begin() + m, key) - keys.begin();
    keys.insert(keys.begin() + at, key);
    SubdomainBound rows;  // the region's rows with s (a_i x + c_i) >= 0, i.e. (-s a_i) x <= s c_i, inserted at `at`
    auto insert_row = [&](const Eigen::MatrixXd& region, const Eigen::RowVectorXd& row, Eigen::MatrixXd& out) {
      out.resize(m + 1, region.cols());
      out.topRows(at) = region.topRows(at);
      out.row(at) = row;
      out.bottomRows(m - at) = region.bottomRows(m - at);
    };
    auto insert_entry = [&](const Eigen::VectorXd& region, double entry, Eigen::VectorXd& out) {
      out.resize(m + 1);
      out << region.head(at), entry, region.tail(m - at);
    };
    insert_row(b.region_g, -s * map.a.row(i), rows.region_g);
    insert_row(b.region_g_error, map.a_error.row(i), rows.region_g_error);
    insert_entry(b.region_h, s * map.c(i), rows.region_h);
    insert_entry(b.region_h_error, map.c_error(i), rows.region_h_error);
    FeasibilityLp lp;
    const bool empty = prove_rows_empty(solver, node, rows, keys, lp);
    if (!empty && lp.point.size() > 0) *point = lp.point.head(n_);
    return empty;
  }

  // Whether x lies in the node's box and its region's rows, and within the LPs' tolerance of the
  // ball, in floating point (a hint).
  bool holds(const Subdomain& s, const SubdomainBound& b, const Eigen::VectorXd& x) const {
    if (!holds_point(s, b, x)) return false;
    return !ball_ || (x - ball_->center).lpNorm<1>() <= ball_->radius * (1 + 1e-7);
  }

  // nearby_region_point in the node's box, and within the LPs' tolerance of the ball: a hint, as
  // Node::inside, that spares the region's emptiness LP, and a leaf's Chebyshev LP.
  Eigen::VectorXd nearby_point(const Subdomain& s, const SubdomainBound& b, const Eigen::VectorXd& x) const {
    Eigen::VectorXd y = nearby_region_point(b.region_g, b.region_h, s.lower, s.upper, x);
    return y.size() > 0 && holds(s, b, y) ? y : Eigen::VectorXd();
  }

  // Whether *x lies strictly inside the region's rows and in the box, in floating point, and in the
  // ball (where it is moved into it, as the Chebyshev centre is).
  bool strictly_inside(const Subdomain& s, const SubdomainBound& b, Eigen::VectorXd* x) const {
    if (x->size() != n_ || !holds_point(s, b, *x)) return false;
    if (b.region_g.rows() > 0 && !((b.region_g * *x - b.region_h).maxCoeff() < 0.0)) return false;
    return !ball_ || shrink_into_ball(x);
  }

  // An interior point of the region within the node's box (and the ball), or false.
  bool interior_point(LpSolver& lp, const Subdomain& s, const SubdomainBound& b, Eigen::VectorXd* x) const {
    Eigen::VectorXd center;
    if (!ball_) {
      if (!(lp.chebyshev_radius(b.region_g, b.region_h, s.lower, s.upper, &center) > 0)) return false;
      *x = center.cwiseMax(s.lower).cwiseMin(s.upper);
      return true;
    }
    const Lifted l = lift(s, b);
    if (!(lp.chebyshev_radius(l.g, l.h, l.lower, l.upper, &center) > 0)) return false;
    *x = center.head(n_).cwiseMax(s.lower).cwiseMin(s.upper);
    return shrink_into_ball(x);
  }

 private:
  static constexpr int64_t kBallRow = int64_t{1} << 62;

  // The emptiness proof of the region `rows` (region_* fields) of the node's box, whose LP rows have
  // the given keys; the LP starts from the node's ancestor's basis and reports into lp.
  bool prove_rows_empty(LpSolver& solver, const Node& node, const SubdomainBound& rows,
                        const std::vector<int64_t>& keys, FeasibilityLp& lp) const {
    const Subdomain& s = node.subdomain;
    if (node.basis) lp.start = warm_start(*node.basis, keys);
    if (!ball_)
      return solver.prove_infeasible(rows.region_g, rows.region_h, rows.region_g_error, rows.region_h_error, s.lower,
                                     s.upper, &lp);
    const Lifted l = lift(s, rows);
    return solver.prove_infeasible(l.g, l.h, l.g_error, l.h_error, l.lower, l.upper, &lp);
  }

  // One key per LP row, increasing: the region's rows are its assigned neurons in layer order (as
  // far as the pre-activations are exact affine maps: the first region_g.rows() of them), then the
  // ball's rows.
  std::vector<int64_t> row_keys(const Node& node) const {
    std::vector<int64_t> keys;
    const Eigen::Index m = node.bound.region_g.rows();
    const auto& states = node.subdomain.states;
    for (size_t k = 0; k < states.size() && static_cast<Eigen::Index>(keys.size()) < m; ++k)
      for (size_t i = 0; i < states[k].size() && static_cast<Eigen::Index>(keys.size()) < m; ++i)
        if (states[k][i] != 0) keys.push_back((static_cast<int64_t>(k) << 32) | static_cast<int64_t>(i));
    if (ball_)
      for (int64_t j = 0; j < 2 * n_ + 1; ++j) keys.push_back(kBallRow + j);
    return keys;
  }

  // The ancestor's basis on this LP's rows: a shared row keeps its status, a new row starts basic
  // (its slack), so that the basis keeps one basic variable per row.
  static LpBasis warm_start(const RegionBasis& ancestor, const std::vector<int64_t>& keys) {
    LpBasis start;
    if (ancestor.basis.row_status.size() != ancestor.keys.size()) return start;
    start.col_status = ancestor.basis.col_status;
    start.row_status.reserve(keys.size());
    size_t j = 0;
    for (int64_t key : keys) {
      while (j < ancestor.keys.size() && ancestor.keys[j] < key) ++j;
      const bool shared = j < ancestor.keys.size() && ancestor.keys[j] == key;
      start.row_status.push_back(shared ? ancestor.basis.row_status[j] : LpBasis::kBasic);
    }
    return start;
  }

  struct Lifted {
    Eigen::MatrixXd g, g_error;
    Eigen::VectorXd h, h_error, lower, upper;
  };

  Lifted lift(const Subdomain& s, const SubdomainBound& b) const {
    const Eigen::Index m = b.region_g.rows();
    Lifted l;
    l.lower.resize(2 * n_), l.upper.resize(2 * n_);
    l.lower << s.lower, Eigen::VectorXd::Zero(n_);
    l.upper << s.upper, Eigen::VectorXd::Constant(n_, ball_->radius);
    l.g = Eigen::MatrixXd::Zero(m + 2 * n_ + 1, 2 * n_);
    l.g_error = Eigen::MatrixXd::Zero(l.g.rows(), 2 * n_);
    l.h.resize(l.g.rows());
    l.h_error = Eigen::VectorXd::Zero(l.g.rows());
    l.g.topLeftCorner(m, n_) = b.region_g;
    l.g_error.topLeftCorner(m, n_) = b.region_g_error;
    l.h.head(m) = b.region_h;
    l.h_error.head(m) = b.region_h_error;
    const Eigen::MatrixXd eye = Eigen::MatrixXd::Identity(n_, n_);
    l.g.block(m, 0, n_, n_) = eye;
    l.g.block(m, n_, n_, n_) = -eye;
    l.h.segment(m, n_) = ball_->center;
    l.g.block(m + n_, 0, n_, n_) = -eye;
    l.g.block(m + n_, n_, n_, n_) = -eye;
    l.h.segment(m + n_, n_) = -ball_->center;
    l.g.bottomRightCorner(1, n_).setOnes();
    l.h(l.g.rows() - 1) = ball_->radius;
    return l;
  }

  // The LP's point may sit a rounding error outside the ball: pull it towards the centre until the
  // upward-rounded l1 distance is within the radius.
  bool shrink_into_ball(Eigen::VectorXd* x) const {
    auto distance_up = [&](const Eigen::VectorXd& y) {
      double d = 0.0;
      for (Eigen::Index i = 0; i < n_; ++i) d = add_up(d, round_up(std::abs(y[i] - ball_->center[i])));
      return d;
    };
    for (int attempt = 0; attempt < 8; ++attempt) {
      const double d = distance_up(*x);
      if (d <= ball_->radius) return true;
      const double scale = ball_->radius / d * (1 - (static_cast<double>(n_) + 4) * kUnitRoundoff * (1 << attempt));
      *x = ball_->center + (*x - ball_->center) * std::max(0.0, scale);
    }
    return distance_up(*x) <= ball_->radius;
  }

  Eigen::Index n_;
  std::optional<L1Ball> ball_;
};

}  // namespace

BabResult lipschitz_bab(const Network& net, const Eigen::VectorXd& lower, const Eigen::VectorXd& upper, Norm p, Norm q,
                        const BabOptions& options, double initial_lower, const Eigen::VectorXd& initial_witness,
                        const std::function<bool(const BabProgress&)>& progress) {
  return lipschitz_bab(net, std::vector<InputBox>{{lower, upper}}, p, q, options, initial_lower, initial_witness, progress);
}

BabResult lipschitz_bab(const Network& net, const std::vector<InputBox>& boxes, Norm p, Norm q, const BabOptions& options,
                        double initial_lower, const Eigen::VectorXd& initial_witness,
                        const std::function<bool(const BabProgress&)>& progress) {
  if (boxes.empty()) throw std::invalid_argument("lipschitz_bab: no input box");
  for (const InputBox& box : boxes)
    if (box.lower.size() != net.input_size() || box.upper.size() != net.input_size() || !box.lower.allFinite() ||
        !box.upper.allFinite())
      throw std::invalid_argument("lipschitz_bab: every input box must be bounded and of the network's input size");
  Eigen::VectorXd root_width = Eigen::VectorXd::Zero(net.input_size());
  for (const InputBox& box : boxes) root_width = root_width.cwiseMax(box.upper - box.lower);
  root_width = root_width.cwiseMax(std::numeric_limits<double>::min());
  BabStopRule stop(options, progress);

  BabResult result;
  result.lower = initial_lower;
  result.witness = initial_witness;
  std::priority_queue<Node, std::vector<Node>, ByUpper> open;
  double closed_upper = 0.0;  // max over leaves taken off the queue

  const std::shared_ptr<SubdomainBounder> bounder =
      options.bounder ? options.bounder : std::make_shared<CpuSubdomainBounder>(net);
  const int batch = options.batch > 0 ? options.batch : std::max(1, bounder->preferred_batch() / 2);
  {
    std::vector<Subdomain> roots(boxes.size());
    for (size_t i = 0; i < boxes.size(); ++i) roots[i].lower = boxes[i].lower, roots[i].upper = boxes[i].upper;
    std::vector<SubdomainBound> bounds = bounder->bound(roots, p, q);
    for (size_t i = 0; i < roots.size(); ++i)
      if (bounds[i].feasible) {
        const double u = bounds[i].norm_upper;
        Eigen::VectorXd centre = roots[i].lower / 2 + roots[i].upper / 2;
        open.push(Node{std::move(roots[i]), std::move(bounds[i]), u, false, std::move(centre)});
      }
    result.nodes = static_cast<long>(roots.size());
  }
  // The search's LPs run on the first instance, the region checks of a batch of parents on all
  // threads (LPs are most of the search's own time).
  const std::shared_ptr<LpSolverPool> lps = options.lp_solvers ? options.lp_solvers : std::make_shared<LpSolverPool>();
  LpSolver& lp = lps->first();
  const RegionLp region_lp(net.input_size(), options.l1_ball);
  auto global_upper = [&] { return std::max(closed_upper, open.empty() ? 0.0 : open.top().upper); };

  // Whether a node's region is proved empty by a Farkas-verified LP (its outcome passed in as
  // proved_by_lp when another thread ran it; not sought when the node has an `inside` point).
  auto needs_lp = [](const Node& node) { return !node.region_checked && node.inside.size() == 0; };
  auto region_empty = [&](Node& node, int proved_by_lp = -1) {
    bool by_lp = proved_by_lp > 0;
    if (proved_by_lp < 0 && needs_lp(node)) {
      ++result.region_proofs;
      by_lp = region_lp.prove_empty(lp, node);
    }
    if (by_lp) {
      ++result.pruned_by_lp;
      return true;
    }
    return false;
  };
  // The side along which input bisection halves the node's box, or -1 for a neuron split.
  auto bisection_side = [&](const Node& node) -> Eigen::Index {
    if (options.input_bisection <= 0 || static_cast<int>(node.bound.unstable.size()) <= options.input_bisection)
      return -1;
    // A smaller box fixes more neurons, but not those whose kinks meet inside it, however small:
    // after kMinRelativeWidth neuron splits take over.
    Eigen::Index side = 0;  // the widest side relative to the root box's
    const double width =
        ((node.subdomain.upper - node.subdomain.lower).array() / root_width.array()).maxCoeff(&side);
    return width > kMinRelativeWidth ? side : -1;
  };
  // LP sign fixing (lp_tightening_after): the neurons of the node's first layer with free neurons
  // whose sign an LP proves over its region; `proofs` counts the proofs sought, and both signs of one
  // neuron excluded mean the region is empty (`empty` is set). A sign that the pre-activation takes
  // at a known point of the region (the node's inside point, the points of the failed proofs) is not
  // tried: such points are hints, and a wrong one costs only a proof not sought.
  auto lp_fixed_signs = [&](LpSolver& solver, const Node& node, long& proofs, bool& empty) {
    std::vector<SignFix> fixed;
    const ExactPreActivations map = first_free_layer(net, node.subdomain, node.bound);
    if (map.layer < 0 || map.layer == node.tightened_layer) return fixed;
    std::vector<char> positive(map.c.size(), 0), negative(map.c.size(), 0);  // signs seen at known points
    auto see = [&](const Eigen::VectorXd& x) {
      const Eigen::VectorXd z = map.a * x + map.c;
      for (Eigen::Index i = 0; i < z.size(); ++i) positive[i] |= z(i) > 0, negative[i] |= z(i) < 0;
    };
    if (node.inside.size() > 0) see(node.inside);
    for (const SubdomainBound::Unstable& u : node.bound.unstable) {
      if (u.layer != map.layer) continue;
      for (int s : {1, -1}) {
        if (s > 0 ? positive[u.neuron] : negative[u.neuron]) continue;
        ++proofs;
        Eigen::VectorXd point;
        if (!region_lp.excludes_sign(solver, node, map, u.neuron, s, &point)) {
          if (point.size() > 0) see(point);
          continue;
        }
        if (!fixed.empty() && fixed.back().neuron == u.neuron) {
          empty = true;
          return fixed;
        }
        fixed.push_back({map.layer, u.neuron, -s});
      }
    }
    return fixed;
  };
  // Bounds the children of each parent whose region is not proved empty, and drops the children
  // whose bounds are contradictory; a child's Jacobians are among its parent's, so the parent's bound
  // holds too. The LPs run on a node only when it is split: most nodes leave the queue by their bound
  // alone, and a bound needs no proof that the region is non-empty. A parent some of whose neurons'
  // signs LP sign fixing proves has one child, with those neurons assigned, instead of a split.
  auto split = [&](std::vector<Node>& parents) {
    const int count = static_cast<int>(parents.size());
    std::vector<char> proved_empty(count, 0);
    std::vector<std::string> errors(count);
    std::vector<std::vector<SignFix>> fixed(count);
    std::vector<long> proofs(count, 0);
    auto tightens = [&](const Node& parent) {
      return options.lp_tightening_after >= 0 && result.nodes >= options.lp_tightening_after &&
             bisection_side(parent) < 0;
    };
    int lps_needed = 0;
    for (const Node& parent : parents) lps_needed += needs_lp(parent) || tightens(parent);
#pragma omp parallel for schedule(dynamic) if (lps_needed > 1)
    for (int i = 0; i < count; ++i) {
      try {
        if (needs_lp(parents[i])) {
          ++proofs[i];
          proved_empty[i] = region_lp.prove_empty(lps->for_this_thread(), parents[i]);
        }
        if (!proved_empty[i] && tightens(parents[i])) {
          bool empty = false;
          fixed[i] = lp_fixed_signs(lps->for_this_thread(), parents[i], proofs[i], empty);
          proved_empty[i] = empty;
        }
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
    }
    for (const auto& e : errors)
      if (!e.empty()) throw std::runtime_error(e);
    for (int i = 0; i < count; ++i) {
      result.region_proofs += proofs[i];
      result.fixed_by_lp += static_cast<long>(fixed[i].size());
    }
    std::vector<Subdomain> children;
    std::vector<int> parent_of;
    std::vector<int> tightened_layer;  // per child
    auto with_states = [](const Node& parent) {
      Subdomain child = parent.subdomain;
      child.states.resize(parent.bound.pre_lower.size());
      for (size_t k = 0; k < child.states.size(); ++k)
        if (child.states[k].empty()) child.states[k].assign(parent.bound.pre_lower[k].size(), 0);
      return child;
    };
    for (int i = 0; i < count; ++i) {
      Node& parent = parents[i];
      if (!parent.region_checked && region_empty(parent, proved_empty[i])) continue;
      if (!fixed[i].empty()) {
        Subdomain child = with_states(parent);
        for (const SignFix& f : fixed[i]) child.states[f.layer][f.neuron] = static_cast<int8_t>(f.sign);
        children.push_back(std::move(child));
        parent_of.push_back(i);
        tightened_layer.push_back(fixed[i].front().layer);
        continue;
      }
      const Eigen::Index side = bisection_side(parent);
      if (side >= 0) {
        const double middle = parent.subdomain.lower(side) / 2 + parent.subdomain.upper(side) / 2;
        for (int half : {0, 1}) {
          Subdomain child = parent.subdomain;
          (half ? child.lower : child.upper)(side) = middle;
          children.push_back(std::move(child));
          parent_of.push_back(i);
          tightened_layer.push_back(-1);
        }
        continue;
      }
      const auto [layer, neuron] = branching_neuron(parent.bound);
      for (int s : {1, -1}) {
        Subdomain child = with_states(parent);
        child.states[layer][neuron] = static_cast<int8_t>(s);
        children.push_back(std::move(child));
        parent_of.push_back(i);
        tightened_layer.push_back(-1);
      }
    }
    if (children.empty()) return std::vector<Node>{};
    std::vector<SubdomainBound> bounds = bounder->bound(children, p, q);
    result.nodes += static_cast<long>(children.size());
    std::vector<Node> kept;
    for (size_t i = 0; i < children.size(); ++i) {
      if (!bounds[i].feasible) {
        ++result.pruned_by_bounds;
        continue;
      }
      const Node& parent = parents[parent_of[i]];
      const double u = std::min(parent.upper, bounds[i].norm_upper);
      Eigen::VectorXd inside;
      if (parent.inside.size() > 0)
        inside = region_lp.holds(children[i], bounds[i], parent.inside)
                     ? parent.inside
                     : region_lp.nearby_point(children[i], bounds[i], parent.inside);
      kept.push_back(Node{std::move(children[i]), std::move(bounds[i]), u, false, std::move(inside), parent.basis,
                          tightened_layer[i]});
    }
    return kept;
  };
  // A leaf has one Jacobian: certify it at an interior point of its region, one near its `inside`
  // point where that is strictly inside (a certified value holds wherever the point lies: the leaf's
  // bound stays among the closed ones either way), else the Chebyshev centre. Returns false when no
  // interior point could be certified.
  auto certify_leaf = [&](const Node& leaf) {
    ++result.leaves;
    const Eigen::VectorXd v = operator_norm(leaf.bound.jacobian_center, p, q).argmax;
    auto certify_at = [&](const Eigen::VectorXd& x) {
      const CertifiedDirectional cd = certified_directional_lower(net, x, v, p, q);
      if (cd.pattern_verified && cd.lower > result.lower) result.lower = cd.lower, result.witness = x;
      return cd.pattern_verified;
    };
    Eigen::VectorXd x = region_lp.nearby_point(leaf.subdomain, leaf.bound, leaf.inside);
    if (region_lp.strictly_inside(leaf.subdomain, leaf.bound, &x) && certify_at(x)) return true;
    return region_lp.interior_point(lp, leaf.subdomain, leaf.bound, &x) && certify_at(x);
  };
  // Takes a leaf off the search: its bound joins the closed ones unless its region is proved empty.
  // Returns false for a leaf that keeps its bound without a certified witness.
  auto close_leaf = [&](Node& leaf) {
    if (!certify_leaf(leaf)) {
      if (!leaf.region_checked && region_empty(leaf)) return true;
      closed_upper = std::max(closed_upper, leaf.upper);
      return false;
    }
    closed_upper = std::max(closed_upper, leaf.upper);
    return true;
  };
  // A depth-first dive from the best open node, keeping the larger child whose region is not proved
  // empty and queueing the other, so that leaves (and certified witnesses) are reached early.
  auto dive = [&]() {
    if (open.empty() || open.top().bound.unstable.empty()) return;
    std::vector<Node> path{open.top()};
    open.pop();
    while (!path[0].bound.unstable.empty()) {
      std::vector<Node> children = split(path);
      if (children.empty()) return;
      std::sort(children.begin(), children.end(), [](const Node& a, const Node& b) { return a.upper > b.upper; });
      size_t next = 0;
      while (next < children.size() && region_empty(children[next])) ++next;
      if (next == children.size()) return;
      for (size_t i = next + 1; i < children.size(); ++i) open.push(std::move(children[i]));
      path[0] = std::move(children[next]);
      path[0].region_checked = true;
    }
    close_leaf(path[0]);
  };

  for (long iteration = 0;; ++iteration) {
    result.status = stop.status(global_upper(), result.lower, open.empty() ? 0.0 : open.top().upper, result.nodes,
                                static_cast<long>(open.size()));
    if (!result.status.empty()) break;
    if (open.top().bound.unstable.empty()) {
      Node leaf = open.top();
      open.pop();
      if (!close_leaf(leaf) && closed_upper == leaf.upper && closed_upper > result.lower * (1 + options.tol)) {
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

namespace {

// x's activation pattern in floating point (each neuron's sign, -1 on a kink; each MaxMin pair +1
// where it keeps its order, -1 where it swaps), and estimates of x's distance to each kink:
// |z_i| / ||grad z_i||, each gradient's norm estimated from kDepthProbes random directions r
// (E (g.r)^2 = ||g||^2). They spare the exact rows of the neurons clear of x (region_rows).
struct PatternAt {
  std::vector<NeuronStates> states;
  std::vector<Eigen::VectorXd> pre_activations, depths;  // per activation layer (MaxMin: per pair)
  double estimated_depth = std::numeric_limits<double>::infinity();
};

constexpr int kDepthProbes = 16;

PatternAt activation_pattern_at(const Network& net, const Eigen::VectorXd& x) {
  PatternAt out;
  std::mt19937_64 rng(0);
  std::normal_distribution<double> normal;
  Eigen::MatrixXd z = x;
  Eigen::MatrixXd t = Eigen::MatrixXd::NullaryExpr(x.size(), kDepthProbes, [&] { return normal(rng); });
  auto depth = [&](double value, const Eigen::Ref<const Eigen::RowVectorXd>& tangent) {
    const double gradient = tangent.norm() / std::sqrt(static_cast<double>(kDepthProbes));
    return gradient > 0 ? std::abs(value) / gradient : std::numeric_limits<double>::infinity();
  };
  for (const Layer& l : net.layers()) {
    if (l.is_affine()) {
      z = apply_linear(l, z, true);
      t = apply_linear(l, t, false);
    } else if (l.is_activation()) {
      NeuronStates s(z.rows(), 0);
      Eigen::VectorXd d;
      if (l.kind == LayerKind::MaxMin) {
        const Eigen::Index half = z.rows() / 2;
        d.resize(half);
        for (Eigen::Index i = 0; i < half; ++i) {
          d(i) = depth(z(i, 0) - z(i + half, 0), t.row(i) - t.row(i + half));
          s[i] = z(i, 0) >= z(i + half, 0) ? 1 : -1;
          if (s[i] < 0) t.row(i).swap(t.row(i + half));
        }
      } else {
        d.resize(z.rows());
        for (Eigen::Index i = 0; i < z.rows(); ++i) {
          d(i) = depth(z(i, 0), t.row(i));
          s[i] = z(i, 0) > 0 ? 1 : -1;
        }
        t = activation_derivative(l, z.col(0)).asDiagonal() * t;
      }
      if (d.size() > 0) out.estimated_depth = std::min(out.estimated_depth, d.minCoeff());
      out.states.push_back(std::move(s));
      out.depths.push_back(std::move(d));
      out.pre_activations.push_back(z.col(0));
      apply_activation(l, z);
    }
  }
  return out;
}

// The rows g y <= h of x's region (its pattern) for the given neurons (activation layer, neuron; a
// MaxMin pair by its first neuron, z_i its difference): g = -s grad z_i and h = s z_i(x) + g x for
// the neuron's sign s. By reverse products through the prefix of each neuron's layer, in floating
// point: a hint's rows (no error bounds), for far fewer neurons than bound_subdomain's rows of them
// all.
SubdomainBound region_rows(const Network& net, const PatternAt& pattern, const Eigen::VectorXd& x,
                           const std::vector<std::pair<int, Eigen::Index>>& neurons) {
  const Eigen::Index n = x.size(), m = static_cast<Eigen::Index>(neurons.size());
  std::vector<std::vector<Eigen::Index>> rows_of_layer(pattern.states.size());
  for (Eigen::Index k = 0; k < m; ++k) rows_of_layer[neurons[k].first].push_back(k);
  // u's columns: each neuron's adjoint at the current layer's output, its index among `neurons`
  Eigen::MatrixXd u(0, 0);
  std::vector<Eigen::Index> column_row;
  Eigen::VectorXd slack(m);
  int a = static_cast<int>(pattern.states.size());
  const auto& layers = net.layers();
  for (auto it = layers.rbegin(); it != layers.rend(); ++it) {
    const Layer& l = *it;
    if (l.is_affine()) {
      if (u.cols() > 0) u = apply_linear_transpose(l, u, false);
      continue;
    }
    if (!l.is_activation()) continue;
    --a;
    const NeuronStates& s = pattern.states[a];
    const Eigen::VectorXd& z = pattern.pre_activations[a];
    if (l.kind == LayerKind::MaxMin) {
      const Eigen::Index half = z.size() / 2;
      if (u.cols() > 0)
        for (Eigen::Index i = 0; i < half; ++i)
          if (s[i] < 0) u.row(i).swap(u.row(i + half));
    } else if (u.cols() > 0) {
      u = activation_derivative(l, z).asDiagonal() * u;
    }
    const std::vector<Eigen::Index>& own = rows_of_layer[a];
    if (own.empty()) continue;
    const Eigen::Index first = u.cols();
    u.conservativeResize(z.size(), first + static_cast<Eigen::Index>(own.size()));
    u.rightCols(own.size()).setZero();
    for (size_t j = 0; j < own.size(); ++j) {
      const Eigen::Index k = own[j], i = neurons[k].second, col = first + static_cast<Eigen::Index>(j);
      const int sign = s[i] > 0 ? 1 : -1;
      u(i, col) = -sign;
      double value = z(i);
      if (l.kind == LayerKind::MaxMin) {
        u(i + z.size() / 2, col) = sign;
        value -= z(i + z.size() / 2);
      }
      slack(k) = sign * value;
      column_row.push_back(k);
    }
  }
  SubdomainBound b;
  b.region_g.resize(m, n);
  for (Eigen::Index c = 0; c < u.cols(); ++c) b.region_g.row(column_row[c]) = u.col(c).transpose();
  b.region_h = slack + b.region_g * x;
  return b;
}

// Up to `count` neurons (activation layer, neuron) in order of x's estimated distance to their kinks,
// as far as their rows' reverse products stay within kMaxRowWork multiply-adds (at least one).
std::vector<std::pair<int, Eigen::Index>> nearest_neurons(const Network& net, const PatternAt& pattern, size_t count) {
  std::vector<std::pair<double, std::pair<int, Eigen::Index>>> nearest;
  for (size_t a = 0; a < pattern.depths.size(); ++a)
    for (Eigen::Index i = 0; i < pattern.depths[a].size(); ++i)
      if (std::isfinite(pattern.depths[a](i))) nearest.push_back({pattern.depths[a](i), {static_cast<int>(a), i}});
  count = std::min(nearest.size(), count);
  std::partial_sort(nearest.begin(), nearest.begin() + count, nearest.end());
  std::vector<double> row_work;  // multiply-adds of one row's reverse products, per activation layer
  double work = 0.0;
  for (const Layer& l : net.layers()) {
    work += l.multiply_adds();
    if (l.is_activation()) row_work.push_back(work);
  }
  std::vector<std::pair<int, Eigen::Index>> chosen;
  work = 0.0;
  for (size_t k = 0; k < count && (k == 0 || work + row_work[nearest[k].second.first] <= kMaxRowWork); ++k) {
    chosen.push_back(nearest[k].second);
    work += row_work[nearest[k].second.first];
  }
  return chosen;
}

}  // namespace

Eigen::VectorXd deeper_region_point(const Network& net, const Eigen::VectorXd& x, const InputBox& box,
                                    const std::optional<L1Ball>& ball, double min_depth) {
  const Eigen::Index n = net.input_size();
  if (x.size() != n || box.lower.size() != n || box.upper.size() != n)
    throw std::invalid_argument("deeper_region_point: x and the box need the network's input size");
  if (!(min_depth > 0 && std::isfinite(min_depth)))
    throw std::invalid_argument("deeper_region_point: min_depth must be positive and finite");
  if (!net.is_piecewise_linear())
    throw std::invalid_argument("deeper_region_point: the network's activations must be piecewise linear");
  if (!x.allFinite()) return Eigen::VectorXd();
  PatternAt pattern = activation_pattern_at(net, x);
  if (pattern.estimated_depth >= kDepthEstimateMargin * min_depth) return Eigen::VectorXd();
  // The exact rows of the neurons nearest x by the estimates, a few times as many as the LP keeps.
  const size_t max_rows = static_cast<size_t>(std::max<Eigen::Index>(16, kMaxLpEntries / n));
  const SubdomainBound all = region_rows(net, pattern, x, nearest_neurons(net, pattern, kCandidateRowsPerLpRow * max_rows));
  Subdomain s{box.lower, box.upper, pattern.states};
  const Eigen::VectorXd row_norms = all.region_g.rowwise().norm();
  auto slack_at = [&](const Eigen::VectorXd& y) -> Eigen::VectorXd { return all.region_h - all.region_g * y; };
  auto depth_of = [&](const Eigen::VectorXd& slack) {  // the distance to the nearest kink
    double depth = std::numeric_limits<double>::infinity();
    for (Eigen::Index i = 0; i < slack.size(); ++i)
      if (row_norms(i) > 0) depth = std::min(depth, slack(i) / row_norms(i));
    return depth;
  };
  const Eigen::VectorXd slack = slack_at(x);
  const double depth = depth_of(slack);
  if (!(depth < min_depth)) return Eigen::VectorXd();
  // The LP runs on a box around x with the rows that can bind in it (row i where its slack is under
  // ||g_i||_1 times the box's half-width): over the whole of a 784-1024-1024-10 net's region it
  // took 40-70 s, with 54 / 169 / 347 rows 0.15 / 1.3 / 6.4 s. The box shrinks to keep at most
  // kMaxLpEntries / n of them.
  const Eigen::VectorXd reach_of_row = slack.array() / all.region_g.rowwise().lpNorm<1>().array();
  double reach = kDeeperPointReach * min_depth;
  std::vector<double> reaches;
  for (Eigen::Index i = 0; i < slack.size(); ++i)
    if (reach_of_row(i) < reach) reaches.push_back(reach_of_row(i));
  if (reaches.size() > max_rows) {
    std::nth_element(reaches.begin(), reaches.begin() + max_rows, reaches.end());
    reach = reaches[max_rows];
  }
  s.lower = s.lower.cwiseMax((x.array() - reach).matrix());
  s.upper = s.upper.cwiseMin((x.array() + reach).matrix());
  std::vector<Eigen::Index> near;
  for (Eigen::Index i = 0; i < slack.size(); ++i)
    if (reach_of_row(i) < reach) near.push_back(i);
  SubdomainBound b;
  const Eigen::Index m = static_cast<Eigen::Index>(near.size());
  b.region_g.resize(m, n), b.region_h.resize(m);
  b.region_g_error = Eigen::MatrixXd::Zero(m, n), b.region_h_error = Eigen::VectorXd::Zero(m);  // a hint's
  for (Eigen::Index k = 0; k < m; ++k) {
    b.region_g.row(k) = all.region_g.row(near[k]);
    b.region_h(k) = all.region_h(near[k]);
  }
  LpSolver lp;
  Eigen::VectorXd centre;
  try {
    if (!RegionLp(n, ball).interior_point(lp, s, b, &centre)) return Eigen::VectorXd();
  } catch (const std::runtime_error&) {  // HiGHS did not solve the LP: no hint
    return Eigen::VectorXd();
  }
  // The rows left out are checked by x's pattern and the estimates at the centre.
  if (!(depth_of(slack_at(centre)) > depth)) return Eigen::VectorXd();
  const PatternAt there = activation_pattern_at(net, centre);
  return there.states == pattern.states && there.estimated_depth > pattern.estimated_depth ? centre : Eigen::VectorXd();
}

}  // namespace lipcert
