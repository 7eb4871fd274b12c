// multiproc native addon: POSIX shared memory segments exposed to JS as buffers, and
// non-private futex wait/wake (blocking and asynchronous) on their Int32 cells.
//
// Deliberately nothing else: no locks, no queues, no policy. Every algorithm lives in
// TypeScript on Atomics; this file only supplies what JS cannot do by itself (map memory
// shared with other processes, and sleep until another process says so).
//
// Plain N-API (version 8), so one binary serves every Node major this package supports (20 on).

#include <node_api.h>
#include <uv.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449
#endif
#ifndef FUTEX_32
#define FUTEX_32 2
#endif

namespace {

// ---------------------------------------------------------------------------------------
// Errors. Every failure is a JS exception with a `code`: errno names for system calls
// (ENOENT, EEXIST, ...) and ERR_MP_INVALID_ARG for bad arguments, so the TS wrapper can
// turn them into the library's typed errors without parsing messages.

const char* kInvalidArg = "ERR_MP_INVALID_ARG";

napi_value ThrowInvalid(napi_env env, const std::string& msg, bool range = false) {
  if (range)
    napi_throw_range_error(env, kInvalidArg, msg.c_str());
  else
    napi_throw_type_error(env, kInvalidArg, msg.c_str());
  return nullptr;
}

std::string ErrnoName(int err) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  if (const char* n = strerrorname_np(err)) return n;
#else
  switch (err) {
    case ENOENT: return "ENOENT";
    case EEXIST: return "EEXIST";
    case EACCES: return "EACCES";
    case EINVAL: return "EINVAL";
    case EMFILE: return "EMFILE";
    case ENFILE: return "ENFILE";
    case ENOMEM: return "ENOMEM";
    case ENOSPC: return "ENOSPC";
    case EAGAIN: return "EAGAIN";
    case ENAMETOOLONG: return "ENAMETOOLONG";
  }
#endif
  return "E" + std::to_string(err);
}

// Shaped like Node's own system errors (code, errno, syscall, path) so callers that already
// handle fs errors recognise them.
napi_value ThrowErrno(napi_env env, int err, const char* syscall_name, const std::string& path) {
  std::string code = ErrnoName(err);
  std::string msg = code + ": " + strerror(err) + ", " + syscall_name + " '" + path + "'";
  napi_value jcode, jmsg, error, v;
  napi_create_string_utf8(env, code.c_str(), NAPI_AUTO_LENGTH, &jcode);
  napi_create_string_utf8(env, msg.c_str(), NAPI_AUTO_LENGTH, &jmsg);
  napi_create_error(env, jcode, jmsg, &error);
  napi_set_named_property(env, error, "code", jcode);
  napi_create_int32(env, -err, &v);
  napi_set_named_property(env, error, "errno", v);
  napi_create_string_utf8(env, syscall_name, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, error, "syscall", v);
  napi_create_string_utf8(env, path.c_str(), NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, error, "path", v);
  napi_throw(env, error);
  return nullptr;
}

std::string Num(double d) {
  char buf[32];
  snprintf(buf, sizeof buf, "%.17g", d);
  return buf;
}

napi_value Str(napi_env env, const char* s) {
  napi_value v;
  napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &v);
  return v;
}

// ---------------------------------------------------------------------------------------
// Argument parsing.

bool GetNumber(napi_env env, napi_value v, const char* what, double* out) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t != napi_number) {
    ThrowInvalid(env, std::string(what) + " must be a number");
    return false;
  }
  napi_get_value_double(env, v, out);
  return true;
}

// POSIX leaves names without a leading '/' or with a second '/' implementation-defined;
// accept "name" as "/name" and reject the rest rather than guess.
bool GetShmName(napi_env env, napi_value v, std::string* out) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t != napi_string) {
    ThrowInvalid(env, "segment name must be a string");
    return false;
  }
  char buf[NAME_MAX + 2];
  size_t len = 0;
  napi_get_value_string_utf8(env, v, buf, sizeof buf, &len);
  std::string name(buf, len);
  if (!name.empty() && name[0] != '/') name = "/" + name;
  if (name.size() <= 1) {
    ThrowInvalid(env, "segment name must not be empty");
    return false;
  }
  if (len >= sizeof buf - 1 || name.size() > NAME_MAX) {
    ThrowInvalid(env, "segment name is longer than " + std::to_string(NAME_MAX) + " bytes");
    return false;
  }
  if (name.find('/', 1) != std::string::npos || name.find('\0') != std::string::npos) {
    ThrowInvalid(env, "segment name must not contain '/' after the leading one, nor NUL: " + name);
    return false;
  }
  *out = name;
  return true;
}

