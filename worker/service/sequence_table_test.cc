// SequenceTable completes lean (delta) step entries from a sequence's first,
// full entry, forgets freed sequences and refuses deltas it cannot complete.
#include "worker/service/sequence_table.h"

#include "gtest/gtest.h"

namespace tpserve {
namespace {

v1::SequenceInput* Add(v1::StepRequest* r, uint64_t id, std::vector<int32_t> blocks, bool delta) {
  v1::SequenceInput* s = r->add_seqs();
  s->set_seq_id(id);
  s->add_tokens(7);
  s->set_sample(true);
  s->set_delta(delta);
  for (int32_t b : blocks) s->add_block_table(b);
  if (!delta) {
    s->set_prompt_len(5);
    s->mutable_sampling()->set_temperature(0.5f);
    s->mutable_sampling()->set_top_k(3);
  }
  return s;
}

TEST(SequenceTableTest, DeltaEntriesAreCompletedFromTheFullOne) {
  SequenceTable table;
  v1::StepRequest first;
  Add(&first, 1, {4, 9}, /*delta=*/false);
  ASSERT_TRUE(table.ToBatch(first).ok());

  v1::StepRequest next;
  Add(&next, 1, {}, /*delta=*/true);  // no new block
  absl::StatusOr<StepBatch> b = table.ToBatch(next);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->seqs[0].block_table, (std::vector<int32_t>{4, 9}));
  EXPECT_EQ(b->seqs[0].prompt_len, 5);
  EXPECT_FLOAT_EQ(b->seqs[0].sampling.temperature, 0.5f);
  EXPECT_EQ(b->seqs[0].sampling.top_k, 3);

  v1::StepRequest grow;
  Add(&grow, 1, {11}, /*delta=*/true);  // one new block
  b = table.ToBatch(grow);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->seqs[0].block_table, (std::vector<int32_t>{4, 9, 11}));
}

TEST(SequenceTableTest, AFullEntryReplacesTheRememberedState) {
  SequenceTable table;
  v1::StepRequest first;
  Add(&first, 1, {4, 9}, false);
  ASSERT_TRUE(table.ToBatch(first).ok());
  v1::StepRequest again;  // e.g. after a preemption: new blocks
  Add(&again, 1, {20}, false);
  ASSERT_TRUE(table.ToBatch(again).ok());
  v1::StepRequest next;
  Add(&next, 1, {21}, true);
  absl::StatusOr<StepBatch> b = table.ToBatch(next);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->seqs[0].block_table, (std::vector<int32_t>{20, 21}));
}

TEST(SequenceTableTest, UnknownDeltaIsRefusedAndChangesNothing) {
  SequenceTable table;
  v1::StepRequest first;
  Add(&first, 1, {4}, false);
  ASSERT_TRUE(table.ToBatch(first).ok());
  table.Erase({1});
  EXPECT_EQ(table.size(), 0u);
  v1::StepRequest mixed;
  Add(&mixed, 2, {5}, false);
  Add(&mixed, 1, {6}, true);  // freed above
  absl::StatusOr<StepBatch> b = table.ToBatch(mixed);
  EXPECT_EQ(b.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(b.status().message().find("sequence 1"), std::string::npos);
  EXPECT_EQ(table.size(), 0u);  // sequence 2 was not remembered either
  table.Clear();
}

}  // namespace
}  // namespace tpserve
