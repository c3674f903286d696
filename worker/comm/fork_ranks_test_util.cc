#include "worker/comm/fork_ranks_test_util.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "absl/time/clock.h"
#include "rendezvous/tcp_kv_store.h"

namespace tpserve {

std::vector<int> RunRanks(int world, const RankMainFn& fn, absl::Duration limit) {
  TcpKvStoreServer server;
  // Forks before the server has threads (see TcpKvStoreServer::Listen).
  if (!server.Listen("127.0.0.1", 0).ok()) return std::vector<int>(world, -1);
  std::vector<pid_t> pids;
  for (int r = 0; r < world; ++r) {
    pid_t pid = fork();
    if (pid == 0) {
      TcpKvStoreClient store("127.0.0.1", server.port());
      int code = fn(r, store);
      fflush(stdout);
      fflush(stderr);
      _exit(code);
    }
    pids.push_back(pid);
  }
  server.Serve();
  constexpr int kRunning = -1000;
  std::vector<int> codes(world, kRunning);
  const absl::Time deadline = absl::Now() + limit;
  int remaining = world;
  while (remaining > 0) {
    for (int r = 0; r < world; ++r) {
      int st = 0;
      if (codes[r] != kRunning || waitpid(pids[r], &st, WNOHANG) != pids[r]) continue;
      codes[r] = WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
      --remaining;
    }
    if (remaining > 0 && absl::Now() > deadline) {
      for (int r = 0; r < world; ++r) {
        if (codes[r] != kRunning) continue;
        kill(pids[r], SIGKILL);
        waitpid(pids[r], nullptr, 0);
        codes[r] = 999;
      }
      break;
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  return codes;
}

}  // namespace tpserve