// An Int32 cell of a typed array: the futex word. Any Int32Array is accepted (a plain
// in-process buffer works too, the futex is then keyed on this process's address space).
bool GetCell(napi_env env, napi_value arr, napi_value idx, int32_t** cell) {
  bool is_ta = false;
  napi_is_typedarray(env, arr, &is_ta);
  napi_typedarray_type type;
  size_t length = 0;
  void* data = nullptr;
  if (is_ta) napi_get_typedarray_info(env, arr, &type, &length, &data, nullptr, nullptr);
  if (!is_ta || type != napi_int32_array) {
    ThrowInvalid(env, "expected an Int32Array");
    return false;
  }
  if (data == nullptr) {
    ThrowInvalid(env, "the Int32Array's buffer is detached (segment closed)");
    return false;
  }
  double i;
  if (!GetNumber(env, idx, "index", &i)) return false;
  if (!(i >= 0 && i < static_cast<double>(length) && std::floor(i) == i)) {
    ThrowInvalid(env, "index " + Num(i) + " is out of range [0, " + std::to_string(length) + ")", true);
    return false;
  }
  *cell = static_cast<int32_t*>(data) + static_cast<size_t>(i);
  return true;
}

// Timeouts become absolute CLOCK_MONOTONIC deadlines at the call, so time spent handing
// an async wait to its thread (or restarting after a signal) does not stretch them.
// undefined, null and Infinity mean "forever"; negatives mean 0 (as Atomics.wait).
bool GetDeadline(napi_env env, napi_value v, bool* forever, timespec* deadline, bool* zero) {
  napi_valuetype t = napi_undefined;
  if (v != nullptr) napi_typeof(env, v, &t);
  *zero = false;
  *forever = true;
  if (t == napi_undefined || t == napi_null) return true;
  double ms;
  if (!GetNumber(env, v, "timeout", &ms)) return false;
  if (std::isnan(ms)) {
    ThrowInvalid(env, "timeout must not be NaN");
    return false;
  }
  if (ms >= 1e15) return true;  // ~31 000 years: forever, and no overflow below
  *forever = false;
  if (ms <= 0) {
    ms = 0;
    *zero = true;
  }
  clock_gettime(CLOCK_MONOTONIC, deadline);
  double whole = std::floor(ms / 1000);
  deadline->tv_sec += static_cast<time_t>(whole);
  deadline->tv_nsec += static_cast<long>((ms - whole * 1000) * 1e6);
  if (deadline->tv_nsec >= 1000000000L) {
    deadline->tv_sec++;
    deadline->tv_nsec -= 1000000000L;
  }
  return true;
}

// ---------------------------------------------------------------------------------------
// Shared memory segments.

// Looked up at run time: Node 22.x/24.x (and 26 officially) export it, 20 does not. A
// binary built against older headers then still gets a real SharedArrayBuffer on newer
// Node, and falls back to an external ArrayBuffer (whose Atomics RMW are still exact
// across processes, measured) where the symbol is absent.
typedef napi_status (*CreateExtSab)(napi_env, void*, size_t, void (*)(void*, void*), void*, napi_value*);
CreateExtSab create_ext_sab = nullptr;

// Tags the buffers we mapped, so shmClose never detaches someone else's ArrayBuffer.
const napi_type_tag kSegmentTag = {0x6d756c746970726fULL, 0x632d73686d2d7631ULL};

void UnmapSab(void* data, void* hint) { munmap(data, reinterpret_cast<size_t>(hint)); }
void UnmapAb(napi_env, void* data, void* hint) { munmap(data, reinterpret_cast<size_t>(hint)); }

