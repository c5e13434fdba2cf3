// SPDX-License-Identifier: MIT
#pragma once

/// @file
/// Everything patio-cpp offers, and the Asio pieces its examples use.

#include <patio/async_executor.hpp>
#include <patio/call_options.hpp>
#include <patio/codec.hpp>
#include <patio/error.hpp>
#include <patio/executor.hpp>
#include <patio/format.hpp>
#include <patio/function.hpp>
#include <patio/gather.hpp>
#include <patio/io_thread.hpp>
#include <patio/log.hpp>
#include <patio/memory_broker.hpp>
#include <patio/metrics.hpp>
#include <patio/null_executor.hpp>
#include <patio/process_pool_executor.hpp>
#include <patio/registry.hpp>
#include <patio/tcp_broker.hpp>
#include <patio/thread_pool_executor.hpp>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
