#include <algorithm>
#include <limits>
#include <memory>
#include <optional>
#include <queue>
#include <string>
#include <vector>

#include "lipcert/bab.hpp"

#include "bab_stop_rule.hpp"
#include "region_point.hpp"
#include "lipcert/certified_jvp.hpp"
#include "lipcert/linear_ops.hpp"
#include "lipcert/lp.hpp"

namespace lipcert {

namespace {

// The network with its convolutions and poolings as the Dense layers they are, on the flat input:
// dense_matrix copies a kernel's entries exactly (each output reads each input through at most one
// tap), and a pooling window of 2^k elements weighs each by 2^-k exactly; a window of another size
// has weights binary floating point does not hold, and is refused, as are layers other than these
// and ReLU/LeakyReLU.
Network unrolled(const Network& net) {
  std::vector<Layer> layers;
  for (size_t i = 0; i < net.layers().size(); ++i) {
    const Layer& l = net.layers()[i];
    const int window = l.kernel_h * l.kernel_w;
    if (l.kind == LayerKind::Flatten) continue;
    if (l.kind == LayerKind::Dense || l.is_piecewise_linear_activation()) {
      layers.push_back(l);
    } else if (l.kind == LayerKind::Conv2d || (l.kind == LayerKind::AvgPool2d && (window & (window - 1)) == 0)) {
      layers.push_back(Layer::dense(dense_matrix(l), bias_vector(l)));
    } else {
      throw UnsupportedLayerError(
          "layer " + std::to_string(i) + " (" + layer_kind_name(l.kind) +
          "): the global constant by branch and bound takes Dense and Conv2d layers, average pooling over 2^k "
          "elements and ReLU/LeakyReLU activations; bound on a box, or use autolip or sdp for a global bound");
    }
  }
  if (layers.empty()) layers.push_back(Layer::flatten());
  return Network(TensorShape{net.input_size()}, std::move(layers));
}

// Proves that a partial activation pattern of f has an empty region in R^n, from the layers after the
// first: the outputs of layer 0's fixed neurons are left free (within their signs), so every variable
// is sign-constrained and the Farkas proof survives rounding even on an unbounded set. This is what
// prunes the patterns realised only at infinity, which no LP over a face of the cube can exclude:
// e.g. a neuron after a layer that is all inactive reads only its bias.
class RegionRelaxation {
 public:
  // Disabled (prove() false) unless every pair of consecutive activation layers of f is joined by
  // exactly one Dense layer.
  explicit RegionRelaxation(const Network& net) {
    const Layer* dense = nullptr;
    bool seen_activation = false;
    for (const Layer& l : net.layers()) {
      if (l.kind == LayerKind::Dense) {
        if (dense && seen_activation) return;
        dense = &l;
      } else if (l.is_activation()) {
        if (seen_activation && !dense) return;
        if (seen_activation) links_.push_back(dense);
        slopes_.push_back(l.kind == LayerKind::ReLU ? 0.0 : l.negative_slope);
        seen_activation = true;
        dense = nullptr;
      }
    }
    enabled_ = true;
  }

  // states: the signs of f's neurons in every activation layer.
  bool prove(LpSolver& lp, const std::vector<NeuronStates>& states) const {
    if (!enabled_) return false;
    // Layers 0 .. last: all fully fixed but the last, of which the fixed neurons take part.
    int last = 0;
    while (last + 1 < static_cast<int>(states.size()) &&
           std::all_of(states[last].begin(), states[last].end(), [](int8_t s) { return s != 0; }))
      ++last;
    if (last == 0) return false;
    // Variables: v_i >= 0 with z_i = state_i v_i per fixed neuron, and w_i = |slope| v_i >= 0 per
    // inactive LeakyReLU neuron that feeds the next layer (its output is -sign(slope) w_i).
    std::vector<std::vector<int>> v(last + 1), w(last + 1);
    int columns = 0;
    for (int k = 0; k <= last; ++k) {
      const int size = static_cast<int>(states[k].size());
      v[k].assign(size, -1), w[k].assign(size, -1);
      for (int i = 0; i < size; ++i) {
        if (states[k][i] == 0) continue;
        v[k][i] = columns++;
        if (k < last && states[k][i] < 0 && slopes_[k] != 0.0) w[k][i] = columns++;
      }
    }
    std::vector<Eigen::VectorXd> rows;
    std::vector<double> rhs;
    for (int k = 0; k < last; ++k)
      for (int i = 0; i < static_cast<int>(w[k].size()); ++i)
        if (w[k][i] >= 0) {  // |slope| v_i - w_i = 0
          rows.push_back(Eigen::VectorXd::Zero(columns));
          rows.back()(v[k][i]) = std::abs(slopes_[k]);
          rows.back()(w[k][i]) = -1.0;
          rhs.push_back(0.0);
        }
    for (int k = 1; k <= last; ++k) {  // sum_j W_rj y_j - state_r v_r = -b_r
      const Layer& dense = *links_[k - 1];
      for (int r = 0; r < static_cast<int>(v[k].size()); ++r) {
        if (v[k][r] < 0) continue;
        Eigen::VectorXd row = Eigen::VectorXd::Zero(columns);
        for (int j = 0; j < static_cast<int>(v[k - 1].size()); ++j) {
          if (states[k - 1][j] > 0) row(v[k - 1][j]) = dense.weight(r, j);
          else if (w[k - 1][j] >= 0) row(w[k - 1][j]) = slopes_[k - 1] > 0 ? -dense.weight(r, j) : dense.weight(r, j);
        }
        row(v[k][r]) = -static_cast<double>(states[k][r]);
        rows.push_back(std::move(row));
        rhs.push_back(-dense.bias(r));
      }
    }
    Eigen::MatrixXd e(rows.size(), columns);
    for (size_t i = 0; i < rows.size(); ++i) e.row(static_cast<Eigen::Index>(i)) = rows[i].transpose();
    return lp.prove_no_nonnegative_solution(e, Eigen::Map<const Eigen::VectorXd>(rhs.data(), rhs.size()));
  }

