#include "worker/engine/shard_weights.h"

#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace tpserve {
namespace {

std::string Blk(int layer, const char* name) { return absl::StrCat("blk.", layer, ".", name); }

absl::StatusOr<std::vector<float>> ReadF32(const ModelSource& m, const std::string& name,
                                           int64_t begin = 0, int64_t count = -1) {
  absl::StatusOr<HostTensor> t = count < 0 ? m.Read(name) : m.ReadRows(name, begin, count);
  if (!t.ok()) return Annotate(t.status(), name);
  return t->ToFloat();
}

// Rows [begin, begin + count) of `name` (+ the bias slice when present).
absl::StatusOr<LinearPart> RowPart(const ModelSource& m, const std::string& name, int64_t begin,
                                   int64_t count, bool bias) {
  LinearPart p;
  absl::StatusOr<HostTensor> w = m.ReadRows(name + ".weight", begin, count);
  if (!w.ok()) return Annotate(w.status(), name);
  p.weight = *std::move(w);
  if (bias) {
    TPS_ASSIGN_OR_RETURN(p.bias, ReadF32(m, name + ".bias", begin, count));
  }
  return p;
}

// Columns [begin, begin + count) of `name`; the whole tensor (no copy) when
// the range is everything.
absl::StatusOr<LinearPart> ColumnPart(const ModelSource& m, const std::string& name, int64_t begin,
                                      int64_t count) {
  absl::StatusOr<TensorInfo> info = m.FindTensor(name + ".weight");
  if (!info.ok()) return info.status();
  LinearPart p;
  absl::StatusOr<HostTensor> w = (begin == 0 && count == info->shape.back())
                                     ? m.Read(name + ".weight")
                                     : m.ReadColumns(name + ".weight", begin, count);
  if (!w.ok()) return Annotate(w.status(), name);
  p.weight = *std::move(w);
  return p;
}

// Lays parts side by side; fuses them into one matrix when dtypes and input
// widths agree.
Linear MakeLinear(std::vector<LinearPart> parts) {
  Linear l;
  l.in_features = static_cast<int>(parts[0].weight.cols());
  bool fusable = parts.size() > 1;
  for (const LinearPart& p : parts) {
    fusable = fusable && p.weight.dtype == parts[0].weight.dtype &&
              p.weight.cols() == parts[0].weight.cols() && p.bias.empty() == parts[0].bias.empty();
  }
  int offset = 0;
  for (LinearPart& p : parts) {
    p.out_offset = offset;
    offset += static_cast<int>(p.weight.rows());
  }
  l.out_features = offset;
  if (!fusable) {
    l.parts = std::move(parts);
    return l;
  }
  auto storage = std::make_shared<std::vector<uint8_t>>();
  LinearPart fused;
  fused.weight.dtype = parts[0].weight.dtype;
  fused.weight.shape = {offset, parts[0].weight.cols()};
  for (const LinearPart& p : parts) {
    storage->insert(storage->end(), p.weight.data, p.weight.data + p.weight.bytes);
    fused.bias.insert(fused.bias.end(), p.bias.begin(), p.bias.end());
  }
  fused.weight.data = storage->data();
  fused.weight.bytes = storage->size();
  fused.weight.owner = storage;
  l.parts.push_back(std::move(fused));
  return l;
}

void Dequantize(Linear& l) {
  for (LinearPart& p : l.parts) {
    if (!IsQuantized(p.weight.dtype)) continue;
    auto storage = std::make_shared<std::vector<float>>(p.weight.ToFloat());
    p.weight.dtype = DType::kF32;
    p.weight.data = reinterpret_cast<const uint8_t*>(storage->data());
    p.weight.bytes = storage->size() * sizeof(float);
    p.weight.owner = storage;
  }
}

int64_t LinearBytes(const Linear& l) {
  int64_t b = 0;
  for (const LinearPart& p : l.parts) b += static_cast<int64_t>(p.weight.bytes);
  return b;
}

}  // namespace