// shmOpen(name, size, create) -> SharedArrayBuffer | ArrayBuffer
napi_value ShmOpen(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  std::string name;
  if (argc < 3) return ThrowInvalid(env, "shmOpen(name, size, create) takes 3 arguments");
  if (!GetShmName(env, argv[0], &name)) return nullptr;
  bool create = false;
  if (napi_get_value_bool(env, argv[2], &create) != napi_ok) return ThrowInvalid(env, "create must be a boolean");
  double dsize = 0;
  napi_valuetype st;
  napi_typeof(env, argv[1], &st);
  if (create || st != napi_undefined) {
    if (!GetNumber(env, argv[1], "size", &dsize)) return nullptr;
    bool ok = std::floor(dsize) == dsize && dsize <= 9007199254740991.0 && (create ? dsize >= 1 : dsize >= 0);
    if (!ok)
      return ThrowInvalid(env, std::string("size must be an integer ") + (create ? ">= 1" : ">= 0") +
                                   ", got " + Num(dsize), true);
  }

  int fd = shm_open(name.c_str(), O_RDWR | O_CLOEXEC | (create ? O_CREAT | O_EXCL : 0), 0600);
  if (fd < 0) return ThrowErrno(env, errno, "shm_open", name);
  size_t size = static_cast<size_t>(dsize);
  int err = 0;
  const char* failed = nullptr;
  if (create) {
    if (ftruncate(fd, static_cast<off_t>(size)) != 0) {
      err = errno, failed = "ftruncate";
    } else {
      // tmpfs hands out pages only when first touched, and a touch that finds /dev/shm full
      // is a SIGBUS that kills the process. Reserving the pages now turns that into ENOSPC
      // here, while the caller can still be told. A filesystem without fallocate keeps the
      // lazy behaviour.
      int r;
      do r = posix_fallocate(fd, 0, static_cast<off_t>(size));
      while (r == EINTR);
      if (r != 0 && r != EOPNOTSUPP && r != ENOSYS) err = r, failed = "posix_fallocate";
    }
  } else {
    // Opening maps the segment's real size; the caller checks it against what it expects.
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
      err = errno, failed = "fstat";
    } else if (sb.st_size == 0) {
      // Its creator has opened it but not sized it yet (or never will): nothing to map.
      err = EAGAIN, failed = "fstat";
    } else {
      size = static_cast<size_t>(sb.st_size);
    }
  }
  void* p = MAP_FAILED;
  if (!failed) {
    p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) err = errno, failed = "mmap";
  }
  close(fd);  // the mapping keeps the object alive; the fd is no longer needed
  if (failed) {
    if (create) shm_unlink(name.c_str());  // do not leave a half-made segment behind
    return ThrowErrno(env, err, failed, name);
  }

  napi_value buf;
  napi_status s;
  void* hint = reinterpret_cast<void*>(size);
  if (create_ext_sab)
    s = create_ext_sab(env, p, size, UnmapSab, hint, &buf);
  else
    s = napi_create_external_arraybuffer(env, p, size, UnmapAb, hint, &buf);
  if (s != napi_ok) {
    munmap(p, size);
    if (create) shm_unlink(name.c_str());
    // e.g. napi_no_external_buffers_allowed under a V8 sandbox (Electron).
    napi_throw_error(env, "ERR_MP_NO_EXTERNAL_BUFFER", "this runtime does not allow external buffers over shared memory");
    return nullptr;
  }
  napi_type_tag_object(env, buf, &kSegmentTag);
  return buf;
}

napi_value ShmUnlink(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  std::string name;
  if (argc < 1) return ThrowInvalid(env, "shmUnlink(name) takes a name");
  if (!GetShmName(env, argv[0], &name)) return nullptr;
  if (shm_unlink(name.c_str()) != 0) return ThrowErrno(env, errno, "shm_unlink", name);
  return nullptr;
}

// shmClose(buffer) -> boolean. An ArrayBuffer is detached at once, which releases the
// mapping (JS views then read as length 0 instead of faulting). A SharedArrayBuffer
// cannot be detached (other threads may hold it), so it is unmapped when the last
// reference in any thread is collected; returns false then.
napi_value ShmClose(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  bool ours = false, is_ab = false, closed = false;
  napi_valuetype t = napi_undefined;
  if (argc >= 1) napi_typeof(env, argv[0], &t);
  if (t == napi_object) napi_check_object_type_tag(env, argv[0], &kSegmentTag, &ours);
  if (!ours) return ThrowInvalid(env, "shmClose expects a buffer returned by shmOpen");
  napi_is_arraybuffer(env, argv[0], &is_ab);
  if (is_ab) {
    bool detached = false;
    napi_is_detached_arraybuffer(env, argv[0], &detached);
    if (!detached && napi_detach_arraybuffer(env, argv[0]) != napi_ok) return nullptr;
    closed = true;
  }
  napi_value r;
  napi_get_boolean(env, closed, &r);
  return r;
}

// ---------------------------------------------------------------------------------------
// Futex. Never FUTEX_PRIVATE_FLAG on user cells: the private form is keyed on this
// process's address space and would not see waiters in other processes (nor a second
// mapping of the same segment in this one).

long Futex(int32_t* addr, int op, int32_t val, const timespec* ts, uint32_t bitset) {
  return syscall(SYS_futex, addr, op, val, ts, nullptr, bitset);
}

// kFailed: the kernel refused the wait (EFAULT, EINVAL, ENOSYS...): retrying cannot help, so
// the caller gets 'failed' and raises an error instead of waiting again in a hot loop.
enum Outcome { kOk, kNotEqual, kTimedOut, kCancelled, kFailed };
const char* OutcomeName(Outcome o) {
  static const char* names[] = {"ok", "not-equal", "timed-out", "cancelled", "failed"};
  return names[o];
}

// FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline, so restarting after
// EINTR keeps the original deadline.
Outcome BlockingWait(int32_t* addr, int32_t expected, const timespec* deadline) {
  for (;;) {
    if (Futex(addr, FUTEX_WAIT_BITSET, expected, deadline, FUTEX_BITSET_MATCH_ANY) == 0) return kOk;
    if (errno == EAGAIN) return kNotEqual;
    if (errno == ETIMEDOUT) return kTimedOut;
    if (errno != EINTR) return kFailed;
    // EINTR: a signal handler ran; wait again.
  }
}

// The arguments both waits take: (i32, index, expected, timeoutMs?).
struct WaitArgs {
  napi_value array;  // the Int32Array: an async wait holds a reference so the mapping stays
  int32_t* cell;
  int32_t expected;
  bool forever;
  bool zero;
  timespec deadline;
};

