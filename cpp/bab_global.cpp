#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "lipcert/bab.hpp"
#include "lipcert/certified_jvp.hpp"
#include "lipcert/lp.hpp"

namespace lipcert {

namespace {

// g(x, t) = t f(x / t) (t > 0) as a network on (x, t). Every layer carries u = t + 1 >= 1 in one
// extra last coordinate, which stays on the identity branch of every ReLU/LeakyReLU (so it is never
// branched on), and a Dense layer W y + b becomes W y + b (u - 1) = W y + b t: positively homogeneous
// in (x, t), like the activations. The first Dense layer reads t itself, the last drops u.
Network homogenized(const Network& net) {
  const int n = net.input_size();
  std::vector<const Layer*> kept;
  for (size_t i = 0; i < net.layers().size(); ++i) {
    const Layer& l = net.layers()[i];
    if (l.kind == LayerKind::Flatten) continue;
    if (l.kind != LayerKind::Dense && !l.is_piecewise_linear_activation())
      throw UnsupportedLayerError("layer " + std::to_string(i) + " (" + layer_kind_name(l.kind) +
                                  "): the global constant by branch and bound takes Dense layers and ReLU/LeakyReLU "
                                  "activations; unroll convolutions, or bound on a box");
    kept.push_back(&l);
  }
  std::vector<Layer> layers;
  if (kept.empty() || kept.front()->kind != LayerKind::Dense) {  // an entry layer (x, t) -> (x, t + 1)
    Eigen::VectorXd bias = Eigen::VectorXd::Zero(n + 1);
    bias(n) = 1.0;
    layers.push_back(Layer::dense(Eigen::MatrixXd::Identity(n + 1, n + 1), bias));
  }
  for (size_t k = 0; k < kept.size(); ++k) {
    const Layer& l = *kept[k];
    if (l.kind != LayerKind::Dense) {
      layers.push_back(Layer::activation(l.kind, l.negative_slope));
      continue;
    }
    const bool reads_t = layers.empty(), last = k + 1 == kept.size();
    const Eigen::Index out = l.weight.rows(), in = l.weight.cols();
    Eigen::MatrixXd w = Eigen::MatrixXd::Zero(out + (last ? 0 : 1), in + 1);
    Eigen::VectorXd b = Eigen::VectorXd::Zero(w.rows());
    w.topLeftCorner(out, in) = l.weight;
    w.block(0, in, out, 1) = l.bias;
    if (!reads_t) b.head(out) = -l.bias;  // b u - b = b t
    if (!last) {
      w(out, in) = 1.0;
      b(out) = reads_t ? 1.0 : 0.0;
    }
    layers.push_back(Layer::dense(std::move(w), std::move(b)));
  }
  if (layers.back().kind != LayerKind::Dense) {  // drop u after a final activation
    const int m = net.output_size();
    Eigen::MatrixXd w = Eigen::MatrixXd::Zero(m, m + 1);
    w.leftCols(m).setIdentity();
    layers.push_back(Layer::dense(std::move(w), Eigen::VectorXd::Zero(m)));
  }
  TensorShape input;
  input.channels = n + 1;
  return Network(input, std::move(layers));
}

// Proves that a partial activation pattern of f has an empty region in R^n, from the layers after the
// first: the outputs of layer 0's fixed neurons are left free (within their signs), so every variable
// is sign-constrained and the Farkas proof survives rounding even on an unbounded set. This is what
// prunes g's nodes that live only on its face t = 0 (points at infinity), where the LP over a box
// cannot help: e.g. a neuron after a layer that is all inactive reads only its bias.
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

  // states: the signs of g's neurons in every activation layer (f's neurons, then the u channel,
  // ignored).
  bool prove(LpSolver& lp, const std::vector<NeuronStates>& states) const {
    if (!enabled_) return false;
    // Layers 0 .. last: all fully fixed but the last, of which the fixed neurons take part.
    int last = 0;
    while (last + 1 < static_cast<int>(states.size()) &&
           std::all_of(states[last].begin(), states[last].end() - 1, [](int8_t s) { return s != 0; }))
      ++last;
    if (last == 0) return false;
    // Variables: v_i >= 0 with z_i = state_i v_i per fixed neuron, and w_i = |slope| v_i >= 0 per
    // inactive LeakyReLU neuron that feeds the next layer (its output is -sign(slope) w_i).
    std::vector<std::vector<int>> v(last + 1), w(last + 1);
    int columns = 0;
    for (int k = 0; k <= last; ++k) {
      const int size = static_cast<int>(states[k].size()) - 1;
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

}  // namespace

BabResult lipschitz_bab_global(const Network& net, Norm p, Norm q, const BabOptions& options, double initial_lower,
                               const Eigen::VectorXd& initial_witness,
                               const std::function<bool(const BabProgress&)>& progress) {
  if (options.bounder || options.l1_ball || options.jacobian_columns != 0 || options.prove_no_interior)
    throw std::invalid_argument(
        "lipschitz_bab_global: bounder, l1_ball, jacobian_columns and prove_no_interior must be unset");
  const int n = net.input_size();
  if (initial_witness.size() != n) throw std::invalid_argument("lipschitz_bab_global: the witness needs the input size");
  const Network g = homogenized(net);
  // g's regions are cones with apex 0, which lies in every closed region, so no LP could prove one
  // empty on a box around it. A cone with interior in t > 0 meets the faces of the cube
  // [-1, 1]^n x [0, 1] other than t = 0; the search covers them thickened, as 2n + 1 boxes that stay
  // away from the apex.
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
  BabOptions search = options;
  search.jacobian_columns = n;
  const auto lp = std::make_shared<LpSolver>();
  search.prove_no_interior = [relaxation = RegionRelaxation(net), lp](const Subdomain& s, const SubdomainBound& b) {
    return relaxation.prove(*lp, signs(s, b));
  };
  // The seed's witness stays in f's coordinates: the search only reports whether a leaf beat it.
  BabResult result = lipschitz_bab(g, faces, p, q, search, initial_lower, Eigen::VectorXd::Zero(n + 1), progress);

  // A leaf raised the lower bound at (x, t), t > 0: its point of R^n is x / t, certified again on f
  // itself (the division rounds).
  double best = initial_lower;
  Eigen::VectorXd witness = initial_witness;
  if (result.lower > initial_lower && result.witness(n) > 0) {
    const Eigen::VectorXd x = result.witness.head(n) / result.witness(n);
    const std::optional<double> value = certified_norm_at(net, x, p, q);
    if (value && *value > best) best = *value, witness = x;
  }
  result.lower = best;
  result.witness = witness;
  result.exact = result.upper - result.lower <= options.tol * result.upper;
  if (result.status == "converged" && !result.exact) result.status = "stalled";
  return result;
}

}  // namespace lipcert
