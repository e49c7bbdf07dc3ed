#pragma once
/// Exact local Lipschitz constants of piecewise-linear networks (ReLU, LeakyReLU, MaxMin: a pair is
/// split on the sign of a - b) by branch and bound over activation patterns (LipBaB, Bhowmick et al.
/// 2021) on a bounded input box, or on an l1 ball within it, and on all of R^n
/// (lipschitz_bab_global, a search over activation patterns alone).
///
/// Nodes are a box plus a partial activation assignment. Each node is bounded by bound_subdomain (a
/// certified bound on the norm of its Jacobian set); neurons are split in layer order (or, with
/// BabOptions::input_bisection, the box is halved while many neurons are unstable), so the region of
/// every node is a polytope whose constraints are exact affine functions of the input (computed with
/// error bounds). A node is pruned only when its interval bounds contradict its assignment or when
/// its region is proved empty by a Farkas certificate (prove_infeasible); that proof is sought only
/// for nodes about to be split and for leaves that could not be certified, since most nodes leave
/// the queue by their bound alone, and not for a region known to hold a point (the one of its
/// parent's that it kept). Each LP starts from the final basis of the nearest ancestor whose LP ran.
/// A leaf (every neuron determined) has a single Jacobian; its region's Chebyshev centre, certified
/// by certified_directional_lower, gives a witness and a lower bound.
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "lipcert/lp.hpp"
#include "lipcert/network.hpp"
#include "lipcert/operator_norm.hpp"
#include "lipcert/subdomain_bounds.hpp"

