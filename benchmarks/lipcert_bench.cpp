// lipcert-bench: one certified Lipschitz query from the command line, no Python at run time.
//
//   lipcert-bench MODEL.npz [--radius R [--center X.npy]] [--norm P[,Q]] [--tol T] [--time-limit S]
//                 [--max-nodes N] [--device cpu|cuda]
//   lipcert-bench MODEL.npz --method sdp|sdp-layer|seqlip [--norm P[,Q]] [--time-limit S]
//
// Reads a network in lipcert's file format (lipcert.Network.save or `lipcert export MODEL OUT.npz`),
// runs branch and bound (the exact local constant) on the l-inf ball of radius R around the centre
// (zeros by default) or, without --radius, on all of R^n (the exact global constant), or LipSDP or SeqLip (certified global upper bounds), and prints one JSON line: bounds,
// status, nodes or Newton steps, time. Exit status 2 on bad input.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <limits>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>

#include "lipcert/bab.hpp"
#include "lipcert/lipsdp.hpp"
#include "lipcert/naive_bound.hpp"
#include "lipcert/network.hpp"
#include "lipcert/network_file.hpp"
#include "lipcert/operator_norm.hpp"
#include "lipcert/rounding.hpp"
#include "lipcert/seqlip.hpp"
#ifdef LIPCERT_BENCH_CUDA
#include "lipcert/cuda/subdomain_bounds.hpp"
#endif

