"""CUDA C++ source of the depthwise-over-taps kernels (forward and input gradient), built by `mixed_depthwise_cuda`.

Why CUDA here: the mixed depthwise kernel reads one input halo tile and applies every candidate's taps to it.
CUDA stages that tile in shared memory once per block and indexes it at arbitrary (dy, dx) per tap; Triton has
no indexed shared-memory reads, so its kernel re-loads a shifted tile per tap and relies on L1 hits. The device
code below includes no torch header, so it compiles alone with `nvcc` (the tests do that where nvcc exists).
"""

CUDA_SOURCE = r"""
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

namespace hwnas_dw {

constexpr int TILE_H = 16;
constexpr int TILE_W = 16;

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T from_float(float v);
template <> __device__ __forceinline__ float from_float<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

__host__ __device__ __forceinline__ int floor_div(int a, int b) { return (a >= 0) ? a / b : -((-a + b - 1) / b); }

// y[n,c,oh,ow] = sum_t w[n?,t,c] * x[n,c,oh*S+dy_t,ow*S+dx_t]; one block = one (n, c) plane tile of 16x16 outputs.
// Shared memory: the input halo tile (read from global memory once), then the taps' weights and offsets.
template <typename T>
__global__ void taps_forward(const T* __restrict__ x, const float* __restrict__ w, const int* __restrict__ dy,
                             const int* __restrict__ dx, T* __restrict__ y, int C, int H, int W, int OH, int OW,
                             int taps, int radius, int stride, long long weight_sample_stride) {
  extern __shared__ float smem[];
  const int c = blockIdx.y, n = blockIdx.z;
  const int tiles_w = (OW + TILE_W - 1) / TILE_W;
  const int oh0 = (blockIdx.x / tiles_w) * TILE_H, ow0 = (blockIdx.x % tiles_w) * TILE_W;
  const int in_h = (TILE_H - 1) * stride + 2 * radius + 1, in_w = (TILE_W - 1) * stride + 2 * radius + 1;
  const int ih0 = oh0 * stride - radius, iw0 = ow0 * stride - radius;
  float* tile = smem;
  float* wt = tile + in_h * in_w;
  int* ty = reinterpret_cast<int*>(wt + taps);
  int* tx = ty + taps;
  const int tid = threadIdx.y * TILE_W + threadIdx.x, threads = TILE_H * TILE_W;
  const T* plane = x + ((long long)n * C + c) * H * W;
  for (int i = tid; i < in_h * in_w; i += threads) {
    const int ih = ih0 + i / in_w, iw = iw0 + i % in_w;
    tile[i] = (ih >= 0 && ih < H && iw >= 0 && iw < W) ? to_float(plane[(long long)ih * W + iw]) : 0.f;
  }
  const float* wn = w + n * weight_sample_stride;
  for (int t = tid; t < taps; t += threads) {
    wt[t] = wn[(long long)t * C + c];
    ty[t] = dy[t] + radius;
    tx[t] = dx[t] + radius;
  }
  __syncthreads();
  const int oh = oh0 + threadIdx.y, ow = ow0 + threadIdx.x;
  if (oh >= OH || ow >= OW) return;
  const float* origin = tile + threadIdx.y * stride * in_w + threadIdx.x * stride;
  float acc = 0.f;
  for (int t = 0; t < taps; ++t) acc += wt[t] * origin[ty[t] * in_w + tx[t]];
  y[((long long)n * C + c) * OH * OW + (long long)oh * OW + ow] = from_float<T>(acc);
}

// gx[n,c,ih,iw] = sum_t w[n?,t,c] * g[n,c,(ih-dy_t)/S,(iw-dx_t)/S] where the division is exact and in range.
// One block = a 16x16 tile of input positions; the output-gradient rows it needs are staged in shared memory.
template <typename T>
__global__ void taps_input_grad(const T* __restrict__ g, const float* __restrict__ w, const int* __restrict__ dy,
                                const int* __restrict__ dx, T* __restrict__ gx, int C, int H, int W, int OH, int OW,
                                int taps, int radius, int stride, long long weight_sample_stride) {
  extern __shared__ float smem[];
  const int c = blockIdx.y, n = blockIdx.z;
  const int tiles_w = (W + TILE_W - 1) / TILE_W;
  const int ih0 = (blockIdx.x / tiles_w) * TILE_H, iw0 = (blockIdx.x % tiles_w) * TILE_W;
  const int oh_lo = floor_div(ih0 - radius, stride), ow_lo = floor_div(iw0 - radius, stride);
  const int g_h = floor_div(ih0 + TILE_H - 1 + radius, stride) - oh_lo + 1;
  const int g_w = floor_div(iw0 + TILE_W - 1 + radius, stride) - ow_lo + 1;
  float* tile = smem;
  float* wt = tile + g_h * g_w;
  int* ty = reinterpret_cast<int*>(wt + taps);
  int* tx = ty + taps;
  const int tid = threadIdx.y * TILE_W + threadIdx.x, threads = TILE_H * TILE_W;
  const T* plane = g + ((long long)n * C + c) * OH * OW;
  for (int i = tid; i < g_h * g_w; i += threads) {
    const int oh = oh_lo + i / g_w, ow = ow_lo + i % g_w;
    tile[i] = (oh >= 0 && oh < OH && ow >= 0 && ow < OW) ? to_float(plane[(long long)oh * OW + ow]) : 0.f;
  }
  const float* wn = w + n * weight_sample_stride;
  for (int t = tid; t < taps; t += threads) {
    wt[t] = wn[(long long)t * C + c];
    ty[t] = dy[t];
    tx[t] = dx[t];
  }
  __syncthreads();
  const int ih = ih0 + threadIdx.y, iw = iw0 + threadIdx.x;
  if (ih >= H || iw >= W) return;
  float acc = 0.f;
  for (int t = 0; t < taps; ++t) {
    const int rh = ih - ty[t] - oh_lo * stride, rw = iw - tx[t] - ow_lo * stride;  // >= 0 by construction
    if (rh % stride == 0 && rw % stride == 0) acc += wt[t] * tile[(rh / stride) * g_w + rw / stride];
  }
  gx[((long long)n * C + c) * H * W + (long long)ih * W + iw] = from_float<T>(acc);
}

inline size_t forward_smem(int taps, int radius, int stride) {
  const int in_h = (TILE_H - 1) * stride + 2 * radius + 1, in_w = (TILE_W - 1) * stride + 2 * radius + 1;
  return sizeof(float) * (size_t)(in_h * in_w + taps) + sizeof(int) * 2 * (size_t)taps;
}

inline size_t input_grad_smem(int taps, int radius, int stride) {
  const int g_h = (TILE_H - 1 + 2 * radius) / stride + 2, g_w = (TILE_W - 1 + 2 * radius) / stride + 2;
  return sizeof(float) * (size_t)(g_h * g_w + taps) + sizeof(int) * 2 * (size_t)taps;
}

template <typename T>
cudaError_t launch(bool forward, const void* src, const float* w, const int* dy, const int* dx, void* dst, int N,
                   int C, int H, int W, int OH, int OW, int taps, int radius, int stride, long long wss,
                   cudaStream_t stream) {
  const dim3 block(TILE_W, TILE_H);
  if (forward) {
    const dim3 grid(((OH + TILE_H - 1) / TILE_H) * ((OW + TILE_W - 1) / TILE_W), C, N);
    taps_forward<T><<<grid, block, forward_smem(taps, radius, stride), stream>>>(
        static_cast<const T*>(src), w, dy, dx, static_cast<T*>(dst), C, H, W, OH, OW, taps, radius, stride, wss);
  } else {
    const dim3 grid(((H + TILE_H - 1) / TILE_H) * ((W + TILE_W - 1) / TILE_W), C, N);
    taps_input_grad<T><<<grid, block, input_grad_smem(taps, radius, stride), stream>>>(
        static_cast<const T*>(src), w, dy, dx, static_cast<T*>(dst), C, H, W, OH, OW, taps, radius, stride, wss);
  }
  return cudaGetLastError();
}

}  // namespace hwnas_dw

// dtype: 0 float32, 1 float16, 2 bfloat16. Returns a cudaError_t code (0 = success), or -1 for a bad dtype.
int hwnas_dw_taps_launch(bool forward, int dtype, const void* src, const float* w, const int* dy, const int* dx,
                         void* dst, int N, int C, int H, int W, int OH, int OW, int taps, int radius, int stride,
                         long long weight_sample_stride, void* stream) {
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case 0: return hwnas_dw::launch<float>(forward, src, w, dy, dx, dst, N, C, H, W, OH, OW, taps, radius, stride,
                                           weight_sample_stride, s);
    case 1: return hwnas_dw::launch<__half>(forward, src, w, dy, dx, dst, N, C, H, W, OH, OW, taps, radius, stride,
                                            weight_sample_stride, s);
    case 2: return hwnas_dw::launch<__nv_bfloat16>(forward, src, w, dy, dx, dst, N, C, H, W, OH, OW, taps, radius,
                                                   stride, weight_sample_stride, s);
    default: return -1;
  }
}
"""

