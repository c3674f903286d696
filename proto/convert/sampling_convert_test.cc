// Field coverage of the sampling conversions: the struct's field count (a
// structured binding that stops compiling when a field is added) equals each
// message's (protobuf descriptors), a message with every field set to a
// non-default value yields a struct with every field non-default, and a
// struct with every field non-default survives the worker round trip with
// every WorkerSampling field set. A field added to one side and not
// converted fails here.
#include "proto/convert/sampling_convert.h"

#include <cstddef>
#include <tuple>
#include <utility>

#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "gtest/gtest.h"

namespace tpserve {
namespace {

using google::protobuf::FieldDescriptor;

// Adding a field to SamplingParams breaks this binding: update kStructFields,
// the converters and both protos together.
constexpr int kStructFields = 10;
auto Fields(const SamplingParams& p) {
  const auto& [temperature, top_k, top_p, min_p, repetition_penalty, presence_penalty,
               frequency_penalty, seed, top_logprobs, logprobs] = p;
  return std::tuple(temperature, top_k, top_p, min_p, repetition_penalty, presence_penalty,
                    frequency_penalty, seed, top_logprobs, logprobs);
}
static_assert(std::tuple_size_v<decltype(Fields(SamplingParams{}))> == kStructFields);

template <typename T>
void ExpectDiffers(const T& got, const T& def, size_t index) {
  EXPECT_NE(got, def) << "SamplingParams field #" << index << " was not set";
}

template <size_t... I>
void ExpectEveryFieldDiffers(const SamplingParams& got, std::index_sequence<I...>) {
  const auto g = Fields(got);
  const auto d = Fields(SamplingParams{});
  (ExpectDiffers(std::get<I>(g), std::get<I>(d), I), ...);
}

// Every field of `m` set to a value no SamplingParams default has.
void SetEveryField(google::protobuf::Message* m) {
  const google::protobuf::Reflection* r = m->GetReflection();
  const google::protobuf::Descriptor* d = m->GetDescriptor();
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    switch (f->cpp_type()) {
      case FieldDescriptor::CPPTYPE_FLOAT:
        r->SetFloat(m, f, 0.5f);
        break;
      case FieldDescriptor::CPPTYPE_INT32:
        r->SetInt32(m, f, 3);
        break;
      case FieldDescriptor::CPPTYPE_UINT64:
        r->SetUInt64(m, f, 7);
        break;
      case FieldDescriptor::CPPTYPE_BOOL:
        r->SetBool(m, f, true);
        break;
      default:
        ADD_FAILURE() << f->full_name() << ": a field type this test does not set";
    }
  }
}

SamplingParams EveryFieldNonDefault() {
  return SamplingParams{.temperature = 0.5f,
                        .top_k = 3,
                        .top_p = 0.5f,
                        .min_p = 0.25f,
                        .repetition_penalty = 1.5f,
                        .presence_penalty = -0.5f,
                        .frequency_penalty = 0.75f,
                        .seed = 7,
                        .top_logprobs = 2,
                        .logprobs = true};
}

TEST(SamplingConvertTest, MessagesHaveAsManyFieldsAsTheStruct) {
  EXPECT_EQ(v1::SamplingParameters::descriptor()->field_count(), kStructFields);
  EXPECT_EQ(v1::WorkerSampling::descriptor()->field_count(), kStructFields);
}

TEST(SamplingConvertTest, EveryRequestFieldReachesTheStruct) {
  v1::SamplingParameters request;
  SetEveryField(&request);
  ExpectEveryFieldDiffers(SamplingFromRequest(request, /*seed_if_unset=*/0),
                          std::make_index_sequence<kStructFields>());
}

TEST(SamplingConvertTest, UnsetRequestFieldsKeepDefaultsAndTheGivenSeed) {
  SamplingParams want;
  want.seed = 99;
  EXPECT_EQ(SamplingFromRequest(v1::SamplingParameters(), 99), want);
  v1::SamplingParameters request;
  request.set_seed(5);
  request.set_top_p(0.9f);
  want.seed = 5;
  want.top_p = 0.9f;
  EXPECT_EQ(SamplingFromRequest(request, 99), want);
}

TEST(SamplingConvertTest, WorkerRoundTripSetsEveryFieldAndLosesNothing) {
  const SamplingParams p = EveryFieldNonDefault();
  ExpectEveryFieldDiffers(p, std::make_index_sequence<kStructFields>());
  v1::WorkerSampling proto;
  SamplingToWorker(p, &proto);
  const google::protobuf::Descriptor* d = proto.GetDescriptor();
  for (int i = 0; i < d->field_count(); ++i) {
    EXPECT_TRUE(proto.GetReflection()->HasField(proto, d->field(i)))
        << d->field(i)->name() << " is not written by SamplingToWorker";
  }
  EXPECT_EQ(SamplingFromWorker(proto), p);
}

TEST(SamplingConvertTest, EveryWorkerFieldReachesTheStruct) {
  v1::WorkerSampling proto;
  SetEveryField(&proto);
  ExpectEveryFieldDiffers(SamplingFromWorker(proto), std::make_index_sequence<kStructFields>());
}

}  // namespace
}  // namespace tpserve