namespace {

const char* kUsage =
    "usage: lipcert-bench MODEL.npz [--radius R [--center X.npy]] [--norm P[,Q]] [--tol T]\n"
    "                     [--time-limit SECONDS] [--max-nodes N] [--device cpu|cuda]\n"
    "       lipcert-bench MODEL.npz --method sdp|sdp-layer|seqlip [--norm P[,Q]] [--time-limit SECONDS]\n"
    "Exact Lipschitz constant (branch and bound, the default method) on the l-inf ball of radius R around\n"
    "the centre (zeros by default) or, without --radius, on all of R^n (Dense networks, CPU); or LipSDP's\n"
    "or SeqLip's certified global upper bound. Prints one JSON line. P, Q in {1, 2, inf}.\n";

[[noreturn]] void usage_error(const std::string& message) {
  std::cerr << "lipcert-bench: error: " << message << "\n" << kUsage;
  std::exit(2);
}

double parse_number(const std::string& text, const std::string& flag) {
  if (text == "inf") return std::numeric_limits<double>::infinity();
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (end == text.c_str() || *end != '\0') usage_error(flag + " expects a number, got '" + text + "'");
  return v;
}

std::string json_number(double v) {
  if (std::isnan(v)) return "null";
  if (std::isinf(v)) return v > 0 ? "\"inf\"" : "\"-inf\"";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

std::string norm_label(lipcert::Norm p) {
  return p == lipcert::Norm::One ? "1" : p == lipcert::Norm::Two ? "2" : "inf";
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

// ||I||_{p->2} ||I||_{2->q}: what turns a global l2 bound into a (p -> q) one.
double l2_conversion(const lipcert::Network& net, lipcert::Norm p, lipcert::Norm q) {
  return lipcert::mul_up(lipcert::norm_conversion_factor(net.input_size(), p, lipcert::Norm::Two),
                         lipcert::norm_conversion_factor(net.output_size(), lipcert::Norm::Two, q));
}

// LipSDP on the whole network; channel-wise (per frequency) for convolutional networks too large to
// unroll, as lipcert.lipschitz(method="sdp") does.
int run_sdp(const std::string& model, const lipcert::Network& net, bool per_layer, lipcert::Norm p, lipcert::Norm q) {
  lipcert::LipSdpOptions options;
  options.multipliers = per_layer ? lipcert::MultiplierKind::PerLayer : lipcert::MultiplierKind::PerNeuron;
  const auto start = std::chrono::steady_clock::now();
  lipcert::LipSdpResult r;
  std::string formulation = per_layer ? "layer" : "neuron";
  try {
    r = lipcert::solve_lipsdp(lipcert::slope_restricted_network(net), options);
  } catch (const lipcert::UnsupportedLayerError&) {
    formulation = "channel";
    r = lipcert::solve_lipsdp(lipcert::channelwise_lipsdp(net), options);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double upper = lipcert::mul_up(r.certified_upper, l2_conversion(net, p, q));
  std::ostringstream out;
  out << "{\"model\": " << json_string(model) << ", \"method\": \"" << (per_layer ? "sdp-layer" : "sdp")
      << "\", \"formulation\": \"" << formulation << "\", \"norm\": [\"" << norm_label(p) << "\", \"" << norm_label(q) << "\"], \"upper\": " << json_number(upper)
      << ", \"certified\": " << (std::isfinite(upper) ? "true" : "false") << ", \"rho\": " << json_number(r.rho)
      << ", \"status\": " << json_string(r.status) << ", \"newton_steps\": " << r.newton_steps
      << ", \"time_s\": " << json_number(seconds) << "}";
  std::cout << out.str() << std::endl;
  return 0;
}

// SeqLip with every pair of layers solved by branch and bound within the time limit.
int run_seqlip(const std::string& model, const lipcert::Network& net, double time_limit, lipcert::Norm p,
               lipcert::Norm q) {
  lipcert::SeqLipOptions options;
  if (std::isfinite(time_limit)) options.time_limit_s = time_limit;
  const auto start = std::chrono::steady_clock::now();
  const lipcert::SeqLipResult r = lipcert::seqlip_bound(lipcert::slope_restricted_network(net), options);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  long nodes = 0;
  bool solved = true;
  for (const lipcert::SeqLipPair& pair : r.pairs) {
    nodes += pair.nodes;
    solved = solved && pair.solved;
  }
  std::ostringstream out;
  out << "{\"model\": " << json_string(model) << ", \"method\": \"seqlip\", \"norm\": [\"" << norm_label(p)
      << "\", \"" << norm_label(q) << "\"], \"upper\": " << json_number(lipcert::mul_up(r.certified_upper, l2_conversion(net, p, q)))
      << ", \"certified\": true, \"l2_estimate\": " << json_number(r.estimate) << ", \"pairs_solved\": "
      << (solved ? "true" : "false") << ", \"nodes\": " << nodes << ", \"time_s\": " << json_number(seconds) << "}";
  std::cout << out.str() << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model, center_path, device = "cpu", method = "bab";
  bool has_radius = false;
  double radius = 0, tol = 1e-6, time_limit = std::numeric_limits<double>::infinity();
  long max_nodes = 10000000;
  lipcert::Norm p = lipcert::Norm::Two, q = lipcert::Norm::Two;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::cout << kUsage;
      return 0;
    }
    if (arg.rfind("--", 0) != 0) {
      if (!model.empty()) usage_error("more than one model given");
      model = arg;
      continue;
    }
    if (i + 1 >= argc) usage_error(arg + " expects a value");
    const std::string value = argv[++i];
    try {
      if (arg == "--radius") radius = parse_number(value, arg), has_radius = true;
      else if (arg == "--center") center_path = value;
      else if (arg == "--tol") tol = parse_number(value, arg);
      else if (arg == "--time-limit") time_limit = parse_number(value, arg);
      else if (arg == "--max-nodes") max_nodes = static_cast<long>(parse_number(value, arg));
      else if (arg == "--device") device = value;
      else if (arg == "--method") method = value;
      else if (arg == "--norm") {
        const size_t comma = value.find(',');
        p = lipcert::norm_from_double(parse_number(value.substr(0, comma), arg));
        q = comma == std::string::npos ? p : lipcert::norm_from_double(parse_number(value.substr(comma + 1), arg));
      } else {
        usage_error("unknown option " + arg);
      }
    } catch (const std::invalid_argument& e) {
      usage_error(arg + ": " + e.what());
    }
  }
  if (model.empty()) usage_error("no model given");
  if (method != "bab" && method != "sdp" && method != "sdp-layer" && method != "seqlip")
    usage_error("--method must be bab, sdp, sdp-layer or seqlip");
  if (!(time_limit > 0)) usage_error("--time-limit must be positive");
  const bool global = !has_radius;
  if (method == "bab") {
    if (!global && (!(radius >= 0) || !std::isfinite(radius))) usage_error("--radius must be a finite number >= 0");
    if (global && !center_path.empty()) usage_error("--center needs --radius");
    if (global && device != "cpu") usage_error("the global search (no --radius) runs on the CPU");
    if (!(tol >= 0)) usage_error("--tol must be >= 0");
    if (device != "cpu" && device != "cuda") usage_error("--device must be cpu or cuda");
  }

  try {
    const lipcert::Network net = lipcert::load_network(model);
    if (method == "seqlip") return run_seqlip(model, net, time_limit, p, q);
    if (method != "bab") return run_sdp(model, net, method == "sdp-layer", p, q);
    Eigen::VectorXd center = Eigen::VectorXd::Zero(net.input_size());
    if (!center_path.empty()) {
      center = lipcert::load_npy_vector(center_path);
      if (center.size() != net.input_size())
        usage_error("--center has " + std::to_string(center.size()) + " values, the network input has " +
                    std::to_string(net.input_size()));
    }
    lipcert::BabOptions options;
    options.tol = tol;
    options.time_limit = time_limit;
    options.max_nodes = max_nodes;
    if (device == "cuda") {
#ifdef LIPCERT_BENCH_CUDA
      options.bounder = std::make_shared<lipcert::cuda::GpuSubdomainBounder>(net);
#else
      usage_error("this lipcert-bench was built without CUDA");
#endif
    }
    const auto start = std::chrono::steady_clock::now();
    const lipcert::BabResult r =
        global ? lipcert::lipschitz_bab_global(net, p, q, options, 0.0, center)
               : lipcert::lipschitz_bab(net, center.array() - radius, center.array() + radius, p, q, options, 0.0, center);
    // A global bound holds on every domain: it caps the search's bound where the search is far from
    // closing, as lipcert.lipschitz(method="bab") does.
    const double cap = lipcert::naive_bound(net, p, q).upper;
    const double upper = std::min(r.upper, cap);
    const bool exact = r.exact || upper - r.lower <= tol * upper;
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::ostringstream out;
    out << "{\"model\": " << json_string(model) << ", \"method\": \"bab\", \"device\": " << json_string(device)
        << ", \"norm\": [\"" << norm_label(p) << "\", \"" << norm_label(q) << "\"], \"radius\": " << (global ? "null" : json_number(radius))
        << ", \"lower\": " << json_number(r.lower) << ", \"upper\": " << json_number(upper)
        << ", \"search_upper\": " << json_number(r.upper) << ", \"upper_from\": " << (cap < r.upper ? "\"naive\"" : "\"bab\"")
        << ", \"certified\": true, \"exact\": " << (exact ? "true" : "false") << ", \"status\": " << json_string(r.status)
        << ", \"nodes\": " << r.nodes << ", \"pruned_by_bounds\": " << r.pruned_by_bounds
        << ", \"pruned_by_lp\": " << r.pruned_by_lp << ", \"region_proofs\": " << r.region_proofs << ", \"leaves\": " << r.leaves << ", \"time_s\": " << json_number(seconds)
        << ", \"witness\": ";
    if (r.witness.size() == 0) {
      out << "null";
    } else {
      out << "[";
      for (Eigen::Index k = 0; k < r.witness.size(); ++k) out << (k ? ", " : "") << json_number(r.witness(k));
      out << "]";
    }
    out << "}";
    std::cout << out.str() << std::endl;
    return 0;
  } catch (const std::invalid_argument& e) {  // malformed files, unsupported networks or layers
    std::cerr << "lipcert-bench: error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "lipcert-bench: error: " << e.what() << "\n";
    return 1;
  }
}