// False (with a JS exception pending) when the arguments are wrong; `usage` names the call.
bool GetWaitArgs(napi_env env, napi_callback_info info, const char* usage, WaitArgs* out) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  if (argc < 3) {
    ThrowInvalid(env, usage);
    return false;
  }
  double expected;
  out->array = argv[0];
  if (!GetCell(env, argv[0], argv[1], &out->cell) || !GetNumber(env, argv[2], "expected", &expected)) return false;
  out->expected = static_cast<int32_t>(expected);
  return GetDeadline(env, argc > 3 ? argv[3] : nullptr, &out->forever, &out->deadline, &out->zero);
}

// futexWait(i32, index, expected, timeoutMs) -> 'ok' | 'not-equal' | 'timed-out'
napi_value FutexWait(napi_env env, napi_callback_info info) {
  WaitArgs a;
  if (!GetWaitArgs(env, info, "futexWait(i32, index, expected, timeoutMs?)", &a)) return nullptr;
  return Str(env, OutcomeName(BlockingWait(a.cell, a.expected, a.forever ? nullptr : &a.deadline)));
}

// futexWake(i32, index, count) -> number of waiters woken (in all processes)
napi_value FutexWake(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  if (argc < 2) return ThrowInvalid(env, "futexWake(i32, index, count?)");
  int32_t* cell;
  if (!GetCell(env, argv[0], argv[1], &cell)) return nullptr;
  int32_t count = INT_MAX;
  napi_valuetype t = napi_undefined;
  if (argc > 2) napi_typeof(env, argv[2], &t);
  if (t != napi_undefined) {
    double c;
    if (!GetNumber(env, argv[2], "count", &c)) return nullptr;
    if (!(c >= 0) || (std::floor(c) != c && !std::isinf(c)))
      return ThrowInvalid(env, "count must be an integer >= 0 or Infinity", true);
    count = c >= INT_MAX ? INT_MAX : static_cast<int32_t>(c);
  }
  long n = Futex(cell, FUTEX_WAKE, count, nullptr, 0);
  napi_value r;
  napi_create_int32(env, n < 0 ? 0 : static_cast<int32_t>(n), &r);
  return r;
}

// futexWaitIdle(i32, index, expected, maxUs) -> outcome | 'busy'
//
// A short wait that blocks the calling thread instead of handing the wait to a waiter thread:
// the waker's FUTEX_WAKE then schedules this thread directly (one context switch), where an
// asynchronous wait costs two (the waiter thread, then the event loop through its eventfd).
// It is only taken while the event loop has nothing else to do: no I/O ready on its epoll set
// (which also carries the results of this process's asynchronous waits), no callback pending,
// and no timer due within the wait. Otherwise 'busy' at once, and the caller parks as usual.
// The bound (maxUs, and the next timer) keeps the loop from being held for longer than that
// when something does arrive meanwhile.
// Whether the kernel has futex_waitv (Linux 5.16+); probed when the addon loads.
bool have_waitv = false;

// Whether this thread may block for a moment: false ('busy') when its event loop has something
// to run. Else `deadline` is set to at most `max_us` (and the next timer) from now.
bool IdleDeadline(napi_env env, double max_us, timespec* deadline) {
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr || !(max_us >= 1)) return false;
  // A loop with nothing alive has nothing that could run meanwhile; otherwise 0 means
  // something is pending (an immediate, a closing handle, a due timer).
  if (uv_loop_alive(loop)) {
    int timeout_ms = uv_backend_timeout(loop);
    if (timeout_ms == 0) return false;
    if (timeout_ms > 0 && timeout_ms * 1000.0 < max_us) max_us = timeout_ms * 1000.0;
  }
  pollfd pfd = {uv_backend_fd(loop), POLLIN, 0};
  if (pfd.fd >= 0 && poll(&pfd, 1, 0) != 0) return false;
  if (max_us > 1e6) max_us = 1e6;
  clock_gettime(CLOCK_MONOTONIC, deadline);
  deadline->tv_nsec += static_cast<long>(max_us * 1000);
  while (deadline->tv_nsec >= 1000000000L) deadline->tv_sec++, deadline->tv_nsec -= 1000000000L;
  return true;
}

napi_value FutexWaitIdle(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  if (argc < 4) return ThrowInvalid(env, "futexWaitIdle(i32, index, expected, maxUs)");
  int32_t* cell;
  double expected, max_us;
  if (!GetCell(env, argv[0], argv[1], &cell) || !GetNumber(env, argv[2], "expected", &expected) ||
      !GetNumber(env, argv[3], "maxUs", &max_us))
    return nullptr;
  if (__atomic_load_n(cell, __ATOMIC_SEQ_CST) != static_cast<int32_t>(expected)) return Str(env, OutcomeName(kNotEqual));
  timespec deadline;
  if (!IdleDeadline(env, max_us, &deadline)) return Str(env, "busy");
  // No restart after a signal: the loop has a handler to run, so give the thread back.
  if (Futex(cell, FUTEX_WAIT_BITSET, static_cast<int32_t>(expected), &deadline, FUTEX_BITSET_MATCH_ANY) == 0)
    return Str(env, OutcomeName(kOk));
  if (errno == EAGAIN) return Str(env, OutcomeName(kNotEqual));
  if (errno == ETIMEDOUT || errno == EINTR) return Str(env, OutcomeName(kTimedOut));
  return Str(env, OutcomeName(kFailed));
}

