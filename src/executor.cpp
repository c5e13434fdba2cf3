// SPDX-License-Identifier: MIT
#include <patio/async_executor.hpp>
#include <patio/detail/post.hpp>
#include <patio/detail/task_limiter.hpp>
#include <patio/executor.hpp>
#include <patio/null_executor.hpp>
#include <patio/thread_pool_executor.hpp>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/post.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <algorithm>

namespace patio {

namespace {

std::exception_ptr shut_down_error(const std::string& name) {
  return std::make_exception_ptr(
      executor_refused_error(name + ": the executor was shut down before the task ran", errc::shut_down));
}

bool is_dead(const std::shared_ptr<detail::invocation>& inv) { return inv->dead(); }

/// How many tasks a runner runs before it lets other handlers run.
constexpr std::size_t tasks_per_turn = 16;

void set_deadline(detail::invocation& inv, const call_options& options) {
  if (options.timeout) inv.deadline = detail::invocation::clock::now() + *options.timeout;
}

}  // namespace

// ---- executor ---------------------------------------------------------------

// Neither is a coroutine of its own: the caller's coroutine awaits the
// invocation directly (a frame less per call, each).
asio::awaitable<void> executor::execute(std::shared_ptr<detail::invocation> inv) {
  return detail::invocation::async_run(
      std::move(inv), [this](std::shared_ptr<detail::invocation> started) { start(std::move(started)); },
      asio::use_awaitable);
}

asio::awaitable<void> executor::dispatch(std::shared_ptr<detail::invocation> inv, call_options options) {
  inv->target = registry_.at(inv->name).impl();
  set_deadline(*inv, options);
  return execute(std::move(inv));
}

// ---- task_limiter -----------------------------------------------------------

namespace detail {

void start_invocation(executor& ex, std::shared_ptr<invocation> inv) { ex.start(std::move(inv)); }

/// The coroutine tasks waiting to start on one executor.
struct task_limiter::ready_list {
  explicit ready_list(asio::any_io_executor ex) : executor(std::move(ex)) {}
  asio::any_io_executor executor;
  std::deque<std::shared_ptr<invocation>> tasks;
  std::size_t runners = 0;    // runners alive
  std::size_t between = 0;    // of them, those between two tasks: they take what is pushed
  bool check_posted = false;  // a check_ready waits to run
};

/// Posted after the handler that filled a ready list: no runner of the list
/// runs then, so tasks still there need a new one (the others wait inside a
/// task that suspended). Destroyed unrun (its io_context went first), it
/// lets go of the list.
class task_limiter::check_ready {
 public:
  check_ready(std::shared_ptr<task_limiter> self, std::shared_ptr<ready_list> list)
      : self_(std::move(self)), list_(std::move(list)) {}
  check_ready(check_ready&&) noexcept = default;
  check_ready& operator=(check_ready&&) = delete;
  check_ready(const check_ready&) = delete;
  check_ready& operator=(const check_ready&) = delete;
  ~check_ready() {
    if (!list_) return;
    // Never run: the io_context is going, and the tasks waiting to start on
    // it never will. The list lets go of them and of its executor.
    std::deque<std::shared_ptr<invocation>> stranded;
    std::lock_guard lock(self_->mutex_);
    list_->check_posted = false;
    stranded.swap(list_->tasks);
    self_->release_if_idle(list_);
  }

  void operator()() {
    bool launch = false;
    {
      std::lock_guard lock(self_->mutex_);
      list_->check_posted = false;
      launch = !list_->tasks.empty();
      if (launch) {
        ++list_->runners;
        ++list_->between;
      } else {
        self_->release_if_idle(list_);
      }
    }
    if (launch) self_->launch_runner(list_);
    list_.reset();
  }

