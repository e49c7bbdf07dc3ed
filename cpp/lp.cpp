#include "lipcert/lp.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

#include <omp.h>

// The C API: highsbox's libhighs.so is built with the pre-C++11 std::string ABI, so its C++ classes
// cannot be called from code built with the default ABI; the C API is ABI-neutral.
#include "interfaces/highs_c_api.h"
#include "lipcert/rounding.hpp"

namespace lipcert {

static_assert(LpBasis::kBasic == kHighsBasisStatusBasic);

namespace {

constexpr double kMaxRadius = 1e6;

// Passes an LP with a dense column-major constraint matrix (zeros skipped).
bool pass_dense_lp(void* highs, const Eigen::Ref<const Eigen::MatrixXd>& a, const std::vector<double>& cost,
                   const std::vector<double>& col_lower, const std::vector<double>& col_upper,
                   const std::vector<double>& row_lower, const std::vector<double>& row_upper) {
  std::vector<HighsInt> start{0}, index;
  std::vector<double> value;
  for (Eigen::Index j = 0; j < a.cols(); ++j) {
    for (Eigen::Index i = 0; i < a.rows(); ++i)
      if (a(i, j) != 0.0) index.push_back(static_cast<HighsInt>(i)), value.push_back(a(i, j));
    start.push_back(static_cast<HighsInt>(index.size()));
  }
  return Highs_passLp(highs, static_cast<HighsInt>(a.cols()), static_cast<HighsInt>(a.rows()),
                      static_cast<HighsInt>(index.size()), kHighsMatrixFormatColwise, kHighsObjSenseMinimize, 0.0,
                      cost.data(), col_lower.data(), col_upper.data(), row_lower.data(), row_upper.data(),
                      start.data(), index.data(), value.data()) == kHighsStatusOk;
}

// Runs an LP expected to be infeasible, without presolve (so that the dual ray is in the original
// rows), and returns HiGHS's dual ray: a candidate Farkas certificate, to be checked. `lp` (if
// given) supplies a starting basis and, when HiGHS finds the LP feasible instead, gets its point
// and basis.
bool infeasibility_ray(void* highs, Eigen::Index rows, Eigen::VectorXd* ray, FeasibilityLp* lp = nullptr) {
  Highs_setStringOptionValue(highs, "presolve", "off");
  const HighsInt num_col = Highs_getNumCol(highs), num_row = Highs_getNumRow(highs);
  if (lp && static_cast<HighsInt>(lp->start.col_status.size()) == num_col &&
      static_cast<HighsInt>(lp->start.row_status.size()) == num_row) {
    const std::vector<HighsInt> cols(lp->start.col_status.begin(), lp->start.col_status.end()),
        row_status(lp->start.row_status.begin(), lp->start.row_status.end());
    Highs_setBasis(highs, cols.data(), row_status.data());  // refused (kept cold) if not a basis
  }
  Highs_run(highs);
  const HighsInt status = Highs_getModelStatus(highs);
  if (status == kHighsModelStatusOptimal && lp) {
    lp->point.resize(num_col);
    Highs_getSolution(highs, lp->point.data(), nullptr, nullptr, nullptr);
    std::vector<HighsInt> cols(num_col), row_status(num_row);
    Highs_getBasis(highs, cols.data(), row_status.data());
    lp->basis.col_status.assign(cols.begin(), cols.end());
    lp->basis.row_status.assign(row_status.begin(), row_status.end());
  }
  if (status != kHighsModelStatusInfeasible) return false;
  HighsInt has_ray = 0;
  ray->resize(rows);
  return Highs_getDualRay(highs, &has_ray, ray->data()) == kHighsStatusOk && has_ray;
}

}  // namespace

std::string highs_version() { return Highs_version(); }

LpSolver::LpSolver() : highs_(Highs_create()) {
  if (!highs_) throw std::runtime_error("HiGHS: could not create a solver instance");
  Highs_setBoolOptionValue(highs_, "output_flag", 0);
  // Each instance serves one thread of ours; HiGHS's own thread pool would only add the cost of
  // querying the hardware on every run.
  Highs_setIntOptionValue(highs_, "threads", 1);
}

LpSolver::~LpSolver() { Highs_destroy(highs_); }

LpSolverPool::LpSolverPool() : solvers_(std::max(1, omp_get_max_threads())) {
  solvers_[0] = std::make_unique<LpSolver>();
}

LpSolverPool::~LpSolverPool() = default;

LpSolver& LpSolverPool::for_this_thread() {
  std::unique_ptr<LpSolver>& solver = solvers_[omp_get_thread_num() % solvers_.size()];
  if (!solver) solver = std::make_unique<LpSolver>();
  return *solver;
}

void* LpSolver::fresh() {
  Highs_clearModel(highs_);
  Highs_clearSolver(highs_);
  return highs_;
}

double LpSolver::chebyshev_radius(const Eigen::Ref<const Eigen::MatrixXd>& a, const Eigen::Ref<const Eigen::VectorXd>& b,
                        const Eigen::Ref<const Eigen::VectorXd>& lower, const Eigen::Ref<const Eigen::VectorXd>& upper,
                        Eigen::VectorXd* center) {
  const Eigen::Index m = a.rows(), n = a.cols();
  if (b.size() != m || lower.size() != n || upper.size() != n)
    throw std::invalid_argument("chebyshev_radius: inconsistent dimensions");
  const double inf = std::numeric_limits<double>::infinity();
  // Variables (x, r); rows: a_i x + ||a_i|| r <= b_i, and x_j +- r within the finite box faces.
  std::vector<double> cost(n + 1, 0.0), col_lower(n + 1, -inf), col_upper(n + 1, inf);
  cost[n] = 1.0;
  col_lower[n] = 0.0;
  col_upper[n] = kMaxRadius;  // keeps unbounded regions from making the LP unbounded
  std::vector<std::vector<std::pair<HighsInt, double>>> columns(n + 1);
  std::vector<double> row_lower, row_upper;
  HighsInt row = 0;
  auto add_row = [&](double rhs) {
    row_lower.push_back(-inf);
    row_upper.push_back(rhs);
    ++row;
  };
  for (Eigen::Index i = 0; i < m; ++i) {
    for (Eigen::Index j = 0; j < n; ++j)
      if (a(i, j) != 0.0) columns[j].push_back({row, a(i, j)});
    columns[n].push_back({row, a.row(i).norm()});
    add_row(b(i));
  }
  for (Eigen::Index j = 0; j < n; ++j) {
    if (std::isfinite(upper(j))) {
      columns[j].push_back({row, 1.0});
      columns[n].push_back({row, 1.0});
      add_row(upper(j));
    }
    if (std::isfinite(lower(j))) {
      columns[j].push_back({row, -1.0});
      columns[n].push_back({row, 1.0});
      add_row(-lower(j));
    }
  }
  std::vector<HighsInt> start{0}, index;
  std::vector<double> value;
  for (const auto& col : columns) {
    for (const auto& [r, v] : col) {
      index.push_back(r);
      value.push_back(v);
    }
    start.push_back(static_cast<HighsInt>(index.size()));
  }

  void* highs = fresh();
  Highs_setStringOptionValue(highs, "presolve", "off");
  const HighsInt status = Highs_passLp(highs, static_cast<HighsInt>(n + 1), row,
                                       static_cast<HighsInt>(index.size()), kHighsMatrixFormatColwise,
                                       kHighsObjSenseMaximize, 0.0, cost.data(), col_lower.data(), col_upper.data(),
                                       row_lower.data(), row_upper.data(), start.data(), index.data(), value.data());
  if (status != kHighsStatusOk) throw std::runtime_error("chebyshev_radius: HiGHS rejected the LP");
  Highs_run(highs);
  const HighsInt model_status = Highs_getModelStatus(highs);
  if (model_status == kHighsModelStatusInfeasible) return -1.0;
  if (model_status != kHighsModelStatusOptimal) throw std::runtime_error("chebyshev_radius: HiGHS did not solve the LP");
  std::vector<double> x(n + 1), row_value(row);
  Highs_getSolution(highs, x.data(), nullptr, row_value.data(), nullptr);
  if (center) {
    center->resize(n);
    for (Eigen::Index j = 0; j < n; ++j) (*center)(j) = x[j];
  }
  return x[n];
}

namespace {

// The rigorous check of one candidate certificate y >= 0.
bool farkas_holds(const Eigen::Ref<const Eigen::MatrixXd>& g, const Eigen::Ref<const Eigen::VectorXd>& h,
                  const Eigen::Ref<const Eigen::MatrixXd>& g_error, const Eigen::Ref<const Eigen::VectorXd>& h_error,
                  const Eigen::Ref<const Eigen::VectorXd>& lower, const Eigen::Ref<const Eigen::VectorXd>& upper,
                  const Eigen::VectorXd& y) {
  const double m = static_cast<double>(g.rows());
  // v = G*^T y lies in [v - v_rad, v + v_rad].
  const Eigen::VectorXd v = g.transpose() * y;
  const Eigen::VectorXd v_rad = ((g.cwiseAbs().transpose() * y) * gamma(m + 2) + g_error.transpose() * y) *
                                (1 + gamma(m + 4));
  double lhs = 0.0, lhs_abs = 0.0;  // min over the box of v*^T x, summed with its rounding error tracked
  for (Eigen::Index k = 0; k < v.size(); ++k) {
    const double a = round_down(v(k) - v_rad(k)), b = round_up(v(k) + v_rad(k));
    const double t = std::min({round_down(a * lower(k)), round_down(a * upper(k)), round_down(b * lower(k)),
                               round_down(b * upper(k))});
    lhs += t;
    lhs_abs += std::abs(t);
  }
  lhs = round_down(lhs - gamma(static_cast<double>(v.size()) + 2) * lhs_abs);
  const double rhs = round_up(y.dot(h) + (y.dot(h.cwiseAbs()) * gamma(m + 2) + y.dot(h_error)) * (1 + gamma(m + 4)));
  return std::isfinite(lhs) && std::isfinite(rhs) && lhs > rhs;
}

}  // namespace

bool LpSolver::prove_infeasible(const Eigen::Ref<const Eigen::MatrixXd>& g, const Eigen::Ref<const Eigen::VectorXd>& h,
                                const Eigen::Ref<const Eigen::MatrixXd>& g_error,
                                const Eigen::Ref<const Eigen::VectorXd>& h_error,
                                const Eigen::Ref<const Eigen::VectorXd>& lower,
                                const Eigen::Ref<const Eigen::VectorXd>& upper, FeasibilityLp* lp) {
  const Eigen::Index m = g.rows(), n = g.cols();
  if (m == 0 || !lower.allFinite() || !upper.allFinite()) return false;
  // One row's own certificate costs O(n) where an LP costs tens of microseconds, and with a single
  // row no other certificate exists.
  for (Eigen::Index i = 0; i < m; ++i) {
    const double box_min = (g.row(i).transpose().array().min(0.0) * upper.array() +
                            g.row(i).transpose().array().max(0.0) * lower.array()).sum();
    if (box_min > h(i) && farkas_holds(g, h, g_error, h_error, lower, upper, Eigen::VectorXd::Unit(m, i))) return true;
  }
  if (m == 1) return false;
  const double inf = std::numeric_limits<double>::infinity();
  const std::vector<double> col_lower(lower.data(), lower.data() + n), col_upper(upper.data(), upper.data() + n);
  void* highs = fresh();
  Eigen::VectorXd r;
  if (!pass_dense_lp(highs, g, std::vector<double>(n, 0.0), col_lower, col_upper, std::vector<double>(m, -inf),
                     std::vector<double>(h.data(), h.data() + m)) ||
      !infeasibility_ray(highs, m, &r, lp))
    return false;
  // The sign convention of the ray is HiGHS's business: try both orientations, keep the proof.
  return farkas_holds(g, h, g_error, h_error, lower, upper, r.cwiseMax(0.0)) ||
         farkas_holds(g, h, g_error, h_error, lower, upper, (-r).cwiseMax(0.0));
}

namespace {

// The rigorous check of one candidate y: E^T y >= 0 and f^T y < 0, rounding bounded.
bool nonnegative_farkas_holds(const Eigen::Ref<const Eigen::MatrixXd>& e, const Eigen::Ref<const Eigen::VectorXd>& f,
                              const Eigen::VectorXd& y) {
  const double g = gamma(static_cast<double>(e.rows()) + 2);
  const Eigen::VectorXd c = e.transpose() * y;
  const Eigen::VectorXd c_err = (e.cwiseAbs().transpose() * y.cwiseAbs()) * (g * (1 + g));
  const double d = f.dot(y), d_err = f.cwiseAbs().dot(y.cwiseAbs()) * (g * (1 + g));
  return y.allFinite() && (c.array() >= c_err.array()).all() && round_up(d + d_err) < 0;
}

}  // namespace

bool LpSolver::prove_no_nonnegative_solution(const Eigen::Ref<const Eigen::MatrixXd>& e,
                                             const Eigen::Ref<const Eigen::VectorXd>& f) {
  const Eigen::Index m = e.rows(), n = e.cols();
  if (f.size() != m) throw std::invalid_argument("prove_no_nonnegative_solution: inconsistent dimensions");
  if (m == 0) return false;
  const double inf = std::numeric_limits<double>::infinity();
  // HiGHS's dual ray of {E v = f, v >= 0}: a vertex certificate. Its basic columns have E^T y = 0
  // only up to rounding, which the check cannot accept unless the zeros are structural.
  void* highs = fresh();
  const std::vector<double> rhs(f.data(), f.data() + m);
  if (!pass_dense_lp(highs, e, std::vector<double>(n, 0.0), std::vector<double>(n, 0.0), std::vector<double>(n, inf),
                     rhs, rhs))
    return false;
  Eigen::VectorXd ray;
  if (!infeasibility_ray(highs, m, &ray)) return false;
  if (nonnegative_farkas_holds(e, f, ray) || nonnegative_farkas_holds(e, f, -ray)) return true;
  // A strict certificate, E^T y >= 1 on every column that takes part, with f^T y minimised: it has
  // room for the rounding wherever one exists (no nonzero v >= 0 with E v = 0).
  std::vector<Eigen::Index> used;
  for (Eigen::Index j = 0; j < n; ++j)
    if (e.col(j).cwiseAbs().maxCoeff() > 0) used.push_back(j);
  Eigen::MatrixXd et(used.size(), m);
  for (size_t k = 0; k < used.size(); ++k) et.row(static_cast<Eigen::Index>(k)) = e.col(used[k]).transpose();
  constexpr double kMaxMultiplier = 1e6;
  highs = fresh();
  if (!pass_dense_lp(highs, et, rhs, std::vector<double>(m, -kMaxMultiplier), std::vector<double>(m, kMaxMultiplier),
                     std::vector<double>(used.size(), 1.0), std::vector<double>(used.size(), inf)))
    return false;
  Highs_setStringOptionValue(highs, "presolve", "choose");
  Highs_run(highs);
  if (Highs_getModelStatus(highs) != kHighsModelStatusOptimal) return false;
  std::vector<double> y(m);
  Highs_getSolution(highs, y.data(), nullptr, nullptr, nullptr);
  return nonnegative_farkas_holds(e, f, Eigen::Map<const Eigen::VectorXd>(y.data(), m));
}

double chebyshev_radius(const Eigen::Ref<const Eigen::MatrixXd>& a, const Eigen::Ref<const Eigen::VectorXd>& b,
                        const Eigen::Ref<const Eigen::VectorXd>& lower, const Eigen::Ref<const Eigen::VectorXd>& upper,
                        Eigen::VectorXd* center) {
  return LpSolver().chebyshev_radius(a, b, lower, upper, center);
}

bool prove_infeasible(const Eigen::Ref<const Eigen::MatrixXd>& g, const Eigen::Ref<const Eigen::VectorXd>& h,
                      const Eigen::Ref<const Eigen::MatrixXd>& g_error, const Eigen::Ref<const Eigen::VectorXd>& h_error,
                      const Eigen::Ref<const Eigen::VectorXd>& lower, const Eigen::Ref<const Eigen::VectorXd>& upper) {
  return LpSolver().prove_infeasible(g, h, g_error, h_error, lower, upper);
}

bool prove_no_nonnegative_solution(const Eigen::Ref<const Eigen::MatrixXd>& e, const Eigen::Ref<const Eigen::VectorXd>& f) {
  return LpSolver().prove_no_nonnegative_solution(e, f);
}

}  // namespace lipcert
