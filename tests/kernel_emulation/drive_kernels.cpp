// Runs the real CUDA kernels against the CPU twins on the cases of issue 15: compiled as host code over
// emulation.h (tests/test_kernels_emulated.py), where they must match bit for bit, or on a real GPU with
// SEGTRT_REAL_GPU (tests/gpu_check.sh), where device expf and FMA contraction allow a small tolerance. With TensorRT
// headers (SEGTRT_WITH_TENSORRT) it also drives the plugin classes. One group of cases per command-line argument;
// prints one line per failure and exits non-zero when any case fails.
#include "../../plugins/cpu/segtrtCpuOps.h"
#include "../../plugins/matrixNMS/matrixNmsKernel.h"
#include "../../plugins/multilevelRoIAlign/multilevelRoIAlignKernel.h"
#include "cuda_fp16.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#if defined(SEGTRT_WITH_TENSORRT)
#include "../../plugins/matrixNMS/matrixNmsPlugin.h"
#include "../../plugins/multilevelRoIAlign/multilevelRoIAlignPlugin.h"
#endif

namespace
{

using namespace segtrt;

int gFailures = 0;

void expect(bool ok, std::string const& what)
{
    if (!ok)
    {
        ++gFailures;
        std::printf("FAIL %s\n", what.c_str());
    }
}

void check(cudaError_t status, char const* what)
{
    if (status != cudaSuccess)
    {
        std::printf("FAIL %s: %s\n", what, cudaGetErrorString(status));
        std::exit(1);
    }
}

// Device memory (host memory under emulation) with a copy of `host`, or of `bytes` of a 0x5A pattern, so a slot
// a kernel forgets to write shows.
class Device
{
public:
    Device(size_t bytes, void const* host)
        : mBytes(bytes)
    {
        std::vector<unsigned char> pattern(host == nullptr ? bytes : 0, 0x5A);
        check(cudaMalloc(&mPointer, bytes > 0 ? bytes : 1), "cudaMalloc");
        if (bytes > 0)
            check(cudaMemcpy(mPointer, host != nullptr ? host : pattern.data(), bytes, cudaMemcpyHostToDevice),
                "cudaMemcpy to the device");
    }
    Device(Device const&) = delete;
    Device& operator=(Device const&) = delete;
    ~Device() { cudaFree(mPointer); }

    void* get() const { return mPointer; }
    void download(void* host) const
    {
        if (mBytes > 0)
            check(cudaMemcpy(host, mPointer, mBytes, cudaMemcpyDeviceToHost), "cudaMemcpy to the host");
    }

private:
    void* mPointer = nullptr;
    size_t mBytes;
};

template <typename T>
std::shared_ptr<Device> upload(std::vector<T> const& host)
{
    return std::make_shared<Device>(host.size() * sizeof(T), host.data());
}

// A tensor as the kernel stores it (FP32 or FP16, on the device) and as the twin reads it (the stored values, as
// FP32, on the host).
struct Stored
{
    bool half;
    std::vector<float> values;
    std::shared_ptr<Device> device;

    Stored(std::vector<float> const& v, bool asHalf)
        : half(asHalf)
        , values(v)
    {
        std::vector<__half> halves;
        if (half)
        {
            for (float& x : values)
            {
                halves.push_back(__float2half(x));
                x = __half2float(halves.back());
            }
        }
        device = half ? upload(halves) : upload(values);
    }

    void const* data() const { return device->get(); }
};

// What the kernel's FP32 result becomes in its output type.
float asStored(float v, bool half)
{
    return half ? __half2float(__float2half(v)) : v;
}

// A kernel's output: pattern-filled device memory, and its host copy once fetched.
struct Output
{
    bool half;
    std::vector<unsigned char> bytes;
    Device device;

    Output(size_t count, bool asHalf)
        : half(asHalf)
        , bytes(count * (asHalf ? sizeof(__half) : sizeof(float)))
        , device(bytes.size(), nullptr)
    {
    }

    void* data() { return device.get(); }
    void fetch() { device.download(bytes.data()); }
    float at(size_t i) const
    {
        if (half)
        {
            __half h;
            std::memcpy(&h, bytes.data() + i * sizeof(__half), sizeof(__half));
            return __half2float(h);
        }
        float f;
        std::memcpy(&f, bytes.data() + i * sizeof(float), sizeof(float));
        return f;
    }
};

// Under emulation kernel and twin run the same host code: equal bits. A GPU's expf and fused multiply-adds differ
// in the last bits, and that can move an FP16 result by one unit.
bool same(float a, float b, bool half)
{
#if defined(SEGTRT_REAL_GPU)
    float const tolerance = half ? 2e-3f : 2e-5f;
    if (std::fabs(a - b) <= tolerance * std::fmax(1.f, std::fabs(b)))
        return true;
#else
    (void) half;
#endif
    return a == b || (std::isnan(a) && std::isnan(b));
}

std::string storage(bool half)
{
    return half ? "fp16" : "fp32";
}

// ---- MultilevelRoIAlign ------------------------------------------------------------------------------------

struct RoiCase
{
    int batch, channels, numRois, levels, imageH, imageW, outH, outW, sampling;
    bool aligned, max, featuresHalf, roisHalf;