// futexWaitIdleAny(cells[], indices[], expected[], maxUs) -> outcome | 'busy'
//
// futexWaitIdle over several cells at once (futex_waitv, Linux 5.16+): one reader watching many
// rings (a manager server's clients) blocks until any of them is written. Which cell woke is
// not reported (waitv names one even when several were woken): the caller re-reads them all,
// so no wake is lost as long as each writer changes its cell's value (a ring's head does).
// 'busy' without futex_waitv, or for more cells than one call takes.
napi_value FutexWaitIdleAny(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  if (argc < 4) return ThrowInvalid(env, "futexWaitIdleAny(cells[], indices[], expected[], maxUs)");
  uint32_t n = 0, ni = 0, ne = 0;
  bool arrays = true;
  for (int k = 0; k < 3; k++) {
    bool is = false;
    napi_is_array(env, argv[k], &is);
    arrays = arrays && is;
  }
  if (!arrays) return ThrowInvalid(env, "futexWaitIdleAny takes three arrays (cells, indices, expected) and maxUs");
  napi_get_array_length(env, argv[0], &n);
  napi_get_array_length(env, argv[1], &ni);
  napi_get_array_length(env, argv[2], &ne);
  if (n != ni || n != ne) return ThrowInvalid(env, "futexWaitIdleAny: cells, indices and expected differ in length", true);
  double max_us;
  if (!GetNumber(env, argv[3], "maxUs", &max_us)) return nullptr;
  constexpr uint32_t kMaxWaitv = 128;  // FUTEX_WAITV_MAX
  if (!have_waitv || n == 0 || n > kMaxWaitv) return Str(env, "busy");
  struct futex_waitv v[kMaxWaitv] = {};
  for (uint32_t k = 0; k < n; k++) {
    napi_value a, i, e;
    napi_get_element(env, argv[0], k, &a);
    napi_get_element(env, argv[1], k, &i);
    napi_get_element(env, argv[2], k, &e);
    int32_t* cell;
    double expected;
    if (!GetCell(env, a, i, &cell) || !GetNumber(env, e, "expected", &expected)) return nullptr;
    if (__atomic_load_n(cell, __ATOMIC_SEQ_CST) != static_cast<int32_t>(expected)) return Str(env, OutcomeName(kNotEqual));
    v[k].uaddr = reinterpret_cast<uintptr_t>(cell);
    v[k].val = static_cast<uint32_t>(static_cast<int32_t>(expected));
    v[k].flags = FUTEX_32;
  }
  timespec deadline;
  if (!IdleDeadline(env, max_us, &deadline)) return Str(env, "busy");
  if (syscall(SYS_futex_waitv, v, n, 0, &deadline, CLOCK_MONOTONIC) >= 0) return Str(env, OutcomeName(kOk));
  if (errno == EAGAIN) return Str(env, OutcomeName(kNotEqual));
  if (errno == ETIMEDOUT || errno == EINTR) return Str(env, OutcomeName(kTimedOut));
  return Str(env, OutcomeName(kFailed));
}

// ---------------------------------------------------------------------------------------
// Asynchronous waits.
//
// Design, decided by measurement on this machine (Linux 6.18, 2 cores):
//  * Not the libuv thread pool: four parked waits there froze fs and crypto for seconds.
//  * Not one thread multiplexing every wait with FUTEX_WAITV: futex_waitv returns the index
//    of only ONE woken futex; when two cells are woken before the thread runs, both wakers
//    are told "woke 1" but the thread learns of one, and the other wake is lost unless its
//    cell's value also changed (reproduced: wake(A)=1, wake(B)=1, waitv -> index 1 only).
//    Algorithms that wake without a lasting value change (or with ABA) would then hang.
//  * So: a pool of dedicated waiter threads, grown on demand and reused, each parked in the
//    kernel on exactly one cell. The kernel then does the bookkeeping: one JS wait is one
//    kernel waiter, wake counts are exact, wake order is the kernel's. Idle threads park on
//    a condition variable and exit after kIdleExitSec. A thread costs a small stack (256 KiB
//    reserved) and ~30 us to start (measured: 100 cold waits dispatched in 3.5-4 ms), paid
//    only when the number of concurrently pending waits reaches a new high.
//  * Each waiter uses futex_waitv over two words: a private per-thread "cancel" word, then
//    the user cell last. The cancel word lets an abort (or the environment shutting down)
//    interrupt a wait without a spurious FUTEX_WAKE on the user cell (which would steal a
//    wake from another process). The user cell is last because waitv reports the last
//    woken index, so a real wake racing with a cancel is reported, never lost.
//    Without futex_waitv (Linux < 5.16) the thread waits on the user cell alone, in slices
//    of kSliceMs, and checks for cancellation between slices.
//  * Results come back through one napi threadsafe function per environment (main thread or
//    worker), ref'd only while that environment has pending waits, so parked waits keep the
//    process alive exactly like a timer would and an idle process exits.

