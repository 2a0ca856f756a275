// Stand-in for cuda_runtime.h in the emulated-kernel test build: the launch itself lives in emulation.h.
#pragma once

#include "emulation.h"