    std::string name() const
    {
        char text[200];
        std::snprintf(text, sizeof(text), "roi_align B=%d C=%d R=%d L=%d %dx%d out %dx%d sampling=%d aligned=%d %s "
            "features %s rois %s", batch, channels, numRois, levels, imageH, imageW, outH, outW, sampling, aligned,
            max ? "max" : "avg", storage(featuresHalf).c_str(), storage(roisHalf).c_str());
        return text;
    }
};

struct RoiInputs
{
    std::vector<Stored> maps;
    Stored rois;
    MultilevelRoIAlignShape shape;
};

RoiInputs roiInputs(RoiCase const& c, unsigned seed)
{
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> unit(-1.f, 1.f);
    MultilevelRoIAlignShape shape{};
    shape.batch = c.batch;
    shape.channels = c.channels;
    shape.numRois = c.numRois;
    shape.levels = c.levels;
    std::vector<Stored> maps;
    for (int l = 0; l < c.levels; ++l)
    {
        shape.stride[l] = 4 << l;
        shape.height[l] = (c.imageH + shape.stride[l] - 1) / shape.stride[l];
        shape.width[l] = (c.imageW + shape.stride[l] - 1) / shape.stride[l];
        std::vector<float> v(static_cast<size_t>(c.batch) * c.channels * shape.height[l] * shape.width[l]);
        for (float& x : v)
            x = unit(rng);
        maps.emplace_back(v, c.featuresHalf);
    }
    // Boxes of every size (so every level is picked), some partly outside the image.
    std::vector<float> boxes;
    std::uniform_real_distribution<float> side(2.f, static_cast<float>(c.imageW));
    for (int i = 0; i < c.batch * c.numRois; ++i)
    {
        float const x1 = (unit(rng) * 0.6f + 0.4f) * c.imageW;
        float const y1 = (unit(rng) * 0.6f + 0.4f) * c.imageH;
        float const w = side(rng);
        float const h = side(rng) * c.imageH / c.imageW;
        boxes.insert(boxes.end(), {x1, y1, x1 + w, y1 + h});
    }
    return {maps, Stored(boxes, c.roisHalf), shape};
}

std::vector<float> roiTwin(RoiCase const& c, RoiInputs const& in)
{
    std::vector<float const*> features;
    for (auto const& m : in.maps)
        features.push_back(m.values.data());
    std::vector<int> strides(in.shape.stride, in.shape.stride + c.levels);
    std::vector<float> out(static_cast<size_t>(c.batch) * c.numRois * c.channels * c.outH * c.outW);
    char error[256] = "";
    int const status = segtrt_multilevel_roi_align(features.data(), in.shape.height, in.shape.width, c.levels,
        c.batch, c.channels, in.rois.values.data(), c.numRois, strides.data(), c.levels, c.outH, c.outW, c.sampling,
        c.aligned, c.max ? "max" : "avg", 224, 4, out.data(), error, sizeof(error));
    expect(status == 0, c.name() + ": twin refused: " + error);
    return out;
}

void compareRoi(RoiCase const& c, Output& kernel, std::vector<float> const& twin)
{
    kernel.fetch();
    size_t mismatches = 0;
    for (size_t i = 0; i < twin.size(); ++i)
        mismatches += same(kernel.at(i), asStored(twin[i], c.featuresHalf), c.featuresHalf) ? 0 : 1;
    expect(mismatches == 0, c.name() + ": " + std::to_string(mismatches) + " of " + std::to_string(twin.size())
        + " outputs differ from the twin");
}

size_t roiOutputs(RoiCase const& c)
{
    return static_cast<size_t>(c.batch) * c.numRois * c.channels * c.outH * c.outW;
}

cudaError_t launchRoi(RoiCase const& c, RoiInputs const& in, Output& out)
{
    std::vector<void const*> features;
    for (auto const& m : in.maps)
        features.push_back(m.data());
    RoiAlignParams const p{c.outH, c.outW, c.sampling, c.aligned, c.max ? PoolMode::kMax : PoolMode::kAvg};
    cudaError_t const status = launchMultilevelRoIAlign(features.data(), c.featuresHalf, in.rois.data(), c.roisHalf,
        in.shape, LevelMapping{224.f, 4}, p, out.data(), nullptr);
    check(cudaDeviceSynchronize(), "roi_align kernel");
    return status;
}

void runRoiCase(RoiCase const& c, unsigned seed)
{
    RoiInputs const in = roiInputs(c, seed);
    Output out(roiOutputs(c), c.featuresHalf);
    cudaError_t const status = launchRoi(c, in, out);
    expect(status == cudaSuccess, c.name() + ": launch failed with " + std::to_string(status));
    compareRoi(c, out, roiTwin(c, in));
}

std::vector<RoiCase> roiCases()
{
    std::vector<RoiCase> cases;
    for (int batch : {1, 2, 3})
        for (int sampling : {0, 2})
            for (bool aligned : {false, true})
                for (bool max : {false, true})
                    for (bool featuresHalf : {false, true})
                    {
                        bool const roisHalf = (batch + sampling) % 2 == 1;
                        cases.push_back({batch, 3, 5, 4, 97, 131, 7, 5, sampling, aligned, max, featuresHalf, roisHalf});
                    }
    cases.push_back({1, 2, 1, 1, 33, 17, 14, 14, 0, true, false, true, true});
    return cases;
}

// ---- MatrixNMS ---------------------------------------------------------------------------------------------

struct NmsCase
{
    int batch, numMasks, height, width, nmsPre, maxNum;
    NmsKernel kernel;
    float filterThr;
    bool masksHalf, scoresHalf;
    int scoreLevels; // > 0: scores take this many distinct values (ties)
    int padding;     // trailing candidates with score 0 and empty masks, as the SOLO graphs pad
    bool nanAndInf;  // a NaN score and a +Inf score in every image