constexpr int kIdleExitSec = 10;
constexpr long kSliceMs = 200;
constexpr size_t kWaiterStack = 256 * 1024;

struct EnvState;

struct Job {
  int32_t* cell;
  int32_t expected;
  bool forever;
  timespec deadline;
  uint64_t id;
  EnvState* es;
  napi_deferred deferred;
  napi_ref keep;                  // keeps the buffer (and so the mapping) alive meanwhile
  struct Waiter* waiter = nullptr;  // guarded by pool.mu; null once the wait is over
  std::atomic<bool> cancelled{false};
  Outcome outcome = kOk;
};

struct Waiter {
  pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
  Job* job = nullptr;
  uint32_t cancel_word = 0;
};

// Process-wide and never destroyed: waiter threads may still be running while the process
// exits, so nothing they touch may have a destructor that runs at exit.
struct Pool {
  pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
  std::vector<Waiter*> idle;
  size_t threads = 0;
};
Pool& pool = *new Pool;

struct EnvState {
  pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;  // guards alive vs. posting results
  bool alive = true;
  std::atomic<int> refs{1};  // the environment + one per job in flight
  napi_threadsafe_function tsfn = nullptr;
  // Main-thread only:
  uint64_t next_id = 1;
  size_t pending = 0;
  std::unordered_map<uint64_t, Job*> jobs;
};

void ReleaseEnvState(EnvState* es) {
  if (es->refs.fetch_sub(1) == 1) delete es;
}

void CancelJobLocked(Job* j) {  // pool.mu held
  j->cancelled.store(true);
  if (Waiter* w = j->waiter) {
    __atomic_add_fetch(&w->cancel_word, 1, __ATOMIC_SEQ_CST);
    syscall(SYS_futex, &w->cancel_word, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
  }
}

Outcome AsyncWaitOnce(Waiter* w, Job* j) {
  uint32_t c = __atomic_load_n(&w->cancel_word, __ATOMIC_SEQ_CST);
  if (j->cancelled.load()) return kCancelled;
  if (have_waitv) {
    struct futex_waitv v[2] = {};
    v[0].uaddr = reinterpret_cast<uintptr_t>(&w->cancel_word);
    v[0].val = c;
    v[0].flags = FUTEX_32 | FUTEX_PRIVATE_FLAG;
    v[1].uaddr = reinterpret_cast<uintptr_t>(j->cell);
    v[1].val = static_cast<uint32_t>(j->expected);
    v[1].flags = FUTEX_32;
    for (;;) {
      long r = syscall(SYS_futex_waitv, v, 2, 0, j->forever ? nullptr : &j->deadline, CLOCK_MONOTONIC);
      if (r == 1) return kOk;
      if (r == 0) return kCancelled;
      if (errno == ETIMEDOUT) return kTimedOut;
      if (errno == EAGAIN) {  // one of the two words differed: which?
        if (__atomic_load_n(&w->cancel_word, __ATOMIC_SEQ_CST) != c) return kCancelled;
        return kNotEqual;
      }
      if (errno != EINTR) return kFailed;  // EFAULT and the like
    }
  }
  for (;;) {
    timespec slice;
    clock_gettime(CLOCK_MONOTONIC, &slice);
    slice.tv_sec += kSliceMs / 1000;
    slice.tv_nsec += (kSliceMs % 1000) * 1000000L;
    if (slice.tv_nsec >= 1000000000L) slice.tv_sec++, slice.tv_nsec -= 1000000000L;
    bool last = !j->forever && (slice.tv_sec > j->deadline.tv_sec ||
                                (slice.tv_sec == j->deadline.tv_sec && slice.tv_nsec >= j->deadline.tv_nsec));
    Outcome o = BlockingWait(j->cell, j->expected, last ? &j->deadline : &slice);
    if (o != kTimedOut || last) return o;
    if (j->cancelled.load()) return kCancelled;
  }
}

void PostResult(Job* j) {
  EnvState* es = j->es;
  pthread_mutex_lock(&es->mu);
  bool posted = es->alive && napi_call_threadsafe_function(es->tsfn, j, napi_tsfn_nonblocking) == napi_ok;
  pthread_mutex_unlock(&es->mu);
  // The environment is gone: its promise and reference went with it; only free our part.
  if (!posted) {
    delete j;
    ReleaseEnvState(es);
  }
}

void* WaiterMain(void* arg) {
  Waiter* w = static_cast<Waiter*>(arg);
  pthread_mutex_lock(&pool.mu);
  for (;;) {
    while (!w->job) {
      timespec until;
      clock_gettime(CLOCK_REALTIME, &until);
      until.tv_sec += kIdleExitSec;
      if (pthread_cond_timedwait(&w->cv, &pool.mu, &until) == ETIMEDOUT && !w->job) {
        for (size_t i = 0; i < pool.idle.size(); i++)
          if (pool.idle[i] == w) pool.idle.erase(pool.idle.begin() + static_cast<long>(i));
        pool.threads--;
        pthread_mutex_unlock(&pool.mu);
        delete w;
        return nullptr;
      }
    }
    Job* j = w->job;
    pthread_mutex_unlock(&pool.mu);
    Outcome o = AsyncWaitOnce(w, j);
    pthread_mutex_lock(&pool.mu);
    j->outcome = o;
    j->waiter = nullptr;  // from here a cancel no longer pokes this thread
    w->job = nullptr;
    pool.idle.push_back(w);
    pthread_mutex_unlock(&pool.mu);
    PostResult(j);
    pthread_mutex_lock(&pool.mu);
  }
}

bool Dispatch(Job* j) {
  pthread_mutex_lock(&pool.mu);
  Waiter* w;
  if (!pool.idle.empty()) {
    w = pool.idle.back();
    pool.idle.pop_back();
  } else {
    w = new Waiter;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, kWaiterStack);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    // Waiter threads must not take signals meant for Node's main thread.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t tid;
    int rc = pthread_create(&tid, &attr, WaiterMain, w);
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
      pthread_mutex_unlock(&pool.mu);
      delete w;
      errno = rc;
      return false;
    }
    pool.threads++;
  }
  w->job = j;
  j->waiter = w;
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&pool.mu);
  return true;
}

