// Stand-in for cuda_fp16.h in the emulated-kernel test build: IEEE binary16 through GCC's _Float16, so the
// conversions round exactly as __float2half (round to nearest even) does.
#pragma once

struct __half
{
    _Float16 value;
};

inline float __half2float(__half h)
{
    return static_cast<float>(h.value);
}

inline __half __float2half(float f)
{
    return __half{static_cast<_Float16>(f)};
}
