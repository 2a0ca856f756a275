// CUDA's execution model on the host, so the real .cu kernel files compile with g++ and run under ASan/UBSan
// (tests/test_kernels_emulated.py). A launch runs its blocks one after another; within a block every thread is a
// fiber (ucontext) with its own threadIdx, and __syncthreads() switches to the next fiber, so a block's threads
// all reach a barrier before any passes it, __shared__ arrays (function statics) are shared by the block, and a
// barrier some threads skip is reported instead of deadlocking. The host is the device: pointers are host
// memory, streams are ignored, launches are synchronous.
#pragma once

#include "cuda_fp16.h"
#include "cuda_runtime_api.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <tuple>
#include <ucontext.h>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#endif

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __shared__ static

// CUDA's built-in variables, set by the scheduler before it resumes each thread's fiber.
inline dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace cuda_emu
{

// Writes a pattern over scratch a call was given, so ASan reports a buffer shorter than claimed.
inline void touch(void* p, size_t bytes)
{
    std::memset(p, 0xA5, bytes);
}

enum class FiberState
{
    kRunnable,
    kAtBarrier,
    kDone,
};

constexpr size_t kFiberStack = 256 * 1024;

struct Fiber
{
    ucontext_t context;
    std::unique_ptr<char[]> stack;
    FiberState state;
};

struct Scheduler
{
    ucontext_t context;
    std::vector<Fiber> fibers;
    int current = 0;
    void (*body)(void*) = nullptr;
    void* argument = nullptr;
    void const* schedulerStack = nullptr; // for ASan's stack-switch annotations
    size_t schedulerStackSize = 0;
};

inline Scheduler gScheduler;

inline void finishSwitch(void* fake, void const** bottom, size_t* size)
{
#if defined(__SANITIZE_ADDRESS__)
    __sanitizer_finish_switch_fiber(fake, bottom, size);
#else
    (void) fake, (void) bottom, (void) size;
#endif
}

inline void startSwitch(void** fake, void const* bottom, size_t size)
{
#if defined(__SANITIZE_ADDRESS__)
    __sanitizer_start_switch_fiber(fake, bottom, size);
#else
    (void) fake, (void) bottom, (void) size;
#endif
}

// From the running fiber back to the scheduler, leaving the fiber in `state`.
inline void yieldToScheduler(FiberState state)
{
    Scheduler& s = gScheduler;
    Fiber& f = s.fibers[s.current];
    f.state = state;
    void* fake = nullptr;
    startSwitch(state == FiberState::kDone ? nullptr : &fake, s.schedulerStack, s.schedulerStackSize);
    swapcontext(&f.context, &s.context);
    finishSwitch(fake, &s.schedulerStack, &s.schedulerStackSize);
}

inline void fiberMain()
{
    Scheduler& s = gScheduler;
    finishSwitch(nullptr, &s.schedulerStack, &s.schedulerStackSize);
    s.body(s.argument);
    yieldToScheduler(FiberState::kDone);
}

inline void resume(int t)
{
    Scheduler& s = gScheduler;
    Fiber& f = s.fibers[t];
    unsigned const x = t % ::blockDim.x;
    unsigned const y = (t / ::blockDim.x) % ::blockDim.y;
    unsigned const z = t / (::blockDim.x * ::blockDim.y);
    ::threadIdx = dim3(x, y, z);
    s.current = t;
    f.state = FiberState::kRunnable;
    void* fake = nullptr;
    startSwitch(&fake, f.stack.get(), kFiberStack);
    swapcontext(&s.context, &f.context);
    finishSwitch(fake, nullptr, nullptr);
}

// One block: all threads to the first barrier (or the end), then all to the next, and so on.
inline void runBlock(int threads)
{
    Scheduler& s = gScheduler;
    for (int t = 0; t < threads; ++t)
    {
        Fiber& f = s.fibers[t];
        getcontext(&f.context);
        f.context.uc_stack.ss_sp = f.stack.get();
        f.context.uc_stack.ss_size = kFiberStack;
        f.context.uc_link = nullptr;
        makecontext(&f.context, fiberMain, 0);
        f.state = FiberState::kRunnable;
    }
    for (;;)
    {
        int done = 0;
        for (int t = 0; t < threads; ++t)
        {
            if (s.fibers[t].state != FiberState::kDone)
                resume(t);
            done += s.fibers[t].state == FiberState::kDone ? 1 : 0;
        }
        if (done == threads)
            return;
        if (done > 0)
        {
            std::fprintf(stderr, "emulation: block (%u,%u,%u): %d of %d threads ended while others wait at "
                "__syncthreads()\n", ::blockIdx.x, ::blockIdx.y, ::blockIdx.z, done, threads);
            std::abort();
        }
    }
}

inline bool validLaunch(dim3 grid, dim3 block)
{
    unsigned long long const threads = 1ull * block.x * block.y * block.z;
    return grid.x > 0 && grid.y > 0 && grid.z > 0 && grid.y <= 65535 && grid.z <= 65535 && threads > 0
        && threads <= 1024 && block.z <= 64;
}

template <typename Call>
cudaError_t launch(cudaLaunchConfig_t const& config, Call& call)
{
    if (!validLaunch(config.gridDim, config.blockDim))
        return fail(cudaErrorInvalidConfiguration);
    Scheduler& s = gScheduler;
    int const threads = static_cast<int>(config.blockDim.x * config.blockDim.y * config.blockDim.z);
    while (static_cast<int>(s.fibers.size()) < threads)
    {
        s.fibers.push_back(Fiber{{}, std::make_unique<char[]>(kFiberStack), FiberState::kDone});
    }
    s.body = [](void* c) { (*static_cast<Call*>(c))(); };
    s.argument = &call;
    ::gridDim = config.gridDim;
    ::blockDim = config.blockDim;
    for (unsigned z = 0; z < config.gridDim.z; ++z)
        for (unsigned y = 0; y < config.gridDim.y; ++y)
            for (unsigned x = 0; x < config.gridDim.x; ++x)
            {
                ::blockIdx = dim3(x, y, z);
                runBlock(threads);
            }
    return cudaSuccess;
}

} // namespace cuda_emu


inline void __syncthreads()
{
    cuda_emu::yieldToScheduler(cuda_emu::FiberState::kAtBarrier);
}

// As CUDA's: the arguments are converted to the kernel's parameter types once, each thread gets its own copy.
template <typename... Params, typename... Args>
cudaError_t cudaLaunchKernelEx(cudaLaunchConfig_t const* config, void (*kernel)(Params...), Args&&... args)
{
    auto call = [&, converted = std::make_tuple(static_cast<Params>(args)...)]() { std::apply(kernel, converted); };
    return cuda_emu::launch(*config, call);
}
