// dlcore's oneDNN convolutions for XLA:CPU, called through XLA's FFI (see dlcore/nn/onednn.py).
//
// Three handlers, one per pass of a 2-D channels-last convolution (groups 1):
//   dlcore_onednn_conv_forward          (x, k)  -> y
//   dlcore_onednn_conv_backward_data    (dy, k) -> dx
//   dlcore_onednn_conv_backward_weights (x, dy) -> dk
// with x (N, H, W, C), k (KH, KW, C, O) as XLA lays them out (row-major NHWC and HWIO), y and dy
// (N, OH, OW, O). Attributes: x_shape, k_shape (4 ints each), strides (2), padding (lo_h, hi_h, lo_w,
// hi_w), dilation (2, 1 = none). float32 operands (oneDNN 3.2's bfloat16 kernels were measured no faster
// here, and some far slower).
//
// Layouts: every pass reads and writes XLA's channels-last maps directly. The forward pass reads XLA's
// kernel as well where oneDNN has a direct kernel for it (with AVX-512; with AVX2 alone it has none, and
// the forward pass takes the kernel in oneDNN's layout like the backward passes: `Im2col`). The backward
// passes let oneDNN lay out the kernel ("any") and reorder it to and from XLA's around the call, except
// where its layout is XLA's own (`SameLayout`, e.g. a 1 -> 16 kernel in 16-channel blocks). With XLA's
// kernel layout the backward kernels are im2col and a matrix product,
// several times slower; with oneDNN's they were measured faster on channels-last maps than on its own
// blocked maps (which cost a reorder of each map at every call), 10-50% a pass on the books' shapes.
//
// A primitive is built once per signature (pass, shapes, type, geometry) and kept for the process;
// building one costs about a millisecond, running it microseconds to milliseconds.
//
// Scratchpads are dlcore's (`scratchpad_mode::user`): one per primitive, used under the primitive's lock.
// oneDNN's own scratchpad is shared by the primitives of one thread and requires that a primitive run on
// the thread that built it, while XLA calls these handlers from any thread of its pool and runs
// independent passes (a layer's data and kernel gradients) at once: with oneDNN's scratchpad a training
// epoch crashed or computed garbage now and then (seen on AVX2, whose im2col kernels use a scratchpad).

#include <dlfcn.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;
using tag = memory::format_tag;