 private:
  bool enabled_ = false;
  std::vector<double> slopes_;       // per activation layer
  std::vector<const Layer*> links_;  // the Dense layer before activation layer k + 1
};

// Each neuron's sign on the node: its assigned state, else the sign its bounds prove, else 0.
std::vector<NeuronStates> signs(const Subdomain& s, const SubdomainBound& b) {
  std::vector<NeuronStates> out(b.pre_lower.size());
  for (size_t k = 0; k < out.size(); ++k) {
    out[k].assign(b.pre_lower[k].size(), 0);
    for (Eigen::Index i = 0; i < b.pre_lower[k].size(); ++i) {
      const int state = k < s.states.size() && !s.states[k].empty() ? s.states[k][i] : 0;
      out[k][i] = static_cast<int8_t>(state != 0 ? state : b.pre_lower[k](i) > 0 ? 1 : b.pre_upper[k](i) < 0 ? -1 : 0);
    }
  }
  return out;
}

// The certified ||J_f(x)|| along the exact norm's maximiser of J_f(x), or nothing where the
// activation pattern at x cannot be proved.
std::optional<double> certified_norm_at(const Network& net, const Eigen::VectorXd& x, Norm p, Norm q) {
  Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> j(net.output_size(), net.input_size());
  net.jacobian(x, j.data());
  const CertifiedDirectional cd = certified_directional_lower(net, x, operator_norm(j, p, q).argmax, p, q);
  if (!cd.pattern_verified) return std::nullopt;
  return cd.lower;
}

// The faces of the cube [-1, 1]^n x [0, 1] other than t = 0, thickened to half the cube's width
// (2n + 1 boxes in (x, t)): the cone {(x, t) : t > 0, x / t in R} over a region R with interior meets
// one of them with interior, so R is empty once its cone is proved empty on each.
std::vector<InputBox> cube_faces(int n) {
  std::vector<InputBox> faces;
  for (int i = 0; i <= n; ++i)
    for (double side : {1.0, -1.0}) {
      if (i == n && side < 0) continue;
      InputBox face{Eigen::VectorXd::Constant(n + 1, -1.0), Eigen::VectorXd::Ones(n + 1)};
      face.lower(n) = 0.0;
      if (side > 0) face.lower(i) = 0.5;
      else face.upper(i) = -0.5;
      faces.push_back(std::move(face));
    }
  return faces;
}

struct GlobalNode {
  Subdomain subdomain;  // an unbounded box: only the assignment restricts it
  SubdomainBound bound;
  double upper;
  Eigen::VectorXd inside;  // a point strictly inside the region, in floating point (a hint), or empty
  std::vector<char> faces;  // the cube faces on which the region's cone is not proved empty
};

struct ByUpperBound {
  bool operator()(const GlobalNode& a, const GlobalNode& b) const { return a.upper < b.upper; }
};

bool strictly_inside(const SubdomainBound& b, const Eigen::VectorXd& x) {
  return x.size() > 0 && (b.region_g.rows() == 0 || (b.region_g * x - b.region_h).maxCoeff() < 0.0);
}

}  // namespace

BabResult lipschitz_bab_global(const Network& original, Norm p, Norm q, const BabOptions& options,
                               double initial_lower, const Eigen::VectorXd& initial_witness,
                               const std::function<bool(const BabProgress&)>& progress) {
  if (options.bounder || options.l1_ball || options.input_bisection != 0)
    throw std::invalid_argument("lipschitz_bab_global: bounder, l1_ball and input_bisection must be unset");
  const int n = original.input_size();
  if (initial_witness.size() != n) throw std::invalid_argument("lipschitz_bab_global: the witness needs the input size");
  const Network net = unrolled(original);
  BabStopRule stop(options, progress);
  const double inf = std::numeric_limits<double>::infinity();
  const Eigen::VectorXd everywhere_lo = Eigen::VectorXd::Constant(n, -inf), everywhere_hi = Eigen::VectorXd::Constant(n, inf);
  const std::vector<InputBox> faces = cube_faces(n);
  const RegionRelaxation relaxation(net);
  // The face proofs of a region run on all threads, the rest of the search on the first instance.
  const std::shared_ptr<LpSolverPool> lps = options.lp_solvers ? options.lp_solvers : std::make_shared<LpSolverPool>();
  LpSolver& lp = lps->first();

  BabResult result;
  result.lower = initial_lower;
  result.witness = initial_witness;
  double closed_upper = 0.0;  // max over leaves kept without a certified witness
  std::priority_queue<GlobalNode, std::vector<GlobalNode>, ByUpperBound> open;
  {
    std::vector<Subdomain> root{Subdomain{everywhere_lo, everywhere_hi, {}}};
    SubdomainBound b = bound_subdomain(net, root[0], p, q, false);
    const double u = b.norm_upper;
    open.push(GlobalNode{std::move(root[0]), std::move(b), u, Eigen::VectorXd::Zero(n),
                         std::vector<char>(faces.size(), 1)});
    result.nodes = 1;
  }
  auto global_upper = [&] { return std::max(closed_upper, open.empty() ? 0.0 : open.top().upper); };

  // An interior point of the region by its Chebyshev centre over R^n (HiGHS, uncertified: a hint).
  // An LP that HiGHS does not solve finds none: the region then needs a proof to be pruned.
  auto find_inside = [&](GlobalNode& node) {
    Eigen::VectorXd center;
    double radius = -1.0;
    try {
      radius = lp.chebyshev_radius(node.bound.region_g, node.bound.region_h, everywhere_lo, everywhere_hi, &center);
    } catch (const std::runtime_error&) {
    }
    if (radius > 0 && strictly_inside(node.bound, center)) node.inside = center;
    return node.inside.size() > 0;
  };
  // Proves the region empty: its cone (rows G x - h t <= 0) on every cube face not yet excluded,
  // each by a Farkas certificate, or all of R^n at once by the relaxation from the second layer.
  auto prove_empty = [&](GlobalNode& node) {
    ++result.region_proofs;
    const SubdomainBound& b = node.bound;
    const Eigen::Index m = b.region_g.rows();
    Eigen::MatrixXd g(m, n + 1), g_error(m, n + 1);
    g << b.region_g, -b.region_h;
    g_error << b.region_g_error, b.region_h_error;
    const Eigen::VectorXd zero = Eigen::VectorXd::Zero(m);
    std::vector<std::string> errors(faces.size());
#pragma omp parallel for schedule(dynamic)
    for (int f = 0; f < static_cast<int>(faces.size()); ++f) {
      if (!node.faces[f]) continue;
      try {
        if (lps->for_this_thread().prove_infeasible(g, zero, g_error, zero, faces[f].lower, faces[f].upper))
          node.faces[f] = 0;
      } catch (const std::exception& e) {
        errors[f] = e.what();
      }
    }
    for (const auto& e : errors)
      if (!e.empty()) throw std::runtime_error(e);
    const bool all = std::none_of(node.faces.begin(), node.faces.end(), [](char alive) { return alive; });
    return all || relaxation.prove(lp, signs(node.subdomain, b));
  };
  // A leaf has one Jacobian, certified at a point strictly inside its region; false where none is.
  auto certify_leaf = [&](GlobalNode& leaf) {
    ++result.leaves;
    for (int attempt = 0; attempt < 2; ++attempt) {
      if (attempt == 1 && !find_inside(leaf)) return false;
      if (leaf.inside.size() == 0) continue;
      const std::optional<double> value = certified_norm_at(net, leaf.inside, p, q);
      if (!value) {
        leaf.inside.resize(0);
        continue;
      }
      if (*value > result.lower) result.lower = *value, result.witness = leaf.inside;
      return true;
    }
    return false;
  };

  // A leaf leaves the search: proved empty, or its bound joins the closed ones. False where it has no
  // certified witness either.
  auto close_leaf = [&](GlobalNode& leaf) {
    const bool certified = certify_leaf(leaf);
    if (!certified && prove_empty(leaf)) {
      ++result.pruned_by_lp;
      return true;
    }
    closed_upper = std::max(closed_upper, leaf.upper);
    return certified;
  };
  // The children of a node that are not proved empty. Neurons are split in layer order, so that every
  // assigned neuron's row is an exact affine function of x. Within the first layer with free neurons,
  // the split whose larger child bound is smallest (strong branching: the Jacobian-set bounds of all
  // candidate children are cheap next to the LPs that the search saves).
  auto expand = [&](const GlobalNode& node) {
    int layer = std::numeric_limits<int>::max();
    for (const auto& u : node.bound.unstable) layer = std::min(layer, u.layer);
    std::vector<Subdomain> children;
    for (const auto& u : node.bound.unstable) {
      if (u.layer != layer) continue;
      for (int s : {1, -1}) {
        Subdomain child = node.subdomain;
        child.states.resize(node.bound.pre_lower.size());
        for (size_t k = 0; k < child.states.size(); ++k)
          if (child.states[k].empty()) child.states[k].assign(node.bound.pre_lower[k].size(), 0);
        child.states[layer][u.neuron] = static_cast<int8_t>(s);
        children.push_back(std::move(child));
      }
    }
    // One at a time: these bounds take microseconds, less than waking a second thread.
    std::vector<SubdomainBound> bounds;
    for (const Subdomain& child : children) bounds.push_back(bound_subdomain(net, child, p, q, false));
    auto child_upper = [&](size_t i) { return bounds[i].feasible ? std::min(node.upper, bounds[i].norm_upper) : -inf; };
    size_t best = 0;
    for (size_t i = 2; i < children.size(); i += 2)
      if (std::max(child_upper(i), child_upper(i + 1)) < std::max(child_upper(best), child_upper(best + 1))) best = i;
    result.nodes += 2;
    std::vector<GlobalNode> kept;
    for (size_t i = best; i < best + 2; ++i) {
      if (!bounds[i].feasible) {
        ++result.pruned_by_bounds;
        continue;
      }
      GlobalNode child{std::move(children[i]), std::move(bounds[i]), child_upper(i), Eigen::VectorXd(), node.faces};
      if (strictly_inside(child.bound, node.inside)) {
        child.inside = node.inside;
      } else if (Eigen::VectorXd nearby = nearby_region_point(child.bound.region_g, child.bound.region_h, everywhere_lo,
                                                             everywhere_hi, node.inside);
                 strictly_inside(child.bound, nearby)) {
        child.inside = std::move(nearby);
      } else if (!find_inside(child) && prove_empty(child)) {
        ++result.pruned_by_lp;
        continue;
      }
      kept.push_back(std::move(child));
    }
    return kept;
  };

  for (long iteration = 0;; ++iteration) {
    result.status = stop.status(global_upper(), result.lower, open.empty() ? 0.0 : open.top().upper, result.nodes,
                                static_cast<long>(open.size()));
    if (!result.status.empty()) break;
    GlobalNode node = open.top();
    open.pop();
    if (node.bound.unstable.empty()) {
      if (!close_leaf(node) && closed_upper > result.lower * (1 + options.tol)) {
        result.status = "stalled";  // the largest leaf has no interior point we can certify
        break;
      }
      continue;
    }
    std::vector<GlobalNode> children = expand(node);
    // Every 256th node, a depth-first dive from it (within the time limit): the child with the larger
    // bound is expanded down to a leaf, the others queued, so that certified witnesses (the lower
    // bound) come early. More often, the dives' LPs cost more than the search saves (abalone: every
    // 8th node, 3x the time to exact; every 256th, +7%).
    while (iteration % 256 == 0 && !children.empty() && stop.elapsed() <= options.time_limit) {
      std::sort(children.begin(), children.end(),
                [](const GlobalNode& a, const GlobalNode& b) { return a.upper > b.upper; });
      for (size_t i = 1; i < children.size(); ++i) open.push(std::move(children[i]));
      GlobalNode next = std::move(children[0]);
      children.clear();
      if (next.bound.unstable.empty()) close_leaf(next);
      else children = expand(next);
    }
    for (GlobalNode& child : children) open.push(std::move(child));
  }
  result.upper = global_upper();
  result.open = static_cast<long>(open.size());
  result.exact = result.upper - result.lower <= options.tol * result.upper;
  return result;
}

}  // namespace lipcert