absl::StatusOr<ShardWeights> LoadShardWeights(const ModelSource& m, const ShardPlan& plan,
                                              bool dequantize) {
  const ModelConfig& c = m.config();
  const RankShard& s = plan.mine();
  const int64_t hd = c.head_dim;
  ShardWeights w;
  absl::StatusOr<HostTensor> emb = m.ReadRows("token_embd.weight", s.vocab.begin, s.vocab.count);
  if (!emb.ok()) return Annotate(emb.status(), "token_embd.weight");
  w.embedding = *emb;
  LinearPart head;
  if (c.tie_embeddings) {
    head.weight = *emb;
  } else {
    TPS_ASSIGN_OR_RETURN(head, RowPart(m, "output", s.vocab.begin, s.vocab.count, false));
  }
  std::vector<LinearPart> head_parts;
  head_parts.push_back(std::move(head));
  w.lm_head = MakeLinear(std::move(head_parts));
  if (dequantize) Dequantize(w.lm_head);
  TPS_ASSIGN_OR_RETURN(w.output_norm, ReadF32(m, "output_norm.weight"));
  w.bytes = static_cast<int64_t>(w.embedding.bytes) +
            (c.tie_embeddings && !dequantize ? 0 : LinearBytes(w.lm_head));
  for (int l = 0; l < c.num_layers; ++l) {
    LayerWeights lw;
    TPS_ASSIGN_OR_RETURN(lw.attn_norm, ReadF32(m, Blk(l, "attn_norm.weight")));
    TPS_ASSIGN_OR_RETURN(lw.ffn_norm, ReadF32(m, Blk(l, "ffn_norm.weight")));
    std::vector<LinearPart> qkv(3);
    TPS_ASSIGN_OR_RETURN(qkv[0], RowPart(m, Blk(l, "attn_q"), s.q_heads.begin * hd,
                                         s.q_heads.count * hd, c.qkv_bias));
    TPS_ASSIGN_OR_RETURN(qkv[1], RowPart(m, Blk(l, "attn_k"), s.kv_heads.begin * hd,
                                         s.kv_heads.count * hd, c.qkv_bias));
    TPS_ASSIGN_OR_RETURN(qkv[2], RowPart(m, Blk(l, "attn_v"), s.kv_heads.begin * hd,
                                         s.kv_heads.count * hd, c.qkv_bias));
    lw.qkv = MakeLinear(std::move(qkv));
    std::vector<LinearPart> o(1);
    TPS_ASSIGN_OR_RETURN(
        o[0], ColumnPart(m, Blk(l, "attn_output"), s.q_heads.begin * hd, s.q_heads.count * hd));
    lw.o = MakeLinear(std::move(o));
    std::vector<LinearPart> gu(2);
    TPS_ASSIGN_OR_RETURN(gu[0], RowPart(m, Blk(l, "ffn_gate"), s.ffn.begin, s.ffn.count, false));
    TPS_ASSIGN_OR_RETURN(gu[1], RowPart(m, Blk(l, "ffn_up"), s.ffn.begin, s.ffn.count, false));
    lw.gate_up = MakeLinear(std::move(gu));
    std::vector<LinearPart> down(1);
    TPS_ASSIGN_OR_RETURN(down[0], ColumnPart(m, Blk(l, "ffn_down"), s.ffn.begin, s.ffn.count));
    lw.down = MakeLinear(std::move(down));
    if (dequantize) {
      for (Linear* lin : {&lw.qkv, &lw.o, &lw.gate_up, &lw.down}) Dequantize(*lin);
    }
    w.bytes +=
        LinearBytes(lw.qkv) + LinearBytes(lw.o) + LinearBytes(lw.gate_up) + LinearBytes(lw.down);
    w.layers.push_back(std::move(lw));
  }
  return w;
}

}  // namespace tpserve
