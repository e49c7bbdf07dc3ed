#include "lipcert/network_file.hpp"

#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <vector>

namespace lipcert {

namespace {

constexpr const char* kFormat = "lipcert-network";
constexpr int kVersion = 1;

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw InvalidNetworkError(path + ": " + what);
}

uint64_t read_le(const std::string& bytes, size_t at, int width, const std::string& path) {
  if (at + width > bytes.size()) fail(path, "truncated ZIP archive");
  uint64_t v = 0;
  for (int i = width - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(bytes[at + i]);
  return v;
}

// One .npy array: its dtype code ('f', 'i', 'u', 'U', 'b'), item size, shape, and raw bytes in C order.
struct NpyArray {
  char kind = 'f';
  int item_size = 8;
  std::vector<long long> shape;
  std::string data;

  long long size() const {
    long long n = 1;
    for (long long d : shape) n *= d;
    return n;
  }
};

NpyArray parse_npy(const std::string& bytes, const std::string& where) {
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0) fail(where, "not a .npy array");
  const int major = static_cast<unsigned char>(bytes[6]);
  const size_t header_len = major == 1 ? read_le(bytes, 8, 2, where) : read_le(bytes, 8, 4, where);
  const size_t header_start = major == 1 ? 10 : 12;
  if (header_start + header_len > bytes.size()) fail(where, "truncated .npy header");
  const std::string header = bytes.substr(header_start, header_len);
  std::smatch m;
  static const std::regex descr(R"('descr':\s*'([<>|=])([fiubU])(\d+)')");
  static const std::regex order(R"('fortran_order':\s*(True|False))");
  static const std::regex shape(R"('shape':\s*\(([^)]*)\))");
  NpyArray a;
  if (!std::regex_search(header, m, descr)) fail(where, "unsupported .npy dtype in header " + header);
  if (m[1] == ">") fail(where, "big-endian arrays are not supported");
  a.kind = m[2].str()[0];
  a.item_size = std::stoi(m[3]) * (a.kind == 'U' ? 4 : 1);
  if (!std::regex_search(header, m, order)) fail(where, "malformed .npy header");
  const bool fortran = m[1] == "True";
  if (!std::regex_search(header, m, shape)) fail(where, "malformed .npy header");
  std::stringstream dims(m[1].str());
  for (std::string d; std::getline(dims, d, ',');)
    if (d.find_first_not_of(" ") != std::string::npos) a.shape.push_back(std::stoll(d));
  const size_t bytes_needed = static_cast<size_t>(a.size()) * a.item_size;
  if (bytes.size() - header_start - header_len < bytes_needed) fail(where, "truncated .npy data");
  a.data = bytes.substr(header_start + header_len, bytes_needed);
  if (fortran && a.shape.size() > 1) {  // reorder to C order
    std::string c_order(a.data.size(), '\0');
    const int nd = static_cast<int>(a.shape.size());
    std::vector<long long> index(nd, 0);
    for (long long flat = 0; flat < a.size(); ++flat) {
      long long f = 0, stride = 1;  // Fortran offset of the C-order multi-index
      for (int k = 0; k < nd; ++k) f += index[k] * stride, stride *= a.shape[k];
      std::memcpy(&c_order[flat * a.item_size], &a.data[f * a.item_size], a.item_size);
      for (int k = nd - 1; k >= 0 && ++index[k] == a.shape[k]; --k) index[k] = 0;
    }
    a.data.swap(c_order);
  }
  return a;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InvalidNetworkError(path + ": cannot open the file");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// The members of a stored (uncompressed) ZIP archive, read through its central directory (numpy
// writes ZIP64 local headers whose sizes are only in the extra field).
std::map<std::string, NpyArray> read_npz(const std::string& path) {
  const std::string z = read_file(path);
  const size_t eocd = z.size() >= 22 ? z.rfind(std::string("PK\x05\x06", 4)) : std::string::npos;
  if (eocd == std::string::npos) fail(path, "not a ZIP (.npz) archive");
  uint64_t entries = read_le(z, eocd + 10, 2, path), directory = read_le(z, eocd + 16, 4, path);
  if (entries == 0xFFFF || directory == 0xFFFFFFFF) {  // ZIP64 end of central directory, via its locator
    if (eocd < 20 || read_le(z, eocd - 20, 4, path) != 0x07064b50) fail(path, "malformed ZIP64 archive");
    const size_t eocd64 = read_le(z, eocd - 12, 8, path);
    entries = read_le(z, eocd64 + 32, 8, path);
    directory = read_le(z, eocd64 + 48, 8, path);
  }
  std::map<std::string, NpyArray> arrays;
  size_t at = directory;
  for (uint64_t e = 0; e < entries; ++e) {
    if (read_le(z, at, 4, path) != 0x02014b50) fail(path, "malformed ZIP central directory");
    const auto method = read_le(z, at + 10, 2, path);
    uint64_t size = read_le(z, at + 20, 4, path), offset = read_le(z, at + 42, 4, path);
    const size_t name_len = read_le(z, at + 28, 2, path), extra_len = read_le(z, at + 30, 2, path),
                 comment_len = read_le(z, at + 32, 2, path);
    const std::string name = z.substr(at + 46, name_len);
    // ZIP64 extra field: the 64-bit values present are those whose 32-bit fields are saturated.
    for (size_t x = at + 46 + name_len; x + 4 <= at + 46 + name_len + extra_len;) {
      const auto id = read_le(z, x, 2, path), len = read_le(z, x + 2, 2, path);
      if (id == 0x0001) {
        size_t v = x + 4;
        if (read_le(z, at + 24, 4, path) == 0xFFFFFFFF) v += 8;  // uncompressed size first
        if (size == 0xFFFFFFFF) size = read_le(z, v, 8, path), v += 8;
        if (offset == 0xFFFFFFFF) offset = read_le(z, v, 8, path);
      }
      x += 4 + len;
    }
    if (method != 0)
      fail(path, "member " + name + " is compressed; lipcert reads uncompressed archives (np.savez, "
                 "lipcert.Network.save or `lipcert export` write them)");
    if (read_le(z, offset, 4, path) != 0x04034b50) fail(path, "malformed ZIP local header for " + name);
    const size_t data = offset + 30 + read_le(z, offset + 26, 2, path) + read_le(z, offset + 28, 2, path);
    if (data + size > z.size()) fail(path, "truncated member " + name);
    std::string key = name;
    if (key.size() > 4 && key.compare(key.size() - 4, 4, ".npy") == 0) key.resize(key.size() - 4);
    arrays[key] = parse_npy(z.substr(data, size), path + " [" + name + "]");
    at += 46 + name_len + extra_len + comment_len;
  }
  return arrays;
}

std::vector<double> as_doubles(const NpyArray& a, const std::string& where) {
  std::vector<double> out(a.size());
  for (long long i = 0; i < a.size(); ++i) {
    const char* p = &a.data[i * a.item_size];
    if (a.kind == 'f' && a.item_size == 8) std::memcpy(&out[i], p, 8);
    else if (a.kind == 'f' && a.item_size == 4) { float f; std::memcpy(&f, p, 4); out[i] = f; }
    else if (a.kind == 'i' && a.item_size == 8) { int64_t v; std::memcpy(&v, p, 8); out[i] = static_cast<double>(v); }
    else if (a.kind == 'i' && a.item_size == 4) { int32_t v; std::memcpy(&v, p, 4); out[i] = v; }
    else throw InvalidNetworkError(where + ": expected a numeric array");
  }
  return out;
}

std::string as_string(const NpyArray& a, const std::string& where) {
  if (a.kind != 'U' || a.size() != 1) throw InvalidNetworkError(where + ": expected a string");
  std::string s;
  for (int i = 0; i < a.item_size / 4; ++i) {
    uint32_t c;
    std::memcpy(&c, &a.data[4 * i], 4);
    if (c == 0) break;
    if (c > 127) throw InvalidNetworkError(where + ": unexpected non-ASCII text");
    s.push_back(static_cast<char>(c));
  }
  return s;
}

}  // namespace

Eigen::VectorXd load_npy_vector(const std::string& path) {
  const std::vector<double> v = as_doubles(parse_npy(read_file(path), path), path);
  return Eigen::Map<const Eigen::VectorXd>(v.data(), static_cast<Eigen::Index>(v.size()));
}

Network load_network(const std::string& path) {
  const std::map<std::string, NpyArray> arrays = read_npz(path);
  auto get = [&](const std::string& key) -> const NpyArray& {
    const auto it = arrays.find(key);
    if (it == arrays.end()) fail(path, "missing array '" + key + "' (not a lipcert network file?)");
    return it->second;
  };
  auto numbers = [&](const std::string& key, size_t expected = 0) {
    std::vector<double> v = as_doubles(get(key), path + " [" + key + "]");
    if (expected && v.size() != expected)
      fail(path, "array '" + key + "' has " + std::to_string(v.size()) + " values, expected " + std::to_string(expected));
    return v;
  };
  auto integer = [&](const std::string& key, size_t i, const std::vector<double>& v) {
    if (v[i] != static_cast<int>(v[i])) fail(path, "array '" + key + "' must hold integers");
    return static_cast<int>(v[i]);
  };
  if (as_string(get("format"), path) != kFormat) fail(path, std::string("not a lipcert network file (format is not '") + kFormat + "')");
  const int version = static_cast<int>(numbers("version", 1)[0]);
  if (version > kVersion) fail(path, "written by a newer lipcert (format version " + std::to_string(version) + ")");

  const std::vector<double> shape = numbers("input_shape");
  TensorShape input;
  if (shape.size() == 1) input = TensorShape{integer("input_shape", 0, shape), 1, 1, false};
  else if (shape.size() == 3)
    input = TensorShape{integer("input_shape", 0, shape), integer("input_shape", 1, shape), integer("input_shape", 2, shape), true};
  else fail(path, "input_shape must be (n,) or (C, H, W)");

  const int n_layers = static_cast<int>(numbers("n_layers", 1)[0]);
  std::vector<Layer> layers;
  for (int i = 0; i < n_layers; ++i) {
    const std::string prefix = "layer" + std::to_string(i) + ".";
    const std::string kind = as_string(get(prefix + "kind"), path + " [" + prefix + "kind]");
    auto pair = [&](const std::string& key) {
      const std::vector<double> v = numbers(prefix + key, 2);
      return std::make_pair(integer(prefix + key, 0, v), integer(prefix + key, 1, v));
    };
    if (kind == "Dense") {
      const NpyArray& w = get(prefix + "weight");
      if (w.shape.size() != 2) fail(path, prefix + "weight must be 2-D (out, in)");
      const std::vector<double> wv = numbers(prefix + "weight"), bv = numbers(prefix + "bias", w.shape[0]);
      Eigen::MatrixXd weight = Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(
          wv.data(), w.shape[0], w.shape[1]);
      layers.push_back(Layer::dense(std::move(weight), Eigen::Map<const Eigen::VectorXd>(bv.data(), w.shape[0])));
    } else if (kind == "Conv2d") {
      const NpyArray& w = get(prefix + "weight");
      if (w.shape.size() != 4) fail(path, prefix + "weight must be 4-D (out_channels, in_channels, kh, kw)");
      const long long oc = w.shape[0], ic = w.shape[1], kh = w.shape[2], kw = w.shape[3];
      const std::vector<double> wv = numbers(prefix + "weight"), bv = numbers(prefix + "bias");
      const auto [sh, sw] = pair("stride");
      const auto [ph, pw] = pair("padding");
      Eigen::MatrixXd weight = Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(
          wv.data(), oc, ic * kh * kw);
      layers.push_back(Layer::conv2d(std::move(weight), Eigen::Map<const Eigen::VectorXd>(bv.data(), bv.size()),
                                     static_cast<int>(ic), static_cast<int>(kh), static_cast<int>(kw), sh, sw, ph, pw));
    } else if (kind == "AvgPool2d") {
      const auto [kh, kw] = pair("kernel_size");
      const auto [sh, sw] = pair("stride");
      layers.push_back(Layer::avg_pool2d(kh, kw, sh, sw));
    } else if (kind == "Flatten") {
      layers.push_back(Layer::flatten());
    } else if (kind == "ReLU") {
      layers.push_back(Layer::activation(LayerKind::ReLU));
    } else if (kind == "LeakyReLU") {
      layers.push_back(Layer::activation(LayerKind::LeakyReLU, numbers(prefix + "negative_slope", 1)[0]));
    } else if (kind == "Tanh") {
      layers.push_back(Layer::activation(LayerKind::Tanh));
    } else if (kind == "Sigmoid") {
      layers.push_back(Layer::activation(LayerKind::Sigmoid));
    } else if (kind == "MaxMin") {
      layers.push_back(Layer::activation(LayerKind::MaxMin));
    } else {
      fail(path, "layer " + std::to_string(i) + " has unknown kind '" + kind + "'");
    }
  }
  try {
    return Network(input, std::move(layers));  // validates shapes and finiteness
  } catch (const InvalidNetworkError& e) {
    fail(path, e.what());
  }
}

}  // namespace lipcert
