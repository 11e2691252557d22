// functional.cpp — all_to_all with autograd.
#include "dist/functional.h"

#include "autograd/node.h"
#include "tensor/ops.h"

namespace mox::dist {

Tensor all_to_all(const std::shared_ptr<ProcessGroup>& group, const Tensor& x, const std::vector<int64_t>& send_rows,
                  const std::vector<int64_t>& recv_rows) {
  MOX_CHECK(group != nullptr, "dist::all_to_all: the process group is null");
  Tensor out = group->all_to_all(raw::contiguous(x), send_rows, recv_rows);
  if (!autograd::grad_enabled()) return out;
  return autograd::record("all_to_all", out, {&x}, [group, send_rows, recv_rows](const Tensor& g) {
    return std::vector<Tensor>{group->all_to_all(raw::contiguous(g), recv_rows, send_rows)};
  });
}

}  // namespace mox::dist