void SettleOnMainThread(napi_env env, EnvState* es, Job* j) {
  napi_value result;
  napi_create_string_utf8(env, OutcomeName(j->outcome), NAPI_AUTO_LENGTH, &result);
  napi_resolve_deferred(env, j->deferred, result);
  napi_delete_reference(env, j->keep);
  es->jobs.erase(j->id);
  if (--es->pending == 0) napi_unref_threadsafe_function(env, es->tsfn);
  delete j;
  ReleaseEnvState(es);
}

void CallJs(napi_env env, napi_value, void* context, void* data) {
  Job* j = static_cast<Job*>(data);
  if (env == nullptr) {  // the threadsafe function is being torn down
    EnvState* es = j->es;
    delete j;
    ReleaseEnvState(es);
    return;
  }
  SettleOnMainThread(env, static_cast<EnvState*>(context), j);
}

// Runs before the threadsafe function's own teardown (hooks run in reverse order of
// registration and ours is added after the tsfn is created), so no thread can post to
// a threadsafe function that no longer exists.
void EnvCleanup(void* arg) {
  EnvState* es = static_cast<EnvState*>(arg);
  pthread_mutex_lock(&es->mu);
  es->alive = false;
  pthread_mutex_unlock(&es->mu);
  pthread_mutex_lock(&pool.mu);
  for (auto& kv : es->jobs) CancelJobLocked(kv.second);
  pthread_mutex_unlock(&pool.mu);
  ReleaseEnvState(es);
}

EnvState* GetEnvState(napi_env env) {
  void* data = nullptr;
  napi_get_instance_data(env, &data);
  return static_cast<EnvState*>(data);
}

// futexWaitAsync(i32, index, expected, timeoutMs) -> [Promise<outcome>, token | undefined]
// The token (a number) can be passed to futexCancel; it is undefined when the promise is
// already settled (value differed, or timeout 0).
napi_value FutexWaitAsync(napi_env env, napi_callback_info info) {
  WaitArgs a;
  if (!GetWaitArgs(env, info, "futexWaitAsync(i32, index, expected, timeoutMs?)", &a)) return nullptr;
  int32_t* cell = a.cell;
  int32_t exp = a.expected;
  bool forever = a.forever, zero = a.zero;
  timespec deadline = a.deadline;

  napi_value promise, pair, token;
  napi_deferred deferred;
  napi_create_promise(env, &deferred, &promise);
  napi_create_array_with_length(env, 2, &pair);
  napi_set_element(env, pair, 0, promise);

  // Settled without a thread when the answer is already known.
  Outcome now = kOk;
  bool settled = false;
  if (__atomic_load_n(cell, __ATOMIC_SEQ_CST) != exp) now = kNotEqual, settled = true;
  else if (zero) now = kTimedOut, settled = true;
  if (settled) {
    napi_resolve_deferred(env, deferred, Str(env, OutcomeName(now)));
    return pair;
  }

  EnvState* es = GetEnvState(env);
  Job* j = new Job;
  j->cell = cell;
  j->expected = exp;
  j->forever = forever;
  j->deadline = deadline;
  j->id = es->next_id++;
  j->es = es;
  j->deferred = deferred;
  napi_create_reference(env, a.array, 1, &j->keep);
  es->refs++;
  if (!Dispatch(j)) {
    int err = errno;
    napi_delete_reference(env, j->keep);
    delete j;
    ReleaseEnvState(es);
    return ThrowErrno(env, err, "pthread_create", "futex waiter thread");
  }
  es->jobs.emplace(j->id, j);
  if (es->pending++ == 0) napi_ref_threadsafe_function(env, es->tsfn);

  napi_create_double(env, static_cast<double>(j->id), &token);
  napi_set_element(env, pair, 1, token);
  return pair;
}