    std::string name() const
    {
        char text[240];
        std::snprintf(text, sizeof(text), "matrix_nms B=%d N=%d %dx%d nms_pre=%d max_num=%d %s filter_thr=%g "
            "masks %s scores %s ties=%d padding=%d nan/inf=%d", batch, numMasks, height, width, nmsPre, maxNum,
            kernel == NmsKernel::kLinear ? "linear" : "gaussian", filterThr, storage(masksHalf).c_str(),
            storage(scoresHalf).c_str(), scoreLevels, padding, nanAndInf);
        return text;
    }
};

constexpr float kSigma = 2.f;
constexpr float kMaskThreshold = 0.5f;

struct NmsInputs
{
    Stored masks;
    Stored scores;
    std::vector<int> labels;
    std::shared_ptr<Device> labelsDevice;
};

NmsInputs nmsInputs(NmsCase const& c, unsigned seed)
{
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> unit(0.f, 1.f);
    size_t const hw = static_cast<size_t>(c.height) * c.width;
    std::vector<float> masks(c.batch * c.numMasks * hw);
    std::vector<float> scores(c.batch * c.numMasks);
    std::vector<int> labels(c.batch * c.numMasks);
    for (int b = 0; b < c.batch; ++b)
    {
        for (int i = 0; i < c.numMasks; ++i)
        {
            size_t const at = static_cast<size_t>(b) * c.numMasks + i;
            float* m = masks.data() + at * hw;
            bool const pad = i >= c.numMasks - c.padding;
            // Overlapping rectangles of probabilities above the threshold inside, below it outside.
            int const y0 = static_cast<int>(unit(rng) * c.height * 0.6f);
            int const x0 = static_cast<int>(unit(rng) * c.width * 0.6f);
            int const y1 = y0 + 1 + static_cast<int>(unit(rng) * c.height * 0.5f);
            int const x1 = x0 + 1 + static_cast<int>(unit(rng) * c.width * 0.5f);
            for (int y = 0; y < c.height; ++y)
                for (int x = 0; x < c.width; ++x)
                {
                    bool const inside = !pad && y >= y0 && y < y1 && x >= x0 && x < x1;
                    m[y * c.width + x] = inside ? 0.55f + 0.4f * unit(rng) : 0.45f * unit(rng);
                }
            float const s = 0.05f + 0.9f * unit(rng);
            scores[at] = pad ? 0.f : c.scoreLevels > 0 ? std::ceil(s * c.scoreLevels) / c.scoreLevels : s;
            labels[at] = pad ? 0 : static_cast<int>(unit(rng) * 3);
        }
        if (c.nanAndInf && c.numMasks - c.padding >= 2)
        {
            scores[static_cast<size_t>(b) * c.numMasks] = NAN;
            scores[static_cast<size_t>(b) * c.numMasks + 1] = INFINITY;
        }
    }
    return {Stored(masks, c.masksHalf), Stored(scores, c.scoresHalf), labels, upload(labels)};
}

MatrixNmsParams nmsParams(NmsCase const& c)
{
    return {c.kernel, kSigma, kMaskThreshold, c.nmsPre, c.maxNum, c.filterThr};
}

struct NmsOutputs
{
    std::vector<int> count, keep, labels;
    Output scores;
    Device countDevice, keepDevice, labelsDevice;

    NmsOutputs(NmsCase const& c)
        : count(c.batch)
        , keep(static_cast<size_t>(c.batch) * c.maxNum)
        , labels(keep.size())
        , scores(keep.size(), c.scoresHalf)
        , countDevice(count.size() * sizeof(int), nullptr)
        , keepDevice(keep.size() * sizeof(int), nullptr)
        , labelsDevice(labels.size() * sizeof(int), nullptr)
    {
    }

