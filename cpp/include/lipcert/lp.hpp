#pragma once
/// Linear programming through HiGHS (used for feasibility of activation regions).
#include <Eigen/Dense>
#include <memory>
#include <string>
#include <vector>

namespace lipcert {

/// Version string of the linked HiGHS library.
std::string highs_version();

/// A simplex basis in HiGHS's status codes (kHighsBasisStatus*), one per column and per row.
struct LpBasis {
  static constexpr int kBasic = 1;  ///< kHighsBasisStatusBasic
  std::vector<int> col_status, row_status;
};

/// Warm start for prove_infeasible's LP, and what that LP reports when the system is feasible.
struct FeasibilityLp {
  LpBasis start;          ///< statuses to start from (empty, or of the wrong size: HiGHS's own start)
  LpBasis basis;          ///< out: the final basis, when the LP ran and found a point
  Eigen::VectorXd point;  ///< out: that point (uncertified: a hint for later searches)
};

/// One HiGHS instance reused for a sequence of small LPs (creating an instance costs more than
/// solving them). Not thread-safe: one per thread. The free functions below create one per call.
class LpSolver {
 public:
  LpSolver();
  ~LpSolver();
  LpSolver(const LpSolver&) = delete;
  LpSolver& operator=(const LpSolver&) = delete;

  /// See lipcert::chebyshev_radius.
  double chebyshev_radius(const Eigen::Ref<const Eigen::MatrixXd>& a, const Eigen::Ref<const Eigen::VectorXd>& b,
                          const Eigen::Ref<const Eigen::VectorXd>& lower,
                          const Eigen::Ref<const Eigen::VectorXd>& upper, Eigen::VectorXd* center);
  /// See lipcert::prove_infeasible; `lp` (optional) warm-starts its LP and receives its outcome.
  bool prove_infeasible(const Eigen::Ref<const Eigen::MatrixXd>& g, const Eigen::Ref<const Eigen::VectorXd>& h,
                        const Eigen::Ref<const Eigen::MatrixXd>& g_error,
                        const Eigen::Ref<const Eigen::VectorXd>& h_error,
                        const Eigen::Ref<const Eigen::VectorXd>& lower, const Eigen::Ref<const Eigen::VectorXd>& upper,
                        FeasibilityLp* lp = nullptr);
  /// See lipcert::prove_no_nonnegative_solution.
  bool prove_no_nonnegative_solution(const Eigen::Ref<const Eigen::MatrixXd>& e, const Eigen::Ref<const Eigen::VectorXd>& f);

 private:
  void* fresh();  // the instance, emptied of the previous model
  void* highs_;
};

/// One LpSolver per OpenMP thread, for a search whose LPs run on its own thread and, in parallel
/// regions, on all of them. The calling thread's instance is made at once, the others by their threads
/// when first asked for: an instance costs as much as a few LPs of a small search.
class LpSolverPool {
 public:
  LpSolverPool();
  ~LpSolverPool();
  LpSolverPool(const LpSolverPool&) = delete;
  LpSolverPool& operator=(const LpSolverPool&) = delete;

  /// The instance of the thread that made the pool.
  LpSolver& first() { return *solvers_[0]; }
  /// The instance of the calling OpenMP thread (one parallel region at a time).
  LpSolver& for_this_thread();

 private:
  std::vector<std::unique_ptr<LpSolver>> solvers_;
};

/// Chebyshev centre test: the largest r such that a ball of radius r (in the 2-norm) fits in
/// {x : A x <= b, lower <= x <= upper} (capped at 1e6); returns -1 when the polytope is empty.
double chebyshev_radius(const Eigen::Ref<const Eigen::MatrixXd>& a,
                        const Eigen::Ref<const Eigen::VectorXd>& b,
                        const Eigen::Ref<const Eigen::VectorXd>& lower,
                        const Eigen::Ref<const Eigen::VectorXd>& upper, Eigen::VectorXd* center);

/// Proves {x : G* x <= h*, lower <= x <= upper} empty for every (G*, h*) with |G* - g| <= g_error and
/// |h* - h| <= h_error elementwise (a bounded box is required), by a Farkas certificate: a y >= 0 for
/// which min over the box of y^T G* x exceeds y^T h*, checked with outward rounding. Each row alone is tried
/// first (a single row needs no LP); then HiGHS supplies a candidate (its dual ray), trusted only
/// through the same check.
bool prove_infeasible(const Eigen::Ref<const Eigen::MatrixXd>& g, const Eigen::Ref<const Eigen::VectorXd>& h,
                      const Eigen::Ref<const Eigen::MatrixXd>& g_error, const Eigen::Ref<const Eigen::VectorXd>& h_error,
                      const Eigen::Ref<const Eigen::VectorXd>& lower, const Eigen::Ref<const Eigen::VectorXd>& upper);

/// Proves {v >= 0 : E v = f} empty (E and f exact), by a Farkas certificate: a y with E^T y >= 0 and
/// f^T y < 0, checked with outward rounding. Every variable is sign-constrained, so the proof holds on
/// an unbounded set and survives rounding wherever the infeasibility is strict.
bool prove_no_nonnegative_solution(const Eigen::Ref<const Eigen::MatrixXd>& e, const Eigen::Ref<const Eigen::VectorXd>& f);

}  // namespace lipcert