namespace lipcert {

/// {x : ||x - center||_1 <= radius}: a polyhedral domain, searched inside its bounding box.
struct L1Ball {
  Eigen::VectorXd center;
  double radius = 0.0;
};

struct BabOptions {
  double tol = 1e-6;  ///< stop when upper - lower <= tol * upper
  double time_limit = std::numeric_limits<double>::infinity();  ///< seconds
  long max_nodes = 10000000;
  int batch = 0;      ///< parents split together; 0: what the bounder prefers
  double progress_interval = 0.5;  ///< seconds between progress callbacks
  /// Bounds the children; null: the CPU threads (CpuSubdomainBounder).
  std::shared_ptr<SubdomainBounder> bounder;
  /// Restricts the domain to the box's intersection with this ball: regions are pruned, and leaves
  /// certified, by LPs over (x, t) with |x - center| <= t and sum t <= radius; witnesses lie in it.
  std::optional<L1Ball> l1_ball;
  /// Input bisection, for low-dimensional inputs: a node with more than this many unstable neurons
  /// has its box halved along its widest side (relative to the root's) instead of a neuron split.
  /// 0: neurons only.
  int input_bisection = 0;
  /// LP sign fixing, once the search has bounded this many nodes (-1: never, 0: from the root): before
  /// a node is split, an emptiness proof is sought for each side of each free neuron of its first
  /// layer with free neurons (whose pre-activations are affine on the node), except the sides seen at
  /// known points of its region; the neurons with a side proved empty are assigned the other side (one
  /// child, no branch). It costs up to an LP per free neuron and saves nodes: on searches of thousands
  /// of nodes it takes 1.2-2.3x less time (random 16-64-64-10, 16-48-48-10, 10-30-30-30-3 nets on
  /// l-inf balls), while on searches of a few hundred nodes its LPs cost more than the nodes saved.
  long lp_tightening_after = 300;
  /// The HiGHS instances the search runs its LPs on; null: it makes its own. A caller running many
  /// short searches keeps one pool for them (making instances costs ~15% of a millisecond search);
  /// a pool serves one search at a time.
  std::shared_ptr<LpSolverPool> lp_solvers;
};

struct BabProgress {
  double lower, upper, seconds;
  long nodes;
  long open;
};

struct BabResult {
  double lower = 0.0;   ///< certified: ||J(witness)||-based, rounding subtracted
  double upper = 0.0;   ///< certified
  Eigen::VectorXd witness;
  bool exact = false;   ///< upper - lower <= tol * upper
  std::string status;   ///< "converged", "time_limit", "node_limit", "stopped", "stalled"
  long nodes = 0, pruned_by_bounds = 0, pruned_by_lp = 0, leaves = 0, open = 0;
  long region_proofs = 0;  ///< emptiness proofs sought (each an LP unless one row decides it)
  long fixed_by_lp = 0;    ///< neurons assigned by LP sign fixing (lp_tightening_after)
};

struct InputBox {
  Eigen::VectorXd lower, upper;
};

/// progress (optional) is called every options.progress_interval seconds; returning false stops the search cleanly with
/// the best certified bounds so far. initial_lower / initial_witness seed the lower bound.
BabResult lipschitz_bab(const Network& net, const Eigen::VectorXd& lower, const Eigen::VectorXd& upper, Norm p, Norm q,
                        const BabOptions& options, double initial_lower, const Eigen::VectorXd& initial_witness,
                        const std::function<bool(const BabProgress&)>& progress = {});

/// The same search over a union of boxes (each the root of a search tree); they may overlap.
BabResult lipschitz_bab(const Network& net, const std::vector<InputBox>& boxes, Norm p, Norm q, const BabOptions& options,
                        double initial_lower, const Eigen::VectorXd& initial_witness,
                        const std::function<bool(const BabProgress&)>& progress = {});

/// The exact global constant, over all of R^n, of a network of Dense and Conv2d layers (unrolled to
/// dense matrices, exactly; average pooling too where its window has 2^k elements) and ReLU/LeakyReLU
/// activations (Flatten allowed): a small one, since every node's LPs run over R^n. Nodes are partial
/// activation patterns alone (no box), split in layer order, choosing within the first layer with
/// free neurons the split whose larger child bound is smallest; a node's bound is bound_subdomain's
/// over an unbounded box. Each child gets a Chebyshev LP over R^n (unless it keeps its parent's
/// interior point, or one moved just past its new row): a child with an interior point is kept, one
/// without is pruned only when its region is proved empty, since floating-point LPs over an unbounded
/// set prove nothing. The proof is Farkas-certified on the cone {(x, t) : t > 0, x / t in the
/// region}, once per face of the cube [-1, 1]^n x [0, 1] other than t = 0 (2n + 1 thickened boxes,
/// which every such cone with interior meets with interior; faces proved empty stay so for the
/// descendants), or by a sign-constrained relaxation from the second layer on, which excludes the
/// patterns realised only at infinity. A leaf is certified at a point strictly inside its region,
/// which becomes the witness; a depth-first dive every 256 nodes reaches leaves early. Throws
/// UnsupportedLayerError for other layers; options.bounder, options.l1_ball and
/// options.input_bisection must be unset.
BabResult lipschitz_bab_global(const Network& net, Norm p, Norm q, const BabOptions& options, double initial_lower,
                               const Eigen::VectorXd& initial_witness,
                               const std::function<bool(const BabProgress&)>& progress = {});

/// A point deeper than x inside x's activation region (the points with x's activation pattern, where
/// the network has x's Jacobian), for a witness within min_depth of a kink (in the 2-norm): the
/// Chebyshev centre of the region within the box, the l1 ball if given, and x +- 4 min_depth (less
/// where more than about 50000 / n of the region's rows could bind there), by HiGHS (a hint for the
/// caller to certify, not a proof). The LP has the rows of the neurons nearest x by an estimate (about
/// 4 x 50000 / n of them, fewer where their reverse products through a large network would cost more
/// than about 0.1 s); a point where x's pattern or the estimated depth is lost is not returned. Empty
/// where x already lies at least min_depth from every kink or the LP finds no deeper point. (A
/// witness certified 1e-6 inside its region is exact, but a finite difference across the kink beside
/// it is not, and that is how users check one.) The box may be unbounded.
Eigen::VectorXd deeper_region_point(const Network& net, const Eigen::VectorXd& x, const InputBox& box,
                                    const std::optional<L1Ball>& ball, double min_depth);

}  // namespace lipcert