 private:
  std::shared_ptr<task_limiter> self_;
  std::shared_ptr<ready_list> list_;
};

task_limiter::task_limiter(std::size_t max_running, std::size_t max_queue)
    : max_running_(std::max<std::size_t>(max_running, 1)), max_queue_(max_queue) {}

task_limiter::~task_limiter() {
  // Tasks whose completion never ran (their io_context went first).
  while (active_) unlink(*active_).reset();
}

void task_limiter::link(std::shared_ptr<invocation> inv) noexcept {
  auto* node = inv.get();
  node->running_self_ = std::move(inv);
  node->running_prev_ = nullptr;
  node->running_next_ = active_;
  if (active_) active_->running_prev_ = node;
  active_ = node;
}

std::shared_ptr<invocation> task_limiter::unlink(invocation& inv) noexcept {
  if (!inv.running_self_) return nullptr;  // not in the list
  if (inv.running_prev_)
    inv.running_prev_->running_next_ = inv.running_next_;
  else
    active_ = inv.running_next_;
  if (inv.running_next_) inv.running_next_->running_prev_ = inv.running_prev_;
  inv.running_prev_ = inv.running_next_ = nullptr;
  return std::move(inv.running_self_);
}

void task_limiter::start(std::shared_ptr<invocation> inv) {
  {
    std::lock_guard lock(mutex_);
    if (shut_down_) throw executor_refused_error(inv->name + ": the executor is shut down", errc::shut_down);
    if (running_ >= max_running_) {
      if (queue_.size() >= max_queue_) std::erase_if(queue_, is_dead);
      if (queue_.size() >= max_queue_)
        throw executor_refused_error(
            inv->name + ": the executor's queue is full (" + std::to_string(max_queue_) + " waiting)",
            errc::queue_full);
      queue_.push_back(std::move(inv));
      return;
    }
    ++running_;
    link(inv);
  }
  spawn(std::move(inv));
}

void task_limiter::spawn(std::shared_ptr<invocation> inv) {
  // A queued call may have been abandoned between finished() taking it and
  // this post running: it must still never start. (Both this and abandon()
  // run on the caller's executor, so nothing slips in after the check.)
  auto ex = inv->executor_if_alive();
  if (!ex) {
    finished(inv);
    return;
  }
  if (!inv->target->is_coroutine()) {
    // A plain function runs to its end here, on the caller's executor, as
    // its coroutine would (co_spawn starts a task at once on the executor
    // it is on), without the coroutine: nothing could stop it halfway.
    inv->target->invoke(*inv);
    finished(inv);
    invocation::complete(std::move(inv));  // the caller resumes in a handler of its own
    return;
  }
  // A coroutine waits in its executor's ready list for a runner.
  std::shared_ptr<ready_list> check;
  {
    std::lock_guard lock(mutex_);
    auto list = ready_list_for(ex);
    list->tasks.push_back(std::move(inv));
    // A runner between two tasks takes it; else a check at the end of this
    // handler starts one (or finds the list emptied by then).
    if (list->between == 0 && !list->check_posted) {
      list->check_posted = true;
      check = std::move(list);
    }
  }
  if (check) {
    const auto where = check->executor;
    asio::post(where, check_ready(shared_from_this(), std::move(check)));
  }
}

// ---- ready lists and their runners -----------------------------------------

std::shared_ptr<task_limiter::ready_list> task_limiter::ready_list_for(const asio::any_io_executor& ex) {
  for (const auto& list : ready_lists_)
    if (list->executor == ex) return list;
  return ready_lists_.emplace_back(std::make_shared<ready_list>(ex));
}

void task_limiter::release_if_idle(const std::shared_ptr<ready_list>& list) {
  // An idle list lets go of its executor: it may belong to an io_context
  // about to go.
  if (list->runners == 0 && list->tasks.empty() && !list->check_posted) std::erase(ready_lists_, list);
}

void task_limiter::launch_runner(const std::shared_ptr<ready_list>& list) {
  auto signal = std::make_shared<asio::cancellation_signal>();
  auto slot = signal->slot();
  asio::co_spawn(list->executor, run_ready(shared_from_this(), list, std::move(signal)),
                 asio::bind_cancellation_slot(slot, asio::detached));
}

asio::awaitable<void> task_limiter::run_ready(std::shared_ptr<task_limiter> self, std::shared_ptr<ready_list> list,
                                              std::shared_ptr<asio::cancellation_signal> signal) {
  // Counted out however the runner ends: its list empty, or destroyed
  // inside a task with its io_context.
  struct runner_count {
    runner_count(task_limiter& s, const std::shared_ptr<ready_list>& l) : self(s), list(l) {}
    task_limiter& self;
    const std::shared_ptr<ready_list>& list;
    bool between = true;
    bool out = false;
    runner_count(const runner_count&) = delete;
    runner_count& operator=(const runner_count&) = delete;
    void count_out() {  // under mutex_
      out = true;
      --list->runners;
      if (between) --list->between;
      self.release_if_idle(list);
    }
    ~runner_count() {
      if (out) return;
      // Destroyed inside a task: the io_context is going (as check_ready).
      std::deque<std::shared_ptr<invocation>> stranded;
      std::lock_guard lock(self.mutex_);
      stranded.swap(list->tasks);
      count_out();
    }
  } counted(*self, list);
  std::size_t in_a_row = 0;
  for (;;) {
    // Tasks that end at once, and callers that start more as they resume,
    // could keep a runner going for ever: every few tasks it lets the
    // handlers queued behind it run.
    if (++in_a_row > tasks_per_turn) {
      in_a_row = 1;
      co_await asio::post(list->executor, asio::use_awaitable);
    }
    std::shared_ptr<invocation> inv;
    {
      std::lock_guard lock(self->mutex_);
      // Out in the same breath as the list is found empty: spawn() must
      // never count on a runner that is leaving.
      if (list->tasks.empty()) {
        counted.count_out();
        co_return;
      }
      inv = std::move(list->tasks.front());
      list->tasks.pop_front();
    }
    // Abandoned or expired since it was started: it never runs.
    if (!inv->executor_if_alive()) {
      self->finished(inv);
      continue;
    }
    if (self->is_shut_down()) {
      inv->set_error(shut_down_error(inv->name));
      self->finished(inv);
      invocation::complete_here(std::move(inv));
      continue;
    }
    // Each task starts as a coroutine of its own would: not cancelled, with
    // the default filters, throwing when cancelled.
    co_await asio::this_coro::reset_cancellation_state();
    co_await asio::this_coro::throw_if_cancelled(true);
    inv->task_signal = signal.get();
    bool check = false;
    {
      std::lock_guard lock(self->mutex_);
      --list->between;
      counted.between = false;
      // Should this task suspend, the tasks behind it get another runner.
      if (!list->tasks.empty() && !list->check_posted) check = list->check_posted = true;
    }
    if (check) asio::post(list->executor, check_ready(self, list));
    std::exception_ptr error;
    try {
      co_await inv->target->invoke_async(inv);
    } catch (...) {
      error = std::current_exception();
    }
    {
      std::lock_guard lock(self->mutex_);
      ++list->between;
      counted.between = true;
    }
    inv->task_signal = nullptr;
    if (error && !inv->has_error()) inv->set_error(std::move(error));
    // A task cancelled by shutdown failed because of it, not of its own accord.
    if (inv->has_error() && self->is_shut_down()) inv->set_error(shut_down_error(inv->name));
    self->finished(inv);
    // On the caller's executor, between two tasks: the caller may resume
    // right here (and what it starts now, this runner runs next).
    invocation::complete_here(std::move(inv));
  }
}

void task_limiter::finished(const std::shared_ptr<invocation>& inv) {
  auto ended = inv;
  for (;;) {
    std::shared_ptr<invocation> released;  // dropped outside the lock
    std::shared_ptr<invocation> next;
    {
      std::lock_guard lock(mutex_);
      released = unlink(*ended);
      while (!queue_.empty()) {
        auto candidate = std::move(queue_.front());
        queue_.pop_front();
        // An abandoned or expired call is never started.
        if (candidate->dead()) continue;
        next = std::move(candidate);
        break;
      }
      if (next)
        link(next);
      else
        --running_;
    }
    if (!next) return;
    // The next task may belong to a caller on another executor: start it
    // there, where its cancellation is emitted too.
    if (auto ex = next->caller_executor()) {
      detail::post_tracked(ex, [self = shared_from_this(), next] { self->spawn(next); });
      return;
    }
    ended = std::move(next);  // abandoned since the check: it never starts either
  }
}

void task_limiter::shutdown() {
  std::deque<std::shared_ptr<invocation>> queued;
  std::vector<std::shared_ptr<invocation>> active;
  {
    std::lock_guard lock(mutex_);
    if (shut_down_) return;
    shut_down_ = true;
    queued.swap(queue_);
    for (auto* node = active_; node; node = node->running_next_) active.push_back(node->running_self_);
  }
  for (auto& inv : queued) {
    auto error = shut_down_error(inv->name);
    invocation::fail(std::move(inv), std::move(error));
  }
  for (const auto& inv : active) {
    // An abandoned one (no executor) was cancelled when its caller gave up.
    if (auto ex = inv->caller_executor()) detail::post_tracked(ex, [inv] { inv->cancel_task(); });
  }
}

}  // namespace detail

// ---- async_executor ---------------------------------------------------------

async_executor::async_executor(patio::registry& r, executor_options options)
    : executor(r, options), limiter_(std::make_shared<detail::task_limiter>(options.max_workers, options.max_queue)) {}

async_executor::~async_executor() { shutdown(); }

void async_executor::shutdown() { limiter_->shutdown(); }

void async_executor::start(std::shared_ptr<detail::invocation> inv) { limiter_->start(std::move(inv)); }

// ---- thread_pool_executor ---------------------------------------------------

thread_pool_executor::thread_pool_executor(patio::registry& r, executor_options options)
    : executor(r, options),
      coroutines_(std::make_shared<detail::task_limiter>(options.max_workers, options.max_queue)) {
  setup();
}

thread_pool_executor::~thread_pool_executor() { shutdown(); }

void thread_pool_executor::setup() {
  std::lock_guard lock(mutex_);
  if (stopping_ || !threads_.empty()) return;
  const auto n = std::max<std::size_t>(options().max_workers, 1);
  threads_.reserve(n);
  for (std::size_t i = 0; i < n; ++i) threads_.emplace_back([this] { work(); });
}

void thread_pool_executor::start(std::shared_ptr<detail::invocation> inv) {
  if (inv->target->is_coroutine()) {
    coroutines_->start(std::move(inv));
    return;
  }
  {
    std::lock_guard lock(mutex_);
    if (stopping_) throw executor_refused_error(inv->name + ": the executor is shut down", errc::shut_down);
    if (queue_.size() >= options().max_queue) std::erase_if(queue_, is_dead);
    if (queue_.size() >= options().max_queue)
      throw executor_refused_error(
          inv->name + ": the executor's queue is full (" + std::to_string(options().max_queue) + " waiting)",
          errc::queue_full);
    queue_.push_back(std::move(inv));
  }
  wake_.notify_one();
}

void thread_pool_executor::work() {
  for (;;) {
    std::shared_ptr<detail::invocation> inv;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and nothing left to run
      inv = std::move(queue_.front());
      queue_.pop_front();
    }
    // An abandoned or expired call is never started.
    if (inv->dead()) continue;
    inv->target->invoke(*inv);
    detail::invocation::complete(std::move(inv));
  }
}

void thread_pool_executor::shutdown() {
  std::deque<std::shared_ptr<detail::invocation>> queued;
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    queued.swap(queue_);
    threads.swap(threads_);
  }
  wake_.notify_all();
  for (auto& inv : queued) {
    auto error = shut_down_error(inv->name);
    detail::invocation::fail(std::move(inv), std::move(error));
  }
  for (auto& t : threads) {
    if (t.get_id() == std::this_thread::get_id())
      t.detach();  // a task shutting down its own pool: the thread ends when the task returns
    else
      t.join();
  }
  coroutines_->shutdown();
}

// ---- null_executor ----------------------------------------------------------

void null_executor::start(std::shared_ptr<detail::invocation> inv) {
  throw executor_refused_error(inv->name + ": the null executor runs nothing; this side only calls");
}

}  // namespace patio