CPP_SOURCE = r"""
#include <torch/extension.h>

int hwnas_dw_taps_launch(bool forward, int dtype, const void* src, const float* w, const int* dy, const int* dx,
                         void* dst, int N, int C, int H, int W, int OH, int OW, int taps, int radius, int stride,
                         long long weight_sample_stride, void* stream);

static int dtype_code(const torch::Tensor& t) {
  if (t.scalar_type() == torch::kFloat) return 0;
  if (t.scalar_type() == torch::kHalf) return 1;
  if (t.scalar_type() == torch::kBFloat16) return 2;
  TORCH_CHECK(false, "hwnas depthwise: float32, float16 or bfloat16 expected, got ", t.scalar_type());
  return -1;
}

// forward: src = x (N,C,H,W) -> dst (N,C,OH,OW); backward: src = grad_y (N,C,OH,OW) -> dst = grad_x (N,C,H,W).
// taps_w: (NW, T, C) float32 with NW = 1 or N; dy, dx: (T,) int32. All NCHW-contiguous, on one CUDA device.
// stream: torch.cuda.current_stream().cuda_stream (passed from Python, so no CUDA header of torch is needed).
torch::Tensor taps_apply(bool forward, torch::Tensor src, torch::Tensor taps_w, torch::Tensor dy, torch::Tensor dx,
                         int64_t H, int64_t W, int64_t OH, int64_t OW, int64_t radius, int64_t stride,
                         int64_t stream) {
  TORCH_CHECK(src.is_cuda() && src.is_contiguous() && src.dim() == 4, "src: contiguous 4-D CUDA tensor expected");
  TORCH_CHECK(taps_w.scalar_type() == torch::kFloat && taps_w.is_contiguous(), "taps_w: contiguous float32");
  TORCH_CHECK(dy.scalar_type() == torch::kInt && dx.scalar_type() == torch::kInt, "dy, dx: int32");
  const int64_t N = src.size(0), C = src.size(1);
  auto dst = forward ? torch::empty({N, C, OH, OW}, src.options()) : torch::empty({N, C, H, W}, src.options());
  const long long wss = taps_w.size(0) == 1 ? 0 : taps_w.stride(0);
  const int code = hwnas_dw_taps_launch(forward, dtype_code(src), src.data_ptr(), taps_w.data_ptr<float>(),
      dy.data_ptr<int>(), dx.data_ptr<int>(), dst.data_ptr(), N, C, H, W, OH, OW, dy.numel(), radius, stride, wss,
      reinterpret_cast<void*>(stream));
  TORCH_CHECK(code == 0, "hwnas depthwise kernel launch failed with CUDA error ", code);
  return dst;
}
"""
