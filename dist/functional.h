// functional.h — differentiable collectives: what autograd needs to cross process boundaries.
//
// all_to_all(group, x, send_rows, recv_rows) moves rows as ProcessGroup::all_to_all does; its
// backward sends the gradient rows back the way they came (send and receive splits swapped).
// It records a graph node whenever grad mode is on — even when x needs no gradient — so that
// every rank runs the same backward collectives in the same order: a rank whose experts got no
// tokens must still answer its peers' gradient exchange.
#pragma once
#include <memory>
#include <vector>

#include "dist/process_group.h"

namespace mox::dist {

Tensor all_to_all(const std::shared_ptr<ProcessGroup>& group, const Tensor& x, const std::vector<int64_t>& send_rows,
                  const std::vector<int64_t>& recv_rows);

}  // namespace mox::dist
