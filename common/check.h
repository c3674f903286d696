// The one CHECK family, for invariants only (never for input the environment
// controls: that is an absl::Status). A failed check prints file, line, the
// condition and an optional message, then aborts.
//
//   TPS_CHECK(block < num_blocks_) << "block " << block;
//   TPS_CHECK_EQ(a.size(), b.size());
#ifndef TPSERVE_COMMON_CHECK_H_
#define TPSERVE_COMMON_CHECK_H_

#include <sstream>

namespace tpserve::internal {

// Collects the streamed message; its destructor reports and aborts.
class CheckFailure {
 public:
  CheckFailure(const char* file, int line, const char* condition);
  [[noreturn]] ~CheckFailure();
  std::ostream& stream() { return stream_; }

 private:
  std::ostringstream stream_;
};

// Lets `TPS_CHECK(c) << x` compile to a void expression in both branches.
struct Voidify {
  void operator&(std::ostream&) {}
};

}  // namespace tpserve::internal

#define TPS_CHECK(condition)                     \
  (condition) ? (void)0                          \
              : ::tpserve::internal::Voidify() & \
                    ::tpserve::internal::CheckFailure(__FILE__, __LINE__, #condition).stream()

#define TPS_CHECK_OP_(a, op, b) TPS_CHECK((a)op(b)) << "(" << (a) << " vs " << (b) << ") "
#define TPS_CHECK_EQ(a, b) TPS_CHECK_OP_(a, ==, b)
#define TPS_CHECK_NE(a, b) TPS_CHECK_OP_(a, !=, b)
#define TPS_CHECK_LT(a, b) TPS_CHECK_OP_(a, <, b)
#define TPS_CHECK_LE(a, b) TPS_CHECK_OP_(a, <=, b)
#define TPS_CHECK_GT(a, b) TPS_CHECK_OP_(a, >, b)
#define TPS_CHECK_GE(a, b) TPS_CHECK_OP_(a, >=, b)

#endif  // TPSERVE_COMMON_CHECK_H_
