// Conversions between worker.proto messages and the engine's plain step types
// (worker/engine/step_types.h). The engine never sees protos.
//
//   StepBatch batch = ToStepBatch(request);
//   TPS_ASSIGN_OR_RETURN(StepOutput out, engine.Step(batch));
//   FillStepResponse(out, &response);
#ifndef TPSERVE_WORKER_SERVICE_STEP_CONVERT_H_
#define TPSERVE_WORKER_SERVICE_STEP_CONVERT_H_

#include "proto/tpserve/v1/worker.pb.h"
#include "worker/engine/step_types.h"

namespace tpserve {

StepBatch ToStepBatch(const v1::StepRequest& request);
void FillStepResponse(const StepOutput& output, v1::StepResponse* response);

}  // namespace tpserve

#endif  // TPSERVE_WORKER_SERVICE_STEP_CONVERT_H_
