#include "pluginFields.h"

#include <atomic>
#include <cstdio>

namespace segtrt
{
namespace
{
std::atomic<nvinfer1::ILoggerFinder*> gLoggerFinder{nullptr};
} // namespace

nvinfer1::ILogger* pluginLogger() noexcept
{
    nvinfer1::ILoggerFinder* finder = gLoggerFinder.load();
    return finder == nullptr ? nullptr : finder->findLogger();
}

void setPluginLoggerFinder(nvinfer1::ILoggerFinder* finder) noexcept
{
    nvinfer1::ILoggerFinder* expected = nullptr;
    gLoggerFinder.compare_exchange_strong(expected, finder);
}

void logPluginError(char const* pluginName, std::string const& message) noexcept
{
    std::string const line = std::string(pluginName) + ": " + message;
    if (nvinfer1::ILogger* logger = pluginLogger())
        logger->log(nvinfer1::ILogger::Severity::kERROR, line.c_str());
    else
        std::fprintf(stderr, "%s\n", line.c_str());
}

} // namespace segtrt