    int* deviceCount() { return static_cast<int*>(countDevice.get()); }
    int* deviceKeep() { return static_cast<int*>(keepDevice.get()); }
    int* deviceLabels() { return static_cast<int*>(labelsDevice.get()); }
    void fetch()
    {
        countDevice.download(count.data());
        keepDevice.download(keep.data());
        labelsDevice.download(labels.data());
        scores.fetch();
    }
};

void compareNms(NmsCase const& c, NmsInputs const& in, NmsOutputs& out)
{
    out.fetch();
    int const hw = c.height * c.width;
    char const* kernelName = c.kernel == NmsKernel::kLinear ? "linear" : "gaussian";
    for (int b = 0; b < c.batch; ++b)
    {
        int count = 0;
        std::vector<int> keep(c.numMasks + 1), labels(c.numMasks + 1);
        std::vector<float> scores(c.numMasks + 1);
        char error[256] = "";
        int const status = segtrt_matrix_nms(in.masks.values.data() + static_cast<size_t>(b) * c.numMasks * hw,
            c.numMasks, hw, in.labels.data() + static_cast<size_t>(b) * c.numMasks,
            in.scores.values.data() + static_cast<size_t>(b) * c.numMasks, kernelName, kSigma, kMaskThreshold,
            c.nmsPre, c.maxNum, c.filterThr, &count, keep.data(), scores.data(), labels.data(), error, sizeof(error));
        expect(status == 0, c.name() + ": twin refused: " + error);
        std::string const image = c.name() + " image " + std::to_string(b);
        expect(out.count[b] == count,
            image + ": count " + std::to_string(out.count[b]) + ", twin " + std::to_string(count));
        int mismatches = 0;
        for (int r = 0; r < c.maxNum; ++r)
        {
            size_t const slot = static_cast<size_t>(b) * c.maxNum + r;
            bool const kept = r < count;
            mismatches += out.keep[slot] == (kept ? keep[r] : -1) ? 0 : 1;
            mismatches += out.labels[slot] == (kept ? labels[r] : -1) ? 0 : 1;
            mismatches += same(out.scores.at(slot), kept ? asStored(scores[r], c.scoresHalf) : 0.f, c.scoresHalf) ? 0 : 1;
        }
        expect(mismatches == 0, image + ": " + std::to_string(mismatches) + " output values differ from the twin");
    }
}

MatrixNmsShape nmsShape(NmsCase const& c)
{
    return {c.batch, c.numMasks, c.height * c.width};
}

// Exactly matrixNmsWorkspaceSize bytes (ASan, or compute-sanitizer's memcheck, sees any byte beyond).
std::unique_ptr<Device> nmsWorkspace(NmsCase const& c)
{
    return std::make_unique<Device>(matrixNmsWorkspaceSize(nmsShape(c), nmsParams(c)), nullptr);
}

cudaError_t launchNms(NmsCase const& c, NmsInputs const& in, NmsOutputs& out, Device const& workspace)
{
    MatrixNmsShape const shape = nmsShape(c);
    MatrixNmsParams const p = nmsParams(c);
    cudaError_t const status = launchMatrixNms(in.masks.data(), c.masksHalf, in.scores.data(), c.scoresHalf,
        static_cast<int const*>(in.labelsDevice->get()), shape, p, out.deviceCount(), out.deviceKeep(),
        out.scores.data(), out.deviceLabels(), workspace.get(), nullptr);
    check(cudaDeviceSynchronize(), "matrix_nms kernels");
    return status;
}

void runNmsCase(NmsCase const& c, unsigned seed)
{
    NmsInputs const in = nmsInputs(c, seed);
    NmsOutputs out(c);
    cudaError_t const status = launchNms(c, in, out, *nmsWorkspace(c));
    expect(status == cudaSuccess, c.name() + ": launch failed with " + std::to_string(status));
    compareNms(c, in, out);
}

std::vector<NmsCase> nmsCases()
{
    using K = NmsKernel;
    return {
        {1, 1, 9, 7, -1, 5, K::kGaussian, -1.f, false, false, 0, 0, false},
        {1, 17, 23, 29, -1, 100, K::kGaussian, -1.f, false, false, 0, 0, false},
        {2, 17, 23, 29, 12, 6, K::kLinear, 0.1f, true, false, 0, 0, false},
        {3, 17, 19, 13, 20, 4, K::kGaussian, 0.05f, false, true, 0, 0, false},
        {2, 17, 16, 16, -1, 17, K::kLinear, -1.f, true, true, 4, 0, false},
        {2, 40, 21, 11, 30, 40, K::kGaussian, -1.f, false, false, 0, 16, false},
        {2, 40, 21, 11, 30, 40, K::kLinear, 0.f, true, false, 0, 16, true},
        {3, 25, 12, 17, 10, 8, K::kGaussian, 0.2f, false, true, 5, 4, true},
        {1, 500, 37, 23, -1, 100, K::kGaussian, 0.05f, false, false, 0, 0, false},
        {2, 520, 20, 27, 500, 100, K::kLinear, -1.f, true, false, 8, 30, true},
    };
}

// ---- groups ------------------------------------------------------------------------------------------------

void kernelsMatchTwins()
{
    unsigned seed = 1;
    for (RoiCase const& c : roiCases())
        runRoiCase(c, seed++);
    for (NmsCase const& c : nmsCases())
        runNmsCase(c, seed++);
}

// Batch 0: nothing to compute, and a zero grid must not be launched (CUDA rejects it).
void emptyBatch()
{
    NmsCase const nms{0, 17, 8, 8, -1, 10, NmsKernel::kGaussian, -1.f, false, false, 0, 0, false};
    NmsInputs const in = nmsInputs(nms, 3);
    NmsOutputs out(nms);
    expect(launchNms(nms, in, out, *nmsWorkspace(nms)) == cudaSuccess, "matrix_nms with batch 0 failed to launch");
    RoiCase const roi{0, 3, 4, 2, 32, 32, 7, 7, 0, true, false, false, false};
    RoiInputs const rin = roiInputs(roi, 4);
    std::vector<void const*> features = {rin.maps[0].data(), rin.maps[1].data()};
    RoiAlignParams const p{7, 7, 0, true, PoolMode::kAvg};
    expect(launchMultilevelRoIAlign(features.data(), false, rin.rois.data(), false, rin.shape, LevelMapping{224.f, 4},
               p, nullptr, nullptr) == cudaSuccess,
        "roi_align with batch 0 failed to launch");
}

// An error some earlier, unrelated call left pending is neither reported by our launches nor cleared by them.
void pendingErrorIsNotOurs()
{
    void* tooLarge = nullptr;
    expect(cudaMalloc(&tooLarge, size_t(1) << 62) == cudaErrorMemoryAllocation, "a 4 EiB cudaMalloc succeeded");
    NmsCase const nms = nmsCases()[2];
    NmsInputs const in = nmsInputs(nms, 5);
    NmsOutputs out(nms);
    expect(launchNms(nms, in, out, *nmsWorkspace(nms)) == cudaSuccess, "matrix_nms reported an earlier, unrelated error");
    compareNms(nms, in, out);
    RoiCase const roi = roiCases()[0];
    RoiInputs const rin = roiInputs(roi, 6);
    Output rout(roiOutputs(roi), roi.featuresHalf);
    expect(launchRoi(roi, rin, rout) == cudaSuccess, "roi_align reported an earlier, unrelated error");
    compareRoi(roi, rout, roiTwin(roi, rin));
    expect(cudaGetLastError() == cudaErrorMemoryAllocation, "a launch cleared someone else's pending error");
}

// Mean wall time of `calls` launches after one warm-up (the launchers synchronise after each).
template <typename Launch>
double millisecondsPerCall(Launch launch, int calls)
{
    check(launch(), "warm-up launch");
    auto const start = std::chrono::steady_clock::now();
    for (int i = 0; i < calls; ++i)
        check(launch(), "timed launch");
    std::chrono::duration<double, std::milli> const spent = std::chrono::steady_clock::now() - start;
    return spent.count() / calls;
}

// The full-size shapes, each against the twin once and then timed: SOLOv2 at 800x1344 (500 masks of 200x336 after
// nms_pre, from 1000 candidates too) and Mask R-CNN's box and mask heads at 800x1344. Minutes under emulation, so
// only `make gpu-check` runs them.
void fullSize()
{
    unsigned seed = 100;
    using K = NmsKernel;
    for (NmsCase const& c : std::vector<NmsCase>{
             {1, 500, 200, 336, 500, 100, K::kGaussian, 0.05f, false, false, 0, 0, false},
             {1, 500, 200, 336, 500, 100, K::kGaussian, 0.05f, true, false, 0, 0, false},
             {2, 1000, 200, 336, 500, 100, K::kLinear, 0.05f, true, true, 0, 0, false},
         })
    {
        runNmsCase(c, seed);
        NmsInputs const in = nmsInputs(c, seed++);
        NmsOutputs out(c);
        auto const workspace = nmsWorkspace(c);
        double const ms = millisecondsPerCall([&] { return launchNms(c, in, out, *workspace); }, 10);
        std::printf("time %s: %.3f ms per call, workspace %zu bytes\n", c.name().c_str(), ms,
            matrixNmsWorkspaceSize(nmsShape(c), nmsParams(c)));
    }
    for (RoiCase const& c : std::vector<RoiCase>{
             {1, 256, 1000, 4, 800, 1344, 7, 7, 0, false, false, false, false},
             {1, 256, 1000, 4, 800, 1344, 7, 7, 0, false, false, true, false},
             {1, 256, 100, 4, 800, 1344, 14, 14, 2, true, false, true, true},
         })
    {
        runRoiCase(c, seed);
        RoiInputs const in = roiInputs(c, seed++);
        Output out(roiOutputs(c), c.featuresHalf);
        double const ms = millisecondsPerCall([&] { return launchRoi(c, in, out); }, 10);
        std::printf("time %s: %.3f ms per call\n", c.name().c_str(), ms);
    }
}

#if defined(SEGTRT_WITH_TENSORRT)
// ---- the plugin classes, as TensorRT's ONNX parser and builder call them -------------------------------------

using namespace nvinfer1;

// getOutputShapes' expression builder: constants, and symbolic dimensions (value -1) for everything else.
class Expr : public IDimensionExpr
{
public:
    explicit Expr(int64_t value)
        : mValueImpl(value)
    {
        mImpl = &mValueImpl;
    }

private:
    struct Impl : apiv::VDimensionExpr
    {
        explicit Impl(int64_t v)
            : value(v)
        {
        }
        bool isConstant() const override { return value >= 0; }
        int64_t getConstantValue() const override { return value; }
        bool isSizeTensor() const override { return false; }
        int64_t value;
    } mValueImpl;
};

class ExprBuilder : public IExprBuilder
{
public:
    ExprBuilder() { mImpl = &mBuilder; }
    IDimensionExpr const* dim(int64_t value) { return mBuilder.constant(value); }

private:
    struct Impl : apiv::VExprBuilder
    {
        std::vector<std::unique_ptr<Expr>> exprs;
        IDimensionExpr const* constant(int64_t value) override
        {
            exprs.push_back(std::make_unique<Expr>(value));
            return exprs.back().get();
        }
        IDimensionExpr const* operation(DimensionOperation, IDimensionExpr const&, IDimensionExpr const&) override
        {
            return constant(-1);
        }
        IDimensionExpr const* declareSizeTensor(int32_t, IDimensionExpr const&, IDimensionExpr const&) override
        {
            return constant(-1);
        }
    } mBuilder;
};

DimsExprs exprs(ExprBuilder& builder, std::vector<int64_t> const& dims)
{
    DimsExprs e{};
    e.nbDims = static_cast<int32_t>(dims.size());
    for (size_t k = 0; k < dims.size(); ++k)
        e.d[k] = builder.dim(dims[k]);
    return e;
}

Dims dimsOf(std::vector<int64_t> const& dims)
{
    Dims d{};
    d.nbDims = static_cast<int32_t>(dims.size());
    for (size_t k = 0; k < dims.size(); ++k)
        d.d[k] = dims[k];
    return d;
}

std::vector<DynamicPluginTensorDesc> descs(std::vector<std::pair<std::vector<int64_t>, DataType>> const& tensors)
{
    std::vector<DynamicPluginTensorDesc> out(tensors.size());
    for (size_t i = 0; i < tensors.size(); ++i)
    {
        out[i].desc.dims = out[i].min = out[i].max = out[i].opt = dimsOf(tensors[i].first);
        out[i].desc.type = tensors[i].second;
        out[i].desc.format = TensorFormat::kLINEAR;
    }
    return out;
}

bool allFormatsSupported(IPluginV3OneBuild& plugin, std::vector<DynamicPluginTensorDesc> const& inOut, int nbInputs)
{
    bool ok = true;
    for (int pos = 0; pos < static_cast<int>(inOut.size()); ++pos)
        ok = ok && plugin.supportsFormatCombination(pos, inOut.data(), nbInputs, static_cast<int>(inOut.size()) - nbInputs);
    return ok;
}

// Fields as onnx-tensorrt's parser builds them from node attributes: INT -> kINT32, FLOAT -> kFLOAT32,
// STRING -> kCHAR with its length, INTS -> kINT32 array.
struct Fields
{
    std::vector<PluginField> fields;
    std::vector<std::unique_ptr<std::vector<unsigned char>>> storage;