namespace {

enum Pass : int64_t { kForward = 0, kBackwardData = 1, kBackwardWeights = 2 };

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

struct Geometry {
  memory::data_type type;
  memory::dims src, wei, dst, strides, dilation, pad_lo, pad_hi;
};

// One pass of one signature: the primitive, the layouts it uses, and buffers for the operands whose
// layout differs from XLA's (guarded by `mu`: two calls of one signature may run at once).
struct Entry {
  std::unique_ptr<dnnl::primitive> primitive;
  memory::desc src, wei, dst;
  memory src_buf, wei_buf, dst_buf;  // empty where the primitive reads or writes XLA's buffer itself
  memory scratch;                    // empty where the primitive needs none
  std::mutex mu;
};

std::mutex g_mu;
std::map<std::vector<int64_t>, std::shared_ptr<Entry>> g_entries;

memory::desc Plain(const memory::dims& dims, memory::data_type type, tag t) { return {dims, type, t}; }

const dnnl::primitive_attr& UserScratchpad() {
  static const dnnl::primitive_attr attr = [] {
    dnnl::primitive_attr a;
    a.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    return a;
  }();
  return attr;
}

// The scratchpad a primitive asks for, or an empty memory where it asks for none.
memory Scratchpad(const memory::desc& d) { return d.get_size() ? memory(d, Engine()) : memory(); }

// Whether `d` places every element where the plain layout `plain` (same dims, no padding) does, so that
// the primitive can read or write XLA's buffer as it is: true of a blocked layout whose blocks each span
// a whole dimension, e.g. a 1 -> 16 kernel in oneDNN's 16-output blocks ("Acdb16a" of 16 outputs is
// XLA's HWIO), where a reorder would be a copy.
bool SameLayout(const memory::desc& d, const memory::desc& plain) {
  if (d == plain) return true;
  const memory::dims dims = d.get_dims();
  if (d.get_format_kind() != memory::format_kind::blocked || d.get_data_type() != plain.get_data_type() ||
      dims != plain.get_dims() || d.get_padded_dims() != dims) {
    return false;
  }
  memory::dims stride = d.get_strides();  // of the outer blocks; a dimension blocked whole has one
  const memory::dims want = plain.get_strides(), blocks = d.get_inner_blks(), which = d.get_inner_idxs();
  std::vector<bool> blocked(dims.size(), false);
  memory::dim step = 1;
  for (int i = d.get_inner_nblks() - 1; i >= 0; --i) {  // the innermost block first
    if (blocks[i] != dims[which[i]] || blocked[which[i]]) return false;  // a block of part of a dimension
    blocked[which[i]] = true;
    stride[which[i]] = step;
    step *= blocks[i];
  }
  for (size_t j = 0; j < dims.size(); ++j) {
    if (dims[j] > 1 && stride[j] != want[j]) return false;
  }
  return true;
}

// Whether oneDNN chose its im2col-and-matrix-product kernel ("gemm"), the one it falls back on where no
// direct kernel takes the layouts asked for: with AVX2 alone, a forward pass on XLA's HWIO kernel (the
// Fashion CNN's 128 -> 128 convolution of 14 x 14 maps at batch 32: 18.5 ms, against 12 ms in XLA).
bool Im2col(const dnnl::primitive_desc_base& pd) {
  return std::string(pd.impl_info_str()).find("gemm") != std::string::npos;
}

std::shared_ptr<Entry> Lookup(Pass pass, const Geometry& g) {
  std::vector<int64_t> key{pass, static_cast<int64_t>(g.type)};
  for (const auto* v : {&g.src, &g.wei, &g.strides, &g.dilation, &g.pad_lo, &g.pad_hi}) {
    key.insert(key.end(), v->begin(), v->end());
  }
  std::lock_guard<std::mutex> lock(g_mu);
  auto found = g_entries.find(key);
  if (found != g_entries.end()) return found->second;

  const memory::desc src = Plain(g.src, g.type, tag::nhwc), wei = Plain(g.wei, g.type, tag::hwio),
                     dst = Plain(g.dst, g.type, tag::nhwc);
  const memory::desc any_wei = Plain(g.wei, g.type, tag::any);
  const auto direct = dnnl::algorithm::convolution_direct;
  auto entry = std::make_shared<Entry>();
  if (pass == kForward) {
    dnnl::convolution_forward::primitive_desc pd(Engine(), dnnl::prop_kind::forward_training, direct, src, wei,
                                                 dst, g.strides, g.dilation, g.pad_lo, g.pad_hi, UserScratchpad());
    if (Im2col(pd)) {  // XLA's kernel layout has no direct kernel here: oneDNN's own, reordered at each call
      dnnl::convolution_forward::primitive_desc own(Engine(), dnnl::prop_kind::forward_training, direct, src,
                                                    any_wei, dst, g.strides, g.dilation, g.pad_lo, g.pad_hi,
                                                    UserScratchpad());
      if (!Im2col(own)) pd = own;
    }
    entry->primitive = std::make_unique<dnnl::convolution_forward>(pd);
    entry->src = pd.src_desc(), entry->wei = pd.weights_desc(), entry->dst = pd.dst_desc();
    entry->scratch = Scratchpad(pd.scratchpad_desc());
  } else {
    // The forward description is the backward passes' hint, in the layouts they will meet.
    dnnl::convolution_forward::primitive_desc hint(Engine(), dnnl::prop_kind::forward_training, direct, src,
                                                   any_wei, dst, g.strides, g.dilation, g.pad_lo, g.pad_hi);
    if (pass == kBackwardData) {
      dnnl::convolution_backward_data::primitive_desc pd(Engine(), direct, src, any_wei, dst, g.strides,
                                                         g.dilation, g.pad_lo, g.pad_hi, hint, UserScratchpad());
      entry->primitive = std::make_unique<dnnl::convolution_backward_data>(pd);
      entry->src = pd.diff_src_desc(), entry->wei = pd.weights_desc(), entry->dst = pd.diff_dst_desc();
      entry->scratch = Scratchpad(pd.scratchpad_desc());
    } else {
      dnnl::convolution_backward_weights::primitive_desc pd(Engine(), direct, src, any_wei, dst, g.strides,
                                                            g.dilation, g.pad_lo, g.pad_hi, hint, UserScratchpad());
      entry->primitive = std::make_unique<dnnl::convolution_backward_weights>(pd);
      entry->src = pd.src_desc(), entry->wei = pd.diff_weights_desc(), entry->dst = pd.diff_dst_desc();
      entry->scratch = Scratchpad(pd.scratchpad_desc());
    }
  }
  if (!SameLayout(entry->src, src)) entry->src_buf = memory(entry->src, Engine());
  if (!SameLayout(entry->wei, wei)) entry->wei_buf = memory(entry->wei, Engine());
  if (!SameLayout(entry->dst, dst)) entry->dst_buf = memory(entry->dst, Engine());
  g_entries.emplace(std::move(key), entry);
  return entry;
}

// A reorder of a small operand (a kernel) on the calling thread alone: oneDNN's OpenMP threads wait
// asleep between calls (see onednn.py), and waking them cost 35-50 us a reorder against 1-2 us of
// copying for a 5 x 5 x 10 x 20 kernel (`ONEDNN_VERBOSE`; Subramanian's CNN at batch 32: 1.39-1.40 ->
// 1.30 ms a step). The OpenMP runtime oneDNN loaded (GNU's, by its soname) gives the calls that set
// the calling thread's thread count; with another runtime every reorder keeps oneDNN's threads.
constexpr size_t kSmallBytes = 1 << 18;

void Reorder(dnnl::stream& stream, memory& from, memory& to) {
  static const auto omp = [] {
    void* gomp = dlopen("libgomp.so.1", RTLD_NOLOAD | RTLD_LAZY);
    return std::make_pair(
        gomp ? reinterpret_cast<int (*)()>(dlsym(gomp, "omp_get_max_threads")) : nullptr,
        gomp ? reinterpret_cast<void (*)(int)>(dlsym(gomp, "omp_set_num_threads")) : nullptr);
  }();
  struct OneThread {  // the thread count set back on the way out, an exception's included
    void (*set)(int) = nullptr;
    int before = 0;
    ~OneThread() {
      if (set) set(before);
    }
  } guard;
  if (omp.first && omp.second && from.get_desc().get_size() < kSmallBytes) {
    guard.set = omp.second, guard.before = omp.first();
    omp.second(1);
  }
  dnnl::reorder::primitive_desc pd(from, to, UserScratchpad());
  std::unordered_map<int, memory> args{{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
  if (memory scratch = Scratchpad(pd.scratchpad_desc())) args.emplace(DNNL_ARG_SCRATCHPAD, scratch);
  dnnl::reorder(pd).execute(stream, args);
}

ffi::Error Fail(const std::string& what) { return ffi::Error(ffi::ErrorCode::kInvalidArgument, what); }

ffi::Error Run(Pass pass, ffi::AnyBuffer a, ffi::AnyBuffer b, ffi::Result<ffi::AnyBuffer> out,
               ffi::Span<const int64_t> x, ffi::Span<const int64_t> k, ffi::Span<const int64_t> s,
               ffi::Span<const int64_t> p, ffi::Span<const int64_t> d) {
  if (x.size() != 4 || k.size() != 4 || s.size() != 2 || p.size() != 4 || d.size() != 2) {
    return Fail("dlcore oneDNN convolution: x_shape and k_shape take 4 ints, strides and dilation 2, padding 4");
  }
  Geometry g;
  if (a.element_type() != ffi::DataType::F32 || b.element_type() != ffi::DataType::F32 ||
      out->element_type() != ffi::DataType::F32) {
    return Fail("dlcore oneDNN convolution: float32 operands only");
  }
  g.type = memory::data_type::f32;
  const int64_t oh = (x[1] + p[0] + p[1] - d[0] * (k[0] - 1) - 1) / s[0] + 1;
  const int64_t ow = (x[2] + p[2] + p[3] - d[1] * (k[1] - 1) - 1) / s[1] + 1;
  if (k[2] != x[3] || oh < 1 || ow < 1) return Fail("dlcore oneDNN convolution: shapes do not fit");
  g.src = {x[0], x[3], x[1], x[2]};  // oneDNN names dimensions N C H W and O I H W, whatever the layout
  g.wei = {k[3], k[2], k[0], k[1]};
  g.dst = {x[0], k[3], oh, ow};
  g.strides = {s[0], s[1]};
  g.dilation = {d[0] - 1, d[1] - 1};  // oneDNN counts the gaps: 0 is a dense kernel
  g.pad_lo = {p[0], p[2]};
  g.pad_hi = {p[1], p[3]};

  void *src_ptr, *wei_ptr, *dst_ptr;
  switch (pass) {
    case kForward: src_ptr = a.untyped_data(), wei_ptr = b.untyped_data(), dst_ptr = out->untyped_data(); break;
    case kBackwardData: dst_ptr = a.untyped_data(), wei_ptr = b.untyped_data(), src_ptr = out->untyped_data(); break;
    default: src_ptr = a.untyped_data(), dst_ptr = b.untyped_data(), wei_ptr = out->untyped_data(); break;
  }
  try {
    std::shared_ptr<Entry> e = Lookup(pass, g);
    thread_local dnnl::stream stream(Engine());
    // XLA's buffers, described as the primitive sees them where it uses them directly
    memory xla_src(e->src_buf ? Plain(g.src, g.type, tag::nhwc) : e->src, Engine(), src_ptr);
    memory xla_wei(e->wei_buf ? Plain(g.wei, g.type, tag::hwio) : e->wei, Engine(), wei_ptr);
    memory xla_dst(e->dst_buf ? Plain(g.dst, g.type, tag::nhwc) : e->dst, Engine(), dst_ptr);
    const bool src_in = pass != kBackwardData, wei_in = pass != kBackwardWeights, dst_in = pass != kForward;

    std::lock_guard<std::mutex> lock(e->mu);
    memory src = e->src_buf ? e->src_buf : xla_src, wei = e->wei_buf ? e->wei_buf : xla_wei,
           dst = e->dst_buf ? e->dst_buf : xla_dst;
    auto convert = [&](memory& from, memory& to) { Reorder(stream, from, to); };
    if (e->src_buf && src_in) convert(xla_src, src);
    if (e->wei_buf && wei_in) convert(xla_wei, wei);
    if (e->dst_buf && dst_in) convert(xla_dst, dst);
    std::unordered_map<int, memory> args;
    switch (pass) {
      case kForward: args = {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}}; break;
      case kBackwardData: args = {{DNNL_ARG_DIFF_DST, dst}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DIFF_SRC, src}}; break;
      default: args = {{DNNL_ARG_SRC, src}, {DNNL_ARG_DIFF_DST, dst}, {DNNL_ARG_DIFF_WEIGHTS, wei}}; break;
    }
    if (e->scratch) args.emplace(DNNL_ARG_SCRATCHPAD, e->scratch);
    e->primitive->execute(stream, args);
    if (e->src_buf && !src_in) convert(src, xla_src);
    if (e->wei_buf && !wei_in) convert(wei, xla_wei);
    if (e->dst_buf && !dst_in) convert(dst, xla_dst);
    stream.wait();
  } catch (const dnnl::error& err) {
    return ffi::Error(ffi::ErrorCode::kInternal, std::string("dlcore oneDNN convolution: ") + err.what());
  }
  return ffi::Error::Success();
}

template <Pass kPass>
ffi::Error Handle(ffi::AnyBuffer a, ffi::AnyBuffer b, ffi::Result<ffi::AnyBuffer> out, ffi::Span<const int64_t> x,
                  ffi::Span<const int64_t> k, ffi::Span<const int64_t> s, ffi::Span<const int64_t> p,
                  ffi::Span<const int64_t> d) {
  return Run(kPass, a, b, out, x, k, s, p, d);
}

}  // namespace

#define DLCORE_ONEDNN_HANDLER(NAME, PASS)                           \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(NAME, Handle<PASS>,                 \
                                ffi::Ffi::Bind()                    \
                                    .Arg<ffi::AnyBuffer>()          \
                                    .Arg<ffi::AnyBuffer>()          \
                                    .Ret<ffi::AnyBuffer>()          \
                                    .Attr<ffi::Span<const int64_t>>("x_shape") \
                                    .Attr<ffi::Span<const int64_t>>("k_shape") \
                                    .Attr<ffi::Span<const int64_t>>("strides") \
                                    .Attr<ffi::Span<const int64_t>>("padding") \
                                    .Attr<ffi::Span<const int64_t>>("dilation"));

DLCORE_ONEDNN_HANDLER(dlcore_onednn_conv_forward, kForward)
DLCORE_ONEDNN_HANDLER(dlcore_onednn_conv_backward_data, kBackwardData)
DLCORE_ONEDNN_HANDLER(dlcore_onednn_conv_backward_weights, kBackwardWeights)