// futexCancel(token) -> boolean: true if the wait was still parked and will now settle as
// 'cancelled' (unless a real wake got there first, which is then reported as 'ok').
napi_value FutexCancel(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  double id = 0;
  if (argc < 1 || !GetNumber(env, argv[0], "futexCancel token", &id)) return nullptr;
  EnvState* es = GetEnvState(env);
  bool found = false;
  auto it = es->jobs.find(static_cast<uint64_t>(id));
  if (it != es->jobs.end()) {
    pthread_mutex_lock(&pool.mu);
    found = it->second->waiter != nullptr && !it->second->cancelled.load();
    CancelJobLocked(it->second);
    pthread_mutex_unlock(&pool.mu);
  }
  napi_value r;
  napi_get_boolean(env, found, &r);
  return r;
}

// For tests and diagnostics: waiter threads alive in this process, and those idle.
napi_value WaiterThreads(napi_env env, napi_callback_info) {
  pthread_mutex_lock(&pool.mu);
  double total = static_cast<double>(pool.threads), idle = static_cast<double>(pool.idle.size());
  pthread_mutex_unlock(&pool.mu);
  napi_value o, v;
  napi_create_object(env, &o);
  napi_create_double(env, total, &v);
  napi_set_named_property(env, o, "total", v);
  napi_create_double(env, idle, &v);
  napi_set_named_property(env, o, "idle", v);
  return o;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Parent-death signal.

// setParentDeathSignal(signo) -> getppid() after the call. Linux sends `signo` to this process
// when the thread that forked it ends (0 clears it). The caller compares the returned pid with
// its parent's: a parent that died before the call has already reparented us, and no signal
// will ever come.
napi_value SetParentDeathSignal(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  if (argc < 1) return ThrowInvalid(env, "setParentDeathSignal(signo) takes 1 argument");
  double d;
  if (!GetNumber(env, argv[0], "signo", &d)) return nullptr;
  if (!(d >= 0 && d < 65 && std::floor(d) == d)) return ThrowInvalid(env, "signo must be a signal number, got " + Num(d), true);
  if (prctl(PR_SET_PDEATHSIG, static_cast<unsigned long>(d), 0, 0, 0) != 0) return ThrowErrno(env, errno, "prctl", "PR_SET_PDEATHSIG");
  napi_value out;
  napi_create_int32(env, static_cast<int32_t>(getppid()), &out);
  return out;
}

NAPI_MODULE_INIT() {
  static std::atomic<bool> probed{false};
  if (!probed.exchange(true)) {
    create_ext_sab = reinterpret_cast<CreateExtSab>(dlsym(RTLD_DEFAULT, "node_api_create_external_sharedarraybuffer"));
    // A call with no vector fails with EINVAL where the syscall exists, ENOSYS where not.
    have_waitv = !(syscall(SYS_futex_waitv, nullptr, 0, 0, nullptr, 0) == -1 && errno == ENOSYS);
  }

  EnvState* es = new EnvState;
  napi_value name;
  napi_create_string_utf8(env, "multiproc futex waits", NAPI_AUTO_LENGTH, &name);
  napi_create_threadsafe_function(env, nullptr, nullptr, name, 0, 1, nullptr, nullptr, es, CallJs, &es->tsfn);
  napi_unref_threadsafe_function(env, es->tsfn);
  napi_set_instance_data(env, es, nullptr, nullptr);
  napi_add_env_cleanup_hook(env, EnvCleanup, es);

  napi_value b;
  napi_property_descriptor props[] = {
      {"shmOpen", nullptr, ShmOpen, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"shmUnlink", nullptr, ShmUnlink, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"shmClose", nullptr, ShmClose, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"futexWait", nullptr, FutexWait, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"futexWake", nullptr, FutexWake, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"futexWaitIdle", nullptr, FutexWaitIdle, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"futexWaitIdleAny", nullptr, FutexWaitIdleAny, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"futexWaitAsync", nullptr, FutexWaitAsync, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"futexCancel", nullptr, FutexCancel, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"waiterThreads", nullptr, WaiterThreads, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"setParentDeathSignal", nullptr, SetParentDeathSignal, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
  };
  napi_define_properties(env, exports, sizeof props / sizeof *props, props);
  napi_get_boolean(env, create_ext_sab != nullptr, &b);
  napi_set_named_property(env, exports, "isSharedArrayBuffer", b);
  napi_get_boolean(env, have_waitv, &b);
  napi_set_named_property(env, exports, "hasFutexWaitv", b);
  return exports;
}