    template <typename T>
    Fields& add(char const* name, std::vector<T> const& v, PluginFieldType type)
    {
        storage.push_back(std::make_unique<std::vector<unsigned char>>(v.size() * sizeof(T)));
        std::memcpy(storage.back()->data(), v.data(), v.size() * sizeof(T));
        fields.emplace_back(name, storage.back()->data(), type, static_cast<int32_t>(v.size()));
        return *this;
    }
    Fields& text(char const* name, std::string const& v)
    {
        return add(name, std::vector<char>(v.begin(), v.end()), PluginFieldType::kCHAR);
    }
    PluginFieldCollection collection() const { return {static_cast<int32_t>(fields.size()), fields.data()}; }
};

template <typename Plugin>
std::unique_ptr<Plugin> create(IPluginCreatorV3One& creator, PluginFieldCollection const& fc, TensorRTPhase phase)
{
    return std::unique_ptr<Plugin>(static_cast<Plugin*>(creator.createPlugin(Plugin::kName, &fc, phase)));
}

// The serialised fields re-create a plugin that serialises to the same fields.
template <typename Plugin>
void roundTrips(IPluginCreatorV3One& creator, Plugin& plugin)
{
    PluginFieldCollection const* fc = plugin.getFieldsToSerialize();
    auto const again = create<Plugin>(creator, *fc, TensorRTPhase::kRUNTIME);
    expect(again != nullptr, std::string(Plugin::kName) + ": serialised fields do not re-create the plugin");
    if (again == nullptr)
        return;
    PluginFieldCollection const* fc2 = again->getFieldsToSerialize();
    bool same = fc2->nbFields == fc->nbFields;
    for (int32_t i = 0; same && i < fc->nbFields; ++i)
    {
        PluginField const& a = fc->fields[i];
        PluginField const& b = fc2->fields[i];
        size_t const bytes = a.type == PluginFieldType::kCHAR ? 1 : 4;
        same = std::string(a.name) == b.name && a.type == b.type && a.length == b.length
            && std::memcmp(a.data, b.data, bytes * a.length) == 0;
    }
    expect(same, std::string(Plugin::kName) + ": re-created plugin serialises differently");
}

void matrixNmsPlugin()
{
    MatrixNmsCreator creator;
    Fields f;
    f.text("kernel", "linear").add("sigma", std::vector<float>{2.f}, PluginFieldType::kFLOAT32);
    f.add("mask_threshold", std::vector<float>{kMaskThreshold}, PluginFieldType::kFLOAT32);
    f.add("nms_pre", std::vector<int32_t>{12}, PluginFieldType::kINT32);
    f.add("max_num", std::vector<int32_t>{6}, PluginFieldType::kINT32);
    f.add("filter_thr", std::vector<float>{0.1f}, PluginFieldType::kFLOAT32);
    auto plugin = create<MatrixNmsPlugin>(creator, f.collection(), TensorRTPhase::kBUILD);
    expect(plugin != nullptr, "MatrixNMS: createPlugin refused the parser's fields");
    if (plugin == nullptr)
        return;
    Fields bad;
    bad.text("kernel", "box");
    expect(create<MatrixNmsPlugin>(creator, bad.collection(), TensorRTPhase::kBUILD) == nullptr,
        "MatrixNMS: createPlugin accepted kernel \"box\"");
    roundTrips(creator, *plugin);

    ExprBuilder builder;
    auto shapes = [&](std::vector<std::vector<int64_t>> const& in) {
        std::vector<DimsExprs> inputs;
        for (auto const& d : in)
            inputs.push_back(exprs(builder, d));
        DimsExprs outputs[4];
        return plugin->getOutputShapes(inputs.data(), static_cast<int32_t>(inputs.size()), nullptr, 0, outputs, 4,
                   builder) == 0
            && outputs[0].nbDims == 1 && outputs[1].nbDims == 2 && outputs[1].d[1]->getConstantValue() == 6;
    };
    expect(shapes({{2, -1, 23, 29}, {2, -1}, {2, -1}}), "MatrixNMS: getOutputShapes refused [B, N, H, W], [B, N], [B, N]");
    expect(!shapes({{2, 17, 23, 29}, {2}, {2, 17}}), "MatrixNMS: getOutputShapes accepted scores of rank 1");
    expect(!shapes({{2, 17, 23, 29}, {3, 17}, {2, 17}}), "MatrixNMS: getOutputShapes accepted scores of batch 3");
    expect(!shapes({{2, 17, 23, 29}, {2, 17}, {2, 16}}), "MatrixNMS: getOutputShapes accepted labels [2, 16]");

    // FP16 masks with FP32 scores, as the FP16 graphs on TensorRT 11 (strongly typed) have them.
    NmsCase const c{2, 17, 23, 29, 12, 6, NmsKernel::kLinear, 0.1f, true, false, 0, 0, false};
    auto inOut = descs({{{2, 17, 23, 29}, DataType::kHALF}, {{2, 17}, DataType::kFLOAT}, {{2, 17}, DataType::kINT32},
        {{2}, DataType::kINT32}, {{2, 6}, DataType::kINT32}, {{2, 6}, DataType::kFLOAT}, {{2, 6}, DataType::kINT32}});
    expect(allFormatsSupported(*plugin, inOut, 3), "MatrixNMS: FP16 masks with FP32 scores not supported");
    inOut[1].desc.type = DataType::kHALF;
    expect(!allFormatsSupported(*plugin, inOut, 3), "MatrixNMS: FP16 scores with FP32 kept scores supported");
    inOut[1].desc.type = DataType::kFLOAT;
    auto wrong = descs({{{2, 17, 23, 29}, DataType::kHALF}, {{2, 16}, DataType::kFLOAT}, {{2, 17}, DataType::kINT32}});
    expect(plugin->configurePlugin(wrong.data(), 3, inOut.data() + 3, 4) != 0,
        "MatrixNMS: configurePlugin accepted scores [2, 16] for masks [2, 17, ...]");
    expect(plugin->configurePlugin(inOut.data(), 3, inOut.data() + 3, 4) == 0, "MatrixNMS: configurePlugin refused");

    // enqueue with exactly getWorkspaceSize bytes, against the twin.
    NmsInputs const in = nmsInputs(c, 11);
    NmsOutputs out(c);
    Device const workspace(plugin->getWorkspaceSize(inOut.data(), 3, inOut.data() + 3, 4), nullptr);
    PluginTensorDesc inputDesc[3] = {inOut[0].desc, inOut[1].desc, inOut[2].desc};
    PluginTensorDesc outputDesc[4] = {inOut[3].desc, inOut[4].desc, inOut[5].desc, inOut[6].desc};
    void const* inputs[3] = {in.masks.data(), in.scores.data(), in.labelsDevice->get()};
    void* outputs[4] = {out.deviceCount(), out.deviceKeep(), out.scores.data(), out.deviceLabels()};
    expect(plugin->onShapeChange(inputDesc, 3, outputDesc, 4) == 0, "MatrixNMS: onShapeChange refused");
    expect(plugin->enqueue(inputDesc, outputDesc, inputs, outputs, workspace.get(), nullptr) == 0,
        "MatrixNMS: enqueue failed");
    compareNms(c, in, out);
}

void multilevelRoIAlignPlugin()
{
    MultilevelRoIAlignCreator creator;
    RoiCase const c{2, 3, 5, 4, 97, 131, 7, 5, 2, true, false, true, false};
    Fields f;
    f.add("output_height", std::vector<int32_t>{c.outH}, PluginFieldType::kINT32);
    f.add("output_width", std::vector<int32_t>{c.outW}, PluginFieldType::kINT32);
    f.add("feature_strides", std::vector<int32_t>{4, 8, 16, 32}, PluginFieldType::kINT32);
    f.add("sampling_ratio", std::vector<int32_t>{c.sampling}, PluginFieldType::kINT32);
    f.add("aligned", std::vector<int32_t>{1}, PluginFieldType::kINT32).text("mode", "avg");
    auto plugin = create<MultilevelRoIAlignPlugin>(creator, f.collection(), TensorRTPhase::kBUILD);
    expect(plugin != nullptr, "MultilevelRoIAlign: createPlugin refused the parser's fields");
    if (plugin == nullptr)
        return;
    roundTrips(creator, *plugin);
    RoiInputs const in = roiInputs(c, 12);
    std::vector<std::vector<int64_t>> dims = {{2, 5, 4}};
    for (int l = 0; l < 4; ++l)
        dims.push_back({2, 3, in.shape.height[l], in.shape.width[l]});

    ExprBuilder builder;
    auto shapes = [&](std::vector<std::vector<int64_t>> const& d) {
        std::vector<DimsExprs> inputs;
        for (auto const& x : d)
            inputs.push_back(exprs(builder, x));
        DimsExprs output;
        return plugin->getOutputShapes(inputs.data(), static_cast<int32_t>(inputs.size()), nullptr, 0, &output, 1,
                   builder) == 0
            && output.nbDims == 5 && output.d[2]->getConstantValue() == 3;
    };
    expect(shapes(dims), "MultilevelRoIAlign: getOutputShapes refused rois [B, R, 4] and four maps");
    for (auto [input, k, value] : {std::tuple{0, 2, 5}, std::tuple{3, 1, 4}, std::tuple{2, 0, 1}})
    {
        auto broken = dims;
        broken[input][k] = value;
        expect(!shapes(broken), "MultilevelRoIAlign: getOutputShapes accepted input " + std::to_string(input)
            + " with dimension " + std::to_string(k) + " = " + std::to_string(value));
    }

    std::vector<std::pair<std::vector<int64_t>, DataType>> tensors = {{dims[0], DataType::kFLOAT}};
    for (int l = 0; l < 4; ++l)
        tensors.push_back({dims[1 + l], DataType::kHALF});
    tensors.push_back({{2, 5, 3, c.outH, c.outW}, DataType::kHALF});
    auto inOut = descs(tensors);
    expect(allFormatsSupported(*plugin, inOut, 5), "MultilevelRoIAlign: FP16 maps with FP32 rois not supported");
    inOut[0].desc.type = DataType::kHALF;
    expect(allFormatsSupported(*plugin, inOut, 5), "MultilevelRoIAlign: FP16 rois not supported");
    inOut[0].desc.type = DataType::kFLOAT;
    expect(plugin->configurePlugin(inOut.data(), 5, inOut.data() + 5, 1) == 0, "MultilevelRoIAlign: configure refused");

    PluginTensorDesc inputDesc[5];
    for (int i = 0; i < 5; ++i)
        inputDesc[i] = inOut[i].desc;
    void const* inputs[5] = {in.rois.data(), in.maps[0].data(), in.maps[1].data(), in.maps[2].data(), in.maps[3].data()};
    Output out(static_cast<size_t>(c.batch) * c.numRois * c.channels * c.outH * c.outW, c.featuresHalf);
    void* outputs[1] = {out.data()};
    expect(plugin->enqueue(inputDesc, &inOut[5].desc, inputs, outputs, nullptr, nullptr) == 0,
        "MultilevelRoIAlign: enqueue failed");
    compareRoi(c, out, roiTwin(c, in));
}

void pluginClasses()
{
    matrixNmsPlugin();
    multilevelRoIAlignPlugin();
}
#endif

} // namespace

int main(int argc, char** argv)
{
    std::map<std::string, std::function<void()>> const groups = {
        {"kernels", kernelsMatchTwins},
        {"empty-batch", emptyBatch},
        {"pending-error", pendingErrorIsNotOurs},
        {"full-size", fullSize},
#if defined(SEGTRT_WITH_TENSORRT)
        {"plugins", pluginClasses},
#endif
    };
    for (int i = 1; i < argc; ++i)
    {
        auto const group = groups.find(argv[i]);
        if (group == groups.end())
        {
            std::printf("FAIL unknown group %s\n", argv[i]);
            return 2;
        }
        group->second();
    }
    std::printf("%d failures\n", gFailures);
    return gFailures == 0 ? 0 : 1;
}
